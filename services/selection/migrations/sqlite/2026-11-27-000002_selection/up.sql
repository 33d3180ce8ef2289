-- Selection's tables; aggregates stored as their protobuf encoding (`body`) beside the columns
-- queries filter and constrain on.

CREATE TABLE selections (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    state text NOT NULL,
    body blob NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX selections_tenant_state ON selections (tenant, state, id);

-- One application per organization and selection.
CREATE TABLE applications (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    selection_id text NOT NULL,
    organization text NOT NULL,
    body blob NOT NULL,
    updated_at timestamp NOT NULL,
    UNIQUE (selection_id, organization)
);

CREATE TABLE objections (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    selection_id text NOT NULL,
    state text NOT NULL,
    body blob NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX objections_selection ON objections (tenant, selection_id, id);

-- Planning's effective plans, as its events tell (a read model; planning owns the plans).
CREATE TABLE effective_plans (
    plan_id text NOT NULL,
    tenant text NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    PRIMARY KEY (tenant, plan_id)
);

