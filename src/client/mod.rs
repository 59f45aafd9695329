//! A blocking client for the chat protocol (see PROTOCOL.md), one typed method per op.
//!
//! [`Client`] speaks newline-delimited JSON over one [`TcpStream`]. Each request gets a
//! fresh numeric `id`; while the client waits for a response, any events the server
//! pushes are kept in order and handed out later by [`Client::next_event`], so nothing
//! is lost by doing requests and listening on one connection.
//!
//! [`Client::connect_tls`] speaks the same protocol over TLS (rustls), checking the
//! server's certificate against the public authorities or a CA file ([`TlsOptions`]).
//!
//! ```
//! use std::time::Duration;
//! use parlor::client::{Event, HistoryQuery};
//! use parlor::{Client, Config, Mode, Server, Storage};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = Config::default();
//! config.addr = "127.0.0.1:0".parse()?;
//! config.storage = Storage::InMemory;
//! config.bcrypt_cost = 4; // fast hashing for the example
//! config.mode = Mode::Chat;
//! let server = Server::bind(config)?;
//! let addr = server.local_addr();
//! let _handle = server.spawn(); // dropping it shuts the server down
//!
//! let mut ada = Client::connect(addr)?;
//! ada.signup("ada", "correct horse")?;
//! ada.login("ada", "correct horse")?;
//! ada.create("lobby", Some("say hello"))?;
//!
//! let mut bob = Client::connect(addr)?;
//! bob.signup("bob", "battery staple")?;
//! bob.login("bob", "battery staple")?;
//! let joined = bob.join("lobby")?;
//! assert_eq!(joined.members, ["ada", "bob"]);
//!
//! let sent = ada.send("lobby", "hello")?;
//! match bob.next_event(Duration::from_secs(5))? {
//!     Some(Event::Message(m)) => assert_eq!((m.text.as_str(), m.seq), ("hello", sent.seq)),
//!     other => panic!("expected a message, got {other:?}"),
//! }
//! let history = bob.history("lobby", HistoryQuery::default())?;
//! assert_eq!(history.len(), 1);
//! bob.quit()?;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::ErrorCode;

/// How long a request waits for its response unless [`Client::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest line the client accepts from the server. The server's own frames are far
/// smaller (a `history` response is capped at 1 MiB of messages); the cap only stops a
/// broken or hostile peer from growing the buffer without bound.
pub const MAX_LINE: usize = 16 << 20;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 << 10;

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
    /// of frame, a response missing a field, a line over [`MAX_LINE`], and so on.
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

/// A room message: the `message` event, and one element of a `history` response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Message {
    /// The room it was sent to.
    pub room: String,
    /// The sender's user name.
    pub from: String,
    /// The text as sent.
    pub text: String,
    /// Its per-room sequence number (starts at 1, never reused).
    pub seq: u64,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
}

/// Something the server pushed without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Someone else sent a message to a room this user is in.
    Message(Message),
    /// A direct message to this user (live, or kept while offline).
    Dm {
        /// The sender's user name.
        from: String,
        /// The text as sent.
        text: String,
        /// When the server accepted it, in milliseconds since the Unix epoch.
        ts: u64,
    },
    /// Another user joined a room this user is in.
    Joined {
        /// The room.
        room: String,
        /// Who joined.
        user: String,
    },
    /// Another user left a room this user is in.
    Left {
        /// The room.
        room: String,
        /// Who left.
        user: String,
    },
    /// The server is about to close this connection.
    Closing {
        /// Why: `slow_consumer`, `idle_timeout`, `shutdown`, `server_full` or `flood`.
        reason: String,
    },
    /// An event kind this client does not know (from a newer server), kept whole.
    #[serde(skip_deserializing)]
    Other(Value),
}

/// Event kinds that [`Event`] models; any other kind becomes [`Event::Other`].
const KNOWN_EVENTS: [&str; 5] = ["message", "dm", "joined", "left", "closing"];

/// The answer to `whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Whoami {
    /// The user this connection is logged in as.
    pub user: String,
    /// The user's rooms, sorted.
    pub rooms: Vec<String>,
}

/// The answer to `join`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Joined {
    /// The room joined.
    pub room: String,
    /// Its topic (`""` if none was set).
    pub topic: String,
    /// Its members, the joiner included.
    pub members: Vec<String>,
    /// The room's last seq at the moment of joining (0 if none): messages up to it are
    /// history, later ones arrive as events.
    pub seq: u64,
}

/// One room in the answer to `rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoomInfo {
    /// The room's name.
    pub room: String,
    /// Its topic (`""` if none was set).
    pub topic: String,
    /// How many members it has.
    pub members: u64,
}

/// The answer to `send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Sent {
    /// The message's per-room sequence number.
    pub seq: u64,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
}

/// Which slice of a room's history `history` returns; `Default` is the newest 50.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryQuery {
    /// Only messages with a seq below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Only messages with a seq above this; the oldest `limit` of them are returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// At most this many messages (1-500; the server's default is 50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// A blocking connection to a parlor chat server.
///
/// Not thread-safe by design: one thread drives one connection. Events that arrive
/// while a request waits for its response are queued for [`Client::next_event`].
pub struct Client {
    stream: Transport,
    reader: LineReader,
    next_id: u64,
    /// Ids of requests sent whose responses have not been read, oldest first. The
    /// server answers in request order, so the next response belongs to the front.
    outstanding: VecDeque<u64>,
    /// Responses read (while waiting for an event, say) but not yet handed out.
    responses: VecDeque<(u64, Map<String, Value>)>,
    events: VecDeque<Event>,
    timeout: Duration,
    closing_reason: Option<String>,
}

impl fmt::Debug for Client {
    // The read buffer is left out: it is large and says nothing useful.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("stream", &self.stream.tcp)
            .field("tls", &self.stream.tls.is_some())
            .field("next_id", &self.next_id)
            .field("outstanding", &self.outstanding)
            .field("responses", &self.responses.len())
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .field("closing_reason", &self.closing_reason)
            .finish()
    }
}

impl Client {
    /// Connects to a chat server.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Client::from_stream(TcpStream::connect(addr)?)
    }

    /// Wraps a stream that is already connected to a chat server.
    pub fn from_stream(stream: TcpStream) -> Result<Client, ClientError> {
        // One small frame per request: without this, Nagle's algorithm meeting the
        // server's delayed ACKs adds tens of milliseconds to pipelined requests.
        stream.set_nodelay(true)?;
        Ok(Client::over(Transport {
            tcp: stream,
            tls: None,
        }))
    }

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

    fn over(stream: Transport) -> Client {
        Client {
            stream,
            reader: LineReader::default(),
            next_id: 1,
            outstanding: VecDeque::new(),
            responses: VecDeque::new(),
            events: VecDeque::new(),
            timeout: DEFAULT_TIMEOUT,
            closing_reason: None,
        }
    }

    /// Sets how long a request waits for its response (and a write for progress)
    /// before failing with [`ClientError::Timeout`]. The default is 30 s.
    ///
    /// A response that comes after its request timed out is skipped later. A write
    /// that times out may have sent part of a frame, so it also closes the connection.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends any request and waits for its response, returning the whole response
    /// object (`"ok":true` included) or the server's error.
    ///
    /// `fields` must be a JSON object (or `null` for none); `id` and `op` are set by
    /// the client. Responses to earlier requests still unread (sent with
    /// [`Client::send_request`], or timed out) are read and dropped on the way.
    pub fn request(&mut self, op: &str, fields: Value) -> Result<Value, ClientError> {
        let id = self.send_request(op, fields)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let (answered, response) = self.read_response(deadline)?;
            if answered == id {
                return interpret(response);
            }
            log::debug!("dropping the response to earlier request {answered}");
        }
    }

    /// Sends a request without waiting for its response, for pipelining; returns its
    /// id. Read the responses, in the order the requests were sent, with
    /// [`Client::recv_response`].
    pub fn send_request(&mut self, op: &str, fields: Value) -> Result<u64, ClientError> {
        let mut frame = match fields {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                return Err(ClientError::Protocol(format!(
                    "request fields must be a JSON object, not {other}"
                )));
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        frame.insert("id".to_owned(), Value::from(id));
        frame.insert("op".to_owned(), Value::from(op));
        let mut line = serde_json::to_vec(&frame)
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        line.push(b'\n');
        self.write_all(&line)?;
        self.outstanding.push_back(id);
        Ok(id)
    }

    /// Waits for the response to the oldest request sent with
    /// [`Client::send_request`] and not yet answered, as [`Client::request`] returns it.
    pub fn recv_response(&mut self) -> Result<Value, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let (_, response) = self.read_response(deadline)?;
        interpret(response)
    }

    /// Returns the next event: a queued one at once, otherwise the first to arrive
    /// within `timeout` (`Ok(None)` if none does). A zero timeout still picks up
    /// whatever has already reached the socket, without blocking.
    ///
    /// Once the queue is empty and the server has closed the connection, this is
    /// [`ClientError::Closed`].
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            if !self.pump(deadline)? {
                return Ok(None);
            }
        }
    }

    /// Checks that the server is alive (and keeps an idle connection open).
    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.request("ping", Value::Null).map(drop)
    }

    /// Has the server send `data` back, unchanged.
    pub fn echo(&mut self, data: Value) -> Result<Value, ClientError> {
        let response = self.request("echo", json!({ "data": data }))?;
        field(response, "echo", "data")
    }

    /// Creates an account. It does not log this connection in.
    pub fn signup(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        self.request("signup", json!({ "user": user, "password": password }))
            .map(drop)
    }

    /// Logs this connection in; returns a session token for [`Client::resume`].
    pub fn login(&mut self, user: &str, password: &str) -> Result<String, ClientError> {
        let response = self.request("login", json!({ "user": user, "password": password }))?;
        field(response, "login", "session")
    }

    /// Logs this connection in with a session token from [`Client::login`]; returns
    /// the user name.
    pub fn resume(&mut self, session: &str) -> Result<String, ClientError> {
        let response = self.request("resume", json!({ "session": session }))?;
        field(response, "resume", "user")
    }

    /// Logs this connection out and revokes its session token.
    pub fn logout(&mut self) -> Result<(), ClientError> {
        self.request("logout", Value::Null).map(drop)
    }

    /// Who this connection is logged in as, and that user's rooms.
    pub fn whoami(&mut self) -> Result<Whoami, ClientError> {
        let response = self.request("whoami", Value::Null)?;
        decode(response, "whoami")
    }

    /// Creates a room, with this user as its first member.
    pub fn create(&mut self, room: &str, topic: Option<&str>) -> Result<(), ClientError> {
        let mut fields = json!({ "room": room });
        if let Some(topic) = topic {
            fields["topic"] = Value::from(topic);
        }
        self.request("create", fields).map(drop)
    }

    /// Joins a room (a no-op if already a member).
    pub fn join(&mut self, room: &str) -> Result<Joined, ClientError> {
        let response = self.request("join", json!({ "room": room }))?;
        decode(response, "join")
    }

    /// Leaves a room.
    pub fn leave(&mut self, room: &str) -> Result<(), ClientError> {
        self.request("leave", json!({ "room": room })).map(drop)
    }

    /// Lists every room, sorted by name (asking page after page when there are more
    /// than the server gives at once).
    pub fn rooms(&mut self) -> Result<Vec<RoomInfo>, ClientError> {
        let mut rooms = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let fields = after.map_or(Value::Null, |after| json!({ "after": after }));
            let mut response = self.request("rooms", fields)?;
            let next = response.get_mut("next").map(Value::take);
            rooms.extend(field::<Vec<RoomInfo>>(response, "rooms", "rooms")?);
            match next {
                None | Some(Value::Null) => return Ok(rooms),
                Some(Value::String(next)) => after = Some(next),
                Some(other) => {
                    return Err(ClientError::Protocol(format!(
                        "malformed `next` in `rooms` response: {other}"
                    )));
                }
            }
        }
    }

    /// Lists a room's members.
    pub fn members(&mut self, room: &str) -> Result<Vec<String>, ClientError> {
        let response = self.request("members", json!({ "room": room }))?;
        field(response, "members", "members")
    }

    /// Sends a message to a room; every other connection of its members gets it as
    /// an event.
    pub fn send(&mut self, room: &str, text: &str) -> Result<Sent, ClientError> {
        let response = self.request("send", json!({ "room": room, "text": text }))?;
        decode(response, "send")
    }

    /// Sends a direct message to a user; returns its `ts`.
    pub fn dm(&mut self, to: &str, text: &str) -> Result<u64, ClientError> {
        let response = self.request("dm", json!({ "to": to, "text": text }))?;
        field(response, "dm", "ts")
    }

    /// Reads stored messages of a room, oldest first.
    pub fn history(
        &mut self,
        room: &str,
        query: HistoryQuery,
    ) -> Result<Vec<Message>, ClientError> {
        let mut fields = serde_json::to_value(query)
            .map_err(|e| ClientError::Protocol(format!("cannot encode history query: {e}")))?;
        fields["room"] = Value::from(room);
        let response = self.request("history", fields)?;
        field(response, "history", "messages")
    }

    /// Says goodbye; the server answers, then closes the connection.
    pub fn quit(&mut self) -> Result<(), ClientError> {
        self.request("quit", Value::Null).map(drop)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.tcp.set_write_timeout(Some(self.timeout))?;
        match self.stream.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(e) if is_timeout(&e) => {
                // Part of the frame may have gone out; anything sent after it would be
                // glued onto it, so the connection cannot be trusted any more.
                let _ = self.stream.tcp.shutdown(Shutdown::Both);
                Err(ClientError::Timeout)
            }
            Err(e) if is_disconnect(&e) => Err(self.closed()),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the next response to a request, reading frames until one arrives.
    fn read_response(
        &mut self,
        deadline: Instant,
    ) -> Result<(u64, Map<String, Value>), ClientError> {
        loop {
            if let Some(response) = self.responses.pop_front() {
                return Ok(response);
            }
            if self.outstanding.is_empty() {
                return Err(ClientError::Protocol(
                    "waiting for a response with no request outstanding".to_owned(),
                ));
            }
            if !self.pump(deadline)? {
                return Err(ClientError::Timeout);
            }
        }
    }

    /// Reads one frame into the event or response queue; `Ok(false)` if none arrived
    /// before `deadline`.
    fn pump(&mut self, deadline: Instant) -> Result<bool, ClientError> {
        let line = match self.reader.next_line(&mut self.stream, deadline) {
            Ok(Line::Frame(line)) => line,
            Ok(Line::TimedOut) => return Ok(false),
            Ok(Line::Eof) => return Err(self.closed()),
            Err(ClientError::Io(e)) if is_disconnect(&e) => return Err(self.closed()),
            Err(e) => return Err(e),
        };
        let frame: Value = serde_json::from_slice(line).map_err(|e| {
            ClientError::Protocol(format!("server sent invalid JSON ({e}): {}", excerpt(line)))
        })?;
        let Value::Object(frame) = frame else {
            return Err(ClientError::Protocol(format!(
                "server sent a frame that is not an object: {frame}"
            )));
        };
        if frame.contains_key("event") {
            let event = parse_event(frame)?;
            if let Event::Closing { reason } = &event {
                self.closing_reason = Some(reason.clone());
            }
            self.events.push_back(event);
        } else if frame.contains_key("ok") {
            let Some(expected) = self.outstanding.pop_front() else {
                return Err(ClientError::Protocol(format!(
                    "response with no request outstanding: {}",
                    Value::Object(frame)
                )));
            };
            // A response without `id` is still ours: the server answers `bad_json` or
            // `frame_too_large` without one when it could not read the request's.
            if let Some(id) = frame.get("id")
                && id.as_u64() != Some(expected)
            {
                return Err(ClientError::Protocol(format!(
                    "response id {id} where {expected} was due"
                )));
            }
            self.responses.push_back((expected, frame));
        } else {
            return Err(ClientError::Protocol(format!(
                "frame is neither a response nor an event: {}",
                Value::Object(frame)
            )));
        }
        Ok(true)
    }

    fn closed(&self) -> ClientError {
        ClientError::Closed {
            reason: self.closing_reason.clone(),
        }
    }
}

/// Turns a response frame into the caller's result.
fn interpret(response: Map<String, Value>) -> Result<Value, ClientError> {
    match response.get("ok") {
        Some(Value::Bool(true)) => Ok(Value::Object(response)),
        Some(Value::Bool(false)) => {
            let Some(code) = response.get("error").and_then(Value::as_str) else {
                return Err(ClientError::Protocol(format!(
                    "error response without an error code: {}",
                    Value::Object(response)
                )));
            };
            let message = response.get("message").and_then(Value::as_str);
            Err(ClientError::Server {
                code: ErrorCode::parse(code),
                message: message.unwrap_or_default().to_owned(),
            })
        }
        _ => Err(ClientError::Protocol(format!(
            "response whose ok is not a boolean: {}",
            Value::Object(response)
        ))),
    }
}

fn parse_event(frame: Map<String, Value>) -> Result<Event, ClientError> {
    let known = frame
        .get("event")
        .and_then(Value::as_str)
        .is_some_and(|kind| KNOWN_EVENTS.contains(&kind));
    let frame = Value::Object(frame);
    if !known {
        return Ok(Event::Other(frame));
    }
    Event::deserialize(&frame)
        .map_err(|e| ClientError::Protocol(format!("malformed event ({e}): {frame}")))
}

/// Decodes a whole `ok` response of `op` into its typed answer.
fn decode<T: DeserializeOwned>(response: Value, op: &str) -> Result<T, ClientError> {
    T::deserialize(&response)
        .map_err(|e| ClientError::Protocol(format!("malformed `{op}` response ({e}): {response}")))
}

/// Decodes one field of an `ok` response of `op`.
fn field<T: DeserializeOwned>(response: Value, op: &str, name: &str) -> Result<T, ClientError> {
    let Some(value) = response.get(name) else {
        return Err(ClientError::Protocol(format!(
            "`{op}` response without `{name}`: {response}"
        )));
    };
    T::deserialize(value).map_err(|e| {
        ClientError::Protocol(format!(
            "malformed `{name}` in `{op}` response ({e}): {response}"
        ))
    })
}

/// The start of a bad line, for an error message that stays readable.
fn excerpt(line: &[u8]) -> String {
    const SHOWN: usize = 200;
    let text = String::from_utf8_lossy(&line[..line.len().min(SHOWN)]);
    if line.len() > SHOWN {
        format!("{text}... ({} bytes)", line.len())
    } else {
        text.into_owned()
    }
}

/// Whether a socket error is a read or write timeout (the kind differs by platform).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether a socket error means the server has gone away. Over TLS, a connection
/// closed without a TLS goodbye (`close_notify`) reads as `UnexpectedEof`; for a
/// protocol of whole lines that is a close like any other.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// What [`LineReader::next_line`] found.
enum Line<'a> {
    /// A complete line, without its `\n` or `\r\n`; never blank.
    Frame(&'a [u8]),
    TimedOut,
    Eof,
}

/// Splits the byte stream into lines. Bytes read stay in `buf` until their line is
/// complete, so a timeout in the middle of a line loses nothing.
#[derive(Default)]
struct LineReader {
    /// `buf[start..filled]` is received and not yet consumed; the rest is zeroed room
    /// for the next read, kept so that reads do not zero it again each time.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    /// How far past `start` has been searched for `\n` already, so a long line
    /// arriving in many reads is scanned once, not once per read.
    scanned: usize,
}

impl LineReader {
    fn next_line(
        &mut self,
        stream: &mut Transport,
        deadline: Instant,
    ) -> Result<Line<'_>, ClientError> {
        loop {
            let pending = &self.buf[self.start..self.filled];
            if let Some(at) = pending[self.scanned..].iter().position(|&b| b == b'\n') {
                let line_start = self.start;
                let mut end = line_start + self.scanned + at;
                self.start = end + 1;
                self.scanned = 0;
                if end > line_start && self.buf[end - 1] == b'\r' {
                    end -= 1;
                }
                // Indices, not a slice, until the return: a borrow of `buf` held across
                // the `continue` would outlive the loop's later mutation of it.
                if self.buf[line_start..end]
                    .iter()
                    .all(u8::is_ascii_whitespace)
                {
                    continue;
                }
                return Ok(Line::Frame(&self.buf[line_start..end]));
            }
            self.scanned = pending.len();
            if self.scanned > MAX_LINE {
                return Err(ClientError::Protocol(format!(
                    "server sent a line longer than {MAX_LINE} bytes"
                )));
            }
            // Only the incomplete line is left: move it to the front before reading
            // more, which costs at most one copy of it per read.
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
            if self.buf.len() < self.filled + READ_CHUNK {
                self.buf.resize(self.filled + READ_CHUNK, 0);
            }
            match stream.read(&mut self.buf[self.filled..], deadline) {
                Ok(0) => return Ok(Line::Eof),
                Ok(n) => self.filled += n,
                Err(e) if is_timeout(&e) => return Ok(Line::TimedOut),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The connection's bytes: the socket, and the TLS session over it if there is one.
struct Transport {
    /// Always the socket itself: timeouts and shutdown are set on it directly.
    tcp: TcpStream,
    /// Boxed because a session is large and a plain client has none.
    tls: Option<Box<ClientConnection>>,
}

impl Transport {
    /// One read of (plaintext) bytes into `room`, waiting no later than `deadline`;
    /// past it, takes only what has already arrived.
    fn read(&mut self, room: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let Some(conn) = &mut self.tls else {
            return with_deadline(&mut self.tcp, deadline, |tcp| tcp.read(room));
        };
        loop {
            match conn.reader().read(room) {
                // `Ok(0)` is the server's TLS goodbye; a close without one is an error.
                Ok(n) => return Ok(n),
                // No plaintext yet: another record must come off the socket.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // At the end of the stream this reads 0, and the reader above says so next.
            with_deadline(&mut self.tcp, deadline, |tcp| conn.read_tls(tcp))?;
            if let Err(e) = conn.process_new_packets() {
                send_alert(conn, &mut self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Whatever TLS owes the server after a record (a key update, say).
            while conn.wants_write() {
                conn.write_tls(&mut self.tcp)?;
            }
        }
    }

    /// Writes all of `bytes`, encrypted if over TLS, within the socket's write timeout.
    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let Some(conn) = &mut self.tls else {
            return self.tcp.write_all(bytes);
        };
        // rustls buffers a bounded amount, so a long frame goes in turns: encrypt what
        // fits, send it, repeat. Written by hand rather than through `rustls::Stream`,
        // whose writes also read the socket and could wait on it past the timeout.
        while !bytes.is_empty() || conn.wants_write() {
            let taken = conn.writer().write(bytes)?;
            bytes = &bytes[taken..];
            if taken == 0 && !conn.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            while conn.wants_write() {
                if conn.write_tls(&mut self.tcp)? == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
            }
        }
        Ok(())
    }
}

/// Runs `io` on `tcp` with a read timeout ending at `deadline`; past it, `io` only
/// takes what has already arrived.
fn with_deadline<T>(
    tcp: &mut TcpStream,
    deadline: Instant,
    io: impl FnOnce(&mut TcpStream) -> io::Result<T>,
) -> io::Result<T> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    // A zero read timeout means "block forever" to the OS, so poll instead.
    if remaining.is_zero() {
        tcp.set_nonblocking(true)?;
        let result = io(tcp);
        tcp.set_nonblocking(false)?;
        result
    } else {
        tcp.set_read_timeout(Some(remaining))?;
        io(tcp)
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

/// Sends the alert rustls queued on a failure, so the server's log says why (an
/// unknown CA, say). Best effort: the connection is failing anyway.
fn send_alert(conn: &mut ClientConnection, tcp: &mut TcpStream) {
    while conn.wants_write() {
        if !matches!(conn.write_tls(tcp), Ok(n) if n > 0) {
            return;
        }
    }
}

/// A rustls error as the user reads it, with a hint for the usual mistake.
fn describe_tls(e: &rustls::Error) -> String {
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
