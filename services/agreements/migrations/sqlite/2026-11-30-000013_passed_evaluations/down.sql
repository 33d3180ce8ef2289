DROP TABLE passed_evaluations;
