//! What can go wrong talking to the server.

use std::fmt;
use std::io;

use crate::ErrorCode;
use crate::client::tls::describe_tls;

/// Everything that can go wrong talking to the server.
#[derive(Debug)]
pub enum ClientError {
    /// The socket failed (connect, read or write).
    Io(io::Error),
    /// The server answered `"ok":false`.
    Server {
        /// The wire `error` code.
        code: ErrorCode,
        /// The server's human-readable `message`.
        message: String,
    },
    /// The server sent something that breaks the protocol: not JSON, an unknown kind
    /// of frame, a response missing a field, a line over
    /// [`MAX_LINE`](crate::client::MAX_LINE), and so on.
    Protocol(String),
    /// The server closed the connection.
    Closed {
        /// The `reason` of the `closing` event that came before, if one did.
        reason: Option<String>,
    },
    /// No response (or no write progress) within the client's timeout.
    Timeout,
    /// TLS failed: the handshake (a certificate not trusted or not valid for the
    /// server's name, a server that does not speak TLS on that port), the CA file, or a
    /// damaged record later on.
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

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o error: {e}"),
            ClientError::Server { code, message } => write!(f, "server error {code}: {message}"),
            ClientError::Protocol(what) => write!(f, "protocol error: {what}"),
            ClientError::Closed {
                reason: Some(reason),
            } => {
                write!(f, "connection closed by the server ({reason})")
            }
            ClientError::Closed { reason: None } => f.write_str("connection closed by the server"),
            ClientError::Timeout => f.write_str("timed out waiting for the server"),
            ClientError::Tls(what) => write!(f, "TLS error: {what}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(e) => Some(e),
            _ => None,
        }
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
