-- Staff sessions and PIN lockouts.
--
-- A session is a random 128-bit token held by the browser in an HttpOnly cookie; only its
-- SHA-256 is stored, so a copy of the database (or a backup) opens no session. The CSRF
-- token is derived from the session token (src/access/session.rs) and not stored at all.

CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    employee_id  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,      -- idle timeout counts from here
    expires_at   TEXT NOT NULL,      -- absolute timeout
    client       TEXT                -- the address it logged in from, for audit
) STRICT;
CREATE INDEX sessions_employee ON sessions (employee_id);

-- Failed PINs per employee id as typed (existing or not, so a lockout reveals nothing).
CREATE TABLE login_failures (
    employee_id     TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    first_failed_at TEXT NOT NULL,
    locked_until    TEXT
) STRICT;
