//! Single use of exchanged tokens (RFC 8693 subject tokens, RFC 7523 assertions; DESIGN.md
//! §13): one statement that inserts the token's id, or takes over the row of an id whose
//! time is up. Exactly one of any number of concurrent callers, on any replica, sees `true`.
//! Each backend runs [`REMEMBER_SQL`] on its grant path (`sqlite/grant.rs`, `postgres/ops.rs`).

/// `$1` token id, `$2` remember until, `$3` now. A row already there is replaced only when it
/// expired (`expires_at <= now`): it was then refused as expired or too old anyway.
pub(super) const REMEMBER_SQL: &str = "INSERT INTO exchanged_tokens (token_id, expires_at) \
     VALUES ($1, $2) ON CONFLICT (token_id) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE exchanged_tokens.expires_at <= $3";
