DROP TABLE recorded_incidents;
