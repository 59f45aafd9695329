//! A request frame's envelope (`id`, `op`) and what every op's parser shares: the
//! fault it answers with, reading its fields, and paging (PROTOCOL-2 section 4). The
//! ops' own fields are `request`'s (and `admin`'s, `edits`'); this file imports none
//! of them, so they all build on it without importing each other.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error_code::ErrorCode;

/// Longest `id`: a string's own bytes (decoded, quotes and escapes not counted), a
/// number's text.
const MAX_ID_LEN: usize = 64;

/// Most entries of one page of a list (`rooms`), and the default (PROTOCOL-2 §4).
const PAGE_MAX_LIMIT: u64 = 1000;

/// Which page of a list a request asks for (PROTOCOL-2 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page<'a> {
    /// The `next` of the previous page: entries after it.
    pub(crate) after: Option<Cow<'a, str>>,
    /// How many at most (1..=1000, default 1000).
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
struct PageFields<'a> {
    #[serde(borrow, default)]
    after: Option<Cow<'a, str>>,
    #[serde(default)]
    limit: Option<u64>,
}

/// Keeps a field that is present, even as `null` (which plain `Option` would make
/// `None`), so that `"id":null` is refused like any other id that is not a number or
/// a string.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

pub(crate) fn fault<'a>(
    id: Option<&'a RawValue>,
    code: ErrorCode,
    message: impl Into<String>,
) -> Fault<'a> {
    Fault {
        id,
        code,
        message: message.into(),
    }
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
    if !text.trim_start().starts_with("{") {
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

/// The op's fields as `T`; a frame that does not fit is `bad_request`.
pub(crate) fn fields<'a, T: Deserialize<'a>>(head: &Head<'a>) -> Result<T, Fault<'a>> {
    serde_json::from_str(head.text).map_err(|e| {
        fault(
            head.id,
            ErrorCode::BadRequest,
            format!("bad `{}` request: {e}", head.op),
        )
    })
}

/// The `limit` and `after` of a list op.
pub(crate) fn page<'a>(head: &Head<'a>) -> Result<Page<'a>, Fault<'a>> {
    let f: PageFields<'_> = fields(head)?;
    let limit = limit(head.id, f.limit, PAGE_MAX_LIMIT, PAGE_MAX_LIMIT)?;
    Ok(Page {
        after: f.after,
        limit,
    })
}

/// A `limit` field: `default` when absent, else 1..=`max`.
pub(crate) fn limit<'a>(
    id: Option<&'a RawValue>,
    given: Option<u64>,
    default: u64,
    max: u64,
) -> Result<usize, Fault<'a>> {
    let limit = given.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(fault(
            id,
            ErrorCode::BadRequest,
            format!("`limit` must be between 1 and {max}"),
        ));
    }
    usize::try_from(limit).map_err(|_| fault(id, ErrorCode::BadRequest, "`limit` is too large"))
}

/// A number (its text at most 64 bytes) or a string (its own bytes, decoded, at most
/// 64: `"é"` is 2 bytes, `"\u00e9"` too).
fn valid_id(raw: &str) -> bool {
    match raw.as_bytes().first() {
        Some(b'"') => {
            serde_json::from_str::<Cow<'_, str>>(raw).is_ok_and(|s| s.len() <= MAX_ID_LEN)
        }
        Some(b'-' | b'0'..=b'9') => raw.len() <= MAX_ID_LEN,
        _ => false,
    }
}
