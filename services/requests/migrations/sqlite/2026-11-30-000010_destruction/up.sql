CREATE TABLE destructions (
    case_id text PRIMARY KEY,
    tenant text NOT NULL,
    agreement_id text NOT NULL,
    inventory blob
);
