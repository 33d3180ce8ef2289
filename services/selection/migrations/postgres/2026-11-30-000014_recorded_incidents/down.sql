DROP VIEW IF EXISTS recorded_incidents;
DROP TABLE IF EXISTS recorded_incidents_rows;
