DROP VIEW IF EXISTS access_cuts, termination_cases;
DROP TABLE IF EXISTS case_schedule, access_cuts_rows, termination_cases_rows;
