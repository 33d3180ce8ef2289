-- Tenant isolation that fails loudly. A service turns a tenant table into a view over its rows
-- with `SELECT pdp_isolate_tenant('plans')` in its migration: the view shows and accepts only the
-- rows of the tenant set for the current transaction (kit's TenantScope::enter), and any query
-- without that setting raises instead of returning another tenant's rows.

CREATE FUNCTION pdp_current_tenant() RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t text := current_setting('pdp.tenant', true);
BEGIN
    IF t IS NULL OR t = '' THEN
        RAISE EXCEPTION 'tenant table used without a tenant scope'
            USING ERRCODE = '42501',
                  HINT = 'enter a TenantScope in the transaction before touching tenant rows';
    END IF;
    RETURN t;
END
$$;

-- Idempotent: run it again after adding columns to the table, and the view follows.
CREATE FUNCTION pdp_isolate_tenant(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass(format('%I', tbl || '_rows')) IS NULL THEN
        EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, tbl || '_rows');
    END IF;
    EXECUTE format(
        'CREATE OR REPLACE VIEW %I AS SELECT * FROM %I WHERE tenant = pdp_current_tenant() '
        'WITH CASCADED CHECK OPTION',
        tbl, tbl || '_rows');
END
$$;
