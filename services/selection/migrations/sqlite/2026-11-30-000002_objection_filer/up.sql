-- Who filed an objection (a subject, or `anonymous@<address>` for the public) and when: kept
-- beside the row, not in it, to bound what one objector files (the bureau sees no address).
ALTER TABLE objections ADD COLUMN filed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE objections ADD COLUMN filed_at TIMESTAMP;
CREATE INDEX objections_filed ON objections (tenant, selection_id, filed_by);
