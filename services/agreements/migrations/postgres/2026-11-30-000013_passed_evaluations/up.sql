-- The passed evaluations oversight recorded, by agreement: a renewal needs one of the term it
-- renews (第二十八条).
CREATE TABLE passed_evaluations (
    tenant text NOT NULL,
    evaluation_id text NOT NULL,
    agreement_id text NOT NULL,
    PRIMARY KEY (tenant, evaluation_id)
);
CREATE INDEX passed_evaluations_by_agreement ON passed_evaluations (tenant, agreement_id);

SELECT pdp_isolate_tenant('passed_evaluations');
