//! Why `parlor chat` stops, and how a failed request reads.

use std::fmt;
use std::io;

use crate::client::ClientError;

/// Why `parlor chat` stopped with an error.
#[derive(Debug)]
pub enum TerminalError {
    /// `--addr` could not be resolved to any address.
    BadAddr {
        /// The address as given.
        addr: String,
        /// What resolving it said.
        source: io::Error,
    },
    /// The first connection to the server failed.
    Connect {
        /// The address as given.
        addr: String,
        /// Why it failed.
        source: ClientError,
    },
    /// The server closed a plain connection without answering the login, as a TLS
    /// port does with a client that does not speak TLS.
    ClosedAtLogin,
    /// Stdin (not a terminal) ended before its first line, the password.
    NoPassword,
    /// Reading the keyboard or stdin failed.
    Input(io::Error),
    /// Writing to the screen failed.
    Output(io::Error),
    /// The login was refused and no account was created.
    LoginFailed {
        /// The user name.
        user: String,
        /// Whether to point at `--signup` (the user was not asked).
        hint_signup: bool,
    },
    /// The login was refused and `signup` answered `user_exists`: the account exists,
    /// so the password was wrong.
    WrongPassword {
        /// The user name.
        user: String,
    },
    /// The new password was typed differently the second time.
    PasswordMismatch,
    /// After a reconnect, the server refused the session token (expired or revoked).
    SessionExpired,
    /// A request failed: the server's error, or the connection's.
    Client(ClientError),
}

impl fmt::Display for TerminalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TerminalError::BadAddr { addr, source } => write!(f, "--addr {addr}: {source}"),
            TerminalError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {}", Described(source))
            }
            TerminalError::ClosedAtLogin => f.write_str(
                "the server closed the connection without answering the login; if it serves \
                 TLS on that port, add --tls (or --ca FILE)",
            ),
            TerminalError::NoPassword => {
                f.write_str("no password: stdin ended before its first line, the password")
            }
            TerminalError::Input(e) => write!(f, "cannot read input: {e}"),
            TerminalError::Output(e) => write!(f, "cannot write output: {e}"),
            TerminalError::LoginFailed { user, hint_signup } => {
                write!(
                    f,
                    "cannot log in as {user}: wrong password, or no such user"
                )?;
                if *hint_signup {
                    f.write_str(" (add --signup to create the account)")?;
                }
                Ok(())
            }
            TerminalError::WrongPassword { user } => write!(f, "wrong password for {user}"),
            TerminalError::PasswordMismatch => {
                f.write_str("the two passwords differ; no account created")
            }
            TerminalError::SessionExpired => f.write_str(
                "the server no longer accepts this session; run parlor chat again to log in",
            ),
            TerminalError::Client(e) => write!(f, "{}", Described(e)),
        }
    }
}

impl std::error::Error for TerminalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TerminalError::BadAddr { source, .. }
            | TerminalError::Input(source)
            | TerminalError::Output(source) => Some(source),
            TerminalError::Connect { source, .. } | TerminalError::Client(source) => Some(source),
            _ => None,
        }
    }
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
