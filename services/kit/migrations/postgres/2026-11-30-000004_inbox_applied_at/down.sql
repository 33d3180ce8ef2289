DROP INDEX IF EXISTS pdp_inbox_applied_at;
