DROP TABLE IF EXISTS dataset_refreshes;
DROP TABLE IF EXISTS dataset_versions;
DROP TABLE IF EXISTS entitlements;
DROP TABLE IF EXISTS delivered_products;
