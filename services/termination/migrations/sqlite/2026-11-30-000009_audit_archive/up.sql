-- The audit archive (see the PostgreSQL migration): one table here, purged by DELETE.

CREATE TABLE audit_records (
    tenant text NOT NULL,
    seq bigint NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    time timestamp NOT NULL,
    archived_at timestamp NOT NULL,
    source text NOT NULL,
    operation text NOT NULL,
    target text NOT NULL,
    subject text NOT NULL,
    organization text NOT NULL,
    outcome text NOT NULL,
    data text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (tenant, seq, archived_at)
);
CREATE INDEX audit_records_by_organization ON audit_records (tenant, organization, time);
CREATE INDEX audit_records_by_subject ON audit_records (tenant, subject, time);
CREATE INDEX audit_records_by_operation ON audit_records (tenant, operation, time);
CREATE INDEX audit_records_by_time ON audit_records (tenant, time);

CREATE TABLE audit_heads (
    tenant text PRIMARY KEY,
    seq bigint NOT NULL,
    hash text NOT NULL
);

CREATE TABLE audit_checkpoints (
    tenant text NOT NULL,
    seq bigint NOT NULL,
    kind text NOT NULL,
    hash text NOT NULL,
    signed_at timestamp NOT NULL,
    signature text NOT NULL,
    PRIMARY KEY (tenant, seq, kind)
);

CREATE TABLE legal_holds (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    from_at timestamp NOT NULL,
    to_at timestamp NOT NULL,
    active boolean NOT NULL,
    body blob NOT NULL
);

CREATE TABLE authorization_periods (
    tenant text NOT NULL,
    agreement_id text NOT NULL,
    operator text NOT NULL,
    started_at timestamp NOT NULL,
    ended_at timestamp,
    PRIMARY KEY (tenant, agreement_id)
);
