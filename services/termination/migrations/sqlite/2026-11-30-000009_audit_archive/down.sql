DROP TABLE authorization_periods;
DROP TABLE legal_holds;
DROP TABLE audit_checkpoints;
DROP TABLE audit_heads;
DROP TABLE audit_records;
