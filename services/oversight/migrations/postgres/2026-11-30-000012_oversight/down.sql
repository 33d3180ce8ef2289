DROP VIEW IF EXISTS annual_reports, followed_facts, rule_hits, oversight_items;
DROP TABLE IF EXISTS oversight_schedule, annual_reports_rows, followed_facts_rows, rule_hits_rows,
    oversight_items_rows;
