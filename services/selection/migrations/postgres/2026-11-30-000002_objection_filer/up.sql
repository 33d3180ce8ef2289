-- Who filed an objection (a subject, or `anonymous@<address>` for the public) and when: kept
-- beside the row, not in it, to bound what one objector files (the bureau sees no address).
ALTER TABLE objections_rows ADD COLUMN filed_by text NOT NULL DEFAULT '';
ALTER TABLE objections_rows ADD COLUMN filed_at timestamp;
CREATE INDEX objections_filed ON objections_rows (tenant, selection_id, filed_by);
SELECT pdp_isolate_tenant('objections');
