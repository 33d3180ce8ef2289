DROP VIEW IF EXISTS failed_rectifications, passed_evaluations;
DROP TABLE IF EXISTS failed_rectifications_rows, passed_evaluations_rows;
