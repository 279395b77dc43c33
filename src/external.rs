//! `authServerType: External`: an external authorization server (Okta, Keycloak, Auth0, Azure
//! AD, …) issues the tokens. Its metadata is fetched from `<baseUrl>/<metadataUrl>` (falling
//! back from `oauth-authorization-server` to `openid-configuration` when the first is missing),
//! cached, refreshed in the background and served by `GetOAuth2Metadata`; its JWKS verifies the
//! tokens. An AS that is down at start-up does not stop the service.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::keysource::RemoteJwks;
use crate::config::ExternalAuthServerFile;
use crate::metadata::OAuth2Metadata;

pub struct ExternalAuthServer {
    base_url: String,
    metadata_path: Option<String>,
    retry_attempts: u32,
    retry_delay: Duration,
    http: reqwest::Client,
    metadata: RwLock<Option<Arc<OAuth2Metadata>>>,
    pub jwks: Arc<RemoteJwks>,
}

/// How often cached metadata and keys are refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(300);

impl ExternalAuthServer {
    pub fn new(
        cfg: &ExternalAuthServerFile,
        fallback_base: &str,
        proxy: &str,
    ) -> Result<Self, String> {
        let base = if cfg.base_url.is_empty() {
            fallback_base
        } else {
            &cfg.base_url
        };
        if base.is_empty() {
            return Err("set externalAuthServer.baseUrl (or userAuth.openId.baseUrl)".into());
        }
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        if !proxy.is_empty() {
            b = b.proxy(reqwest::Proxy::all(proxy).map_err(|e| format!("httpProxyURL: {e}"))?);
        }
        let http = b.build().map_err(|e| e.to_string())?;
        Ok(Self {
            base_url: base.trim_end_matches('/').to_owned(),
            metadata_path: (!cfg.metadata_url.is_empty())
                .then(|| cfg.metadata_url.trim_start_matches('/').to_owned()),
            retry_attempts: cfg.retry_attempts,
            retry_delay: cfg.retry_delay,
            jwks: Arc::new(RemoteJwks::new(http.clone(), cfg.jwks_refresh_interval)),
            http,
            metadata: RwLock::new(None),
        })
    }

    /// The cached metadata, once fetched.
    pub fn metadata(&self) -> Option<Arc<OAuth2Metadata>> {
        self.metadata.read().expect("lock").clone()
    }

    async fn get_json(&self, url: &str) -> Result<Option<serde_json::Value>, String> {
        let mut attempt = 0;
        loop {
            let result = self.http.get(url).send().await;
            match result {
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return Ok(None),
                Ok(r) if r.status().is_success() => {
                    return r.json().await.map(Some).map_err(|e| format!("{url}: {e}"))
                }
                Ok(r) if attempt < self.retry_attempts && r.status().as_u16() >= 401 => {}
                Ok(r) => return Err(format!("GET {url}: HTTP {}", r.status())),
                Err(e) if attempt < self.retry_attempts => {
                    tracing::debug!(error = %e, "metadata fetch failed; retrying");
                }
                Err(e) => return Err(format!("GET {url}: {e}")),
            }
            attempt += 1;
            tokio::time::sleep(self.retry_delay).await;
        }
    }

    /// Fetches the metadata document (and then the JWKS).
    pub async fn refresh(&self) -> Result<Arc<OAuth2Metadata>, String> {
        let candidates: Vec<String> = match &self.metadata_path {
            Some(p) => vec![p.clone()],
            None => vec![
                ".well-known/oauth-authorization-server".into(),
                ".well-known/openid-configuration".into(),
            ],
        };
        let mut last_err = String::from("no metadata document found");
        for path in candidates {
            let url = format!("{}/{}", self.base_url, path);
            match self.get_json(&url).await {
                Ok(Some(doc)) => {
                    let m: OAuth2Metadata =
                        serde_json::from_value(doc).map_err(|e| format!("{url}: {e}"))?;
                    if m.issuer.is_empty() || m.jwks_uri.is_empty() {
                        return Err(format!("{url}: issuer and jwks_uri are required"));
                    }
                    let m = Arc::new(m);
                    self.jwks.set_url(m.jwks_uri.clone());
                    self.jwks.fetch().await?;
                    *self.metadata.write().expect("lock") = Some(m.clone());
                    return Ok(m);
                }
                Ok(None) => last_err = format!("GET {url}: HTTP 404"),
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }

    /// Fetches in the background: retries until it works, then refreshes periodically.
    /// `on_metadata` receives each fetched document (to update the accepted issuer).
    pub fn spawn(
        self: &Arc<Self>,
        on_metadata: impl Fn(&OAuth2Metadata) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                match this.refresh().await {
                    Ok(m) => {
                        on_metadata(&m);
                        tracing::info!(issuer = %m.issuer, "external authorization server metadata loaded");
                        backoff = Duration::from_secs(1);
                        // Honour the JWKS's Cache-Control (within sane bounds), else refresh
                        // every five minutes.
                        let next = this
                            .jwks
                            .max_age()
                            .map(|a| a.clamp(Duration::from_secs(60), Duration::from_secs(3600)))
                            .unwrap_or(REFRESH_EVERY);
                        tokio::time::sleep(next).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "external authorization server unavailable; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        })
    }
}
