DROP TABLE pdp_inbox;
DROP TABLE pdp_outbox;
