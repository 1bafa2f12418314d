-- Standin core schema: feed bookkeeping and the replicas of what HQ sends down.
--
-- Every replica table has a twin `<table>_next` with the same columns and indexes. Snapshot
-- parts are written into the twin; when the last part arrives the two are swapped by
-- renaming inside one transaction, so readers see the old snapshot or the new one, never a
-- mix (see src/feeds/apply.rs). Any later change to a replica table must change its twin too.
-- Replica tables hold HQ's data only; what the store does (hand-overs, returns) lives in its
-- own tables, so a feed batch can never overwrite a local action.

CREATE TABLE feed_state (
    feed            TEXT PRIMARY KEY,
    last_batch      INTEGER NOT NULL DEFAULT 0,
    applied_at      TEXT,              -- when last_batch was applied (RFC 3339 UTC)
    records         INTEGER NOT NULL DEFAULT 0,
    snapshot_at     TEXT,              -- when the last complete snapshot switched in
    pending_id      TEXT,              -- snapshot being assembled in the twin tables
    pending_part    INTEGER,
    pending_parts   INTEGER,
    pending_records INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,              -- the last batch refused from the pull worker
    last_error_at   TEXT
) STRICT;

INSERT INTO feed_state (feed) VALUES ('pickup_orders'), ('receipts'), ('staff'), ('devices'), ('policy');

-- pickup_orders ----------------------------------------------------------------------------
CREATE TABLE pickup_orders (
    order_id      TEXT PRIMARY KEY,
    order_number  TEXT NOT NULL,
    pickup_code   TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    phone_last4   TEXT,
    due_at        TEXT NOT NULL,
    status        TEXT NOT NULL,
    payment_state TEXT NOT NULL,
    total_minor   INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    doc           TEXT NOT NULL        -- the record exactly as HQ sent it
) STRICT;
CREATE INDEX pickup_orders_number ON pickup_orders (order_number);
CREATE INDEX pickup_orders_code ON pickup_orders (pickup_code);
CREATE INDEX pickup_orders_phone ON pickup_orders (phone_last4);
CREATE INDEX pickup_orders_due ON pickup_orders (due_at);
CREATE INDEX pickup_orders_name ON pickup_orders (customer_name COLLATE NOCASE);

CREATE TABLE pickup_orders_next (
    order_id      TEXT PRIMARY KEY,
    order_number  TEXT NOT NULL,
    pickup_code   TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    phone_last4   TEXT,
    due_at        TEXT NOT NULL,
    status        TEXT NOT NULL,
    payment_state TEXT NOT NULL,
    total_minor   INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    doc           TEXT NOT NULL
) STRICT;
CREATE INDEX pickup_orders_next_number ON pickup_orders_next (order_number);
CREATE INDEX pickup_orders_next_code ON pickup_orders_next (pickup_code);
CREATE INDEX pickup_orders_next_phone ON pickup_orders_next (phone_last4);
CREATE INDEX pickup_orders_next_due ON pickup_orders_next (due_at);
CREATE INDEX pickup_orders_next_name ON pickup_orders_next (customer_name COLLATE NOCASE);

-- receipts ---------------------------------------------------------------------------------
-- receipt_cards indexes card tenders for "no receipt, but the card": brand + last four + date.
CREATE TABLE receipts (
    receipt_id           TEXT PRIMARY KEY,
    order_number         TEXT,
    sold_at              TEXT NOT NULL,
    lane                 TEXT,
    currency             TEXT NOT NULL,
    customer_phone_last4 TEXT,
    total_minor          INTEGER NOT NULL,
    doc                  TEXT NOT NULL
) STRICT;
CREATE INDEX receipts_order_number ON receipts (order_number) WHERE order_number IS NOT NULL;
CREATE INDEX receipts_phone ON receipts (customer_phone_last4, sold_at) WHERE customer_phone_last4 IS NOT NULL;

CREATE TABLE receipt_cards (
    brand      TEXT NOT NULL,
    last4      TEXT NOT NULL,
    sold_at    TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    PRIMARY KEY (brand, last4, sold_at, receipt_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX receipt_cards_receipt ON receipt_cards (receipt_id);

CREATE TABLE receipts_next (
    receipt_id           TEXT PRIMARY KEY,
    order_number         TEXT,
    sold_at              TEXT NOT NULL,
    lane                 TEXT,
    currency             TEXT NOT NULL,
    customer_phone_last4 TEXT,
    total_minor          INTEGER NOT NULL,
    doc                  TEXT NOT NULL
) STRICT;
CREATE INDEX receipts_next_order_number ON receipts_next (order_number) WHERE order_number IS NOT NULL;
CREATE INDEX receipts_next_phone ON receipts_next (customer_phone_last4, sold_at) WHERE customer_phone_last4 IS NOT NULL;

CREATE TABLE receipt_cards_next (
    brand      TEXT NOT NULL,
    last4      TEXT NOT NULL,
    sold_at    TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    PRIMARY KEY (brand, last4, sold_at, receipt_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX receipt_cards_next_receipt ON receipt_cards_next (receipt_id);

-- staff ------------------------------------------------------------------------------------
CREATE TABLE staff (
    employee_id  TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    pin_verifier TEXT NOT NULL,
    active       INTEGER NOT NULL,
    doc          TEXT NOT NULL
) STRICT;
CREATE TABLE staff_next (
    employee_id  TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    pin_verifier TEXT NOT NULL,
    active       INTEGER NOT NULL,
    doc          TEXT NOT NULL
) STRICT;

-- devices ----------------------------------------------------------------------------------
CREATE TABLE devices (
    device_id    TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    lane         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    active       INTEGER NOT NULL,
    doc          TEXT NOT NULL
) STRICT;
CREATE INDEX devices_token ON devices (token_sha256);
CREATE TABLE devices_next (
    device_id    TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    lane         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    active       INTEGER NOT NULL,
    doc          TEXT NOT NULL
) STRICT;
CREATE INDEX devices_next_token ON devices_next (token_sha256);

-- policy -----------------------------------------------------------------------------------
CREATE TABLE policy (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL,               -- JSON
    doc   TEXT NOT NULL
) STRICT;
CREATE TABLE policy_next (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    doc   TEXT NOT NULL
) STRICT;
