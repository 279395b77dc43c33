-- Failure counters shared by every replica (DESIGN.md §14): a failed login, client secret or
-- user code from one replica counts at all of them. key_hash: lowercase hex SHA-256 of the
-- limit's key (user at address, address, client at address). window_start and expires_at are
-- unix seconds from the caller's clock; attempts counts attempts in the window (each one is
-- counted before its check, a success gives its slot back or clears the row).
CREATE TABLE failure_counters (
    key_hash     TEXT    NOT NULL PRIMARY KEY,
    window_start BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    attempts     INTEGER NOT NULL
);
CREATE INDEX failure_counters_expires_at ON failure_counters (expires_at);
