-- Oversight: its aggregates (alerts, inspections, rectification orders, incidents, security
-- documents, risk assessments, evaluations) as one table of typed rows; the hits monitoring
-- rules count in their windows; the facts it follows from other services for the annual report
-- and providers' contribution; the reports; and the schedule of dated work (not tenant-isolated:
-- the scheduler reads every tenant's).

CREATE TABLE oversight_items (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    kind text NOT NULL,
    state text NOT NULL,
    party text NOT NULL,
    ref text NOT NULL,
    body bytea NOT NULL
);
CREATE INDEX oversight_items_by_kind ON oversight_items (tenant, kind, id);
CREATE INDEX oversight_items_by_ref ON oversight_items (tenant, kind, ref, state);

CREATE TABLE rule_hits (
    tenant text NOT NULL,
    rule_id text NOT NULL,
    group_key text NOT NULL,
    event_id text NOT NULL,
    at timestamp NOT NULL,
    PRIMARY KEY (tenant, rule_id, event_id)
);
CREATE INDEX rule_hits_window ON rule_hits (tenant, rule_id, group_key, at);
CREATE INDEX rule_hits_age ON rule_hits (at);

CREATE TABLE followed_facts (
    tenant text NOT NULL,
    kind text NOT NULL,
    id text NOT NULL,
    party text NOT NULL,
    first_day text NOT NULL,
    last_day text NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (tenant, kind, id)
);
CREATE INDEX followed_facts_by_party ON followed_facts (tenant, kind, party);

CREATE TABLE annual_reports (
    tenant text NOT NULL,
    year integer NOT NULL,
    state text NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (tenant, year)
);

CREATE TABLE oversight_schedule (
    kind text NOT NULL,
    id text NOT NULL,
    tenant text NOT NULL,
    due_on text NOT NULL,
    PRIMARY KEY (kind, id, tenant)
);
CREATE INDEX oversight_schedule_due ON oversight_schedule (due_on);

SELECT pdp_isolate_tenant('oversight_items');
SELECT pdp_isolate_tenant('rule_hits');
SELECT pdp_isolate_tenant('followed_facts');
SELECT pdp_isolate_tenant('annual_reports');
