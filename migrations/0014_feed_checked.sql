-- When the store last heard from central about each feed, apart from when a batch last
-- changed it: a quiet feed (no new batch) is still current as of the last answer, and central
-- may say how current HQ's data behind the feed is (`as_of` on a feed page). The desk shows
-- "last heard from central" and "data as of" apart, and tells a stalled feed from a quiet one.
ALTER TABLE feed_state ADD COLUMN checked_at TEXT;     -- the last pull round central answered to the end
ALTER TABLE feed_state ADD COLUMN source_as_of TEXT;   -- central's `as_of` in that answer, if it sent one
