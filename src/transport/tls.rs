//! TLS for the one port: the certificate and key from `server.tls`, checked at start-up.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::transport::state::AppState;

pub(crate) fn tls_acceptor(state: &AppState) -> anyhow::Result<Option<TlsAcceptor>> {
    tls_acceptor_for(&state.config.server)
}

/// Reads and checks the TLS certificate and key (no port needed): part of the start-up
/// validation `serve` and `check-config` share.
pub(crate) fn check_tls(server: &crate::config::ServerConfig) -> Result<(), String> {
    tls_acceptor_for(server)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn tls_acceptor_for(server: &crate::config::ServerConfig) -> anyhow::Result<Option<TlsAcceptor>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let Some(tls) = &server.tls else {
        return Ok(None);
    };
    let certs = CertificateDer::pem_file_iter(&tls.certificate_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow::anyhow!(
                "server.security.ssl.certificateFile: cannot read {}: {e}",
                tls.certificate_file.display()
            )
        })?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| {
        anyhow::anyhow!(
            "server.security.ssl.keyFile: cannot read {}: {e}",
            tls.key_file.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| anyhow::anyhow!("server.security.ssl: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}
