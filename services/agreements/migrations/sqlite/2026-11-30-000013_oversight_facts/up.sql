-- What agreements keeps of oversight's records, by agreement: the passed evaluations (a renewal
-- needs one of the term it renews, 第二十八条) and the failed rectifications (a termination for a
-- breach not rectified rests on one, 第三十条).
CREATE TABLE passed_evaluations (
    tenant text NOT NULL,
    evaluation_id text NOT NULL,
    agreement_id text NOT NULL,
    PRIMARY KEY (tenant, evaluation_id)
);
CREATE INDEX passed_evaluations_by_agreement ON passed_evaluations (tenant, agreement_id);

CREATE TABLE failed_rectifications (
    tenant text NOT NULL,
    order_id text NOT NULL,
    agreement_id text NOT NULL,
    PRIMARY KEY (tenant, order_id)
);
CREATE INDEX failed_rectifications_by_agreement ON failed_rectifications (tenant, agreement_id);

