-- Data requests, their reviewers, the grants they issue, and what requests learn from planning
-- (resources: fields and provider) and agreements (which are active, for what, until when).

CREATE TABLE data_requests (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    operator text NOT NULL,
    state text NOT NULL,
    overdue boolean NOT NULL DEFAULT false,
    body bytea NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX data_requests_tenant_operator ON data_requests (tenant, operator, id);

-- The provider units that review a request: what a provider may see.
CREATE TABLE request_reviewers (
    tenant text NOT NULL,
    request_id text NOT NULL,
    reviewer text NOT NULL,
    PRIMARY KEY (tenant, reviewer, request_id)
);

CREATE TABLE grants (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    operator text NOT NULL,
    agreement_id text NOT NULL,
    state text NOT NULL,
    body bytea NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX grants_tenant_operator ON grants (tenant, operator, state);
CREATE INDEX grants_tenant_agreement ON grants (tenant, agreement_id);

CREATE TABLE request_resources (
    tenant text NOT NULL,
    resource_id text NOT NULL,
    provider text NOT NULL,
    provider_unit text NOT NULL,
    fields text NOT NULL,
    kinds text NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant, resource_id)
);

CREATE TABLE request_agreements (
    tenant text NOT NULL,
    agreement_id text NOT NULL,
    operator text NOT NULL,
    active boolean NOT NULL,
    resource_ids text NOT NULL,
    first_day text NOT NULL,
    last_day text NOT NULL,
    PRIMARY KEY (tenant, agreement_id)
);

CREATE TABLE review_periods (
    tenant text PRIMARY KEY,
    provider_review_working_days integer NOT NULL,
    ticket_working_days integer NOT NULL
);

-- Data-quality tickets (第十九条).
CREATE TABLE quality_tickets (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    operator text NOT NULL,
    provider text NOT NULL,
    resource_id text NOT NULL,
    state text NOT NULL,
    overdue boolean NOT NULL DEFAULT false,
    body bytea NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX quality_tickets_tenant_resource ON quality_tickets (tenant, resource_id);

-- Developer entities and their scenarios' data needs (第二十一条).
CREATE TABLE developers (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    organization text NOT NULL,
    operator text NOT NULL,
    state text NOT NULL,
    body bytea NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX developers_tenant_operator ON developers (tenant, operator);

CREATE TABLE development_needs (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    developer_id text NOT NULL,
    state text NOT NULL,
    body bytea NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX development_needs_tenant_developer ON development_needs (tenant, developer_id);

-- Loads of resources' data into the sandbox, and what each grant has spent of its privacy
-- budget (with the secret that keys its masks and noise; it never leaves).
CREATE TABLE resource_loads (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    resource_id text NOT NULL,
    state text NOT NULL,
    version integer NOT NULL DEFAULT 0,
    body bytea NOT NULL,
    updated_at timestamp NOT NULL
);
CREATE INDEX resource_loads_tenant_resource ON resource_loads (tenant, resource_id, version);

CREATE TABLE sandbox_settings (
    tenant text PRIMARY KEY,
    min_group_size integer NOT NULL,
    epsilon_per_query double precision NOT NULL,
    grant_budget double precision NOT NULL
);

CREATE TABLE grant_budgets (
    tenant text NOT NULL,
    grant_id text NOT NULL,
    secret text NOT NULL,
    epsilon_spent double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, grant_id)
);

-- Overdue reviews and tickets, and grant expiries due, across tenants; names rows, holds none of their
-- content.
CREATE TABLE request_schedule (
    item text NOT NULL,
    tenant text NOT NULL,
    action text NOT NULL,
    due_on text NOT NULL,
    PRIMARY KEY (item, action)
);

SELECT pdp_isolate_tenant('data_requests');
SELECT pdp_isolate_tenant('request_reviewers');
SELECT pdp_isolate_tenant('grants');
SELECT pdp_isolate_tenant('request_resources');
SELECT pdp_isolate_tenant('request_agreements');
SELECT pdp_isolate_tenant('review_periods');
SELECT pdp_isolate_tenant('quality_tickets');
SELECT pdp_isolate_tenant('developers');
SELECT pdp_isolate_tenant('development_needs');
SELECT pdp_isolate_tenant('resource_loads');
SELECT pdp_isolate_tenant('grant_budgets');
SELECT pdp_isolate_tenant('sandbox_settings');
