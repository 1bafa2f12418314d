-- Returns taken at the store, kept apart from the receipts replica so a feed batch (or a
-- snapshot switch) can never undo one. Numbered 0006: 0005 belongs to kiosk payments.
--
-- A return's lines are what makes "the same item cannot be returned twice at this store"
-- hold while offline: the returnable quantity of a receipt line is its quantity minus what
-- central knew was returned (the feed's returned_qty) minus the lines below that central has
-- not yet folded into it (see src/returns/rules.rs, `returned_qty`).

CREATE TABLE returns (
    return_id     TEXT PRIMARY KEY,             -- UUIDv7
    request_id    TEXT UNIQUE,                  -- the desk's idempotency key for the POST, if sent
    request_hash  TEXT,                         -- SHA-256 of the request, to refuse a reused key
    receipt_id    TEXT,                         -- NULL: a return without a receipt
    taken_at      TEXT NOT NULL,
    day           TEXT NOT NULL,                -- the store day (UTC date) for the offline budget
    by_employee   TEXT NOT NULL,
    approved_by   TEXT,                         -- the manager whose override let it through
    override_reasons TEXT,                      -- JSON array of what needed the override
    method        TEXT NOT NULL CHECK (method IN ('original_tender', 'store_credit', 'cash')),
    amount_minor  INTEGER NOT NULL CHECK (amount_minor >= 0),
    cash_minor    INTEGER NOT NULL DEFAULT 0,   -- handed over in cash at the desk
    currency      TEXT NOT NULL,
    offline       INTEGER NOT NULL,             -- central was not up: counted in the day's budget
    journal_id    TEXT NOT NULL
) STRICT;
CREATE INDEX returns_receipt ON returns (receipt_id) WHERE receipt_id IS NOT NULL;
CREATE INDEX returns_offline_day ON returns (day) WHERE offline = 1;

CREATE TABLE return_lines (
    return_id      TEXT NOT NULL REFERENCES returns (return_id),
    receipt_id     TEXT,
    line           INTEGER,                     -- the receipt's line; NULL without a receipt
    sku            TEXT NOT NULL,
    qty            INTEGER NOT NULL CHECK (qty > 0),
    amount_minor   INTEGER NOT NULL CHECK (amount_minor >= 0),
    reason         TEXT NOT NULL,
    -- central's returned_qty for this line when the return was taken: growth past it, once
    -- central has acknowledged this return, is this return folded into the feed.
    central_returned_before INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX return_lines_receipt ON return_lines (receipt_id, line) WHERE receipt_id IS NOT NULL;
CREATE INDEX return_lines_return ON return_lines (return_id);

-- Refunds to an original card / app-pay / gift-card tender, one per tender, sent to the
-- processor with `refund_key` as the Idempotency-Key: when it is up at once, otherwise by the
-- refund worker when it is back; the same key every time, the first answer stored.
CREATE TABLE return_refunds (
    refund_key    TEXT PRIMARY KEY,
    return_id     TEXT NOT NULL REFERENCES returns (return_id),
    tender_index  INTEGER NOT NULL,             -- which of the receipt's tenders
    kind          TEXT NOT NULL,
    brand         TEXT,
    last4         TEXT,
    amount_minor  INTEGER NOT NULL CHECK (amount_minor > 0),
    request       TEXT NOT NULL,                -- the JSON body sent, exactly, every time
    state         TEXT NOT NULL CHECK (state IN ('queued', 'approved', 'declined', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    answer        TEXT,                         -- the processor's first answer (JSON)
    created_at    TEXT NOT NULL,
    settled_at    TEXT
) STRICT;
CREATE INDEX return_refunds_return ON return_refunds (return_id);
CREATE INDEX return_refunds_queued ON return_refunds (created_at) WHERE state = 'queued';
