//! `parlor chat`: the interactive terminal client, built on [`Client`].
//!
//! Two threads. A keyboard thread reads lines (through a line editor when stdin and
//! stdout are both terminals, plain from stdin otherwise) and hands them over a
//! channel; the main thread owns the connection and alternates between that channel
//! and [`Client::next_event`] with a short timeout, so events show up while the user
//! types. With the line editor, events are printed above the prompt and the line being
//! typed is redrawn below them; without it, output is plain lines with no escape codes.
//!
//! The parts worth testing on their own are plain functions: [`parse`] turns a typed
//! line into a [`Command`], [`format_event`] and [`format_message`] turn what the
//! server sends into one line of text.

use std::fmt;
use std::io::{self, BufRead, IsTerminal, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

use crate::ErrorCode;
use crate::client::{self, Client, ClientError, Event, HistoryQuery, Message, TlsOptions};

/// How long the main loop waits for a server event before looking at the keyboard
/// again: the longest a typed line waits before it is handled.
const POLL: Duration = Duration::from_millis(50);

/// A listening client must ping at least every `idle_timeout / 2`; the server's
/// default idle timeout is 300 s, and once a minute stays inside any sane setting.
const PING_EVERY: Duration = Duration::from_secs(60);

/// How long one request may take. The main loop is blocked meanwhile, so this is kept
/// well under the client's default; a server this slow is treated as gone.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a TCP connect may take, so an unreachable host cannot freeze the screen
/// for the operating system's minutes-long default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait before the first reconnect attempt; it doubles after each failure...
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// ...up to this.
const LAST_RETRY: Duration = Duration::from_secs(30);

/// Messages shown on `/join`.
const JOIN_HISTORY: u64 = 10;

/// Messages shown by `/history` without a count.
const DEFAULT_HISTORY: u64 = 20;

/// Most missed messages of the current room shown after a reconnect.
const CATCH_UP: u64 = 100;

/// Every command with its usage and what it does: `/help` prints this table, and a
/// usage error quotes the usage from it.
const COMMANDS: [(&str, &str); 9] = [
    (
        "/join ROOM",
        "join ROOM, make it the current room, show its last messages",
    ),
    (
        "/create ROOM [TOPIC]",
        "create ROOM (you are its first member) and make it current",
    ),
    ("/leave", "leave the current room"),
    ("/rooms", "list every room"),
    ("/who", "list the members of the current room"),
    ("/dm USER TEXT", "send a direct message to USER"),
    (
        "/history [N]",
        "show the last N messages of the current room (default 20)",
    ),
    ("/help", "show this list"),
    (
        "/quit",
        "leave parlor chat (so do Ctrl-D and Ctrl-C at the prompt)",
    ),
];

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

/// One line typed by the user, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A plain line: a message to the current room.
    Say(String),
    /// `/join ROOM`.
    Join(String),
    /// `/leave`: leave the current room.
    Leave,
    /// `/rooms`.
    Rooms,
    /// `/who`: the members of the current room.
    Who,
    /// `/dm USER TEXT`.
    Dm {
        /// The recipient.
        to: String,
        /// The message.
        text: String,
    },
    /// `/history [N]`: the last N messages of the current room.
    History(Option<u64>),
    /// `/create ROOM [TOPIC]`.
    Create {
        /// The new room's name.
        room: String,
        /// Its topic, the rest of the line, if any.
        topic: Option<String>,
    },
    /// `/quit`.
    Quit,
    /// `/help`.
    Help,
}

/// Why a typed line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The line starts with `/` and a word that names no command.
    Unknown(String),
    /// A known command with the wrong arguments; holds its usage, e.g. `/join ROOM`.
    Usage(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown(name) => write!(
                f,
                "unknown command {name}: /help lists the commands; start a line with // to send it as text"
            ),
            ParseError::Usage(usage) => write!(f, "usage: {usage}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one typed line: `Ok(None)` for a blank line, a [`Command::Say`] for text,
/// and a command for a line starting with `/`. A line starting with `//` is text that
/// starts with `/`.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line.to_owned())));
    };
    if rest.starts_with('/') {
        return Ok(Some(Command::Say(rest.to_owned())));
    }
    let (name, args) = split_word(rest);
    let command = match name {
        "join" => match split_word(args) {
            (room, "") if !room.is_empty() => Command::Join(room.to_owned()),
            _ => return Err(usage_of("/join")),
        },
        "create" => match split_word(args) {
            ("", _) => return Err(usage_of("/create")),
            (room, topic) => Command::Create {
                room: room.to_owned(),
                topic: (!topic.is_empty()).then(|| topic.to_owned()),
            },
        },
        "dm" => match split_word(args) {
            ("", _) | (_, "") => return Err(usage_of("/dm")),
            (to, text) => Command::Dm {
                to: to.to_owned(),
                text: text.to_owned(),
            },
        },
        "history" if args.is_empty() => Command::History(None),
        "history" => match args.parse::<u64>() {
            Ok(count) if count > 0 => Command::History(Some(count)),
            _ => return Err(usage_of("/history")),
        },
        "leave" => bare(args, "/leave", Command::Leave)?,
        "rooms" => bare(args, "/rooms", Command::Rooms)?,
        "who" => bare(args, "/who", Command::Who)?,
        "quit" => bare(args, "/quit", Command::Quit)?,
        "help" => bare(args, "/help", Command::Help)?,
        _ => return Err(ParseError::Unknown(format!("/{name}"))),
    };
    Ok(Some(command))
}

/// Splits off the first whitespace-separated word; the rest comes back trimmed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

/// `command` if it was given no arguments, else its usage error.
fn bare(args: &str, name: &'static str, command: Command) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(usage_of(name))
    }
}

/// The usage error of the command `name` (e.g. `/join`), quoted from [`COMMANDS`].
fn usage_of(name: &'static str) -> ParseError {
    let usage = COMMANDS
        .iter()
        .map(|(usage, _)| *usage)
        .find(|usage| usage.split(' ').next() == Some(name))
        .unwrap_or(name);
    ParseError::Usage(usage)
}

/// The lines `/help` prints.
pub fn help() -> Vec<String> {
    let width = COMMANDS
        .iter()
        .map(|(usage, _)| usage.len())
        .max()
        .unwrap_or_default();
    let mut lines = vec![
        "type a line to send it to the current room (start it with // to send a line that begins with /)"
            .to_owned(),
    ];
    lines.extend(
        COMMANDS
            .iter()
            .map(|(usage, what)| format!("  {usage:<width$}  {what}")),
    );
    lines
}

/// Renders a server event as one line: local time, `[room]` (or `[dm]`), sender and
/// text. Events that carry no `ts` are stamped with `now`. Control characters in
/// anything the server sent are escaped, so one event is always one line and nobody
/// can move the cursor or recolour the screen by sending escape codes.
pub fn format_event(event: &Event, now: Timestamp, zone: &TimeZone) -> String {
    let line = match event {
        Event::Message(message) => return format_message(message, zone),
        Event::Dm { from, text, ts } => format!("{} [dm] {from}: {text}", clock_ms(*ts, zone)),
        Event::Joined { room, user } => format!("{} [{room}] * {user} joined", clock(now, zone)),
        Event::Left { room, user } => format!("{} [{room}] * {user} left", clock(now, zone)),
        Event::Closing { reason } => format!(
            "{} * the server is closing the connection ({reason})",
            clock(now, zone)
        ),
        Event::Other(frame) => format!("{} * event {frame}", clock(now, zone)),
    };
    printable(&line)
}

/// Renders a room message (live or from `history`) as one line, like [`format_event`].
pub fn format_message(message: &Message, zone: &TimeZone) -> String {
    printable(&format!(
        "{} [{}] {}: {}",
        clock_ms(message.ts, zone),
        message.room,
        message.from,
        message.text
    ))
}

/// `HH:MM:SS` of a protocol `ts` (milliseconds since the epoch) in `zone`.
fn clock_ms(ts: u64, zone: &TimeZone) -> String {
    let at = i64::try_from(ts)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok());
    match at {
        Some(at) => clock(at, zone),
        // Only a broken server sends a ts beyond the year 9999; say so, do not fail.
        None => "??:??:??".to_owned(),
    }
}

/// `HH:MM:SS` of `at` in `zone`.
fn clock(at: Timestamp, zone: &TimeZone) -> String {
    zone.to_datetime(at).strftime("%H:%M:%S").to_string()
}

/// `text` with every control character (newline, escape, ...) written as its Rust
/// escape (`\n`, `\u{1b}`).
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

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
struct Described<'a>(&'a ClientError);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ClientError::Server { code, message } => write!(f, "{message} ({code})"),
            other => fmt::Display::fmt(other, f),
        }
    }
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
    let mut client = connect(&addrs, tls.as_ref()).map_err(|source| TerminalError::Connect {
        addr: options.addr.clone(),
        source,
    })?;
    let session =
        log_in(&mut client, &options, &password, keyboard_is_tty).map_err(|e| match e {
            TerminalError::Client(ClientError::Closed { reason: None }) if tls.is_none() => {
                TerminalError::ClosedAtLogin
            }
            other => other,
        })?;
    let me = client.whoami().map_err(TerminalError::Client)?;

    let (keyboard, screen) = open_terminal(keyboard_is_tty && io::stdout().is_terminal())?;
    let mut chat = Chat {
        addrs,
        tls,
        session,
        link: Link::Up {
            client,
            last_sent: Instant::now(),
        },
        room: None,
        seen: 0,
        keyboard,
        screen,
        zone: TimeZone::system(),
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
fn read_password(user: &str, keyboard_is_tty: bool) -> Result<String, TerminalError> {
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
/// request timeout set. A failed TLS handshake does not move on to the next address:
/// that one answered, and its certificate is the same.
fn connect(addrs: &[SocketAddr], tls: Option<&TlsOptions>) -> Result<Client, ClientError> {
    let mut failure = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                let mut client = match tls {
                    Some(tls) => Client::from_stream_tls(stream, tls)?,
                    None => Client::from_stream(stream)?,
                };
                client.set_timeout(REQUEST_TIMEOUT);
                return Ok(client);
            }
            Err(e) => failure = e,
        }
    }
    Err(ClientError::Io(failure))
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

/// What the keyboard thread hands the main loop.
enum Input {
    /// A line, without its newline.
    Line(String),
    /// The end of input: EOF on stdin, or Ctrl-D / Ctrl-C at the prompt.
    End,
    /// Reading failed.
    Failed(io::Error),
}

/// The main loop's end of the keyboard thread.
struct Keyboard {
    lines: Receiver<Input>,
    /// With the line editor: asks for the next line, with this prompt. The editor
    /// reads one line per request, so each prompt shows the room current by then.
    prompts: Option<Sender<String>>,
    /// Whether the editor is reading a line now: a prompt was sent, no line came back.
    editing: bool,
}

impl Keyboard {
    /// The next input, waiting at most `timeout`.
    fn next(&mut self, timeout: Duration) -> Option<Input> {
        let input = match self.lines.recv_timeout(timeout) {
            Ok(input) => input,
            Err(RecvTimeoutError::Timeout) => return None,
            // The thread ends only after sending End or Failed, so this is after those.
            Err(RecvTimeoutError::Disconnected) => Input::End,
        };
        self.editing = false;
        Some(input)
    }

    /// Lets the line editor read the next line. Plain stdin reads ahead by itself.
    fn ready(&mut self, prompt: String) {
        if let Some(prompts) = &self.prompts {
            self.editing = prompts.send(prompt).is_ok();
        }
    }

    /// Before exiting on an error: the editor holds the terminal in raw mode while it
    /// reads a line and gives it back only when the line ends, so wait for that.
    fn release(&mut self, screen: &mut Screen, why: &TerminalError) {
        if self.editing {
            screen.notice(format!("{why}; press Enter to exit"));
            let _ = self.lines.recv();
            self.editing = false;
        }
    }
}

/// Where the chat's output goes.
struct Screen {
    sink: Sink,
    /// The first write that failed; the main loop stops on it.
    failure: Option<io::Error>,
}

/// How [`Screen`] prints.
enum Sink {
    /// Plain lines on stdout.
    Plain,
    /// Through the line editor, which prints above the prompt and redraws it.
    Editor(Box<dyn ExternalPrinter + Send>),
}

impl Screen {
    /// Prints one line, with control characters escaped whatever their source (names
    /// and topics come from the server too). A failure is kept for [`Screen::check`]
    /// rather than returned, so that everything that prints need not also handle a
    /// broken terminal.
    fn line(&mut self, text: impl AsRef<str>) {
        if self.failure.is_some() {
            return;
        }
        let mut text = printable(text.as_ref());
        text.push('\n');
        let written = match &mut self.sink {
            Sink::Plain => {
                let mut out = io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
            Sink::Editor(printer) => printer.print(text).map_err(readline_io),
        };
        if let Err(e) = written {
            self.failure = Some(e);
        }
    }

    /// Prints a note from the client itself (not from the server).
    fn notice(&mut self, text: impl fmt::Display) {
        self.line(format!("-- {text}"));
    }

    /// Prints a failed request as `error: <message> (<code>)`.
    fn error(&mut self, e: &ClientError) {
        self.line(format!("error: {}", Described(e)));
    }

    /// The first write that failed, if any.
    fn check(&mut self) -> Result<(), TerminalError> {
        match self.failure.take() {
            Some(e) => Err(TerminalError::Output(e)),
            None => Ok(()),
        }
    }
}

/// The line editor's error as an I/O error, which is what it almost always wraps.
fn readline_io(e: ReadlineError) -> io::Error {
    match e {
        ReadlineError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// The keyboard and screen through a line editor, for a terminal.
fn line_editor() -> Result<(Keyboard, Screen), ReadlineError> {
    let mut editor = DefaultEditor::new()?;
    let printer = editor.create_external_printer()?;
    let (line_tx, lines) = mpsc::channel();
    let (prompts, prompt_rx) = mpsc::channel::<String>();
    thread::Builder::new()
        .name("parlor-keyboard".into())
        .spawn(move || {
            for prompt in prompt_rx {
                let input = match editor.readline(&prompt) {
                    Ok(line) => {
                        // Up-arrow recall is a convenience: a failure to record is harmless.
                        let _ = editor.add_history_entry(line.as_str());
                        Input::Line(line)
                    }
                    Err(ReadlineError::Eof | ReadlineError::Interrupted) => Input::End,
                    Err(e) => Input::Failed(readline_io(e)),
                };
                let last = !matches!(input, Input::Line(_));
                if line_tx.send(input).is_err() || last {
                    return;
                }
            }
        })?;
    let keyboard = Keyboard {
        lines,
        prompts: Some(prompts),
        editing: false,
    };
    let screen = Screen {
        sink: Sink::Editor(Box::new(printer)),
        failure: None,
    };
    Ok((keyboard, screen))
}

/// The keyboard and the screen: through the line editor when both ends are a
/// terminal, plain lines otherwise.
fn open_terminal(tty: bool) -> Result<(Keyboard, Screen), TerminalError> {
    // A terminal the line editor cannot drive (TERM=dumb, say) still works plain.
    if tty && let Ok(terminal) = line_editor() {
        return Ok(terminal);
    }
    plain().map_err(TerminalError::Input)
}

/// The keyboard as plain lines from stdin, and the screen as plain lines on stdout.
fn plain() -> io::Result<(Keyboard, Screen)> {
    let (line_tx, lines) = mpsc::channel();
    // Never joined: it blocks in `read` until a line or EOF comes, and the process may
    // exit meanwhile.
    thread::Builder::new()
        .name("parlor-stdin".into())
        .spawn(move || {
            for line in io::stdin().lines() {
                let input = match line {
                    Ok(line) => Input::Line(line),
                    Err(e) => Input::Failed(e),
                };
                let failed = matches!(input, Input::Failed(_));
                if line_tx.send(input).is_err() || failed {
                    return;
                }
            }
            let _ = line_tx.send(Input::End);
        })?;
    let keyboard = Keyboard {
        lines,
        prompts: None,
        editing: false,
    };
    let screen = Screen {
        sink: Sink::Plain,
        failure: None,
    };
    Ok((keyboard, screen))
}

/// The connection, or the lack of one while reconnecting.
enum Link {
    Up {
        client: Client,
        /// When the last request went out: a ping is due `PING_EVERY` after it.
        last_sent: Instant,
    },
    Down {
        /// When to try again.
        retry_at: Instant,
        /// The wait before this try; the next one waits twice as long.
        delay: Duration,
    },
}

/// Whether to go on after a typed line.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// The logged-in chat: connection, current room, keyboard and screen.
struct Chat {
    addrs: Vec<SocketAddr>,
    /// How to speak TLS, with the server name filled in; `None` for plain TCP.
    tls: Option<TlsOptions>,
    session: String,
    link: Link,
    /// The current room, where plain lines go.
    room: Option<String>,
    /// The highest seq of the current room shown so far: a message at or below it is
    /// not shown again (history and live events overlap around a join or reconnect).
    seen: u64,
    keyboard: Keyboard,
    screen: Screen,
    zone: TimeZone,
}

impl Chat {
    fn run(&mut self) -> Result<(), TerminalError> {
        self.keyboard.ready(self.prompt());
        loop {
            // While connected, the wait happens in `next_event`; while not, here.
            let wait = match self.link {
                Link::Up { .. } => Duration::ZERO,
                Link::Down { .. } => POLL,
            };
            if let Some(input) = self.keyboard.next(wait) {
                let flow = match input {
                    Input::Line(line) => self.on_line(&line),
                    Input::End => Flow::Quit,
                    Input::Failed(e) => return Err(TerminalError::Input(e)),
                };
                if flow == Flow::Quit {
                    self.goodbye();
                    return self.screen.check();
                }
                self.keyboard.ready(self.prompt());
            }
            self.tend()?;
            self.screen.check()?;
        }
    }

    fn prompt(&self) -> String {
        match &self.room {
            Some(room) => format!("[{room}]> "),
            None => "> ".to_owned(),
        }
    }

    /// Reads events, pings when idle, and reconnects when it is time.
    fn tend(&mut self) -> Result<(), TerminalError> {
        let polled = match &mut self.link {
            Link::Up { client, .. } => client.next_event(POLL),
            Link::Down { retry_at, .. } if Instant::now() >= *retry_at => {
                return self.reconnect();
            }
            Link::Down { .. } => return Ok(()),
        };
        match polled {
            Ok(Some(event)) => self.show(event),
            Ok(None) => {}
            Err(e) => {
                self.lost(e);
                return Ok(());
            }
        }
        if let Link::Up { last_sent, .. } = &self.link
            && last_sent.elapsed() >= PING_EVERY
            && let Err(e) = self.call(Client::ping)
        {
            self.fail(e);
        }
        Ok(())
    }

    fn show(&mut self, event: Event) {
        if let Event::Message(message) = &event
            && self.room.as_deref() == Some(&message.room)
        {
            if message.seq <= self.seen {
                return;
            }
            self.seen = message.seq;
        }
        let line = format_event(&event, Timestamp::now(), &self.zone);
        self.screen.line(line);
    }

    fn on_line(&mut self, line: &str) -> Flow {
        let command = match parse(line) {
            Ok(Some(command)) => command,
            Ok(None) => return Flow::Continue,
            Err(e) => {
                self.screen.notice(e);
                return Flow::Continue;
            }
        };
        let done = match command {
            Command::Quit => return Flow::Quit,
            Command::Help => {
                help().into_iter().for_each(|line| self.screen.line(line));
                return Flow::Continue;
            }
            _ if matches!(self.link, Link::Down { .. }) => {
                self.screen
                    .notice("not connected (reconnecting): try again in a moment");
                return Flow::Continue;
            }
            Command::Say(text) => self.say(&text),
            Command::Join(room) => self.join(room),
            Command::Leave => self.leave(),
            Command::Rooms => self.rooms(),
            Command::Who => self.who(),
            Command::Dm { to, text } => self.call(|c| c.dm(&to, &text)).map(drop),
            Command::History(count) => self.history(count.unwrap_or(DEFAULT_HISTORY)),
            Command::Create { room, topic } => self.create(room, topic.as_deref()),
        };
        if let Err(e) = done {
            self.fail(e);
        }
        Flow::Continue
    }

    /// Shows a server's refusal; any other failure means the connection is gone.
    fn fail(&mut self, e: ClientError) {
        match e {
            ClientError::Server { .. } => self.screen.error(&e),
            other => self.lost(other),
        }
    }

    /// Runs one request, noting when, so that pings go out only on an idle line.
    fn call<T>(
        &mut self,
        request: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let Link::Up { client, last_sent } = &mut self.link else {
            return Err(ClientError::Closed { reason: None });
        };
        *last_sent = Instant::now();
        request(client)
    }

    /// The current room; without one, says how to get one.
    fn current(&mut self) -> Option<String> {
        if self.room.is_none() {
            self.screen
                .notice("no current room: /join ROOM or /create ROOM first");
        }
        self.room.clone()
    }

    fn say(&mut self, text: &str) -> Result<(), ClientError> {
        let Some(room) = self.current() else {
            return Ok(());
        };
        self.call(|c| c.send(&room, text)).map(drop)
    }

    fn join(&mut self, room: String) -> Result<(), ClientError> {
        let joined = self.call(|c| c.join(&room))?;
        let topic = match joined.topic.as_str() {
            "" => String::new(),
            topic => format!(" ({topic})"),
        };
        self.screen.notice(format!(
            "now in {room}{topic}; members: {}",
            joined.members.join(", ")
        ));
        self.room = Some(room.clone());
        self.seen = joined.seq;
        // Up to the join's seq: later messages arrive as events.
        let query = HistoryQuery {
            before: Some(joined.seq.saturating_add(1)),
            limit: Some(JOIN_HISTORY),
            ..HistoryQuery::default()
        };
        let recent = self.call(|c| c.history(&room, query))?;
        self.print_messages(&recent);
        Ok(())
    }

    fn leave(&mut self) -> Result<(), ClientError> {
        let Some(room) = self.current() else {
            return Ok(());
        };
        self.call(|c| c.leave(&room))?;
        self.room = None;
        self.screen
            .notice(format!("left {room}; no current room now"));
        Ok(())
    }

    fn rooms(&mut self) -> Result<(), ClientError> {
        let rooms = self.call(Client::rooms)?;
        if rooms.is_empty() {
            self.screen.notice("no rooms yet: /create ROOM makes one");
        }
        for info in rooms {
            let topic = match info.topic.as_str() {
                "" => String::new(),
                topic => format!(": {topic}"),
            };
            let line = format!("  {} ({} members){topic}", info.room, info.members);
            self.screen.line(line);
        }
        Ok(())
    }

    fn who(&mut self) -> Result<(), ClientError> {
        let Some(room) = self.current() else {
            return Ok(());
        };
        let members = self.call(|c| c.members(&room))?;
        self.screen
            .notice(format!("in {room}: {}", members.join(", ")));
        Ok(())
    }

    fn history(&mut self, count: u64) -> Result<(), ClientError> {
        let Some(room) = self.current() else {
            return Ok(());
        };
        let query = HistoryQuery {
            limit: Some(count),
            ..HistoryQuery::default()
        };
        let messages = self.call(|c| c.history(&room, query))?;
        if messages.is_empty() {
            self.screen.notice(format!("no messages in {room} yet"));
        }
        self.print_messages(&messages);
        Ok(())
    }

    fn create(&mut self, room: String, topic: Option<&str>) -> Result<(), ClientError> {
        self.call(|c| c.create(&room, topic))?;
        self.screen
            .notice(format!("created {room}; it is your current room"));
        self.room = Some(room);
        self.seen = 0;
        Ok(())
    }

    fn print_messages(&mut self, messages: &[Message]) {
        for message in messages {
            let line = format_message(message, &self.zone);
            self.screen.line(line);
        }
    }

    /// Notes a lost connection and schedules the first reconnect.
    fn lost(&mut self, cause: ClientError) {
        self.screen
            .notice(format!("connection lost ({cause}); reconnecting"));
        self.link = Link::Down {
            retry_at: Instant::now() + FIRST_RETRY,
            delay: FIRST_RETRY,
        };
    }

    /// One reconnect attempt: a new connection resumes the session; the current room
    /// stays current (membership belongs to the user) and its missed messages are
    /// shown.
    fn reconnect(&mut self) -> Result<(), TerminalError> {
        let Link::Down { delay, .. } = self.link else {
            return Ok(());
        };
        let resumed = connect(&self.addrs, self.tls.as_ref()).and_then(|mut client| {
            client.resume(&self.session)?;
            Ok(client)
        });
        match resumed {
            Ok(client) => {
                self.link = Link::Up {
                    client,
                    last_sent: Instant::now(),
                };
                self.screen.notice("reconnected");
                if let Err(e) = self.catch_up() {
                    self.fail(e);
                }
                Ok(())
            }
            Err(e) if e.code() == Some(&ErrorCode::AuthFailed) => {
                Err(TerminalError::SessionExpired)
            }
            Err(e) => {
                let delay = (delay * 2).min(LAST_RETRY);
                self.screen.notice(format!(
                    "cannot reconnect ({}); trying again in {delay:?}",
                    Described(&e)
                ));
                self.link = Link::Down {
                    retry_at: Instant::now() + delay,
                    delay,
                };
                Ok(())
            }
        }
    }

    /// Shows the current room's messages that came while the connection was down.
    fn catch_up(&mut self) -> Result<(), ClientError> {
        let Some(room) = self.room.clone() else {
            return Ok(());
        };
        let query = HistoryQuery {
            after: Some(self.seen),
            limit: Some(CATCH_UP),
            ..HistoryQuery::default()
        };
        let missed = self.call(|c| c.history(&room, query))?;
        let more = missed.len() as u64 >= CATCH_UP;
        for message in missed {
            self.show(Event::Message(message));
        }
        if more {
            self.screen.notice(format!(
                "more messages came in {room} while disconnected than are shown here"
            ));
        }
        Ok(())
    }

    /// Says goodbye to the server, if connected.
    fn goodbye(&mut self) {
        // The user is leaving either way: a failed `quit` changes nothing for them.
        let _ = self.call(Client::quit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Command {
        match parse(line) {
            Ok(Some(command)) => command,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn plain_lines_are_messages() {
        assert_eq!(parsed("hello there"), Command::Say("hello there".into()));
        assert_eq!(parsed("  indented\r\n"), Command::Say("  indented".into()));
        assert_eq!(parsed("//shrug"), Command::Say("/shrug".into()));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   \t"), Ok(None));
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parsed("/join lobby"), Command::Join("lobby".into()));
        assert_eq!(parsed("/join   lobby  "), Command::Join("lobby".into()));
        assert_eq!(parsed("/leave"), Command::Leave);
        assert_eq!(parsed("/rooms"), Command::Rooms);
        assert_eq!(parsed("/who"), Command::Who);
        assert_eq!(parsed("/quit"), Command::Quit);
        assert_eq!(parsed("/help"), Command::Help);
        assert_eq!(parsed("/history"), Command::History(None));
        assert_eq!(parsed("/history 5"), Command::History(Some(5)));
        assert_eq!(
            parsed("/dm bob  see you  at noon"),
            Command::Dm {
                to: "bob".into(),
                text: "see you  at noon".into()
            }
        );
        assert_eq!(
            parsed("/create lobby"),
            Command::Create {
                room: "lobby".into(),
                topic: None
            }
        );
        assert_eq!(
            parsed("/create lobby say hello"),
            Command::Create {
                room: "lobby".into(),
                topic: Some("say hello".into())
            }
        );
    }

    #[test]
    fn bad_commands_say_how() {
        let usage = |line| match parse(line) {
            Err(ParseError::Usage(usage)) => usage,
            other => panic!("{line:?} parsed as {other:?}"),
        };
        assert_eq!(usage("/join"), "/join ROOM");
        assert_eq!(usage("/join a b"), "/join ROOM");
        assert_eq!(usage("/create"), "/create ROOM [TOPIC]");
        assert_eq!(usage("/dm bob"), "/dm USER TEXT");
        assert_eq!(usage("/dm"), "/dm USER TEXT");
        assert_eq!(usage("/history 0"), "/history [N]");
        assert_eq!(usage("/history many"), "/history [N]");
        assert_eq!(usage("/quit now"), "/quit");
        assert_eq!(
            parse("/frobnicate x"),
            Err(ParseError::Unknown("/frobnicate".into()))
        );
        assert_eq!(
            ParseError::Usage("/join ROOM").to_string(),
            "usage: /join ROOM"
        );
    }

    #[test]
    fn help_lists_every_command() {
        let text = help().join("\n");
        for name in [
            "/join", "/create", "/leave", "/rooms", "/who", "/dm", "/history", "/help", "/quit",
        ] {
            assert!(text.contains(name), "{name} missing from help:\n{text}");
            assert!(
                matches!(parse(name), Ok(_) | Err(ParseError::Usage(_))),
                "{name} in help but not parsed"
            );
        }
    }

    /// 2025-11-23 00:00:00.123 UTC, plus an hour, two minutes and three seconds.
    const TS: u64 = 1_763_856_000_123 + 3_723_000;

    fn now() -> Timestamp {
        Timestamp::from_second(1_763_856_000 + 59).unwrap()
    }

    #[test]
    fn events_format_as_one_line_with_local_time() {
        let zone = TimeZone::UTC;
        let message = Event::Message(Message {
            room: "lobby".into(),
            from: "bob".into(),
            text: "hi ada".into(),
            seq: 3,
            ts: TS,
        });
        assert_eq!(
            format_event(&message, now(), &zone),
            "01:02:03 [lobby] bob: hi ada"
        );
        let dm = Event::Dm {
            from: "bob".into(),
            text: "psst".into(),
            ts: TS,
        };
        assert_eq!(format_event(&dm, now(), &zone), "01:02:03 [dm] bob: psst");
        let joined = Event::Joined {
            room: "lobby".into(),
            user: "bob".into(),
        };
        assert_eq!(
            format_event(&joined, now(), &zone),
            "00:00:59 [lobby] * bob joined"
        );
        let left = Event::Left {
            room: "lobby".into(),
            user: "bob".into(),
        };
        assert_eq!(
            format_event(&left, now(), &zone),
            "00:00:59 [lobby] * bob left"
        );
        let closing = Event::Closing {
            reason: "shutdown".into(),
        };
        assert_eq!(
            format_event(&closing, now(), &zone),
            "00:00:59 * the server is closing the connection (shutdown)"
        );
        let other = Event::Other(serde_json::json!({"event": "new"}));
        assert_eq!(
            format_event(&other, now(), &zone),
            r#"00:00:59 * event {"event":"new"}"#
        );
    }

    #[test]
    fn time_is_shown_in_the_given_zone() {
        let zone = TimeZone::fixed(jiff::tz::offset(2));
        let dm = Event::Dm {
            from: "bob".into(),
            text: "psst".into(),
            ts: TS,
        };
        assert_eq!(format_event(&dm, now(), &zone), "03:02:03 [dm] bob: psst");
        let broken = Event::Dm {
            from: "bob".into(),
            text: "psst".into(),
            ts: u64::MAX,
        };
        assert_eq!(
            format_event(&broken, now(), &zone),
            "??:??:?? [dm] bob: psst"
        );
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let message = Message {
            room: "lobby".into(),
            from: "mallory".into(),
            text: "two\nlines \u{1b}[2J\tend".into(),
            seq: 1,
            ts: TS,
        };
        assert_eq!(
            format_message(&message, &TimeZone::UTC),
            r"01:02:03 [lobby] mallory: two\nlines \u{1b}[2J\tend"
        );
    }

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
