DROP VIEW IF EXISTS destructions;
DROP TABLE IF EXISTS destructions_rows;
