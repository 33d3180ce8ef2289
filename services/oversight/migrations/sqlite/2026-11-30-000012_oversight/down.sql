DROP TABLE IF EXISTS oversight_schedule;
DROP TABLE IF EXISTS annual_reports;
DROP TABLE IF EXISTS followed_facts;
DROP TABLE IF EXISTS rule_hits;
DROP TABLE IF EXISTS oversight_items;
