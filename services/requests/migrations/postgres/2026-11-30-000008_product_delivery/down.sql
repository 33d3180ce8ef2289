DROP VIEW IF EXISTS entitlements, delivered_products;
DROP TABLE IF EXISTS entitlements_rows, delivered_products_rows;
