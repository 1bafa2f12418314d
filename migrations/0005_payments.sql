-- Self-checkout payments (issue 7): the payment queue, kiosk sales and the local receipts
-- they become. No card data: a card is known only by its fingerprint (SHA-256 of brand, last
-- four and expiry) and the processor token or P2PE ciphertext the kiosk sent.

CREATE TABLE payments (
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
    UNIQUE (device_id, idempotency_key)
) STRICT;
-- The forwarding queue, oldest first.
CREATE INDEX payments_queue ON payments (created_at) WHERE status = 'approved_offline';
-- Their deadlines: the next to expire is found without a scan.
CREATE INDEX payments_deadline ON payments (forward_by) WHERE status = 'approved_offline';
-- Per-card velocity: stand-in approvals by card fingerprint and time.
CREATE INDEX payments_card ON payments (card_fingerprint, created_at) WHERE offline = 1 AND card_fingerprint IS NOT NULL;
CREATE INDEX payments_open ON payments (created_at) WHERE status = 'pending';

-- Store-wide exposure (approved offline, not yet forwarded), kept by triggers so every stand-in
-- decision reads it in O(1) inside the same transaction that changes it.
CREATE TABLE payments_exposure (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    count       INTEGER NOT NULL,
    total_minor INTEGER NOT NULL
) STRICT;
INSERT INTO payments_exposure (id, count, total_minor) VALUES (1, 0, 0);

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

-- When the processor last answered, kept across restarts (the offline_max_hours rule).
CREATE TABLE payments_processor (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    reachable_at TEXT
) STRICT;
INSERT INTO payments_processor (id, reachable_at) VALUES (1, NULL);

-- Kiosk sales, idempotent by sale_id per device.
CREATE TABLE kiosk_sales (
    device_id    TEXT NOT NULL,
    sale_id      TEXT NOT NULL,
    receipt_id   TEXT NOT NULL UNIQUE,
    body_sha256  TEXT NOT NULL,
    answer       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (device_id, sale_id)
) STRICT;

-- Receipts made at the store (kiosk sales). They are also written into the receipts replica;
-- this copy puts them back after a receipts snapshot from central that does not have them yet.
CREATE TABLE local_receipts (
    receipt_id TEXT PRIMARY KEY,
    doc        TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

-- Declined offline after an online attempt whose outcome is unknown: the processor may have
-- approved it, so forwarding asks again with the same key (and reverses an approval).
CREATE INDEX payments_unresolved ON payments (created_at) WHERE status = 'declined_offline' AND sent = 1 AND forwarded_at IS NULL;
