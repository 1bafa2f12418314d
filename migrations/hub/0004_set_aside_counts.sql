-- Set-aside entries counted on the store's row, so the fleet view reads a column instead of
-- counting every rejected row of every store on each read (a hostile store's 500,000 rows
-- made `GET /v1/fleet` 14 times slower for everyone), and so the intake can hold a store's
-- kept rejected rows to `set_aside_kept_per_store` (hub config).
--
-- set_aside: rows kept (outcome rejected or conflict), moved in the intake's transaction
-- under the store's row lock. set_aside_not_kept: entries answered `rejected` past the cap
-- and not written (a re-send of one is answered, and counted, again).
ALTER TABLE stores
    ADD COLUMN set_aside bigint NOT NULL DEFAULT 0,
    ADD COLUMN set_aside_not_kept bigint NOT NULL DEFAULT 0;

UPDATE stores s SET set_aside = c.n
FROM (SELECT store_id, count(*) AS n FROM journal_entries
      WHERE outcome IN ('rejected', 'conflict') GROUP BY store_id) c
WHERE c.store_id = s.store_id;
