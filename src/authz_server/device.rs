//! The device authorization grant (RFC 8628) for headless machines: the device authorization
//! (§3.1–3.2), the user's decision (entered on the page at `/oauth2/device`, served by the
//! transport), and the polling grant (§3.4–3.5) at the token endpoint.

use serde::Serialize;

use super::clients::Client;
use super::error::OAuthError;
use super::issue::{Family, Grant, TokenResponse};
use super::{bound_digest, AuthorizationServer, Form};
use crate::keys::{random_bytes, random_token};
use crate::secret::Secret;
use crate::store::{DeviceApproval, DeviceCodeRecord, DevicePoll, Spend, StoreError};

pub(crate) use super::grant_types::DEVICE_CODE as GRANT_TYPE;
/// Minimum polling interval (always sent: flytekit needs it).
const INTERVAL: i64 = 5;
/// §6.1: 20 consonants, no vowels (no words), no look-alikes: 8 characters ≈ 34.6 bits.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// A new user code, normalised (no dash).
fn new_user_code() -> String {
    random_bytes(8)
        .iter()
        .map(|b| USER_CODE_ALPHABET[(*b as usize) % USER_CODE_ALPHABET.len()] as char)
        .collect()
}

/// Upper case, dashes and spaces removed.
pub fn normalise_user_code(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_uppercase)
        .collect()
}

/// A user code as shown (`BCDF-GHJK`).
pub(crate) fn display(code: &str) -> String {
    if code.len() == 8 && code.is_char_boundary(4) {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// §3.2 device authorization response. The device code is a [`Secret`]: `Debug` cannot
/// show it. Fields in the order the JSON answer has always had (alphabetical).
#[derive(Debug, Serialize)]
pub struct DeviceAuthorization {
    #[serde(with = "crate::secret::text")]
    pub device_code: Secret<String>,
    pub expires_in: i64,
    pub interval: i64,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
}

/// Who decides on a pending device code.
pub struct DeviceDecision<'a> {
    pub subject: &'a str,
    /// The user's profile (JSON).
    pub profile: &'a serde_json::Value,
    pub approve: bool,
}

impl AuthorizationServer {
    /// §3.1: a device code for the authenticated `client`; `scope` as requested.
    pub async fn device_authorization(
        &self,
        public: &str,
        client: &Client,
        scope: Option<&str>,
    ) -> Result<DeviceAuthorization, OAuthError> {
        client.require_grant(GRANT_TYPE, "the device flow")?;
        let scopes = requested_scopes(client, scope)?;
        let device_code = random_token();
        let now = self.clock.now();
        // `auth.appAuth.selfAuthServer.deviceCodeLifespan` (default 10m).
        let expires_in = self.settings.device_code_lifespan;
        let mut user_code = new_user_code();
        for attempt in 0.. {
            let record = DeviceCodeRecord {
                device_code_hash: bound_digest(&client.id, &device_code),
                user_code: user_code.clone(),
                client_id: client.id.clone(),
                scopes: scopes.clone(),
                interval_secs: INTERVAL,
                expires_at: now + expires_in,
            };
            match self.store.insert_device_code(&record).await {
                Ok(()) => break,
                Err(StoreError::AlreadyExists) if attempt < 3 => user_code = new_user_code(),
                Err(e) => return Err(e.into()),
            }
        }
        let verification_uri = format!("{public}/oauth2/device");
        Ok(DeviceAuthorization {
            device_code: Secret::new(device_code),
            user_code: display(&user_code),
            verification_uri_complete: format!(
                "{verification_uri}?user_code={}",
                display(&user_code)
            ),
            verification_uri,
            expires_in,
            interval: INTERVAL,
        })
    }

    /// The pending request of the (normalised) user code `code`.
    pub async fn pending_device_code(&self, code: &str) -> Result<DeviceCodeRecord, StoreError> {
        self.store
            .find_device_by_user_code(code, self.clock.now())
            .await
    }

    /// Records the user's decision on the pending (normalised) user code `code`.
    pub async fn decide_device_code(
        &self,
        code: &str,
        client_id: &str,
        decision: DeviceDecision<'_>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let approval = decision.approve.then(|| DeviceApproval {
            subject: decision.subject.to_owned(),
            user_info: decision.profile.to_string(),
            family_id: random_token(),
            auth_time: now,
        });
        let approved = approval.is_some();
        self.store
            .decide_device_code(code, approval.as_ref(), now)
            .await?;
        tracing::info!(target: "flyteauth::audit", event = "device_decision", subject = %decision.subject, client_id = %client_id, approved);
        Ok(())
    }
}

fn requested_scopes(client: &Client, scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let requested: Vec<String> = scope
        .unwrap_or("")
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if requested.is_empty() {
        return Ok(client
            .scopes
            .iter()
            .filter(|s| *s != "access_token" && !s.contains('*'))
            .cloned()
            .collect());
    }
    if let Some(bad) = requested.iter().find(|s| !client.allows_scope(s)) {
        return Err(OAuthError::invalid_scope(format!(
            "scope {bad:?} is not allowed for this client"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for s in requested {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

impl AuthorizationServer {
    /// The device grant at the token endpoint (§3.4, §3.5).
    pub async fn device_poll(
        &self,
        public: &str,
        client: &Client,
        form: &Form,
    ) -> Result<TokenResponse, OAuthError> {
        let state = self;
        client.require_grant(GRANT_TYPE, "the device flow")?;
        let device_code = form
            .get("device_code")
            .filter(|d| !d.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("device_code is missing"))?;
        let now = state.clock.now();
        let (record, approval) = match state
            .store
            .poll_device_code(&bound_digest(&client.id, device_code), now)
            .await
        {
            Ok(DevicePoll::Approved(r, a)) => (r, a),
            Ok(DevicePoll::Pending) => {
                return Err(OAuthError::device(
                    "authorization_pending",
                    "the user has not answered yet",
                ))
            }
            Ok(DevicePoll::SlowDown) => {
                return Err(OAuthError::device(
                    "slow_down",
                    "polling too fast; add 5 seconds to the interval",
                ))
            }
            Ok(DevicePoll::Denied) => {
                return Err(OAuthError::device(
                    "access_denied",
                    "the user denied the request",
                ))
            }
            Ok(DevicePoll::Expired) => {
                return Err(OAuthError::device(
                    "expired_token",
                    "the device code expired; start again",
                ))
            }
            Ok(DevicePoll::AlreadyUsed) => {
                return Err(OAuthError::invalid_grant(
                    "the device code was already used",
                ))
            }
            Err(StoreError::NotFound) => {
                return Err(OAuthError::invalid_grant("unknown device code"))
            }
            Err(e) => return Err(e.into()),
        };
        if record.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the device code was issued to another client",
            ));
        }
        let profile: serde_json::Value =
            serde_json::from_str(&approval.user_info).unwrap_or_default();
        let with_refresh =
            record.scopes.iter().any(|s| s == "offline") && client.allows_grant("refresh_token");
        state
            .issue(
                public,
                Grant {
                    subject: &approval.subject,
                    client_id: &client.id,
                    scopes: &record.scopes,
                    profile: Some(&profile),
                    auth_time: approval.auth_time,
                    family: Some(Family {
                        id: &approval.family_id,
                        spend: Spend::Nothing,
                        user_info: &approval.user_info,
                        refresh_scopes: with_refresh.then_some(record.scopes.as_slice()),
                    }),
                    grant_type: "device_code",
                },
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes() {
        let c = new_user_code();
        assert_eq!(c.len(), 8);
        assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        assert_eq!(normalise_user_code("bcdf-ghjk"), "BCDFGHJK");
        assert_eq!(display("BCDFGHJK"), "BCDF-GHJK");
    }
}
