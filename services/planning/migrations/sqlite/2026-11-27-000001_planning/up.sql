-- Planning's tables (SQLite). Aggregates are stored as their protobuf encoding (`body`), beside the
-- columns that queries filter, sort and constrain on.

CREATE TABLE resources (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    registration_number text UNIQUE,
    body blob NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX resources_tenant_id ON resources (tenant, id);

-- One row per version; the newest version of a plan has `latest`.
CREATE TABLE plans (
    id text NOT NULL,
    version integer NOT NULL,
    tenant text NOT NULL,
    state text NOT NULL,
    latest boolean NOT NULL,
    body blob NOT NULL,
    updated_at timestamp NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE INDEX plans_tenant_state ON plans (tenant, state, id);

CREATE TABLE plan_amendments (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    plan_id text NOT NULL,
    body blob NOT NULL,
    recorded_at timestamp NOT NULL
);
CREATE INDEX plan_amendments_plan ON plan_amendments (tenant, plan_id, id);

-- Filings live in the provincial tenant; one per city plan version.
CREATE TABLE filings (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    plan_id text NOT NULL,
    plan_version integer NOT NULL,
    state text NOT NULL,
    body blob NOT NULL,
    updated_at timestamp NOT NULL,
    UNIQUE (plan_id, plan_version)
);
CREATE INDEX filings_tenant_state ON filings (tenant, state, id);

-- Scheduled work across tenants (approved plans waiting for their effective date). It names
-- rows but holds none of their content, so it is not a tenant table.
CREATE TABLE plan_schedule (
    plan_id text NOT NULL,
    version integer NOT NULL,
    tenant text NOT NULL,
    effective_on text NOT NULL,
    PRIMARY KEY (plan_id, version)
);

-- The last registration sequence number given per tenant and year.
CREATE TABLE registration_sequences (
    tenant text NOT NULL,
    year integer NOT NULL,
    last bigint NOT NULL,
    PRIMARY KEY (tenant, year)
);

