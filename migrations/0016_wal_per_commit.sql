-- Less WAL per commit (issue 19): `journal.seq` was INTEGER PRIMARY KEY AUTOINCREMENT, which
-- keeps the highest seq handed out in `sqlite_sequence` and rewrites that table's page in
-- every transaction that appends an entry: a whole page of WAL per group commit for a number
-- the store already has twice. `journal::append` takes the next seq itself, inside the
-- writer's transaction, as one more than the highest of
--   - the newest entry's seq,
--   - `journal_anchor.seq`, the last entry retention pruned (retention deletes only a prefix
--     of the chain and records its last seq and hash in the same transaction), and
--   - `journal_seq_floor.seq`, made here: the highest seq AUTOINCREMENT had handed out.
-- So a number is still never reused, also after retention pruned every entry.
--
-- AUTOINCREMENT is part of the table, so the table is rebuilt: same columns, every row
-- copied in seq order, then 0002's indexes and triggers made again. DROP TABLE fires no
-- DELETE trigger, and removes the table's row from sqlite_sequence.

CREATE TABLE journal_seq_floor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
) STRICT;
INSERT INTO journal_seq_floor (id, seq)
SELECT 1, max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'journal'), 0),
               coalesce((SELECT max(seq) FROM journal), 0),
               coalesce((SELECT seq FROM journal_anchor WHERE id = 1), 0));

CREATE TABLE journal_0016 (
    seq           INTEGER PRIMARY KEY,           -- never reused: see above
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

INSERT INTO journal_0016 (seq, id, lane, kind, occurred_at, store_id, actor, device, body,
    prev_hash, hash, outcome, reason, delivered_at, delivered_via, attempts)
SELECT seq, id, lane, kind, occurred_at, store_id, actor, device, body,
    prev_hash, hash, outcome, reason, delivered_at, delivered_via, attempts
FROM journal ORDER BY seq;

DROP TABLE journal;
ALTER TABLE journal_0016 RENAME TO journal;

CREATE INDEX journal_pending ON journal (lane, seq) WHERE outcome IS NULL;
CREATE INDEX journal_set_aside ON journal (seq) WHERE outcome IN ('rejected', 'conflict');

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
