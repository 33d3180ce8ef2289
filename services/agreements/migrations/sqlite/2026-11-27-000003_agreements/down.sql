DROP TABLE IF EXISTS agreement_schedule;
DROP TABLE IF EXISTS concluded_selections;
DROP TABLE IF EXISTS plan_scopes;
DROP TABLE IF EXISTS agreements;
