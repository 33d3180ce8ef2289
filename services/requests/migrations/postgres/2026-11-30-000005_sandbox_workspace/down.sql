DROP VIEW IF EXISTS workspace_tables;
DROP TABLE IF EXISTS workspace_tables_rows;
DROP VIEW IF EXISTS grant_budgets, sandbox_settings, request_resources;
ALTER TABLE grant_budgets_rows DROP COLUMN window_queries, DROP COLUMN window_start;
ALTER TABLE sandbox_settings_rows DROP COLUMN queries_per_minute;
ALTER TABLE request_resources_rows DROP COLUMN sensitivity, DROP COLUMN classification;
SELECT pdp_isolate_tenant('grant_budgets');
SELECT pdp_isolate_tenant('sandbox_settings');
SELECT pdp_isolate_tenant('request_resources');
