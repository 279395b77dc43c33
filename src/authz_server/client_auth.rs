//! RFC 6749 §2.3.1 client authentication, once the transport has read the credentials (HTTP
//! Basic or the form): the client is looked up, its secret checked, guessing limited.

use std::net::IpAddr;

use super::clients::Client;
use super::error::OAuthError;
use super::AuthorizationServer;
use crate::secret::Secret;

/// The credentials a request presented. `Debug` leaves out the secret.
#[derive(Debug)]
pub struct ClientCredentials {
    pub client_id: String,
    /// `None` when absent or empty.
    pub secret: Option<Secret<String>>,
    /// They came as HTTP Basic (failures then answer `WWW-Authenticate: Basic`).
    pub used_basic: bool,
}

impl AuthorizationServer {
    /// The client `credentials` name, if they authenticate it. `addr` is the client's address:
    /// after too many failures a client is locked for a while at the address that failed.
    pub async fn authenticate_client(
        &self,
        credentials: ClientCredentials,
        addr: Option<IpAddr>,
    ) -> Result<&Client, OAuthError> {
        let used_basic = credentials.used_basic;
        let client = self
            .clients
            .get(&credentials.client_id)
            .ok_or_else(|| OAuthError::invalid_client("unknown client", used_basic))?;
        if client.public {
            return Ok(client);
        }
        let Some(secret) = credentials.secret else {
            return Err(OAuthError::invalid_client(
                "client secret is missing",
                used_basic,
            ));
        };
        // Guessing a client's secret: after too many failures the client is locked for a while
        // at the address that failed (even for the right secret), and no bcrypt is spent
        // meanwhile. Per address (§14): wrong secrets from elsewhere never stop the client
        // itself. The attempt is counted before the check, so a concurrent burst cannot exceed
        // the limit.
        let now = self.clock.now();
        let addr = addr.map(|a| a.to_string()).unwrap_or_default();
        let key = format!("client:{}@{addr}", client.id);
        if let Err(retry) = self
            .client_limiter
            .attempt(std::slice::from_ref(&key), now)
            .await
        {
            return Err(OAuthError::too_many_attempts(retry));
        }
        if !self.clients.verify_secret(client, secret.expose()).await {
            tracing::info!(target: "flyteauth::audit", event = "client_auth_failed", client_id = %client.id, peer = %addr);
            return Err(OAuthError::invalid_client(
                "client authentication failed",
                used_basic,
            ));
        }
        self.client_limiter.forget(&key).await;
        Ok(client)
    }
}
