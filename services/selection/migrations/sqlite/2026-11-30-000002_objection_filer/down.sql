DROP INDEX objections_filed;
ALTER TABLE objections DROP COLUMN filed_at;
ALTER TABLE objections DROP COLUMN filed_by;
