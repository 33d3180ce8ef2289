-- A page of plans is ordered by (id, version) after its token: with the tenant and the filter
-- (the newest versions, or one state) leading, these indexes read each page as one range. Without
-- them SQLite sorted all of a tenant's plans for every page, and a first page took twice as long
-- at 10 000 plans as at 100 (the scale bench: `make bench`).
DROP INDEX plans_tenant_state;
CREATE INDEX plans_tenant_state ON plans (tenant, state, id, version);
CREATE INDEX plans_tenant_latest ON plans (tenant, latest, id, version);
