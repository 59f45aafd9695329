//! Why `parlor chat` stops, and how a failed request reads.

use std::fmt;
use std::io;

use crate::client::ClientError;

/// Why `parlor chat` stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TerminalError {
    /// `--addr` could not be resolved to any address.
    #[error("--addr {addr}: {source}")]
    BadAddr {
        /// The address as given.
        addr: String,
        /// What resolving it said.
        source: io::Error,
    },
    /// The first connection to the server failed, or the server turned it away
    /// ([`ClientError::Refused`], e.g. because it is full).
    #[error("cannot connect to {addr}: {}", Described(.source))]
    Connect {
        /// The address as given.
        addr: String,
        /// Why it failed.
        source: ClientError,
    },
    /// The server closed a plain connection without answering its first request
    /// (`hello`, or the login), as a TLS port does with a client that does not speak
    /// TLS.
    #[error(
        "the server closed the connection without answering; if it serves \
         TLS on that port, add --tls (or --ca FILE)"
    )]
    ClosedAtLogin,
    /// Stdin (not a terminal) ended before its first line, the password.
    #[error("no password: stdin ended before its first line, the password")]
    NoPassword,
    /// Reading the keyboard or stdin failed.
    #[error("cannot read input: {0}")]
    Input(#[source] io::Error),
    /// Writing to the screen failed.
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),
    /// The login was refused and no account was created.
    #[error(
        "cannot log in as {user}: wrong password, or no such user{}",
        if *.hint_signup { " (add --signup to create the account)" } else { "" }
    )]
    LoginFailed {
        /// The user name.
        user: String,
        /// Whether to point at `--signup` (the user was not asked).
        hint_signup: bool,
    },
    /// The login was refused and `signup` answered `user_exists`: the account exists,
    /// so the password was wrong.
    #[error("wrong password for {user}")]
    WrongPassword {
        /// The user name.
        user: String,
    },
    /// The new password was typed differently the second time.
    #[error("the two passwords differ; no account created")]
    PasswordMismatch,
    /// After a reconnect, the server refused the session token (expired or revoked).
    #[error("the server no longer accepts this session; run parlor chat again to log in")]
    SessionExpired,
    /// A request failed: the server's error, or the connection's.
    #[error("{}", Described(.0))]
    Client(#[source] ClientError),
}

/// A [`ClientError`] as the user reads it: a server error is `<message> (<code>)`.
pub(super) struct Described<'a>(pub(super) &'a ClientError);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ClientError::Server { code, message } => write!(f, "{message} ({code})"),
            other => fmt::Display::fmt(other, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ErrorCode;

    #[test]
    fn errors_read_as_message_and_code() {
        let e = TerminalError::Client(ClientError::Server {
            code: ErrorCode::NoSuchRoom,
            message: "no room named x".into(),
        });
        assert_eq!(e.to_string(), "no room named x (no_such_room)");
        let e = TerminalError::LoginFailed {
            user: "ada".into(),
            hint_signup: true,
        };
        assert!(e.to_string().contains("--signup"), "{e}");
    }
}
