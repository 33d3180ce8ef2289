CREATE TABLE pdp_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    event_key TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
CREATE INDEX pdp_outbox_pending ON pdp_outbox (id) WHERE sent_at IS NULL;

CREATE TABLE pdp_inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    event_offset BIGINT NOT NULL,
    applied_at TIMESTAMP NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
