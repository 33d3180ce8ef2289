-- The sandbox's workspace, its per-grant rate, and the labels derived tables inherit.

-- 分类 and 分级 of each resource (planning's DataClass and Sensitivity numbers).
ALTER TABLE request_resources_rows ADD COLUMN classification integer NOT NULL DEFAULT 0;
ALTER TABLE request_resources_rows ADD COLUMN sensitivity integer NOT NULL DEFAULT 0;
SELECT pdp_isolate_tenant('request_resources');

-- Statements a grant may run per minute, counted in a fixed window per grant.
ALTER TABLE sandbox_settings_rows ADD COLUMN queries_per_minute integer NOT NULL DEFAULT 30;
SELECT pdp_isolate_tenant('sandbox_settings');
ALTER TABLE grant_budgets_rows ADD COLUMN window_start text NOT NULL DEFAULT '';
ALTER TABLE grant_budgets_rows ADD COLUMN window_queries integer NOT NULL DEFAULT 0;
SELECT pdp_isolate_tenant('grant_budgets');

-- A grant's workspace tables: what each is (the message), never its data (that is Parquet in the
-- sandbox's store, at `location`).
CREATE TABLE workspace_tables (
    tenant text NOT NULL,
    grant_id text NOT NULL,
    name text NOT NULL,
    operator text NOT NULL,
    location text NOT NULL,
    body bytea NOT NULL,
    updated_at timestamp NOT NULL,
    PRIMARY KEY (tenant, grant_id, name)
);
SELECT pdp_isolate_tenant('workspace_tables');
