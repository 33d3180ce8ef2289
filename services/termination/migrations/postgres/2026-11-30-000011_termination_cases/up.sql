-- Termination cases, one per ended agreement; the cuts of access other services reported (grants
-- ended, products withdrawn), kept whether they arrive before or after their case; and the
-- schedule of cases falling due (not tenant-isolated: the scheduler reads every tenant's).

CREATE TABLE termination_cases (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    agreement_id text NOT NULL,
    operator text NOT NULL,
    state text NOT NULL,
    body bytea NOT NULL,
    UNIQUE (tenant, agreement_id)
);

CREATE TABLE access_cuts (
    tenant text NOT NULL,
    kind text NOT NULL,
    subject text NOT NULL,
    operator text NOT NULL,
    agreement_id text NOT NULL,
    effective_at timestamp NOT NULL,
    PRIMARY KEY (tenant, kind, subject)
);
CREATE INDEX access_cuts_by_operator ON access_cuts (tenant, operator, effective_at);

CREATE TABLE case_schedule (
    case_id text PRIMARY KEY,
    tenant text NOT NULL,
    due_on text NOT NULL
);

SELECT pdp_isolate_tenant('termination_cases');
SELECT pdp_isolate_tenant('access_cuts');
