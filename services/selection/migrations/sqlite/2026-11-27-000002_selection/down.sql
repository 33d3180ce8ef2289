DROP TABLE IF EXISTS effective_plans;
DROP TABLE IF EXISTS objections;
DROP TABLE IF EXISTS applications;
DROP TABLE IF EXISTS selections;
