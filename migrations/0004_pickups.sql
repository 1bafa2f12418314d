-- What the store did with pickup orders, kept apart from the pickup_orders replica so a feed
-- batch (or a snapshot switch) can never overwrite an action taken at the store.

CREATE TABLE pickup_handovers (
    id          INTEGER PRIMARY KEY,
    order_id    TEXT NOT NULL,
    lines       TEXT NOT NULL,        -- JSON [{"line": n, "qty": n}]
    id_checked  INTEGER NOT NULL,
    by_employee TEXT NOT NULL,
    at          TEXT NOT NULL,
    journal_id  TEXT NOT NULL         -- the journal entry that carries it to central
) STRICT;
CREATE INDEX pickup_handovers_order ON pickup_handovers (order_id);

CREATE TABLE pickup_no_shows (
    order_id    TEXT PRIMARY KEY,
    by_employee TEXT NOT NULL,
    at          TEXT NOT NULL,
    journal_id  TEXT NOT NULL
) STRICT;
