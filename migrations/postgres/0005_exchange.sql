-- Token exchange and JWT bearer grants (RFC 8693, RFC 7523; DESIGN.md §13): every subject
-- token / assertion presented once, remembered until it could no longer be used anyway, so
-- that a replay is refused on every replica. token_id: lowercase hex SHA-256 over the issuer
-- and the token's jti (or the whole token when it has none). expires_at: unix seconds.
CREATE TABLE exchanged_tokens (
    token_id   TEXT    NOT NULL PRIMARY KEY,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX exchanged_tokens_expires_at ON exchanged_tokens (expires_at);
