-- The desk's idempotency key for a hand-over: a retry after a lost answer (or the request
-- deadline) must not record the hand-over, or journal it, a second time. `request_hash` is the
-- request as asked (lines and id_checked), so a key reused for a different hand-over is refused
-- rather than answered. Both NULL for hand-overs recorded before this migration or sent without
-- a key; NULLs are distinct in a unique index, so those never collide.
-- pickup_handovers is the store's own table, not a replica: it has no `_next` twin.
ALTER TABLE pickup_handovers ADD COLUMN request_id TEXT;
ALTER TABLE pickup_handovers ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX pickup_handovers_request ON pickup_handovers (order_id, request_id);
