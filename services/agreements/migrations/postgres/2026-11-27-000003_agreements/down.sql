DROP VIEW IF EXISTS concluded_selections, plan_scopes, agreements;
DROP TABLE IF EXISTS concluded_selections_rows, plan_scopes_rows, agreements_rows, agreement_schedule;
