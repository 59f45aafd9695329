//! Typing and presence (issue 17 items 6 and 7, PROTOCOL-2 sections 2 and 3):
//! `typing {room|with, active}`, `away {message?}`, `back`, and the `presence` events
//! a login and a last logout cause. Nothing here is stored; the events go to
//! protocol-2 connections only.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::chat::accounts::User;
use crate::chat::effects::{Effect, Out};
use crate::chat::ops::{Failure, fail};
use crate::chat::presence::{Expiry, OFFLINE_GRACE, Presence, Status, TYPING_TTL};
use crate::chat::room::{self, Frames};
use crate::chat::timer::Timer;
use crate::chat::{Chat, Peer, Session, logged_in};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as protocol, Reply};
use crate::protocol::request::Place;
use crate::transport::service::Flusher;

/// The `typing` event: `room` in a room, `with` (the typer) in a DM.
#[derive(Serialize)]
struct TypingEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    with: Option<&'a str>,
    user: &'a str,
    active: bool,
}

/// A typing indicator's key (`#room` or `@user`), who gets it, and its room if any.
type TypingTarget = (String, Vec<Arc<User>>, Option<String>);

/// The `presence` event.
#[derive(Serialize)]
struct PresenceEvent<'a> {
    user: &'a str,
    #[serde(flatten)]
    status: &'a Status,
}

/// Queues `frame` to the protocol-2 connections of `users`.
fn deliver_v2(users: &[Arc<User>], frame: &bytes::Bytes, flusher: &mut Flusher<Chat>) {
    let frames = Frames::v2_only(frame.clone());
    for user in users {
        room::deliver_frames(&user.online.lock(), &frames, usize::MAX, false, flusher);
    }
}

fn presence_frame(user: &str, status: &Status) -> bytes::Bytes {
    protocol::event("presence", &PresenceEvent { user, status })
}

impl Chat {
    /// `typing {room|with, active}`: relayed to the other members (or the partner,
    /// unless they block the caller), rate-limited; an indicator not renewed within
    /// `TYPING_TTL` ends with an `active: false` event.
    pub(crate) fn typing(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        place: &Place<'_>,
        active: bool,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let user = &logged_in(session).user;
        let (key, recipients, room_name) = self.typing_audience(user, place)?;
        let step = self.presence.typing(&user.name, key.clone(), active);
        let ok = Reply::ok(id).finish();
        let event = |active: bool| {
            let (room, with) = match &room_name {
                Some(room) => (Some(room.as_str()), None),
                None => (None, Some(user.name.as_str())),
            };
            protocol::event(
                "typing",
                &TypingEvent {
                    room,
                    with,
                    user: &user.name,
                    active,
                },
            )
        };
        let mut effects: Vec<Effect> = Vec::new();
        if step.relay {
            let frame = event(active);
            effects.extend(recipients.iter().map(|to| Effect::User {
                to: Arc::clone(to),
                frame: frame.clone(),
                skip_conn: usize::MAX,
            }));
        }
        if let Some(generation) = step.expiry {
            let check = ExpiryCheck {
                presence: Arc::clone(&self.presence),
                user: user.name.clone(),
                key,
                generation,
                recipients,
                frame: event(false),
            };
            self.timer.after(TYPING_TTL, check.job());
        }
        effects.push(Effect::Send(Arc::clone(conn), ok));
        out.commit(Vec::new(), effects);
        Ok(None)
    }

    /// Who a `typing` at `place` goes to, the indicator's key, and the room's name.
    fn typing_audience(&self, user: &User, place: &Place<'_>) -> Result<TypingTarget, Failure> {
        match place {
            Place::Room(name) => {
                let room = self.room(name)?;
                let state = room.state.lock();
                if !state.is_member(&user.name) {
                    return fail(ErrorCode::NotMember, format!("join `{name}` first"));
                }
                let others = state
                    .members
                    .values()
                    .filter(|m| m.user.name != user.name)
                    .map(|m| Arc::clone(&m.user))
                    .collect();
                Ok((format!("#{}", room.name), others, Some(room.name.clone())))
            }
            Place::With(with) => {
                let Some(other) = self.accounts.user(with) else {
                    return fail(ErrorCode::NoSuchUser, format!("no user is named `{with}`"));
                };
                let to = (other.name != user.name && !other.blocks(&user.name))
                    .then(|| Arc::clone(&other));
                Ok((format!("@{}", other.name), to.into_iter().collect(), None))
            }
        }
    }

    /// `away {message?}` (`Some`) or `back` (`None`): announced to those who share a
    /// room or conversation with the caller and to the caller's other connections,
    /// if the status changed.
    pub(crate) fn set_away(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        away: Option<Option<String>>,
        out: &mut Out<'_>,
    ) -> Reply {
        let user = &logged_in(session).user;
        let mut effects = Vec::new();
        if let Some(status) = self.presence.set_away(&user.name, away) {
            let frame = presence_frame(&user.name, &status);
            let mut audience = self.audience(user);
            audience.push(Arc::clone(user));
            effects.extend(audience.into_iter().map(|to| Effect::User {
                to,
                frame: frame.clone(),
                skip_conn: conn.key,
            }));
        }
        out.commit(Vec::new(), effects);
        Reply::ok(id)
    }

    /// The users who share a room or a conversation with `user` (not `user`).
    fn audience(&self, user: &User) -> Vec<Arc<User>> {
        let mut audience: BTreeMap<String, Arc<User>> = BTreeMap::new();
        let rooms: Vec<String> = user.rooms.lock().iter().cloned().collect();
        for name in rooms {
            if let Some(room) = self.room_named(&name) {
                for member in room.state.lock().members.values() {
                    audience.insert(member.user.name.clone(), Arc::clone(&member.user));
                }
            }
        }
        for conversation in self.conversations.of(&user.name) {
            let other = &conversation.users[1 - conversation.side(&user.name)];
            if let Some(other) = self.accounts.user(other) {
                audience.insert(other.name.clone(), other);
            }
        }
        audience.remove(&user.name);
        audience.into_values().collect()
    }

    /// `user`'s first connection logged in: `online` to their audience, unless they
    /// were still online (back within the grace).
    pub(crate) fn announce_arrival(&self, user: &User, out: &mut Out<'_>) {
        if !self.presence.arrived(&user.name) {
            return;
        }
        let frame = presence_frame(&user.name, &self.presence.status(&user.name));
        let effects = self
            .audience(user)
            .into_iter()
            .map(|to| Effect::User {
                to,
                frame: frame.clone(),
                skip_conn: usize::MAX,
            })
            .collect();
        out.commit(Vec::new(), effects);
    }

    /// `user`'s last connection went: `offline` to their audience after
    /// `OFFLINE_GRACE`, unless a connection logs in meanwhile.
    pub(crate) fn announce_departure(&self, user: &Arc<User>) {
        let generation = self.presence.leaving(&user.name);
        let presence = Arc::clone(&self.presence);
        let audience = self.audience(user);
        let user = Arc::clone(user);
        self.timer.after(
            OFFLINE_GRACE,
            Box::new(move |_, flusher| {
                if user.online.lock().is_empty() && presence.departed(&user.name, generation) {
                    let frame = presence_frame(&user.name, &presence.status(&user.name));
                    deliver_v2(&audience, &frame, flusher);
                }
            }),
        );
    }

    /// The `presence` object of `members` and `join` answers.
    pub(crate) fn presence_of<'a>(
        &self,
        names: impl Iterator<Item = &'a String>,
    ) -> BTreeMap<&'a str, Status> {
        names
            .map(|name| (name.as_str(), self.presence.status(name)))
            .collect()
    }
}

/// A typing indicator's expiry check, run by the timer.
struct ExpiryCheck {
    presence: Arc<Presence>,
    user: String,
    key: String,
    generation: u64,
    recipients: Vec<Arc<User>>,
    /// The `active: false` event.
    frame: bytes::Bytes,
}

impl ExpiryCheck {
    fn job(self) -> crate::chat::timer::Job {
        Box::new(move |timer: &Weak<Timer>, flusher: &mut Flusher<Chat>| {
            match self
                .presence
                .typing_expiry(&self.user, &self.key, self.generation)
            {
                Expiry::Now => deliver_v2(&self.recipients, &self.frame, flusher),
                Expiry::Later(wait) => {
                    if let Some(timer) = timer.upgrade() {
                        timer.after(wait, self.job());
                    }
                }
                Expiry::Gone => {}
            }
        })
    }
}
