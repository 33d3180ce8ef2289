DROP TABLE log_offsets;
DROP TABLE log_records;
DROP TABLE log_topics;
