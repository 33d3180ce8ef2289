DROP TABLE IF EXISTS entitlements;
DROP TABLE IF EXISTS delivered_products;
