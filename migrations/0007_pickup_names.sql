-- Name search at the desk by first or last name, as an index range rather than a walk of every
-- order. The first name is a prefix of customer_name (served by the existing NOCASE index);
-- the last name is the text after the last space, indexed here as an expression. The query
-- must spell the expression exactly like this (see pickups::store::LAST_NAME).
-- On the replica and its twin alike (NOTES.md).
CREATE INDEX pickup_orders_last_name ON pickup_orders
    (substr(customer_name, length(rtrim(customer_name, replace(customer_name, ' ', ''))) + 1) COLLATE NOCASE);
CREATE INDEX pickup_orders_next_last_name ON pickup_orders_next
    (substr(customer_name, length(rtrim(customer_name, replace(customer_name, ' ', ''))) + 1) COLLATE NOCASE);
