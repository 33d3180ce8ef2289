DROP VIEW objections;
DROP INDEX objections_filed;
ALTER TABLE objections_rows DROP COLUMN filed_at;
ALTER TABLE objections_rows DROP COLUMN filed_by;
SELECT pdp_isolate_tenant('objections');
