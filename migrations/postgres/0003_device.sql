-- Device authorization grant (RFC 8628, DESIGN.md §5).
-- The device code is stored only as lowercase hex SHA-256; the user code normalised (upper
-- case, no dash). Times are unix seconds from the caller's clock. scopes: space-joined.
-- last_polled_at: the previous token request, for slow_down (§3.5); NULL before the first.
-- decided_at NULL = pending. Approved: subject, user_info (JSON text), family_id and
-- auth_time are set; denied: they stay NULL. used_at: when a poll took the approval (once).
-- user_code is unique: an expired row holding a user code is deleted by the next insert.
CREATE TABLE device_codes (
    device_code_hash TEXT    NOT NULL PRIMARY KEY,
    user_code        TEXT    NOT NULL UNIQUE,
    client_id        TEXT    NOT NULL,
    scopes           TEXT    NOT NULL,
    interval_secs    BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    last_polled_at   BIGINT,
    decided_at       BIGINT,
    subject          TEXT,
    user_info        TEXT,
    family_id        TEXT,
    auth_time        BIGINT,
    used_at          BIGINT,
    CHECK (subject IS NULL OR decided_at IS NOT NULL),
    CHECK (used_at IS NULL OR subject IS NOT NULL)
);
CREATE INDEX device_codes_expires_at ON device_codes (expires_at);
CREATE INDEX device_codes_family_id ON device_codes (family_id);
