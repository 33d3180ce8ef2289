DROP TABLE IF EXISTS trades;
DROP TABLE IF EXISTS developers;
DROP TABLE IF EXISTS workspace_tables;
DROP TABLE IF EXISTS grants;
DROP TABLE IF EXISTS registration_sequences;
DROP TABLE IF EXISTS pricing_rules;
DROP TABLE IF EXISTS price_changes;
DROP TABLE IF EXISTS products;
