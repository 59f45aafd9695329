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
//! A client speaks protocol 1 until [`Client::hello`] asks for 2 (PROTOCOL-2 section
//! 1), so code written against v1 sees no change. Protocol 2 adds typed methods for
//! room moderation ([`Client::set_role`], [`Client::set_topic`], [`Client::kick`],
//! [`Client::ban`], [`Client::unban`], [`Client::bans`], [`Client::set_room`],
//! [`Client::invite`], [`Client::create_with`] for an invite-only room,
//! [`Client::delete_room`]), accounts ([`Client::change_password`],
//! [`Client::delete_account`], [`Client::block`], [`Client::unblock`],
//! [`Client::blocks`]) and messages ([`Client::send_with`] and [`Client::dm_with`]
//! with a nonce ([`fresh_nonce`]) or `reply_to`, [`Client::dm_history`],
//! [`Client::conversations`]), and the events [`Event::Role`], [`Event::Topic`],
//! [`Event::Kicked`], [`Event::Invited`], [`Event::RoomDeleted`] and
//! [`Event::DirectMessage`]. Which of them a server has, [`Hello::features`] says.
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

mod accounts;
mod admin;
mod edits;
mod error;
mod frames;
mod ops;
mod presence;
mod rooms;
mod stream;
mod tls;

use std::collections::VecDeque;
use std::fmt;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ErrorCode;
pub use admin::ConnectionInfo;
pub use error::ClientError;
use frames::KNOWN_EVENTS;
pub use frames::{
    Ban, Conversation, CreateOptions, DirectMessage, DmSent, Event, Hello, HistoryQuery, Joined,
    Limits, Message, MessageChanges, Place, Role, RoomInfo, SendOptions, Sent, Whoami,
};
pub use presence::{PresenceStatus, Target, Unread, UnreadCount};
pub use stream::MAX_LINE;
use stream::{Line, LineReader, Transport, excerpt, is_disconnect, is_timeout};
#[cfg(feature = "cli")]
pub(crate) use tls::server_name_of;
pub use tls::{DEFAULT_HANDSHAKE_TIMEOUT, TlsOptions};

/// How long a request waits for its response unless [`Client::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The protocol version the connection speaks: 1 until [`Client::hello`] says
    /// otherwise. It decides how a `dm` event is typed.
    protocol: u64,
    closing_reason: Option<String>,
    /// Whether any frame has come from the server yet.
    heard: bool,
    /// Whether the server's first frame was `closing`: it turned the connection away.
    refused: bool,
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
            .field("protocol", &self.protocol)
            .field("closing_reason", &self.closing_reason)
            .field("refused", &self.refused)
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

    fn over(stream: Transport) -> Client {
        Client {
            stream,
            reader: LineReader::default(),
            next_id: 1,
            outstanding: VecDeque::new(),
            responses: VecDeque::new(),
            events: VecDeque::new(),
            timeout: DEFAULT_TIMEOUT,
            protocol: 1,
            closing_reason: None,
            heard: false,
            refused: false,
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
            Err(e) if is_disconnect(&e) => {
                // The server may have said why before it closed (`closing`, say
                // `server_full`): take what already arrived, so the error can tell.
                while let Ok(true) = self.pump(Instant::now()) {}
                Err(self.closed())
            }
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
            let event = parse_event(frame, self.protocol)?;
            if let Event::Closing { reason } = &event {
                self.closing_reason = Some(reason.clone());
                self.refused = !self.heard;
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
        self.heard = true;
        Ok(true)
    }

    /// The error for a connection the server has closed.
    fn closed(&self) -> ClientError {
        match &self.closing_reason {
            Some(reason) if self.refused => ClientError::Refused {
                reason: reason.clone(),
            },
            reason => ClientError::Closed {
                reason: reason.clone(),
            },
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

/// Types an event frame that came on a connection speaking `protocol`; a kind
/// [`Event`] does not model stays whole as [`Event::Other`].
fn parse_event(frame: Map<String, Value>, protocol: u64) -> Result<Event, ClientError> {
    let kind = frame.get("event").and_then(Value::as_str);
    let known = kind.is_some_and(|kind| KNOWN_EVENTS.contains(&kind));
    // A server without DM history (no `dm_history` feature) sends v1's form even in
    // protocol 2: only a `dm` with a `seq` has the protocol-2 fields.
    let v2_dm = protocol >= 2 && kind == Some("dm") && frame.contains_key("seq");
    let frame = Value::Object(frame);
    let malformed =
        |e: serde_json::Error| ClientError::Protocol(format!("malformed event ({e}): {frame}"));
    if v2_dm {
        DirectMessage::deserialize(&frame)
            .map(Event::DirectMessage)
            .map_err(malformed)
    } else if known {
        Event::deserialize(&frame).map_err(malformed)
    } else {
        Ok(Event::Other(frame))
    }
}

/// A new random nonce for [`SendOptions::nonce`]: 128 bits as 32 hex digits, so two
/// never meet in the 24 h a server keeps them.
pub fn fresh_nonce() -> String {
    let mut raw = [0u8; 16];
    // Without the OS's random source there is nothing sound to fall back on; the
    // server's own session tokens make the same assumption.
    getrandom::fill(&mut raw).expect("the OS random source failed");
    hex::encode(raw)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(frame: Value, protocol: u64) -> Event {
        let Value::Object(frame) = frame else {
            panic!("not an object: {frame}")
        };
        parse_event(frame, protocol).expect("parses")
    }

    #[test]
    fn a_dm_is_typed_by_the_connections_protocol() {
        let frame = json!({"event": "dm", "from": "bob", "to": "ada", "with": "bob",
            "seq": 3, "ts": 9, "text": "psst", "reply_to": 1});
        assert_eq!(
            event(frame.clone(), 1),
            Event::Dm {
                from: "bob".into(),
                text: "psst".into(),
                ts: 9
            }
        );
        assert_eq!(
            event(frame, 2),
            Event::DirectMessage(DirectMessage {
                from: "bob".into(),
                to: "ada".into(),
                with: "bob".into(),
                seq: 3,
                ts: 9,
                text: "psst".into(),
                reply_to: Some(1),
                changes: Default::default(),
            })
        );
    }

    #[test]
    fn a_dm_without_seq_stays_in_v1_form_on_protocol_2() {
        let frame = json!({"event": "dm", "from": "bob", "text": "psst", "ts": 9});
        assert!(matches!(event(frame, 2), Event::Dm { .. }));
    }

    #[test]
    fn protocol_2_events_decode() {
        let kicked = json!({"event": "kicked", "room": "r", "user": "bob", "by": "ada",
            "reason": null});
        assert_eq!(
            event(kicked, 2),
            Event::Kicked {
                room: "r".into(),
                user: "bob".into(),
                by: "ada".into(),
                reason: None,
                banned: false
            }
        );
        let role = json!({"event": "role", "room": "r", "user": "bob", "role": "op", "by": "ada"});
        assert!(matches!(event(role, 2), Event::Role { role: Role::Op, .. }));
        let message = json!({"event": "message", "room": "r", "from": "bob", "text": "hi",
            "seq": 2, "ts": 5, "reply_to": 1});
        assert!(matches!(
            event(message, 2),
            Event::Message(Message {
                reply_to: Some(1),
                ..
            })
        ));
        let typing = json!({"event": "typing", "room": "r", "user": "bob", "active": true});
        assert!(matches!(
            event(typing, 2),
            Event::Typing { active: true, .. }
        ));
        let future = json!({"event": "from_the_future", "room": "r", "seq": 1});
        assert_eq!(event(future.clone(), 2), Event::Other(future));
        let Value::Object(broken) = json!({"event": "topic", "room": "r"}) else {
            unreachable!()
        };
        assert!(matches!(
            parse_event(broken, 2),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn hello_decodes_and_names_features() {
        let hello: Hello = serde_json::from_value(json!({"ok": true, "server": "parlor",
            "version": "0.1.0", "protocol": 2, "features": ["roles", "idempotency"],
            "limits": {"max_frame": 65536, "max_text": 4096, "max_enc": 12288,
                "history_max": 500, "idle_timeout": 300, "max_frame_rate": 0}}))
        .expect("decodes");
        assert_eq!(hello.protocol, 2);
        assert!(hello.has("idempotency") && !hello.has("typing"));
        assert_eq!(hello.limits.history_max, 500);
    }

    #[test]
    fn options_encode_only_what_is_set() {
        assert_eq!(
            serde_json::to_value(SendOptions::default()).expect("encodes"),
            json!({})
        );
        let options = SendOptions {
            nonce: Some("n1".into()),
            reply_to: Some(4),
        };
        assert_eq!(
            serde_json::to_value(&options).expect("encodes"),
            json!({"nonce": "n1", "reply_to": 4})
        );
        let create = CreateOptions {
            topic: None,
            invite_only: true,
        };
        assert_eq!(
            serde_json::to_value(&create).expect("encodes"),
            json!({"invite_only": true})
        );
        assert_eq!(
            serde_json::to_value(Role::Owner).expect("encodes"),
            json!("owner")
        );
    }

    #[test]
    fn nonces_are_fresh_and_fit_the_limit() {
        let (a, b) = (fresh_nonce(), fresh_nonce());
        assert_ne!(a, b);
        assert!((1..=64).contains(&a.len()), "{a}");
    }
}
