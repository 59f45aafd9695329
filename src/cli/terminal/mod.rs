//! `parlor chat`: the interactive terminal client, built on [`Client`].
//!
//! Two threads. A keyboard thread reads lines (through a line editor when stdin and
//! stdout are both terminals, plain from stdin otherwise) and hands them over a
//! channel; the main thread owns the connection and alternates between that channel
//! and [`Client::next_event`] with a short timeout, so events show up while the user
//! types. With the line editor, events are printed above the prompt and the line being
//! typed is redrawn below them; without it, output is plain lines with no escape codes.
//!
//! Every connection says `hello` with protocol 2 first, so protocol 2's events reach
//! it and its room and account commands work; every message carries a nonce, and
//! one whose answer was lost with the connection is sent again with that nonce after
//! the reconnect (only where the server names `idempotency`).
//!
//! The parts worth testing on their own are plain functions: [`parse`] turns a typed
//! line into a [`Command`], [`format_event`] and [`format_message`] turn what the
//! server sends into one line of text.

mod account;
mod admin;
mod chat;
mod command;
mod edits;
mod error;
mod format;
mod moderation;
mod presence;
mod screen;

use std::collections::HashMap;
use std::io::{self, BufRead, IsTerminal};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;

use crate::ErrorCode;
use crate::client::{self, Client, ClientError, TlsOptions};
pub use admin::AdminCommand;
use chat::{Chat, Link};
pub use command::{Command, ParseError, help, parse};
pub use error::TerminalError;
pub use format::{format_dm, format_event, format_message};
use screen::open_terminal;

/// How long one request may take. The main loop is blocked meanwhile, so this is kept
/// well under the client's default; a server this slow is treated as gone.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a TCP connect may take, so an unreachable host cannot freeze the screen
/// for the operating system's minutes-long default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What `parlor chat` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The server's address, `HOST:PORT`.
    pub addr: String,
    /// The user name to log in as.
    pub user: String,
    /// When the login fails, create the account without asking.
    pub signup: bool,
    /// Speak TLS, with these settings (reconnects too); `None` for plain TCP. Without a
    /// server name in it, the certificate must be valid for the host part of `addr`.
    pub tls: Option<TlsOptions>,
}

/// Runs `parlor chat`: asks for the password, logs in (offering to sign up), then
/// chats until `/quit` or the end of input.
pub fn run(options: Options) -> Result<(), TerminalError> {
    let addrs = resolve(&options.addr)?;
    // Named once from `--addr` as typed: the connections themselves only know the IP.
    let tls = options.tls.clone().map(|mut tls| {
        tls.server_name
            .get_or_insert_with(|| client::server_name_of(&options.addr));
        tls
    });
    let keyboard_is_tty = io::stdin().is_terminal();
    let password = read_password(&options.user, keyboard_is_tty)?;
    // A plain client on a TLS port hears nothing back: its first request (`hello`
    // now, `login` before) meets a closed connection.
    let closed_plain =
        |e: &ClientError| tls.is_none() && matches!(e, ClientError::Closed { reason: None });
    let (mut client, idempotent) = connect(&addrs, tls.as_ref()).map_err(|source| {
        if closed_plain(&source) {
            TerminalError::ClosedAtLogin
        } else {
            TerminalError::Connect {
                addr: options.addr.clone(),
                source,
            }
        }
    })?;
    let session =
        log_in(&mut client, &options, &password, keyboard_is_tty).map_err(|e| match e {
            TerminalError::Client(e) if closed_plain(&e) => TerminalError::ClosedAtLogin,
            // Turned away at the door (a full server, say): the connect failed.
            TerminalError::Client(source @ ClientError::Refused { .. }) => TerminalError::Connect {
                addr: options.addr.clone(),
                source,
            },
            other => other,
        })?;
    let me = client.whoami().map_err(TerminalError::Client)?;

    let (keyboard, screen) = open_terminal(keyboard_is_tty && io::stdout().is_terminal())?;
    let mut chat = Chat {
        addrs,
        tls,
        session,
        me: me.user.clone(),
        idempotent,
        pending: None,
        link: Link::Up {
            client: Box::new(client),
            last_sent: Instant::now(),
        },
        room: None,
        with: None,
        seen: 0,
        keyboard,
        screen,
        zone: TimeZone::system(),
        password_for: None,
        typing_shown: HashMap::new(),
    };
    chat.screen.notice(format!(
        "logged in as {}; /help lists the commands",
        me.user
    ));
    chat.screen.notice(if me.rooms.is_empty() {
        "you are in no room yet: /rooms lists them, /join ROOM or /create ROOM".to_owned()
    } else {
        format!(
            "your rooms: {}; /join ROOM to pick one",
            me.rooms.join(", ")
        )
    });
    let result = chat.run();
    if let Err(e) = &result {
        chat.keyboard.release(&mut chat.screen, e);
    }
    result
}

/// Resolves `--addr` once: reconnects reuse the answer.
fn resolve(addr: &str) -> Result<Vec<SocketAddr>, TerminalError> {
    let bad = |source| TerminalError::BadAddr {
        addr: addr.to_owned(),
        source,
    };
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(bad)?.collect();
    if addrs.is_empty() {
        return Err(bad(io::Error::new(
            io::ErrorKind::NotFound,
            "names no address",
        )));
    }
    Ok(addrs)
}

/// Reads the password: from the terminal without echo, or else as the first line of
/// stdin, so that scripts and tests can drive the client.
pub(crate) fn read_password(user: &str, keyboard_is_tty: bool) -> Result<String, TerminalError> {
    if keyboard_is_tty {
        return rpassword::prompt_password(format!("password for {user}: "))
            .map_err(TerminalError::Input);
    }
    let mut line = String::new();
    // `Stdin` buffers for the whole process, so the keyboard thread later reads on
    // from exactly the line after this one.
    if io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(TerminalError::Input)?
        == 0
    {
        return Err(TerminalError::NoPassword);
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Connects to the first address that answers, over TLS if `tls` says how, with the
/// request timeout set, and says `hello` with protocol 2; returns the client and
/// whether the server keeps nonces (so a send can be retried safely). A failed TLS
/// handshake does not move on to the next address: that one answered, and its
/// certificate is the same.
pub(super) fn connect(
    addrs: &[SocketAddr],
    tls: Option<&TlsOptions>,
) -> Result<(Client, bool), ClientError> {
    let mut failure = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                let mut client = match tls {
                    Some(tls) => Client::from_stream_tls(stream, tls)?,
                    None => Client::from_stream(stream)?,
                };
                client.set_timeout(REQUEST_TIMEOUT);
                let idempotent = greet(&mut client)?;
                return Ok((client, idempotent));
            }
            Err(e) => failure = e,
        }
    }
    Err(ClientError::Io(failure))
}

/// Says `hello` with protocol 2 (PROTOCOL-2 section 1: `parlor chat` speaks it);
/// returns whether the server keeps nonces (feature `idempotency`). A server from
/// before protocol 2 refuses `hello` (`unknown_op`): the chat then speaks protocol 1.
fn greet(client: &mut Client) -> Result<bool, ClientError> {
    match client.hello(2) {
        Ok(hello) => Ok(hello.has("idempotency")),
        Err(ClientError::Server { code, .. }) => {
            log::debug!("no protocol 2 ({code}): speaking protocol 1");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Logs in, and on `auth_failed` offers to create the account (or creates it without
/// asking with `--signup`); returns the session token for reconnects.
fn log_in(
    client: &mut Client,
    options: &Options,
    password: &str,
    can_ask: bool,
) -> Result<String, TerminalError> {
    let user = &options.user;
    match client.login(user, password) {
        Ok(session) => return Ok(session),
        Err(e) if e.code() == Some(&ErrorCode::AuthFailed) => {}
        Err(e) => return Err(TerminalError::Client(e)),
    }
    let create = options.signup || (can_ask && offer_signup(user, password)?);
    if !create {
        return Err(TerminalError::LoginFailed {
            user: user.clone(),
            hint_signup: !can_ask,
        });
    }
    match client.signup(user, password) {
        Ok(()) => {}
        // The account exists, so `auth_failed` was about the password.
        Err(e) if e.code() == Some(&ErrorCode::UserExists) => {
            return Err(TerminalError::WrongPassword { user: user.clone() });
        }
        Err(e) => return Err(TerminalError::Client(e)),
    }
    client.login(user, password).map_err(TerminalError::Client)
}

/// Asks on the terminal whether to create the account, and for the password again.
fn offer_signup(user: &str, password: &str) -> Result<bool, TerminalError> {
    eprint!("no account {user}, or a wrong password. Create account {user}? [y/N] ");
    let mut answer = String::new();
    io::stdin()
        .read_line(&mut answer)
        .map_err(TerminalError::Input)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        return Ok(false);
    }
    let again = rpassword::prompt_password(format!("password for {user} again: "))
        .map_err(TerminalError::Input)?;
    if again != password {
        return Err(TerminalError::PasswordMismatch);
    }
    Ok(true)
}
