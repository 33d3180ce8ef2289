-- Destructions termination ordered (第二十九条): one per termination case, its inventory kept
-- before anything is deleted, so that a destruction cut short lists what it destroyed when it
-- is taken up again.
CREATE TABLE destructions (
    case_id text PRIMARY KEY,
    tenant text NOT NULL,
    agreement_id text NOT NULL,
    inventory bytea
);

SELECT pdp_isolate_tenant('destructions');
