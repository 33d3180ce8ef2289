-- Agreements and what they learn from planning and selection (read models; those services own
-- the plans and selections).

CREATE TABLE agreements (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    operator text NOT NULL,
    state text NOT NULL,
    first_day text NOT NULL,
    last_day text NOT NULL,
    body bytea NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX agreements_tenant_operator ON agreements (tenant, operator, state);

CREATE TABLE plan_scopes (
    tenant text NOT NULL,
    plan_id text NOT NULL,
    version integer NOT NULL,
    resource_ids text NOT NULL,
    PRIMARY KEY (tenant, plan_id, version)
);

CREATE TABLE concluded_selections (
    tenant text NOT NULL,
    selection_id text NOT NULL,
    plan_id text NOT NULL,
    plan_version integer NOT NULL,
    organizations text NOT NULL,
    PRIMARY KEY (tenant, selection_id)
);

-- Activations and expiries due, across tenants; names rows, holds none of their content.
CREATE TABLE agreement_schedule (
    agreement_id text NOT NULL,
    tenant text NOT NULL,
    action text NOT NULL,
    due_on text NOT NULL,
    PRIMARY KEY (agreement_id, action)
);

SELECT pdp_isolate_tenant('agreements');
SELECT pdp_isolate_tenant('plan_scopes');
SELECT pdp_isolate_tenant('concluded_selections');
