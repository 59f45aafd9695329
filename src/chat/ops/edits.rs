//! Edits, deletes and reactions (issue 17 items 3 and 4, PROTOCOL-2 sections 2, 5,
//! 6): `edit`, `delete`, `react` and `unreact` on a room message (`room`) or a DM
//! (`with`), stored with the message, shown by `history`/`dm_history`, and told as
//! `edited`, `deleted` and `reaction` events to protocol-2 connections only.
//!
//! The change shows in memory as soon as it is made (so a second request sees it) and
//! is taken back if its commit fails; its event and answer wait for the commit.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::chat::conversation;
use crate::chat::effects::{Effect, Out};
use crate::chat::ops::{Failure, fail};
use crate::chat::room::{Frames, Role, RoomEvent};
use crate::chat::{Chat, Peer, Session, logged_in, now_ms};
use crate::error_code::ErrorCode;
use crate::protocol::edits::{MessageRef, PlaceRef};
use crate::protocol::json::{
    self as protocol, DeletedEvent, EditedEvent, PlaceFields, ReactionEvent, Reply,
};
use crate::store::{Changes, MessageRow, Place, Write};

/// What a request does to a message.
#[derive(Clone, Copy)]
pub(crate) enum Change<'a> {
    Edit(&'a str),
    Delete,
    React { emoji: &'a str, on: bool },
}

impl Chat {
    /// `edit`, `delete`, `react` or `unreact` on the message `target` names.
    pub(crate) fn change_message(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        target: &MessageRef<'_>,
        change: Change<'_>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        if let Change::Edit(text) = change {
            self.check_text(text)?;
        }
        match &target.place {
            PlaceRef::Room(room) => {
                self.change_in_room(conn, session, id, room, target.seq, change, out)
            }
            PlaceRef::With(with) => {
                self.change_in_dm(conn, session, id, with, target.seq, change, out)
            }
        }
    }

    /// A change to message `seq` of room `name`. Order of refusals (PROTOCOL-2
    /// section 5): the room, membership (not for a server operator), the message,
    /// then the right to change it.
    #[allow(clippy::too_many_arguments)]
    fn change_in_room(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        seq: u64,
        change: Change<'_>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let user = &logged_in(session).user.name;
        let room = self.room(name)?;
        let operator = self.is_operator(user);
        let mut state = room.state.lock();
        if !operator && !state.is_member(user) {
            return fail(ErrorCode::NotMember, format!("join `{name}` first"));
        }
        let found = if seq == 0 || seq < state.first_seq || seq > state.committed_seq() {
            None
        } else if state.holds(seq) {
            state.message(seq)
        } else {
            // Older than memory: read it without holding up the room.
            drop(state);
            let row = self.stored_message(&room.name, seq)?;
            state = room.state.lock();
            row
        };
        let Some(row) = found else {
            return no_such_message(seq);
        };
        if let Change::Edit(text) = change {
            self.message_hook(&room.name, user, text)?;
        }
        let moderates = operator || state.role_of(user).is_some_and(|r| r >= Role::Op);
        check(change, user, &row.from, &row.changes, moderates, seq)?;
        let ok = Reply::ok(id);
        let Some((text, changes)) = apply(change, user, &row, now_ms()) else {
            return Ok(Some(ok));
        };
        let place = PlaceFields {
            room: Some(&room.name),
            with: None,
        };
        let frame = event_frame(change, place, seq, user, &text, &changes);
        let write = write(
            change,
            Place::Room(room.name.clone()),
            seq,
            user,
            &text,
            &changes,
        );
        let new = MessageRow {
            text,
            changes,
            ..row.clone()
        };
        state.set_message(&room.name, &new);
        let event = RoomEvent::Broadcast {
            frames: Frames::v2_only(frame),
            skip_conn: conn.key,
            v1_skip_user: None,
            also: None,
        };
        let kept = Arc::clone(&room);
        let undo = move || kept.state.lock().set_message(&kept.name, &row);
        out.room_commit(
            &room,
            &mut state,
            || vec![write],
            [event],
            conn,
            ok.finish(),
            undo,
        );
        Ok(None)
    }

    /// A change to DM `seq` of the caller's conversation with `with`: only the
    /// author's own (no roles in a conversation); a DM the caller does not see does
    /// not exist for them.
    #[allow(clippy::too_many_arguments)]
    fn change_in_dm(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        with: &str,
        seq: u64,
        change: Change<'_>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let me = &logged_in(session).user;
        let Some(other) = self.accounts.user(with) else {
            return fail(ErrorCode::NoSuchUser, format!("no user is named `{with}`"));
        };
        let Some(conv) = self.conversations.get(&me.name, &other.name) else {
            return no_such_message(seq);
        };
        let mut state = conv.state.lock();
        let found = match state.row(seq) {
            Ok(row) => Some(row.clone()),
            Err(false) => None,
            Err(true) => {
                drop(state);
                let row = self.stored_dm(&me.name, &other.name, seq)?;
                state = conv.state.lock();
                row
            }
        };
        let Some(row) = found.filter(|row| conversation::sees(&me.name, row)) else {
            return no_such_message(seq);
        };
        check(change, &me.name, &row.from, &row.changes, false, seq)?;
        let as_message = MessageRow {
            seq,
            from: row.from.clone(),
            text: row.text.clone(),
            ts: row.ts,
            reply_to: row.reply_to,
            changes: row.changes.clone(),
        };
        let ok = Reply::ok(id);
        let Some((text, changes)) = apply(change, &me.name, &as_message, now_ms()) else {
            return Ok(Some(ok));
        };
        state.set_changes(seq, &text, &changes);
        let frame_for = |viewer: &str| {
            let place = PlaceFields {
                room: None,
                with: Some(conversation::other(viewer, &row)),
            };
            event_frame(change, place, seq, &me.name, &text, &changes)
        };
        let mut effects = Vec::with_capacity(4);
        // The other party hears of it only if they see the DM (not hidden by a block).
        if other.name != me.name && !row.hidden {
            effects.push(Effect::User {
                to: Arc::clone(&other),
                frame: frame_for(&other.name),
                skip_conn: conn.key,
            });
        }
        effects.push(Effect::User {
            to: Arc::clone(me),
            frame: frame_for(&me.name),
            skip_conn: conn.key,
        });
        effects.push(Effect::Send(Arc::clone(conn), ok.finish()));
        let kept = Arc::clone(&conv);
        effects.push(Effect::Undo(Box::new(move || {
            kept.state.lock().set_changes(seq, &row.text, &row.changes);
        })));
        let place = Place::Dm(me.name.clone(), other.name.clone());
        let writes = out.durable(|| write(change, place, seq, &me.name, &text, &changes));
        // Under the conversation's lock: its changes reach the store in order.
        out.commit(writes, effects);
        Ok(None)
    }

    /// Stored message `seq` of `room`, for one older than memory holds.
    fn stored_message(&self, room: &str, seq: u64) -> Result<Option<MessageRow>, Failure> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        match store.history(room, Some(seq - 1), seq + 1, 1) {
            Ok(rows) => Ok(rows.into_iter().find(|row| row.seq == seq)),
            Err(e) => {
                log::error!("message {seq} of {room}: {e}");
                fail(ErrorCode::Internal, "the message could not be read")
            }
        }
    }

    /// Stored DM `seq` between `viewer` and `with` that `viewer` sees.
    fn stored_dm(
        &self,
        viewer: &str,
        with: &str,
        seq: u64,
    ) -> Result<Option<crate::store::DmRow>, Failure> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        match store.dm_history(viewer, with, Some(seq - 1), seq + 1, 1) {
            Ok(rows) => Ok(rows.into_iter().find(|row| row.seq == seq)),
            Err(e) => {
                log::error!("DM {seq} of {viewer} with {with}: {e}");
                fail(ErrorCode::Internal, "the message could not be read")
            }
        }
    }
}

fn no_such_message<T>(seq: u64) -> Result<T, Failure> {
    fail(
        ErrorCode::NoSuchMessage,
        format!("there is no message {seq}"),
    )
}

/// Whether `user` may make `change` to a message by `author` (PROTOCOL-2 section 5):
/// a deleted message takes no edit and no new reaction; only the author edits; the
/// author deletes, or one who `moderates` (an op or owner of the room, a server
/// operator).
fn check(
    change: Change<'_>,
    user: &str,
    author: &str,
    changes: &Changes,
    moderates: bool,
    seq: u64,
) -> Result<(), Failure> {
    match change {
        Change::Edit(_) | Change::React { on: true, .. } if changes.deleted => fail(
            ErrorCode::NoSuchMessage,
            format!("message {seq} is deleted"),
        ),
        Change::Edit(_) if author != user => {
            fail(ErrorCode::Forbidden, "only its author may edit a message")
        }
        Change::Delete if author != user && !moderates => fail(
            ErrorCode::Forbidden,
            "only its author or an op of the room may delete a message",
        ),
        _ => Ok(()),
    }
}

/// The message's text and changes after `change` by `user` at `now` (ms since the
/// epoch); `None` if nothing changes (a second `react`, an `unreact` of no reaction,
/// a second `delete`): `ok` without an event.
fn apply(change: Change<'_>, user: &str, row: &MessageRow, now: u64) -> Option<(String, Changes)> {
    let mut changes = row.changes.clone();
    match change {
        Change::Edit(text) => {
            changes.edited_ts = Some(now.max(row.ts));
            Some((text.to_owned(), changes))
        }
        Change::Delete if changes.deleted => None,
        Change::Delete => Some((
            String::new(),
            Changes {
                deleted: true,
                ..Changes::default()
            },
        )),
        Change::React { emoji, on: true } => {
            let users = changes.reactions.entry(emoji.to_owned()).or_default();
            let added = users.insert(user.to_owned());
            added.then(|| (row.text.clone(), changes))
        }
        Change::React { emoji, on: false } => {
            let users = changes.reactions.get_mut(emoji)?;
            if !users.remove(user) {
                return None;
            }
            if users.is_empty() {
                changes.reactions.remove(emoji);
            }
            Some((row.text.clone(), changes))
        }
    }
}

/// The event a change makes: `edited`, `deleted` or `reaction`.
fn event_frame(
    change: Change<'_>,
    place: PlaceFields<'_>,
    seq: u64,
    by: &str,
    text: &str,
    changes: &Changes,
) -> Bytes {
    match change {
        Change::Edit(_) => protocol::event(
            "edited",
            &EditedEvent {
                place,
                seq,
                text,
                edited_ts: changes.edited_ts.unwrap_or_default(),
                by,
            },
        ),
        Change::Delete => protocol::event("deleted", &DeletedEvent { place, seq, by }),
        Change::React { emoji, on } => protocol::event(
            "reaction",
            &ReactionEvent {
                place,
                seq,
                emoji,
                user: by,
                added: on,
            },
        ),
    }
}

/// The store's record of a change.
fn write(
    change: Change<'_>,
    place: Place,
    seq: u64,
    user: &str,
    text: &str,
    changes: &Changes,
) -> Write {
    match change {
        Change::Edit(_) => Write::Edit {
            place,
            seq,
            text: text.to_owned(),
            edited_ts: changes.edited_ts.unwrap_or_default(),
        },
        Change::Delete => Write::DeleteMessage { place, seq },
        Change::React { emoji, on } => Write::React {
            place,
            seq,
            emoji: emoji.to_owned(),
            user: user.to_owned(),
            on,
        },
    }
}
