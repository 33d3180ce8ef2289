DROP TABLE IF EXISTS request_schedule;
DROP TABLE IF EXISTS quality_tickets;
DROP TABLE IF EXISTS review_periods;
DROP TABLE IF EXISTS request_agreements;
DROP TABLE IF EXISTS request_resources;
DROP TABLE IF EXISTS grants;
DROP TABLE IF EXISTS request_reviewers;
DROP TABLE IF EXISTS data_requests;
