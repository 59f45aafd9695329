//! The fields of the read-marker, typing and presence ops (issue 17 items 5-7):
//! `mark_read {room|with, seq}`, `unread`, `typing {room|with, active}`,
//! `away {message?}`, `back`.

use std::borrow::Cow;

use serde::Deserialize;

use super::{Fault, Head, OpKind, Request, fault, fields};
use crate::error_code::ErrorCode;

/// Longest `away` message, in bytes.
pub(crate) const MAX_AWAY_MESSAGE: usize = 256;

/// What a marker or typing op is about: a room, or the DM conversation with a user.
#[derive(Debug)]
pub(crate) enum Place<'a> {
    Room(Cow<'a, str>),
    With(Cow<'a, str>),
}

#[derive(Deserialize)]
struct PlaceFields<'a> {
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    with: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    active: Option<bool>,
}

#[derive(Deserialize)]
struct AwayFields<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// Parses one of this family's ops.
pub(super) fn parse<'a>(head: &Head<'a>, kind: OpKind) -> Result<Request<'a>, Fault<'a>> {
    let bad = |message: String| fault(head.id, ErrorCode::BadRequest, message);
    let request = match kind {
        OpKind::Unread => Request::Unread,
        OpKind::Back => Request::Back,
        OpKind::Away => {
            let AwayFields { message } = fields(head)?;
            if message.as_ref().is_some_and(|m| m.len() > MAX_AWAY_MESSAGE) {
                return Err(bad(format!(
                    "`message` must be at most {MAX_AWAY_MESSAGE} bytes"
                )));
            }
            Request::Away { message }
        }
        OpKind::MarkRead | OpKind::Typing => {
            let f: PlaceFields<'_> = fields(head)?;
            let place = match (f.room, f.with) {
                (Some(room), None) => Place::Room(room),
                (None, Some(with)) => Place::With(with),
                _ => {
                    return Err(bad(format!(
                        "bad `{}` request: give exactly one of `room` and `with`",
                        head.op
                    )));
                }
            };
            let missing = |field: &str| {
                bad(format!(
                    "bad `{}` request: missing field `{field}`",
                    head.op
                ))
            };
            if kind == OpKind::MarkRead {
                let seq = f.seq.ok_or_else(|| missing("seq"))?;
                Request::MarkRead { place, seq }
            } else {
                let active = f.active.ok_or_else(|| missing("active"))?;
                Request::Typing { place, active }
            }
        }
        _ => return Err(super::unknown_op(head)),
    };
    Ok(request)
}
