-- The purge of old inbox ids finds them by when they were applied.
CREATE INDEX pdp_inbox_applied_at ON pdp_inbox (applied_at);
