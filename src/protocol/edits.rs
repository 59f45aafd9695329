//! The fields of `edit`, `delete`, `react` and `unreact` (issue 17 items 3 and 4):
//! a message named by `room` or `with` and its `seq`.

use std::borrow::Cow;

use serde::Deserialize;

/// Longest reaction `emoji`, in bytes (issue 17 item 4).
pub(crate) const MAX_EMOJI: usize = 64;

/// A message of a room or of the caller's conversation with a user.
#[derive(Debug)]
pub(crate) struct MessageRef<'a> {
    pub(crate) place: PlaceRef<'a>,
    pub(crate) seq: u64,
}

/// A room (`room`) or the caller's conversation with a user (`with`).
#[derive(Debug)]
pub(crate) enum PlaceRef<'a> {
    Room(Cow<'a, str>),
    With(Cow<'a, str>),
}

#[derive(Deserialize)]
struct ChangeFields<'a> {
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    with: Option<Cow<'a, str>>,
    seq: u64,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    emoji: Option<Cow<'a, str>>,
}

/// Which of the four ops a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeOp {
    Edit,
    Delete,
    React,
    Unreact,
}

/// A change request's fields, checked: what `op` needs is there and well formed.
pub(crate) struct ChangeRequest<'a> {
    pub(crate) target: MessageRef<'a>,
    /// `edit`'s new text (not empty).
    pub(crate) text: Cow<'a, str>,
    /// `react`'s and `unreact`'s emoji (1-64 bytes).
    pub(crate) emoji: Cow<'a, str>,
}

/// `edit {room|with, seq, text}`, `delete {room|with, seq}`, `react`/`unreact
/// {room|with, seq, emoji}` from the whole `frame`: exactly one of `room` and
/// `with`; `text` not empty; `emoji` 1-64 bytes. Anything else: the reason, for a
/// `bad_request`.
pub(crate) fn parse(frame: &str, op: ChangeOp) -> Result<ChangeRequest<'_>, String> {
    let f: ChangeFields<'_> = serde_json::from_str(frame).map_err(|e| e.to_string())?;
    let place = match (f.room, f.with) {
        (Some(room), None) => PlaceRef::Room(room),
        (None, Some(with)) => PlaceRef::With(with),
        _ => return Err("give exactly one of `room` and `with`".into()),
    };
    let target = MessageRef { place, seq: f.seq };
    let text = match (op, f.text) {
        (ChangeOp::Edit, None) => return Err("missing field `text`".into()),
        (ChangeOp::Edit, Some(text)) if text.is_empty() => {
            return Err("`text` must not be empty".into());
        }
        (_, text) => text.unwrap_or_default(),
    };
    let emoji = match (op, f.emoji) {
        (ChangeOp::React | ChangeOp::Unreact, None) => return Err("missing field `emoji`".into()),
        (ChangeOp::React | ChangeOp::Unreact, Some(e)) if !(1..=MAX_EMOJI).contains(&e.len()) => {
            return Err(format!("`emoji` must be 1 to {MAX_EMOJI} bytes"));
        }
        (_, emoji) => emoji.unwrap_or_default(),
    };
    Ok(ChangeRequest {
        target,
        text,
        emoji,
    })
}
