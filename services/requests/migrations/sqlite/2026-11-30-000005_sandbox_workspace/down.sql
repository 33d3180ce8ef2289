DROP TABLE IF EXISTS workspace_tables;
ALTER TABLE grant_budgets DROP COLUMN window_queries;
ALTER TABLE grant_budgets DROP COLUMN window_start;
ALTER TABLE sandbox_settings DROP COLUMN queries_per_minute;
ALTER TABLE request_resources DROP COLUMN sensitivity;
ALTER TABLE request_resources DROP COLUMN classification;
