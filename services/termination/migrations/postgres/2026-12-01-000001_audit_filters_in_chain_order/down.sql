DROP INDEX audit_records_by_organization;
DROP INDEX audit_records_by_subject;
DROP INDEX audit_records_by_operation;
CREATE INDEX audit_records_by_organization ON audit_records_rows (tenant, organization, time);
CREATE INDEX audit_records_by_subject ON audit_records_rows (tenant, subject, time);
CREATE INDEX audit_records_by_operation ON audit_records_rows (tenant, operation, time);
