-- The audit archive: every audit record of the platform, per tenant, in a hash chain. Partitioned
-- by tenant and month of archiving, so that purging records past their retention drops whole
-- partitions; `pdp_audit_partition` makes the partition a record needs, in the record's
-- transaction.

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
) PARTITION BY RANGE (tenant, archived_at);
CREATE INDEX audit_records_by_organization ON audit_records (tenant, organization, time);
CREATE INDEX audit_records_by_subject ON audit_records (tenant, subject, time);
CREATE INDEX audit_records_by_operation ON audit_records (tenant, operation, time);
CREATE INDEX audit_records_by_time ON audit_records (tenant, time);

-- The end of each tenant's chain: its row is locked by every append, so appends of one tenant
-- happen one after another whichever replica makes them.
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
    body bytea NOT NULL
);

-- Authorization periods, from agreements' events: their records are kept two years after they end.
CREATE TABLE authorization_periods (
    tenant text NOT NULL,
    agreement_id text NOT NULL,
    operator text NOT NULL,
    started_at timestamp NOT NULL,
    ended_at timestamp,
    PRIMARY KEY (tenant, agreement_id)
);

CREATE FUNCTION pdp_audit_partition(t text, at timestamp) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    month timestamp := date_trunc('month', at);
    name text := format('audit_records_%s_%s', t, to_char(month, 'YYYYMM'));
BEGIN
    IF to_regclass(format('%I', name)) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pdp_audit_partition'));
    IF to_regclass(format('%I', name)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF audit_records_rows FOR VALUES FROM (%L, %L) TO (%L, %L)',
        name, t, month, t, month + interval '1 month');
END
$$;

-- Drops the tenant's partitions that hold only records archived before `before`; how many.
CREATE FUNCTION pdp_audit_drop_partitions(t text, before timestamp) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit_records_rows'::regclass
          AND c.relname LIKE format('audit_records_%s_%%', t)
    LOOP
        IF to_timestamp(right(part.relname, 6), 'YYYYMM')::timestamp + interval '1 month'
            <= before THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END
$$;

SELECT pdp_isolate_tenant('audit_records');
SELECT pdp_isolate_tenant('audit_checkpoints');
SELECT pdp_isolate_tenant('legal_holds');
SELECT pdp_isolate_tenant('authorization_periods');
