//! TLS for the transport: loading the certificate and key, and the settings every TLS
//! listener shares. The connections themselves are rustls state machines driven by
//! the same poller and workers as plain ones (see `conn.rs`): no blocking stream, no
//! thread per connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;

use crate::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a TLS client may take to finish its handshake before it is closed.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Encrypted bytes rustls may hold for one connection before the plaintext queue
/// waits; the outbound limit (`max_outbound`) still applies to the plaintext.
pub(crate) const TLS_BUFFER: usize = 256 * 1024;

/// Reads the certificate chain and key and builds the rustls settings (ring provider).
pub(crate) fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(&tls.cert, "certificate", e))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected PEM `BEGIN CERTIFICATE`)",
            tls.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| pem_error(&tls.key, "private key", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {} do not make a usable certificate: {e}",
                tls.cert.display(),
                tls.key.display()
            )
        })?;
    Ok(Arc::new(config))
}

fn pem_error(path: &Path, what: &str, e: rustls::pki_types::pem::Error) -> String {
    format!("cannot read the TLS {what} from {}: {e}", path.display())
}
