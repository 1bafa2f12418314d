-- When HQ last imported each feed (`standin hub import`, an empty file included): the hub's
-- answer to "how current is HQ's data behind this feed", sent to the stores as the feed
-- page's `as_of` (API.md). Per feed, not per store: an import run speaks for every store,
-- also those with no line in it (nothing changed for them). A few rows; with Citus, a
-- reference table.
CREATE TABLE feed_imports (
    feed        text PRIMARY KEY,
    imported_at timestamptz NOT NULL
);
