//! The service's background housekeeping, started with the listeners.

use std::sync::Arc;

use crate::transport::state::AppState;

/// Background housekeeping: picks up revocations made by other replicas (so a revoked
/// access token is refused everywhere within [`REVOCATION_POLL`]) and purges expired state.
pub(crate) fn spawn_background(state: &Arc<AppState>) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    let exchange = state.clone();
    tokio::spawn(async move {
        let now = exchange.clock.now();
        exchange.authz.trusted_issuers.prefetch(now).await;
    });
    tokio::spawn(async move {
        let mut since = state.clock.now() - 24 * 3600;
        let mut tick = tokio::time::interval(REVOCATION_POLL);
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            let now = state.clock.now();
            match state.store.revoked_tokens_since(since, now).await {
                Ok(list) => {
                    for t in list {
                        state.authenticator.verifier.revoke(&t.jti, t.expires_at);
                    }
                    // Overlap one interval so rows committed late are not missed.
                    since = now - REVOCATION_POLL.as_secs() as i64 * 2;
                }
                Err(e) => tracing::debug!(error = %e, "revocation poll failed"),
            }
            n += 1;
            if n.is_multiple_of(12) {
                state.authenticator.verifier.purge_expired(now);
            }
            if n.is_multiple_of(120) {
                if let Err(e) = state
                    .store
                    .purge_expired(now, state.sessions.idle_secs())
                    .await
                {
                    tracing::debug!(error = %e, "purge failed");
                }
            }
        }
    })
}

/// How often replicas poll the store for revoked access tokens.
pub(crate) const REVOCATION_POLL: std::time::Duration = std::time::Duration::from_secs(5);
