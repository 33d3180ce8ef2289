DROP FUNCTION pdp_isolate_tenant(text);
DROP FUNCTION pdp_current_tenant();
