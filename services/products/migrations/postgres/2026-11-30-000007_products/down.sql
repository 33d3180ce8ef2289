DROP VIEW IF EXISTS trades, developers, workspace_tables, grants, registration_sequences, pricing_rules, price_changes, products;
DROP TABLE IF EXISTS trades_rows, developers_rows, workspace_tables_rows, grants_rows, registration_sequences_rows, pricing_rules_rows, price_changes_rows, products_rows;
