-- The hub's schema: every table keyed by store_id, so one PostgreSQL can become a Citus
-- cluster distributed on store_id without changing a query (README "The hub").

-- One row per registered store: its credential (SHA-256 of the token, never the token), the
-- contiguous prefix of its journal chain that HQ has verified, and whether a fork was seen.
-- Intake locks this row (FOR UPDATE), which serialises one store's batches across every hub
-- process while different stores land in parallel.
CREATE TABLE stores (
    store_id        text PRIMARY KEY,
    token_sha256    text NOT NULL UNIQUE,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    verified_seq    bigint NOT NULL DEFAULT 0,
    verified_hash   text NOT NULL
        DEFAULT '0000000000000000000000000000000000000000000000000000000000000000',
    flagged_at      timestamptz,
    flag_reason     text,
    last_contact_at timestamptz
);

-- Every journal entry the stores sent, once (primary key store_id + id), with HQ's outcome.
-- HQ's systems read the landed ones: WHERE outcome IN ('accepted', 'conflict').
-- body_canonical is exactly what the entry's hash covers (src/journal/chain.rs), so a chain
-- can be re-verified from this table alone; body is the same as jsonb for queries.
CREATE TABLE journal_entries (
    store_id       text NOT NULL,
    id             text NOT NULL,
    seq            bigint,
    lane           text,
    kind           text,
    occurred_at    text,
    actor          text,
    device         text,
    body_canonical text,
    body           jsonb,
    prev_hash      text,
    hash           text,
    outcome        text NOT NULL CHECK (outcome IN ('accepted', 'conflict', 'rejected')),
    reason         text,
    arrivals       integer NOT NULL DEFAULT 1,
    landed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id)
) PARTITION BY HASH (store_id);

CREATE TABLE journal_entries_p0 PARTITION OF journal_entries FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE journal_entries_p1 PARTITION OF journal_entries FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE journal_entries_p2 PARTITION OF journal_entries FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE journal_entries_p3 PARTITION OF journal_entries FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE journal_entries_p4 PARTITION OF journal_entries FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE journal_entries_p5 PARTITION OF journal_entries FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE journal_entries_p6 PARTITION OF journal_entries FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE journal_entries_p7 PARTITION OF journal_entries FOR VALUES WITH (MODULUS 8, REMAINDER 7);

-- One place in a store's chain holds one landed entry: the database's own guard against a
-- fork, behind the intake's check.
CREATE UNIQUE INDEX journal_entries_chain ON journal_entries (store_id, seq)
    WHERE outcome <> 'rejected';

-- HQ's feed records, current state. store_id '' means every store (policy only).
-- version is a global change number from feed_change_seq; imports are serialised
-- (LOCK TABLE), so a reader never sees a higher version committed before a lower one.
CREATE SEQUENCE feed_change_seq;

CREATE TABLE feed_records (
    store_id   text NOT NULL,
    feed       text NOT NULL,
    key        text NOT NULL,
    record     jsonb NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    version    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, feed, key)
);
CREATE INDEX feed_records_changes ON feed_records (store_id, feed, version);

-- The numbered batches each store is served, kept once made: `after=n` returns the same
-- batch n+1 every time. through_version is the last change a batch includes.
CREATE TABLE feed_batches (
    store_id        text NOT NULL,
    feed            text NOT NULL,
    batch           bigint NOT NULL,
    kind            text NOT NULL,
    records         integer NOT NULL,
    through_version bigint NOT NULL,
    body            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, feed, batch)
);
