DROP INDEX plans_tenant_latest;
DROP INDEX plans_tenant_state;
CREATE INDEX plans_tenant_state ON plans_rows (tenant, state, id);
