-- The embedded event log: append-only records per topic partition, and the committed offset of
-- each consumer group.
CREATE TABLE log_topics (
    name TEXT PRIMARY KEY NOT NULL,
    partitions INTEGER NOT NULL
);
CREATE TABLE log_records (
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    record_offset BIGINT NOT NULL,
    record_key TEXT NOT NULL,
    headers TEXT NOT NULL,
    payload BLOB NOT NULL,
    appended_at TIMESTAMP NOT NULL,
    PRIMARY KEY (topic, part, record_offset)
);
CREATE TABLE log_offsets (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic, part)
);
