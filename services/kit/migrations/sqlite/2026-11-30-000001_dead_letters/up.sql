-- Events a consumer could not apply after its retries (or could not read at all): parked with the
-- error instead of being applied as a guess or blocking the events behind them. Listed by
-- `pdp events dead-letters`; `pdp events replay ID` asks the consumer to apply one again.
CREATE TABLE pdp_dead_letters (
    id TEXT PRIMARY KEY,
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    event_offset BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    tenant TEXT NOT NULL,
    event TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    parked_at TIMESTAMP NOT NULL,
    replay_requested BOOLEAN NOT NULL DEFAULT 0,
    UNIQUE (consumer, event_id)
);
CREATE INDEX pdp_dead_letters_replay ON pdp_dead_letters (consumer) WHERE replay_requested;
