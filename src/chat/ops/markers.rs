//! Read markers and unread counts (issue 17 item 5, PROTOCOL-2 sections 3 and 5):
//! `mark_read {room|with, seq}` moves the caller's marker forward (to the last seq at
//! most) and tells their other protocol-2 connections with a `read` event; `unread`
//! (and `whoami`) report each room's and conversation's marker and unread count.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::chat::accounts::User;
use crate::chat::effects::{Effect, Out};
use crate::chat::ops::{Failure, fail};
use crate::chat::{Chat, Peer, Session, logged_in};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as protocol, Reply};
use crate::protocol::request::Place;
use crate::store::{MarkerPlace, Write};

/// One room's or conversation's line of an `unread` report.
#[derive(Serialize)]
struct Line {
    marker: u64,
    count: u64,
}

/// The `unread` object of `unread` and `whoami` answers.
#[derive(Serialize)]
pub(crate) struct Report {
    rooms: BTreeMap<String, Line>,
    conversations: BTreeMap<String, Line>,
}

/// The `read` event: `{room|with, seq}`.
#[derive(Serialize)]
struct ReadEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    with: Option<&'a str>,
    seq: u64,
}

impl Chat {
    /// `mark_read {room|with, seq}`: answers `marker` (where the marker is now). A
    /// seq past the last moves it to the last; one at or behind it changes nothing
    /// and sends no event.
    pub(crate) fn mark_read(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        place: &Place<'_>,
        seq: u64,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let user = &logged_in(session).user;
        let (place, last) = self.marker_place(user, place)?;
        let moved = self.markers.advance(&user.name, &place, seq.min(last));
        let marker = self.markers.get(&user.name, &place);
        let ok = Reply::ok(id).field("marker", &marker);
        if !moved {
            return Ok(Some(ok));
        }
        let (room, with) = match &place {
            MarkerPlace::Room(room) => (Some(room.as_str()), None),
            MarkerPlace::With(with) => (None, Some(with.as_str())),
        };
        let frame = protocol::event(
            "read",
            &ReadEvent {
                room,
                with,
                seq: marker,
            },
        );
        let writes = out.durable(|| Write::Marker {
            user: user.name.clone(),
            place,
            seq: marker,
        });
        let effects = vec![
            Effect::User {
                to: Arc::clone(user),
                frame,
                skip_conn: conn.key,
            },
            Effect::Send(Arc::clone(conn), ok.finish()),
        ];
        out.commit(writes, effects);
        Ok(None)
    }

    /// The stored place a marker op names and its last seq; refuses an unknown room
    /// (`no_such_room`), a room the caller is not in (`not_member`), an unknown user
    /// (`no_such_user`).
    fn marker_place(&self, user: &User, place: &Place<'_>) -> Result<(MarkerPlace, u64), Failure> {
        match place {
            Place::Room(name) => {
                let room = self.room(name)?;
                let state = room.state.lock();
                if !state.is_member(&user.name) {
                    return fail(ErrorCode::NotMember, format!("join `{name}` first"));
                }
                Ok((MarkerPlace::Room(room.name.clone()), state.last_seq))
            }
            Place::With(with) => {
                let Some(other) = self.accounts.user(with) else {
                    return fail(ErrorCode::NoSuchUser, format!("no user is named `{with}`"));
                };
                let last = self
                    .conversations
                    .get(&user.name, &other.name)
                    .map_or(0, |c| c.state.lock().last_seq);
                Ok((MarkerPlace::With(other.name.clone()), last))
            }
        }
    }

    /// Joining reads what came before (only what follows is unread): moves `user`'s
    /// marker in `room` to `last_seq`; the write that stores it, if it moved.
    pub(crate) fn join_marker(&self, user: &str, room: &str, last_seq: u64) -> Option<Write> {
        let place = MarkerPlace::Room(room.to_owned());
        self.markers
            .advance(user, &place, last_seq)
            .then(|| Write::Marker {
                user: user.to_owned(),
                place,
                seq: last_seq,
            })
    }

    /// `unread`: answers `unread` (see [`Chat::unread_report`]).
    pub(crate) fn unread(&self, session: &Session, id: Option<&RawValue>) -> Reply {
        let user = &logged_in(session).user;
        Reply::ok(id).field("unread", &self.unread_report(user))
    }

    /// Every room `user` is in and every conversation with a DM they see: the marker
    /// and how many messages after it are not their own (nor hidden from them).
    pub(crate) fn unread_report(&self, user: &User) -> Report {
        let names: Vec<String> = user.rooms.lock().iter().cloned().collect();
        let mut rooms = BTreeMap::new();
        for name in names {
            let Some(room) = self.room_named(&name) else {
                continue;
            };
            let state = room.state.lock();
            let (marker, count) =
                self.markers
                    .room_unread(&name, &user.name, state.first_seq, state.last_seq);
            rooms.insert(name, Line { marker, count });
        }
        let mut conversations = BTreeMap::new();
        for conversation in self.conversations.of(&user.name) {
            let side = conversation.side(&user.name);
            let with = &conversation.users[1 - side];
            let state = conversation.state.lock();
            if state.last_seen(side).0 == 0 {
                continue;
            }
            let marker = self
                .markers
                .get(&user.name, &MarkerPlace::With(with.clone()));
            let count = state.unread(side, marker);
            conversations.insert(with.clone(), Line { marker, count });
        }
        Report {
            rooms,
            conversations,
        }
    }
}
