-- Events written in the same transaction as the state change that caused them; the relay
-- publishes pending rows in id order and stamps sent_at.
CREATE TABLE pdp_outbox (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    event_key TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
CREATE INDEX pdp_outbox_pending ON pdp_outbox (id) WHERE sent_at IS NULL;

-- Events a consumer has applied, recorded in the same transaction as their effect.
CREATE TABLE pdp_inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    event_offset BIGINT NOT NULL,
    applied_at TIMESTAMP NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
