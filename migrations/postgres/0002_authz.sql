-- Authorization state of the built-in authorization server (DESIGN.md §5–§7).
-- Secrets (codes, refresh tokens, session ids) are stored only as lowercase hex SHA-256.
-- Times are unix seconds from the caller's clock; used_at NULL = not used yet.
-- scopes: space-joined scope tokens. user_info: JSON text.

-- Refresh-token families. A row exists once the family is revoked or has an access token
-- recorded; both take the row's lock, so a token recorded while the family is being
-- revoked is never missed. revoked_at NULL = alive.
CREATE TABLE token_families (
    family_id  TEXT    NOT NULL PRIMARY KEY,
    revoked_at BIGINT
);

CREATE TABLE auth_codes (
    code_hash      TEXT    NOT NULL PRIMARY KEY,
    client_id      TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    user_info      TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,
    family_id      TEXT    NOT NULL,
    auth_time      BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    used_at        BIGINT
);
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);
CREATE INDEX auth_codes_family_id ON auth_codes (family_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    family_id  TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    user_info  TEXT    NOT NULL,
    scopes     TEXT    NOT NULL,
    auth_time  BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

-- Access tokens (JWTs) issued in a family, so revoking the family can list their jtis.
CREATE TABLE access_tokens (
    jti        TEXT    NOT NULL PRIMARY KEY,
    family_id  TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX access_tokens_family_id ON access_tokens (family_id);
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);

-- Revoked access tokens, polled by replicas by revoked_at.
CREATE TABLE revoked_tokens (
    jti        TEXT    NOT NULL PRIMARY KEY,
    expires_at BIGINT  NOT NULL,
    revoked_at BIGINT  NOT NULL
);
CREATE INDEX revoked_tokens_revoked_at ON revoked_tokens (revoked_at);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

-- Browser sessions; idp_refresh_token is encrypted by the caller.
CREATE TABLE sessions (
    id_hash           TEXT    NOT NULL PRIMARY KEY,
    subject           TEXT    NOT NULL,
    user_info         TEXT    NOT NULL,
    csrf_token        TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    last_seen_at      BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    idp_refresh_token BYTEA
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_last_seen_at ON sessions (last_seen_at);
