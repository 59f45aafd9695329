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
struct Head<'a> {
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

/// Parses one frame (without its newline). On success returns the `id` to echo and
/// the request; otherwise the error response to send.
pub(crate) fn parse(frame: &[u8]) -> Result<(Option<&RawValue>, Request<'_>), Fault<'_>> {
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
    let head: Head<'_> = serde_json::from_str(text).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::BadRequest
        } else {
            ErrorCode::BadJson
        };
        fault(None, code, format!("the frame is not a valid request: {e}"))
    })?;
    let id = match head.id {
        Some(raw) if !valid_id(raw.get()) => {
            return Err(fault(
                None,
                ErrorCode::BadRequest,
                "`id` must be a number or a string of at most 64 bytes",
            ));
        }
        id => id,
    };
    let Some(op) = head.op else {
        return Err(fault(id, ErrorCode::BadRequest, "the request has no `op`"));
    };
    let Ok(op) = serde_json::from_str::<Cow<'_, str>>(op.get()) else {
        return Err(fault(id, ErrorCode::BadRequest, "`op` must be a string"));
    };
    let body = |e: serde_json::Error| {
        fault(
            id,
            ErrorCode::BadRequest,
            format!("bad `{op}` request: {e}"),
        )
    };
    let request = match op.as_ref() {
        "ping" => Request::Ping,
        "echo" => {
            let f: EchoFields<'_> = serde_json::from_str(text).map_err(body)?;
            Request::Echo { data: f.data }
        }
        "signup" | "login" => {
            let f: Credentials<'_> = serde_json::from_str(text).map_err(body)?;
            if op == "signup" {
                Request::Signup {
                    user: f.user,
                    password: f.password,
                }
            } else {
                Request::Login {
                    user: f.user,
                    password: f.password,
                }
            }
        }
        "resume" => {
            let f: SessionField<'_> = serde_json::from_str(text).map_err(body)?;
            Request::Resume { session: f.session }
        }
        "logout" => Request::Logout,
        "whoami" => Request::Whoami,
        "create" => {
            let f: CreateFields<'_> = serde_json::from_str(text).map_err(body)?;
            Request::Create {
                room: f.room,
                topic: f.topic,
            }
        }
        "join" | "leave" | "members" => {
            let f: RoomField<'_> = serde_json::from_str(text).map_err(body)?;
            match op.as_ref() {
                "join" => Request::Join { room: f.room },
                "leave" => Request::Leave { room: f.room },
                _ => Request::Members { room: f.room },
            }
        }
        "rooms" => Request::Rooms,
        "send" => {
            let f: SendFields<'_> = serde_json::from_str(text).map_err(body)?;
            non_empty(id, &f.text)?;
            Request::Send {
                room: f.room,
                text: f.text,
            }
        }
        "dm" => {
            let f: DmFields<'_> = serde_json::from_str(text).map_err(body)?;
            non_empty(id, &f.text)?;
            Request::Dm {
                to: f.to,
                text: f.text,
            }
        }
        "history" => {
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
        "quit" => Request::Quit,
        _ => {
            return Err(fault(
                id,
                ErrorCode::UnknownOp,
                format!("unknown op `{op}`"),
            ));
        }
    };
    Ok((id, request))
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
    let mut buf = Vec::with_capacity(fields.len() + name.len() + 16);
    buf.extend_from_slice(b"{\"event\":");
    json_into(&mut buf, name);
    buf.push(b',');
    // The fields' own opening brace is replaced by the event name before them.
    buf.extend_from_slice(&fields[1..]);
    buf.push(b'\n');
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

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
