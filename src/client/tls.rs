//! TLS for the client: which certificates to trust, the server name to check, and the
//! handshake.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};

use crate::client::stream::{Transport, is_disconnect, is_timeout, send_alert, with_deadline};
use crate::client::{Client, ClientError};

/// How long a TLS handshake may take unless [`TlsOptions::handshake_timeout`] says
/// otherwise; the parlor server gives up on a client's handshake after as long.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server name checked when the address names no host (`:7878`).
const FALLBACK_SERVER_NAME: &str = "localhost";
/// How [`Client::connect_tls`] sets up TLS: which certificates to trust and which name
/// the server's certificate must carry.
///
/// ```no_run
/// use parlor::client::TlsOptions;
/// use parlor::Client;
///
/// # fn main() -> Result<(), parlor::ClientError> {
/// // A server with a certificate from a public authority (Let's Encrypt, say).
/// let public = Client::connect_tls("chat.example.org:7878", &TlsOptions::default())?;
///
/// // A server with a certificate from `parlor gen-cert --out certs`.
/// let tls = TlsOptions {
///     ca_file: Some("certs/cert.pem".into()),
///     ..TlsOptions::default()
/// };
/// let private = Client::connect_tls("127.0.0.1:7878", &tls)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The name the server's certificate must be valid for: a DNS name
    /// (`chat.example.org`) or an IP address (`127.0.0.1`). `None` (the default): the
    /// host part of the address connected to, `localhost` if it has none.
    pub server_name: Option<String>,
    /// A PEM file of certificates to trust instead of the public authorities (the
    /// Mozilla list built into `webpki-roots`): a private CA, or a self-signed server
    /// certificate itself. `None` (the default): the public authorities.
    pub ca_file: Option<PathBuf>,
    /// How long the handshake may take before the connect fails
    /// ([`DEFAULT_HANDSHAKE_TIMEOUT`] by default).
    pub handshake_timeout: Duration,
}

impl Default for TlsOptions {
    fn default() -> TlsOptions {
        TlsOptions {
            server_name: None,
            ca_file: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl Client {
    /// Connects to a chat server over TLS. The handshake happens here, so a
    /// certificate that is not trusted, or not valid for the server's name, fails the
    /// connect ([`ClientError::Tls`]) rather than the first request.
    ///
    /// Unless `tls` names the server, its certificate must be valid for the host part
    /// of `addr` as written (`localhost` in `localhost:7878`, the IP address in
    /// `127.0.0.1:7878`).
    pub fn connect_tls(
        addr: impl ToSocketAddrs + fmt::Display,
        tls: &TlsOptions,
    ) -> Result<Client, ClientError> {
        let name = match &tls.server_name {
            Some(name) => name.clone(),
            None => server_name_of(&addr.to_string()),
        };
        Client::tls_over(TcpStream::connect(addr)?, &name, tls)
    }

    /// Starts TLS on a stream that is already connected to a chat server, as
    /// [`Client::connect_tls`] does. Unless `tls` names the server, its certificate must
    /// be valid for the IP address the stream is connected to.
    pub fn from_stream_tls(stream: TcpStream, tls: &TlsOptions) -> Result<Client, ClientError> {
        let name = match &tls.server_name {
            Some(name) => name.clone(),
            None => stream.peer_addr()?.ip().to_string(),
        };
        Client::tls_over(stream, &name, tls)
    }

    /// Does the TLS handshake as `name` on `stream`, then wraps it.
    fn tls_over(
        mut stream: TcpStream,
        name: &str,
        tls: &TlsOptions,
    ) -> Result<Client, ClientError> {
        let server_name = ServerName::try_from(name.to_owned()).map_err(|e| {
            ClientError::Tls(format!(
                "{name:?} cannot be a server name (a DNS name or an IP address): {e}"
            ))
        })?;
        let config = client_config(tls.ca_file.as_deref())?;
        let mut conn = ClientConnection::new(config, server_name)
            .map_err(|e| ClientError::Tls(format!("cannot start TLS: {e}")))?;
        // As for a plain stream (see `from_stream`), and set before the handshake so
        // that its small records are not held back either.
        stream.set_nodelay(true)?;
        handshake(&mut conn, &mut stream, tls.handshake_timeout)?;
        Ok(Client::over(Transport {
            tcp: stream,
            tls: Some(Box::new(conn)),
        }))
    }
}

/// The TLS client configuration: the ring provider, TLS 1.2 and 1.3, and as roots of
/// trust either the certificates in `ca_file` or the public authorities.
fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, ClientError> {
    let roots = match ca_file {
        Some(path) => roots_from(path)?,
        None => RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    };
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every certificate in the PEM file `path`, as roots of trust.
fn roots_from(path: &Path) -> Result<RootCertStore, ClientError> {
    let bad = |what: String| ClientError::Tls(format!("CA file {}: {what}", path.display()));
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(
            "no certificate in it (expected -----BEGIN CERTIFICATE----- blocks)".to_owned(),
        ));
    }
    Ok(roots)
}

/// Runs the TLS handshake to its end, or fails within `timeout`.
fn handshake(
    conn: &mut ClientConnection,
    tcp: &mut TcpStream,
    timeout: Duration,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + timeout;
    tcp.set_write_timeout(Some(timeout))?;
    let failed = |e: io::Error| {
        if is_timeout(&e) {
            ClientError::Tls(format!(
                "no TLS handshake from the server within {timeout:?}: is it serving TLS on this port?"
            ))
        } else if is_disconnect(&e) {
            ClientError::Tls(
                "the server closed the connection during the TLS handshake: is it serving \
                 TLS on this port?"
                    .to_owned(),
            )
        } else {
            ClientError::from(e)
        }
    };
    loop {
        while conn.wants_write() {
            conn.write_tls(tcp).map_err(failed)?;
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        let read = with_deadline(tcp, deadline, |tcp| conn.read_tls(tcp)).map_err(failed)?;
        if read == 0 {
            return Err(failed(io::ErrorKind::UnexpectedEof.into()));
        }
        if let Err(e) = conn.process_new_packets() {
            send_alert(conn, tcp);
            return Err(ClientError::Tls(describe_tls(&e)));
        }
    }
}

/// A rustls error as the user reads it, with a hint for the usual mistake.
pub(super) fn describe_tls(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "{e}: the server's certificate is not signed by a trusted authority (for a \
             self-signed certificate, trust that certificate itself as the CA file)"
        ),
        other => other.to_string(),
    }
}

/// The server name to check in a certificate when none is given: the host part of
/// `addr` (`HOST:PORT`, `[V6]:PORT`, or a bare host), `localhost` if it has none.
pub(crate) fn server_name_of(addr: &str) -> String {
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        return socket.ip().to_string();
    }
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        FALLBACK_SERVER_NAME.to_owned()
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_is_the_host_part() {
        assert_eq!(server_name_of("127.0.0.1:7878"), "127.0.0.1");
        assert_eq!(server_name_of("[::1]:7878"), "::1");
        assert_eq!(server_name_of("chat.example.org:7878"), "chat.example.org");
        assert_eq!(server_name_of("localhost"), "localhost");
        assert_eq!(server_name_of(":7878"), "localhost");
        assert_eq!(server_name_of(""), "localhost");
    }

    #[test]
    fn ca_file_problems_are_tls_errors_naming_the_file() {
        let missing = Path::new("/nonexistent/parlor-ca.pem");
        match client_config(Some(missing)) {
            Err(ClientError::Tls(what)) => assert!(what.contains("parlor-ca.pem"), "{what}"),
            other => panic!("expected a TLS error, got {other:?}"),
        }
        let dir = std::env::temp_dir();
        let empty = dir.join(format!("parlor-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").expect("temp file");
        let result = client_config(Some(&empty));
        let _ = std::fs::remove_file(&empty);
        match result {
            Err(ClientError::Tls(what)) => assert!(what.contains("no certificate"), "{what}"),
            other => panic!("expected a TLS error, got {other:?}"),
        }
    }

    #[test]
    fn public_roots_are_the_default() {
        assert!(client_config(None).is_ok());
    }
}
