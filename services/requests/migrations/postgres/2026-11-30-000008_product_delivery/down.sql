DROP VIEW IF EXISTS dataset_versions, entitlements, delivered_products;
DROP TABLE IF EXISTS dataset_versions_rows, entitlements_rows, delivered_products_rows, dataset_refreshes;
