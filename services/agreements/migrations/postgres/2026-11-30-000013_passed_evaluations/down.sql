DROP VIEW IF EXISTS passed_evaluations;
DROP TABLE IF EXISTS passed_evaluations_rows;
