-- The casbin policy in a cluster: one CSV line per row, in order. Replaced whole by
-- `pdp policy set`, which then tells every gateway replica through Redis to reload.
CREATE TABLE gateway_policy (
    line_no BIGINT PRIMARY KEY,
    rule TEXT NOT NULL
);
