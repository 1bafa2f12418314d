-- An order's list entry without its record: the number of items and whether any line needs an
-- ID check, worked out from the lines when the feed brings the order (feeds::apply), so the
-- search results and the due-soon list read them from the row instead of parsing every
-- order's stored record. On the replica and its twin alike (NOTES.md).
ALTER TABLE pickup_orders ADD COLUMN items INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pickup_orders ADD COLUMN requires_id_check INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pickup_orders_next ADD COLUMN items INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pickup_orders_next ADD COLUMN requires_id_check INTEGER NOT NULL DEFAULT 0;
-- The orders already here, from their records (the same sums the desk shows).
UPDATE pickup_orders SET
    items = coalesce((SELECT sum(l.value ->> '$.qty') FROM json_each(doc, '$.lines') l), 0),
    requires_id_check = EXISTS (
        SELECT 1 FROM json_each(doc, '$.lines') l WHERE l.value ->> '$.requires_id_check' = 1);
UPDATE pickup_orders_next SET
    items = coalesce((SELECT sum(l.value ->> '$.qty') FROM json_each(doc, '$.lines') l), 0),
    requires_id_check = EXISTS (
        SELECT 1 FROM json_each(doc, '$.lines') l WHERE l.value ->> '$.requires_id_check' = 1);
