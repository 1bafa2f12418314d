-- The fleet view (GET /v1/fleet, GET /fleet): the newest heartbeat each store sent
-- (POST /v1/stores/{store}/status, API.md), keyed and hash-partitioned by store_id like
-- journal_entries, so it distributes with Citus on the same column.
--
-- body is the heartbeat as the store sent it (unknown fields kept), the newest by
-- (sent_at, seq); last_contact moves on every heartbeat, also an older one arriving late.
-- Heartbeats never touch the stores row, which journal intake locks.
CREATE TABLE store_status (
    store_id     text NOT NULL,
    sent_at      timestamptz NOT NULL,
    seq          bigint NOT NULL,
    body         jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    last_contact timestamptz NOT NULL DEFAULT now(),
    heartbeats   bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (store_id)
) PARTITION BY HASH (store_id);

CREATE TABLE store_status_p0 PARTITION OF store_status FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE store_status_p1 PARTITION OF store_status FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE store_status_p2 PARTITION OF store_status FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE store_status_p3 PARTITION OF store_status FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE store_status_p4 PARTITION OF store_status FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE store_status_p5 PARTITION OF store_status FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE store_status_p6 PARTITION OF store_status FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE store_status_p7 PARTITION OF store_status FOR VALUES WITH (MODULUS 8, REMAINDER 7);

-- Set-aside entries (rejected, conflict) per store, for the fleet view without a scan of
-- every landed entry.
CREATE INDEX journal_entries_set_aside ON journal_entries (store_id, landed_at)
    WHERE outcome IN ('rejected', 'conflict');
