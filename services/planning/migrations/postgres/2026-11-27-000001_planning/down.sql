DROP VIEW IF EXISTS filings, plan_amendments, plans, resources;
DROP TABLE IF EXISTS filings_rows, plan_amendments_rows, plans_rows, resources_rows,
    plan_schedule, registration_sequences;
