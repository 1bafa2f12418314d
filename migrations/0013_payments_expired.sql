-- Stored payments that expired (never forwarded, so never collected) by when they were made:
-- the stand-in decision adds those made since the processor was last reachable to the
-- store's exposure (payments::store::stand_in), one index range that is usually empty.
CREATE INDEX payments_expired ON payments (created_at) WHERE status = 'expired';
