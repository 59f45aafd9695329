//! What can go wrong talking to the server.

use std::io;

use crate::ErrorCode;
use crate::client::tls::describe_tls;

/// Everything that can go wrong talking to the server.
///
/// New kinds of failure may be added: match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket failed (connect, read or write).
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
    /// The server answered `"ok":false`.
    #[error("server error {code}: {message}")]
    Server {
        /// The wire `error` code.
        code: ErrorCode,
        /// The server's human-readable `message`.
        message: String,
    },
    /// The server sent something that breaks the protocol: not JSON, an unknown kind
    /// of frame, a response missing a field, a line over
    /// [`MAX_LINE`](crate::client::MAX_LINE), and so on.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server closed the connection.
    #[error("{}", closed(.reason.as_deref()))]
    Closed {
        /// The `reason` of the `closing` event that came before, if one did.
        reason: Option<String>,
    },
    /// The server turned this connection away: the first thing it sent on it was a
    /// `closing` event, before any answer, and then it closed the connection. Its
    /// reason is `server_full` when a connection limit (`--max-conns`,
    /// `--max-conns-per-ip`) is reached, `shutdown` when the server is stopping.
    #[error("{}", refused(.reason))]
    Refused {
        /// The `reason` of that `closing` event.
        reason: String,
    },
    /// No response (or no write progress) within the client's timeout.
    #[error("timed out waiting for the server")]
    Timeout,
    /// TLS failed: the handshake (a certificate not trusted or not valid for the
    /// server's name, a server that does not speak TLS on that port), the CA file, or a
    /// damaged record later on.
    #[error("TLS error: {0}")]
    Tls(String),
}

impl ClientError {
    /// The wire error code, if this is a [`ClientError::Server`] error.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

fn closed(reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("connection closed by the server ({reason})"),
        None => "connection closed by the server".to_owned(),
    }
}

fn refused(reason: &str) -> String {
    match reason {
        "server_full" => {
            "the server is full: it turned this connection away (server_full); try again later"
                .to_owned()
        }
        other => format!("the server turned this connection away ({other})"),
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        // rustls reports a bad certificate or a damaged record as an I/O error that
        // wraps its own error; that is a TLS failure, not a socket one.
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => ClientError::Tls(describe_tls(tls)),
            None => ClientError::Io(e),
        }
    }
}
