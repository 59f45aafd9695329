//! The chat protocol's frames: a request frame to a typed [`Request`], and responses
//! and events to the bytes sent. Knows nothing of sockets or of chat state.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error_code::ErrorCode;

/// Longest `id`, as raw JSON text.
const MAX_ID_LEN: usize = 64;
/// Most messages one `history` may ask for, and the default.
const HISTORY_MAX_LIMIT: u64 = 500;
const HISTORY_DEFAULT_LIMIT: u64 = 50;

/// A request frame, parsed and checked for shape and types (not for names, lengths or
/// existence: that is the chat layer's).
#[derive(Debug)]
pub(crate) enum Request<'a> {
    Ping,
    Echo {
        data: Option<&'a RawValue>,
    },
    Signup {
        user: Cow<'a, str>,
        password: Cow<'a, str>,
    },
    Login {
        user: Cow<'a, str>,
        password: Cow<'a, str>,
    },
    Resume {
        session: Cow<'a, str>,
    },
    Logout,
    Whoami,
    Create {
        room: Cow<'a, str>,
        topic: Option<Cow<'a, str>>,
    },
    Join {
        room: Cow<'a, str>,
    },
    Leave {
        room: Cow<'a, str>,
    },
    Rooms,
    Members {
        room: Cow<'a, str>,
    },
    Send {
        room: Cow<'a, str>,
        text: Cow<'a, str>,
    },
    Dm {
        to: Cow<'a, str>,
        text: Cow<'a, str>,
    },
    History {
        room: Cow<'a, str>,
        query: HistoryQuery,
    },
    Quit,
}

impl Request<'_> {
    /// Whether the op may run before login.
    pub(crate) fn allowed_anonymously(&self) -> bool {
        matches!(
            self,
            Request::Ping
                | Request::Echo { .. }
                | Request::Signup { .. }
                | Request::Login { .. }
                | Request::Resume { .. }
                | Request::Rooms
                | Request::Quit
        )
    }
}

/// Which messages a `history` request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryQuery {
    /// Only messages with a smaller seq.
    pub(crate) before: Option<u64>,
    /// Only messages with a greater seq; the oldest ones first are taken.
    pub(crate) after: Option<u64>,
    /// How many at most (1..=500).
    pub(crate) limit: usize,
}

/// A request that cannot be served as written: the error response to send.
#[derive(Debug)]
pub(crate) struct Fault<'a> {
    /// The `id` to echo, when it could be read.
    pub(crate) id: Option<&'a RawValue>,
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    op: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Credentials<'a> {
    #[serde(borrow)]
    user: Cow<'a, str>,
    #[serde(borrow)]
    password: Cow<'a, str>,
}

#[derive(Deserialize)]
struct SessionField<'a> {
    #[serde(borrow)]
    session: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RoomField<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
}

#[derive(Deserialize)]
struct CreateFields<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct SendFields<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

#[derive(Deserialize)]
struct DmFields<'a> {
    #[serde(borrow)]
    to: Cow<'a, str>,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

#[derive(Deserialize)]
struct EchoFields<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct HistoryFields<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

/// Keeps a field that is present, even as `null` (which plain `Option` would make
/// `None`), so that `"id":null` is refused like any other id that is not a number or
/// a string.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn fault<'a>(id: Option<&'a RawValue>, code: ErrorCode, message: impl Into<String>) -> Fault<'a> {
    Fault {
        id,
        code,
        message: message.into(),
    }
}

/// The built-in operations, by the name a request gives in `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Ping,
    Echo,
    Signup,
    Login,
    Resume,
    Logout,
    Whoami,
    Create,
    Join,
    Leave,
    Rooms,
    Members,
    Send,
    Dm,
    History,
    Quit,
}

impl OpKind {
    /// Every built-in op and its wire name: the first entries of the dispatch table.
    pub(crate) const ALL: [(&'static str, OpKind); 16] = [
        ("ping", OpKind::Ping),
        ("echo", OpKind::Echo),
        ("signup", OpKind::Signup),
        ("login", OpKind::Login),
        ("resume", OpKind::Resume),
        ("logout", OpKind::Logout),
        ("whoami", OpKind::Whoami),
        ("create", OpKind::Create),
        ("join", OpKind::Join),
        ("leave", OpKind::Leave),
        ("rooms", OpKind::Rooms),
        ("members", OpKind::Members),
        ("send", OpKind::Send),
        ("dm", OpKind::Dm),
        ("history", OpKind::History),
        ("quit", OpKind::Quit),
    ];
}

/// A request frame whose envelope is valid: a JSON object with a good `id` (if any)
/// and a string `op`. The op's own fields are not looked at yet.
#[derive(Debug)]
pub(crate) struct Head<'a> {
    /// The `id` to echo, as written.
    pub(crate) id: Option<&'a RawValue>,
    /// The op's name.
    pub(crate) op: Cow<'a, str>,
    /// The whole frame, for the op's fields.
    pub(crate) text: &'a str,
}

/// Checks a frame's envelope (without its newline): JSON object, `id`, `op`.
pub(crate) fn parse_head(frame: &[u8]) -> Result<Head<'_>, Fault<'_>> {
    let Ok(text) = std::str::from_utf8(frame) else {
        return Err(fault(
            None,
            ErrorCode::BadJson,
            "the frame is not valid UTF-8",
        ));
    };
    if !text.trim_start().starts_with('{') {
        return Err(fault(
            None,
            ErrorCode::BadJson,
            "the frame is not a JSON object",
        ));
    }
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::BadRequest
        } else {
            ErrorCode::BadJson
        };
        fault(None, code, format!("the frame is not a valid request: {e}"))
    })?;
    let id = match envelope.id {
        Some(raw) if !valid_id(raw.get()) => {
            return Err(fault(
                None,
                ErrorCode::BadRequest,
                "`id` must be a number or a string of at most 64 bytes",
            ));
        }
        id => id,
    };
    let Some(op) = envelope.op else {
        return Err(fault(id, ErrorCode::BadRequest, "the request has no `op`"));
    };
    let Ok(op) = serde_json::from_str::<Cow<'_, str>>(op.get()) else {
        return Err(fault(id, ErrorCode::BadRequest, "`op` must be a string"));
    };
    Ok(Head { id, op, text })
}

/// The `unknown_op` answer for a head whose op is in no table.
pub(crate) fn unknown_op<'a>(head: &Head<'a>) -> Fault<'a> {
    fault(
        head.id,
        ErrorCode::UnknownOp,
        format!("unknown op `{}`", head.op),
    )
}

/// Reads the fields of built-in op `kind` from the frame.
pub(crate) fn parse_request<'a>(head: &Head<'a>, kind: OpKind) -> Result<Request<'a>, Fault<'a>> {
    let (id, text) = (head.id, head.text);
    let body = |e: serde_json::Error| {
        fault(
            id,
            ErrorCode::BadRequest,
            format!("bad `{}` request: {e}", head.op),
        )
    };
    let request = match kind {
        OpKind::Ping => Request::Ping,
        OpKind::Echo => {
            let f: EchoFields<'_> = serde_json::from_str(text).map_err(body)?;
            Request::Echo { data: f.data }
        }
        OpKind::Signup => {
            let f: Credentials<'_> = serde_json::from_str(text).map_err(body)?;
            Request::Signup {
                user: f.user,
                password: f.password,
            }
        }
        OpKind::Login => {
            let f: Credentials<'_> = serde_json::from_str(text).map_err(body)?;
            Request::Login {
                user: f.user,
                password: f.password,
            }
        }
        OpKind::Resume => {
            let f: SessionField<'_> = serde_json::from_str(text).map_err(body)?;
            Request::Resume { session: f.session }
        }
        OpKind::Logout => Request::Logout,
        OpKind::Whoami => Request::Whoami,
        OpKind::Create => {
            let f: CreateFields<'_> = serde_json::from_str(text).map_err(body)?;
            Request::Create {
                room: f.room,
                topic: f.topic,
            }
        }
        OpKind::Join | OpKind::Leave | OpKind::Members => {
            let f: RoomField<'_> = serde_json::from_str(text).map_err(body)?;
            match kind {
                OpKind::Join => Request::Join { room: f.room },
                OpKind::Leave => Request::Leave { room: f.room },
                _ => Request::Members { room: f.room },
            }
        }
        OpKind::Rooms => Request::Rooms,
        OpKind::Send => {
            let f: SendFields<'_> = serde_json::from_str(text).map_err(body)?;
            non_empty(id, &f.text)?;
            Request::Send {
                room: f.room,
                text: f.text,
            }
        }
        OpKind::Dm => {
            let f: DmFields<'_> = serde_json::from_str(text).map_err(body)?;
            non_empty(id, &f.text)?;
            Request::Dm {
                to: f.to,
                text: f.text,
            }
        }
        OpKind::History => {
            let f: HistoryFields<'_> = serde_json::from_str(text).map_err(body)?;
            let limit = f.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
            if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
                return Err(fault(
                    id,
                    ErrorCode::BadRequest,
                    "`limit` must be between 1 and 500",
                ));
            }
            Request::History {
                room: f.room,
                query: HistoryQuery {
                    before: f.before,
                    after: f.after,
                    limit: limit as usize,
                },
            }
        }
        OpKind::Quit => Request::Quit,
    };
    Ok(request)
}

fn non_empty<'a>(id: Option<&'a RawValue>, text: &str) -> Result<(), Fault<'a>> {
    if text.is_empty() {
        Err(fault(id, ErrorCode::BadRequest, "`text` must not be empty"))
    } else {
        Ok(())
    }
}

fn valid_id(raw: &str) -> bool {
    raw.len() <= MAX_ID_LEN && matches!(raw.as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
}

/// A success response under construction: `{"id":..,"ok":true` then fields.
pub(crate) struct Reply {
    buf: Vec<u8>,
}

impl Reply {
    /// Starts `{"id":<id>,"ok":true`; `id` is written back byte for byte.
    pub(crate) fn ok(id: Option<&RawValue>) -> Reply {
        let mut buf = open_response(id);
        buf.extend_from_slice(b"\"ok\":true");
        Reply { buf }
    }

    /// Adds `,"name":<value as JSON>`.
    pub(crate) fn field<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Reply {
        self.key(name);
        json_into(&mut self.buf, value);
        self
    }

    /// Adds `,"name":[e1,e2,..]` where each element is already-encoded JSON (e.g. a
    /// stored event line, whose trailing newline is dropped).
    pub(crate) fn raw_array<'b>(
        mut self,
        name: &str,
        items: impl Iterator<Item = &'b [u8]>,
    ) -> Reply {
        self.key(name);
        self.buf.push(b'[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf
                .extend_from_slice(item.strip_suffix(b"\n").unwrap_or(item));
        }
        self.buf.push(b']');
        self
    }

    fn key(&mut self, name: &str) {
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// Closes the object and the line.
    pub(crate) fn finish(mut self) -> Bytes {
        self.buf.extend_from_slice(b"}\n");
        Bytes::from(self.buf)
    }
}

/// A success response carrying an embedder's answer: an object's fields are the
/// response's (`id` and `ok` excepted), `null` adds nothing, anything else is `result`.
pub(crate) fn reply_with(id: Option<&RawValue>, value: serde_json::Value) -> Bytes {
    match value {
        serde_json::Value::Object(fields) => fields
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "id" | "ok"))
            .fold(Reply::ok(id), |reply, (name, value)| {
                reply.field(name, value)
            })
            .finish(),
        serde_json::Value::Null => Reply::ok(id).finish(),
        other => Reply::ok(id).field("result", &other).finish(),
    }
}

/// An error response: `{"id":..,"ok":false,"error":<code>,"message":<message>}`.
pub(crate) fn error(id: Option<&RawValue>, code: &ErrorCode, message: &str) -> Bytes {
    let mut buf = open_response(id);
    buf.extend_from_slice(b"\"ok\":false,\"error\":");
    json_into(&mut buf, code.as_str());
    buf.extend_from_slice(b",\"message\":");
    json_into(&mut buf, message);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// `{` and, if there is one, `"id":<id>,`.
fn open_response(id: Option<&RawValue>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(96);
    buf.push(b'{');
    if let Some(id) = id {
        buf.extend_from_slice(b"\"id\":");
        buf.extend_from_slice(id.get().as_bytes());
        buf.push(b',');
    }
    buf
}

fn json_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(buf, value).expect("serialising to a Vec cannot fail");
}

/// A `message` event, as sent live and as kept for `history`.
#[derive(Serialize)]
pub(crate) struct MessageEvent<'a> {
    pub(crate) room: &'a str,
    pub(crate) from: &'a str,
    pub(crate) text: &'a str,
    pub(crate) seq: u64,
    pub(crate) ts: u64,
}

/// A `dm` event.
#[derive(Serialize)]
pub(crate) struct DmEvent<'a> {
    pub(crate) from: &'a str,
    pub(crate) text: &'a str,
    pub(crate) ts: u64,
}

/// A `joined` or `left` event's fields.
#[derive(Serialize)]
pub(crate) struct MemberEvent<'a> {
    pub(crate) room: &'a str,
    pub(crate) user: &'a str,
}

/// A `closing` event's fields.
#[derive(Serialize)]
pub(crate) struct ClosingEvent<'a> {
    pub(crate) reason: &'a str,
}

/// Encodes `{"event":<name>,...fields}\n` once, to be shared by every recipient.
pub(crate) fn event<T: Serialize>(name: &str, fields: &T) -> Bytes {
    let fields = serde_json::to_vec(fields).expect("serialising to a Vec cannot fail");
    event_with(name, &fields)
}

/// Encodes an embedder's event, whose `fields` must serialise to a JSON object.
pub(crate) fn custom_event<T: Serialize + ?Sized>(name: &str, fields: &T) -> Result<Bytes, String> {
    let fields = serde_json::to_vec(fields).map_err(|e| format!("cannot encode the event: {e}"))?;
    if fields.first() != Some(&b'{') {
        return Err(format!(
            "the fields of event `{name}` must be a JSON object"
        ));
    }
    Ok(event_with(name, &fields))
}

/// `fields` is an encoded JSON object; its opening brace gives way to the name.
fn event_with(name: &str, fields: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(fields.len() + name.len() + 16);
    buf.extend_from_slice(b"{\"event\":");
    json_into(&mut buf, name);
    if fields.len() > 2 {
        buf.push(b',');
    }
    buf.extend_from_slice(&fields[1..]);
    buf.push(b'\n');
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a frame as the built-in dispatch table would.
    fn parse(frame: &[u8]) -> Result<(Option<&RawValue>, Request<'_>), Fault<'_>> {
        let head = parse_head(frame)?;
        match OpKind::ALL.iter().find(|(name, _)| *name == head.op) {
            Some(&(_, kind)) => parse_request(&head, kind).map(|r| (head.id, r)),
            None => Err(unknown_op(&head)),
        }
    }

    fn code(frame: &str) -> ErrorCode {
        parse(frame.as_bytes())
            .err()
            .map(|f| f.code)
            .expect("a fault")
    }

    #[test]
    fn general_errors() {
        assert_eq!(code("[1]"), ErrorCode::BadJson);
        assert_eq!(code("{\"op\":"), ErrorCode::BadJson);
        assert_eq!(code("{}"), ErrorCode::BadRequest);
        assert_eq!(code("{\"op\":5}"), ErrorCode::BadRequest);
        assert_eq!(code("{\"op\":\"nope\"}"), ErrorCode::UnknownOp);
        assert_eq!(
            code("{\"op\":\"send\",\"room\":\"a\"}"),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code("{\"op\":\"send\",\"room\":\"a\",\"text\":\"\"}"),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code("{\"op\":\"history\",\"room\":\"a\",\"limit\":0}"),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code("{\"op\":\"history\",\"room\":\"a\",\"before\":-1}"),
            ErrorCode::BadRequest
        );
        assert_eq!(code("{\"id\":true,\"op\":\"ping\"}"), ErrorCode::BadRequest);
        assert!(
            parse(b"{\"id\":true,\"op\":\"ping\"}")
                .unwrap_err()
                .id
                .is_none()
        );
    }

    #[test]
    fn id_comes_back_verbatim() {
        let (id, req) = parse(br#"{"id": 1.50 ,"op":"ping","extra":[1]}"#).unwrap();
        assert!(matches!(req, Request::Ping));
        let reply = Reply::ok(id).field("pong", &true).finish();
        assert_eq!(&reply[..], b"{\"id\":1.50,\"ok\":true,\"pong\":true}\n");
    }

    #[test]
    fn error_and_event_encoding() {
        let id = RawValue::from_string("\"a\\u0041\"".into()).unwrap();
        let e = error(Some(&id), &ErrorCode::NoSuchRoom, "no \"x\"");
        assert_eq!(
            &e[..],
            b"{\"id\":\"a\\u0041\",\"ok\":false,\"error\":\"no_such_room\",\"message\":\"no \\\"x\\\"\"}\n"
        );
        let e = error(None, &ErrorCode::BadJson, "m");
        assert_eq!(
            &e[..],
            b"{\"ok\":false,\"error\":\"bad_json\",\"message\":\"m\"}\n"
        );
        let ev = event(
            "left",
            &MemberEvent {
                room: "r",
                user: "u",
            },
        );
        assert_eq!(
            &ev[..],
            b"{\"event\":\"left\",\"room\":\"r\",\"user\":\"u\"}\n"
        );
    }
}
