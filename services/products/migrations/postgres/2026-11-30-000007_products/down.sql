DROP VIEW IF EXISTS revenue_caps, revenue_reports, trades, developers, workspace_tables, grants, registration_sequences, pricing_rules, price_changes, products;
DROP TABLE IF EXISTS revenue_caps_rows, revenue_reports_rows, trades_rows, developers_rows, workspace_tables_rows, grants_rows, registration_sequences_rows, pricing_rules_rows, price_changes_rows, products_rows;
