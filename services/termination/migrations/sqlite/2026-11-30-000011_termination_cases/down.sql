DROP TABLE case_schedule;
DROP TABLE access_cuts;
DROP TABLE termination_cases;
