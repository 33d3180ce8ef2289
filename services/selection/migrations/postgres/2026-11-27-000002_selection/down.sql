DROP VIEW IF EXISTS effective_plans, objections, applications, selections;
DROP TABLE IF EXISTS effective_plans_rows, objections_rows, applications_rows, selections_rows;
