//! Answers and events to the bytes sent: every key and string goes through
//! serde_json, so whatever a name holds, the frame is valid JSON. Parsing requests is
//! `request`'s.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error_code::ErrorCode;

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

    /// `,"name":`, the name escaped: an embedder's keys may hold anything.
    fn key(&mut self, name: &str) {
        self.buf.push(b',');
        json_into(&mut self.buf, name);
        self.buf.push(b':');
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
    error_with(id, code, message, None, &[])
}

/// An error response, with `"retry_after":<milliseconds>` when given (`server_busy`,
/// `rate_limited`: when trying again has a chance), then the `extra` fields (such as
/// `not_member`'s `user`, `banned`'s `scope` and `reason`).
pub(crate) fn error_with(
    id: Option<&RawValue>,
    code: &ErrorCode,
    message: &str,
    retry_after: Option<u64>,
    extra: &[(&str, serde_json::Value)],
) -> Bytes {
    let mut buf = open_response(id);
    buf.extend_from_slice(b"\"ok\":false,\"error\":");
    json_into(&mut buf, code.as_str());
    buf.extend_from_slice(b",\"message\":");
    json_into(&mut buf, message);
    if let Some(ms) = retry_after {
        buf.extend_from_slice(b",\"retry_after\":");
        json_into(&mut buf, &ms);
    }
    for (name, value) in extra {
        buf.push(b',');
        json_into(&mut buf, name);
        buf.push(b':');
        json_into(&mut buf, value);
    }
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// `{` and, if there is one, `"id":<id>,`.
fn open_response(id: Option<&RawValue>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(96);
    buf.extend_from_slice(b"{");
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
    /// `None` for a deleted message's protocol-2 stub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<&'a str>,
    pub(crate) seq: u64,
    pub(crate) ts: u64,
    /// The seq of the message this one answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reply_to: Option<u64>,
    #[serde(flatten)]
    pub(crate) changes: ChangesFields<'a>,
}

/// What `history` shows of a message's edits, deletion and reactions (issue 17 items
/// 3 and 4); all absent for a message without any.
#[derive(Serialize, Default)]
pub(crate) struct ChangesFields<'a> {
    /// When the text was last edited (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) edited_ts: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) deleted: bool,
    /// Users by emoji.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reactions: Option<&'a BTreeMap<String, BTreeSet<String>>>,
}

/// Where a message is, as an event about it names it: `room`, or `with` (the other
/// party of a DM conversation as the receiving user sees it).
#[derive(Serialize)]
pub(crate) struct PlaceFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) with: Option<&'a str>,
}

/// An `edited` event: message `seq` now reads `text`, edited by `by` at `edited_ts`.
#[derive(Serialize)]
pub(crate) struct EditedEvent<'a> {
    #[serde(flatten)]
    pub(crate) place: PlaceFields<'a>,
    pub(crate) seq: u64,
    pub(crate) text: &'a str,
    pub(crate) edited_ts: u64,
    pub(crate) by: &'a str,
}

/// A `deleted` event: message `seq` was deleted by `by`.
#[derive(Serialize)]
pub(crate) struct DeletedEvent<'a> {
    #[serde(flatten)]
    pub(crate) place: PlaceFields<'a>,
    pub(crate) seq: u64,
    pub(crate) by: &'a str,
}

/// A `reaction` event: `user` added (or took back) `emoji` on message `seq`.
#[derive(Serialize)]
pub(crate) struct ReactionEvent<'a> {
    #[serde(flatten)]
    pub(crate) place: PlaceFields<'a>,
    pub(crate) seq: u64,
    pub(crate) emoji: &'a str,
    pub(crate) user: &'a str,
    pub(crate) added: bool,
}

/// A `dm` event as protocol 1 has it.
#[derive(Serialize)]
pub(crate) struct DmEvent<'a> {
    pub(crate) from: &'a str,
    pub(crate) text: &'a str,
    pub(crate) ts: u64,
}

/// A `dm` event as protocol 2 has it (PROTOCOL-2 section 3): `with` is the other
/// party as the receiving user sees it (oneself in a DM to oneself).
#[derive(Serialize)]
pub(crate) struct DmEvent2<'a> {
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) with: &'a str,
    pub(crate) seq: u64,
    pub(crate) ts: u64,
    /// `None` for a deleted DM's protocol-2 stub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reply_to: Option<u64>,
    #[serde(flatten)]
    pub(crate) changes: ChangesFields<'a>,
}

/// A `joined` or `left` event's fields.
#[derive(Serialize)]
pub(crate) struct MemberEvent<'a> {
    pub(crate) room: &'a str,
    pub(crate) user: &'a str,
}

/// A `role` event's fields: `user` now has `role` in `room`, by `by`'s doing.
#[derive(Serialize)]
pub(crate) struct RoleEvent<'a> {
    pub(crate) room: &'a str,
    pub(crate) user: &'a str,
    pub(crate) role: &'a str,
    pub(crate) by: &'a str,
}

/// A `topic` event's fields.
#[derive(Serialize)]
pub(crate) struct TopicEvent<'a> {
    pub(crate) room: &'a str,
    pub(crate) topic: &'a str,
    pub(crate) by: &'a str,
}

/// A `kicked` event's fields (`reason`: null when none was given).
#[derive(Serialize)]
pub(crate) struct KickedEvent<'a> {
    pub(crate) room: &'a str,
    pub(crate) user: &'a str,
    pub(crate) by: &'a str,
    pub(crate) reason: Option<&'a str>,
    /// Removed by a `ban` (kept out), not a `kick`.
    pub(crate) banned: bool,
}

/// An `invited` or `room_deleted` event's fields.
#[derive(Serialize)]
pub(crate) struct ByEvent<'a> {
    pub(crate) room: &'a str,
    pub(crate) by: &'a str,
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
    if !fields.starts_with(b"{") {
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
    use serde_json::value::RawValue;

    use super::*;

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
