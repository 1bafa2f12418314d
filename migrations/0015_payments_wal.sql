-- Less WAL per payment (issue 19): SQLite logs whole pages, and the writer commits a group of
-- payments from as many kiosks at once (each kiosk has one payment in flight). An index whose
-- entries land in a different place for every payment of a group costs a whole page of WAL
-- per payment; one whose entries arrive in order costs a page per group. Two did:
--
-- 1. The idempotency constraint was UNIQUE (device_id, idempotency_key): device first, so a
--    group of 30 payments from 30 kiosks touched 30 leaves even when every kiosk's keys come
--    in time order. Key first, keys that kiosks make in time order (counters, ULIDs, UUIDv7)
--    arrive at one end of the tree; random keys (UUIDv4) cost what they did. Same constraint,
--    same lookups (both columns by equality).
-- 2. The per-card velocity index (card_fingerprint, created_at) took a random leaf for every
--    offline payment by card, used only when HQ's policy sets a velocity cap. Now a payment
--    goes into it only when a velocity cap is in force at its decision (velocity_indexed =
--    1); the others into payments_card_later, kept in time order. A cap that arrives during
--    an outage still counts the card's earlier stand-in approvals of that outage: the
--    decision adds the ones of payments_card_later since the processor was last reachable
--    (a range scan over this outage's uncapped payments; empty when the cap came first).
--
-- The UNIQUE constraint is part of the table, so the table is rebuilt: the same columns plus
-- velocity_indexed, every row copied (existing rows were all in the old card index, so 1),
-- then its indexes and 0005's triggers made again. DROP TABLE fires no DELETE trigger.

CREATE TABLE payments_0015 (
    payment_id        TEXT PRIMARY KEY,          -- UUIDv7; also the processor's Idempotency-Key
    device_id         TEXT NOT NULL,
    lane              TEXT NOT NULL,
    idempotency_key   TEXT NOT NULL,             -- the kiosk's key, unique per device
    body_sha256       TEXT NOT NULL,             -- of the canonical request body
    basket_id         TEXT NOT NULL,
    amount_minor      INTEGER NOT NULL CHECK (amount_minor > 0),
    currency          TEXT NOT NULL,
    tender_kind       TEXT NOT NULL,
    card_fingerprint  TEXT,
    tender            TEXT NOT NULL,             -- JSON, what forwarding sends (token, brand, last4, expiry)
    -- pending (with the processor now), approved, declined, approved_offline, declined_offline,
    -- then captured, declined_after_forward or expired for approved_offline ones.
    status            TEXT NOT NULL,
    reason            TEXT,
    auth_code         TEXT,
    offline           INTEGER NOT NULL DEFAULT 0, -- decided by stand-in
    sent              INTEGER NOT NULL DEFAULT 0, -- an online attempt may have reached the processor
    created_at        TEXT NOT NULL,
    decided_at        TEXT,
    forward_by        TEXT,                      -- approved_offline: the forwarding deadline
    forwarded_at      TEXT,
    forward_attempts  INTEGER NOT NULL DEFAULT 0,
    last_forward_error TEXT,
    answer            TEXT,                      -- JSON: the first answer, replayed to duplicates
    sale_id           TEXT,                      -- the kiosk sale this payment paid for
    -- 1: decided offline while a card velocity cap was in force, so in payments_card.
    velocity_indexed  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (idempotency_key, device_id)
) STRICT;

INSERT INTO payments_0015 (payment_id, device_id, lane, idempotency_key, body_sha256, basket_id,
    amount_minor, currency, tender_kind, card_fingerprint, tender, status, reason, auth_code,
    offline, sent, created_at, decided_at, forward_by, forwarded_at, forward_attempts,
    last_forward_error, answer, sale_id, velocity_indexed)
SELECT payment_id, device_id, lane, idempotency_key, body_sha256, basket_id,
    amount_minor, currency, tender_kind, card_fingerprint, tender, status, reason, auth_code,
    offline, sent, created_at, decided_at, forward_by, forwarded_at, forward_attempts,
    last_forward_error, answer, sale_id, 1
FROM payments ORDER BY rowid;

DROP TABLE payments;
ALTER TABLE payments_0015 RENAME TO payments;

CREATE INDEX payments_queue ON payments (created_at) WHERE status = 'approved_offline';
CREATE INDEX payments_deadline ON payments (forward_by) WHERE status = 'approved_offline';
CREATE INDEX payments_open ON payments (created_at) WHERE status = 'pending';
CREATE INDEX payments_unresolved ON payments (created_at) WHERE status = 'declined_offline' AND sent = 1 AND forwarded_at IS NULL;
CREATE INDEX payments_expired ON payments (created_at) WHERE status = 'expired';
-- Per-card velocity, for payments decided under a velocity cap.
CREATE INDEX payments_card ON payments (card_fingerprint, created_at)
    WHERE offline = 1 AND card_fingerprint IS NOT NULL AND velocity_indexed = 1;
-- The other offline card payments, in time order: what a cap set during an outage adds.
CREATE INDEX payments_card_later ON payments (created_at)
    WHERE offline = 1 AND card_fingerprint IS NOT NULL AND velocity_indexed = 0;

CREATE TRIGGER payments_exposure_insert AFTER INSERT ON payments
WHEN NEW.status = 'approved_offline'
BEGIN
    UPDATE payments_exposure SET count = count + 1, total_minor = total_minor + NEW.amount_minor WHERE id = 1;
END;
CREATE TRIGGER payments_exposure_leave AFTER UPDATE OF status ON payments
WHEN OLD.status = 'approved_offline' AND NEW.status <> 'approved_offline'
BEGIN
    UPDATE payments_exposure SET count = count - 1, total_minor = total_minor - OLD.amount_minor WHERE id = 1;
END;
CREATE TRIGGER payments_exposure_enter AFTER UPDATE OF status ON payments
WHEN OLD.status <> 'approved_offline' AND NEW.status = 'approved_offline'
BEGIN
    UPDATE payments_exposure SET count = count + 1, total_minor = total_minor + NEW.amount_minor WHERE id = 1;
END;
CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments
BEGIN
    SELECT RAISE(ABORT, 'payments are never deleted');
END;
