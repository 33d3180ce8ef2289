DROP TABLE failed_rectifications;
DROP TABLE passed_evaluations;
