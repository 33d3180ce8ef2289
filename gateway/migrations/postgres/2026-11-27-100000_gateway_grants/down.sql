DROP TABLE IF EXISTS gateway_grants;
