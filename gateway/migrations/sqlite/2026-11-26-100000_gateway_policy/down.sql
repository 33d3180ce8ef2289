DROP TABLE gateway_policy;
