DROP TABLE IF EXISTS filings;
DROP TABLE IF EXISTS plan_amendments;
DROP TABLE IF EXISTS plans;
DROP TABLE IF EXISTS resources;
DROP TABLE IF EXISTS plan_schedule;
DROP TABLE IF EXISTS registration_sequences;
