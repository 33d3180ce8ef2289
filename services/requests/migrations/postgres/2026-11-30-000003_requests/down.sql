DROP VIEW IF EXISTS development_needs, developers, quality_tickets, review_periods, request_agreements, request_resources, grants, request_reviewers, data_requests;
DROP TABLE IF EXISTS development_needs_rows, developers_rows, quality_tickets_rows, review_periods_rows, request_agreements_rows, request_resources_rows, grants_rows, request_reviewers_rows, data_requests_rows, request_schedule;
