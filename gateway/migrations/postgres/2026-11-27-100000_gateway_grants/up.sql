-- Organizations authorized by an active agreement, per tenant (R-AGR-3): kept from the
-- agreements' events, read by every gateway replica.
CREATE TABLE gateway_grants (
    agreement_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    organization TEXT NOT NULL
);
