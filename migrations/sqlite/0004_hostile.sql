-- Failure counters shared by every replica (DESIGN.md §14). With SQLite there is one replica
-- and the counters live in its memory; the table keeps both schemas alike.
CREATE TABLE failure_counters (
    key_hash     TEXT    NOT NULL PRIMARY KEY,
    window_start INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL
);
CREATE INDEX failure_counters_expires_at ON failure_counters (expires_at);
