-- The journal: everything done at the store, append-only and hash-chained, delivered to
-- central exactly once (by push, or by the HQ sync job pulling and acknowledging).
--
-- seq is the store's sequence number: AUTOINCREMENT so a number is never reused, even after
-- retention prunes the newest delivered entries. hash = SHA-256 over prev_hash and a
-- canonical encoding of the entry (src/journal/chain.rs). The delivery columns are not part
-- of the hashed entry; they are the only ones that may change, once, from NULL.

CREATE TABLE journal (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,          -- UUIDv7
    lane          TEXT NOT NULL CHECK (lane IN ('payments', 'returns', 'pickups', 'audit')),
    kind          TEXT NOT NULL,
    occurred_at   TEXT NOT NULL,
    store_id      TEXT NOT NULL,
    actor         TEXT,
    device        TEXT,
    body          TEXT NOT NULL,                 -- canonical JSON
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    outcome       TEXT CHECK (outcome IN ('accepted', 'duplicate', 'rejected', 'conflict')),
    reason        TEXT,
    delivered_at  TEXT,
    delivered_via TEXT CHECK (delivered_via IN ('push', 'pull')),
    attempts      INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX journal_pending ON journal (lane, seq) WHERE outcome IS NULL;
CREATE INDEX journal_set_aside ON journal (seq) WHERE outcome IN ('rejected', 'conflict');

-- What retention pruned last: the chain of what remains starts from this hash.
CREATE TABLE journal_anchor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       INTEGER NOT NULL,
    hash      TEXT NOT NULL,
    pruned_at TEXT NOT NULL
) STRICT;

-- Defence in depth: the entry itself never changes, an outcome is set once, and nothing
-- undelivered is ever deleted.
CREATE TRIGGER journal_append_only
BEFORE UPDATE OF seq, id, lane, kind, occurred_at, store_id, actor, device, body, prev_hash, hash ON journal
BEGIN
    SELECT RAISE(ABORT, 'journal entries are append-only');
END;

CREATE TRIGGER journal_outcome_once
BEFORE UPDATE OF outcome ON journal
WHEN OLD.outcome IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a journal entry''s outcome is recorded once');
END;

CREATE TRIGGER journal_keep_undelivered
BEFORE DELETE ON journal
WHEN OLD.outcome IS NULL
BEGIN
    SELECT RAISE(ABORT, 'undelivered journal entries are never deleted');
END;
