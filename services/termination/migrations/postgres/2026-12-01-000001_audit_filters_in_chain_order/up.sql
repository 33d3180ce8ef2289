-- Auditors page through one organization's, subject's or operation's records in chain order
-- (`seq`, the page token): indexes in that order read each page as one range. The ones by time
-- they replace made PostgreSQL either sort all of an organization's records before the first
-- page or walk the chain, filtering, until a rare organization's page filled (the scale bench's
-- plans: `make bench`). Ranges of time keep `audit_records_by_time`.
DROP INDEX audit_records_by_organization;
DROP INDEX audit_records_by_subject;
DROP INDEX audit_records_by_operation;
CREATE INDEX audit_records_by_organization ON audit_records_rows (tenant, organization, seq);
CREATE INDEX audit_records_by_subject ON audit_records_rows (tenant, subject, seq);
CREATE INDEX audit_records_by_operation ON audit_records_rows (tenant, operation, seq);
