//! Running a room (protocol 2): `set_role`, `set_topic`, `kick`, `ban`, `unban`,
//! `bans`. Checks go in PROTOCOL-2 section 5's order: room exists, caller is a member
//! (not asked of a server operator, who acts as owner), `forbidden`, target exists,
//! target is a member.

use std::ops::Bound;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::chat::access::Ban;
use crate::chat::accounts::User;
use crate::chat::budget;
use crate::chat::effects::Out;
use crate::chat::ops::rooms::role_event;
use crate::chat::ops::{Failure, fail, fail_with};
use crate::chat::room::{Frames, Member, Role, Room, RoomEvent, RoomState};
use crate::chat::{Chat, MAX_TOPIC, Peer, Session, logged_in, now_ms};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as protocol, KickedEvent, MemberEvent, Reply, TopicEvent};
use crate::protocol::request::{Page, Target};
use crate::store::Write;

impl Chat {
    /// The caller's standing in the room: its role, `Owner` for a server operator
    /// (PROTOCOL-2 section 7); `not_member` for anyone else outside it.
    pub(crate) fn standing(
        &self,
        state: &RoomState,
        caller: &str,
        room: &str,
    ) -> Result<Role, Failure> {
        if state.access.deleted {
            return fail(ErrorCode::NoSuchRoom, format!("no room is named `{room}`"));
        }
        if self.is_operator(caller) {
            return Ok(Role::Owner);
        }
        match state.role_of(caller) {
            Some(role) => Ok(role),
            None => fail(
                ErrorCode::NotMember,
                format!("you are not a member of `{room}`"),
            ),
        }
    }

    /// The account a moderation op names: `no_such_user` if there is none.
    pub(crate) fn target_user(&self, name: &str) -> Result<Arc<User>, Failure> {
        match self.accounts.user(name) {
            Some(user) => Ok(user),
            None => fail(ErrorCode::NoSuchUser, format!("no user is named `{name}`")),
        }
    }

    pub(crate) fn set_role(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        target: &Target<'_>,
        role: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let Some(role) = Role::parse(role) else {
            return fail(ErrorCode::BadRequest, "`role` is `owner`, `op` or `member`");
        };
        let room = self.room(&target.room)?;
        let me = &logged_in(session).user;
        let mut state = room.state.lock();
        let standing = self.standing(&state, &me.name, &room.name)?;
        require(standing, Role::Owner, "only the room's owner changes roles")?;
        let user = self.target_user(&target.user)?;
        let former = member_role(&state, &user.name, &room.name)?;
        let ok = Reply::ok(id)
            .field("room", &room.name)
            .field("user", &user.name)
            .field("role", role.as_str())
            .finish();
        if former == role {
            drop(state);
            out.reply(conn, ok);
            return Ok(None);
        }
        if former == Role::Owner {
            let message = "the owner's role changes only by handing ownership on (`role`: `owner`)";
            return fail(ErrorCode::Forbidden, message);
        }
        let mut changes = vec![(user.name.clone(), former, role)];
        if role == Role::Owner
            && let Some((old, _)) = state.members.iter().find(|(_, m)| m.role == Role::Owner)
        {
            changes.push((old.clone(), Role::Owner, Role::Op));
        }
        for (name, _, to) in &changes {
            if let Some(m) = state.members.get_mut(name) {
                m.role = *to;
            }
        }
        let events: Vec<RoomEvent> = changes
            .iter()
            .map(|(name, _, to)| skipping(role_event(&room.name, name, *to, &me.name), conn))
            .collect();
        let writes = || {
            changes
                .iter()
                .map(|(name, _, to)| Write::SetRole {
                    room: room.name.clone(),
                    user: name.clone(),
                    role: to.as_str(),
                })
                .collect()
        };
        let undo_room = Arc::clone(&room);
        let undo_changes = changes.clone();
        let undo = move || {
            let mut state = undo_room.state.lock();
            for (name, from, _) in undo_changes {
                if let Some(m) = state.members.get_mut(&name) {
                    m.role = from;
                }
            }
        };
        out.room_commit(&room, &mut state, writes, events, conn, ok, undo);
        Ok(None)
    }

    pub(crate) fn set_topic(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        topic: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        if topic.len() > MAX_TOPIC {
            return fail(ErrorCode::TooLong, "a topic is at most 256 bytes");
        }
        let room = self.room(name)?;
        let me = &logged_in(session).user;
        let mut state = room.state.lock();
        let standing = self.standing(&state, &me.name, &room.name)?;
        require(standing, Role::Op, "only the owner and ops set the topic")?;
        let former = std::mem::replace(&mut state.topic, topic.to_owned());
        let event = RoomEvent::Broadcast {
            frames: Frames::v2_only(protocol::event(
                "topic",
                &TopicEvent {
                    room: &room.name,
                    topic,
                    by: &me.name,
                },
            )),
            skip_conn: conn.key,
            v1_skip_user: None,
            also: None,
        };
        let writes = || {
            vec![Write::Topic {
                room: room.name.clone(),
                topic: topic.to_owned(),
            }]
        };
        let ok = Reply::ok(id)
            .field("room", &room.name)
            .field("topic", topic)
            .finish();
        let undo_room = Arc::clone(&room);
        let undo = move || undo_room.state.lock().topic = former;
        out.room_commit(&room, &mut state, writes, [event], conn, ok, undo);
        Ok(None)
    }

    pub(crate) fn kick(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        target: &Target<'_>,
        reason: Option<&str>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        check_reason(reason)?;
        let room = self.room(&target.room)?;
        let me = &logged_in(session).user;
        let mut state = room.state.lock();
        let standing = self.standing(&state, &me.name, &room.name)?;
        require(standing, Role::Op, "only the owner and ops kick")?;
        let user = self.target_user(&target.user)?;
        let role = member_role(&state, &user.name, &room.name)?;
        not_oneself(&me.name, &user.name, "kick")?;
        outranks(standing, role, "kick")?;
        let ejected = eject(&room, &mut state, &user, &me.name, reason, false, conn);
        let ok = Reply::ok(id)
            .field("room", &room.name)
            .field("user", &user.name)
            .finish();
        let Ejection {
            writes,
            events,
            undo,
        } = ejected;
        out.room_commit(&room, &mut state, || writes, events, conn, ok, undo);
        Ok(None)
    }

    pub(crate) fn ban(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        target: &Target<'_>,
        reason: Option<&str>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        check_reason(reason)?;
        let room = self.room(&target.room)?;
        let me = &logged_in(session).user;
        let mut state = room.state.lock();
        let standing = self.standing(&state, &me.name, &room.name)?;
        require(standing, Role::Op, "only the owner and ops ban")?;
        let user = self.target_user(&target.user)?;
        not_oneself(&me.name, &user.name, "ban")?;
        if let Some(role) = state.role_of(&user.name) {
            outranks(standing, role, "ban")?;
        }
        let ban = Ban {
            by: me.name.clone(),
            reason: reason.map(str::to_owned),
            ts: now_ms(),
        };
        let former = state.access.bans.insert(user.name.clone(), ban.clone());
        let ejected = state
            .is_member(&user.name)
            .then(|| eject(&room, &mut state, &user, &me.name, reason, true, conn));
        let ok = Reply::ok(id)
            .field("room", &room.name)
            .field("user", &user.name)
            .finish();
        let mut writes = vec![Write::Ban {
            room: room.name.clone(),
            user: user.name.clone(),
            by: ban.by,
            reason: ban.reason,
            ts: ban.ts,
        }];
        let (events, undo_eject) = match ejected {
            Some(e) => {
                writes.extend(e.writes);
                (e.events, Some(e.undo))
            }
            None => (Vec::new(), None),
        };
        let (undo_room, undo_user) = (Arc::clone(&room), user.name.clone());
        let undo = move || {
            {
                let mut state = undo_room.state.lock();
                match former {
                    Some(ban) => state.access.bans.insert(undo_user, ban),
                    None => state.access.bans.remove(&undo_user),
                };
            }
            if let Some(undo) = undo_eject {
                undo();
            }
        };
        out.room_commit(&room, &mut state, || writes, events, conn, ok, undo);
        Ok(None)
    }

    pub(crate) fn unban(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        target: &Target<'_>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(&target.room)?;
        let me = &logged_in(session).user;
        let mut state = room.state.lock();
        let standing = self.standing(&state, &me.name, &room.name)?;
        require(standing, Role::Op, "only the owner and ops unban")?;
        let user = self.target_user(&target.user)?;
        let ok = Reply::ok(id)
            .field("room", &room.name)
            .field("user", &user.name)
            .finish();
        let Some(former) = state.access.bans.remove(&user.name) else {
            drop(state);
            out.reply(conn, ok);
            return Ok(None);
        };
        let writes = || {
            vec![Write::Unban {
                room: room.name.clone(),
                user: user.name.clone(),
            }]
        };
        let (undo_room, undo_user) = (Arc::clone(&room), user.name.clone());
        let undo = move || {
            undo_room.state.lock().access.bans.insert(undo_user, former);
        };
        out.room_commit(&room, &mut state, writes, [], conn, ok, undo);
        Ok(None)
    }

    /// One page of a room's bans, by user name (PROTOCOL-2 sections 3 and 4).
    pub(crate) fn bans(
        &self,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        page: &Page<'_>,
    ) -> Result<Option<Reply>, Failure> {
        #[derive(Serialize)]
        struct Entry<'a> {
            user: &'a str,
            by: &'a str,
            reason: Option<&'a str>,
            ts: u64,
        }
        let room = self.room(name)?;
        let me = &logged_in(session).user;
        let state = room.state.lock();
        let standing = self.standing(&state, &me.name, &room.name)?;
        require(standing, Role::Op, "only the owner and ops see the bans")?;
        let start = match &page.after {
            Some(after) => Bound::Excluded(after.as_ref()),
            None => Bound::Unbounded,
        };
        let mut range = state.access.bans.range::<str, _>((start, Bound::Unbounded));
        let taken: Vec<(&String, &Ban)> = range.by_ref().take(page.limit).collect();
        let more = range.next().is_some();
        let encoded = taken.iter().map(|(user, ban)| {
            let entry = Entry {
                user,
                by: &ban.by,
                reason: ban.reason.as_deref(),
                ts: ban.ts,
            };
            serde_json::to_vec(&entry).expect("serialising to a Vec cannot fail")
        });
        let list = budget::take_within(encoded, self.answer_budget.rooms);
        let reply = Reply::ok(id)
            .field("room", &room.name)
            .raw_array("bans", list.iter().map(Vec::as_slice));
        let more = more || list.len() < taken.len();
        Ok(Some(
            match list.len().checked_sub(1).map(|last| taken[last].0) {
                Some(last) if more => reply.field("next", last),
                _ => reply,
            },
        ))
    }
}

/// `forbidden` unless `standing` is at least `needed`.
pub(crate) fn require(standing: Role, needed: Role, message: &str) -> Result<(), Failure> {
    if standing < needed {
        return fail(ErrorCode::Forbidden, message);
    }
    Ok(())
}

/// The role of a target who must be a member: `not_member` naming them otherwise.
pub(crate) fn member_role(state: &RoomState, user: &str, room: &str) -> Result<Role, Failure> {
    match state.role_of(user) {
        Some(role) => Ok(role),
        None => fail_with(
            ErrorCode::NotMember,
            format!("`{user}` is not a member of `{room}`"),
            vec![("user", serde_json::Value::from(user))],
        ),
    }
}

/// An op acts only on plain members: the owner and other ops are beyond it.
fn outranks(standing: Role, target: Role, what: &str) -> Result<(), Failure> {
    if standing == Role::Op && target >= Role::Op {
        return fail(
            ErrorCode::Forbidden,
            format!("an op cannot {what} the owner or another op"),
        );
    }
    Ok(())
}

/// Nobody kicks or bans themselves (an owner would ban itself out of its own room):
/// `leave` is the way out.
fn not_oneself(me: &str, target: &str, what: &str) -> Result<(), Failure> {
    if me == target {
        return fail(
            ErrorCode::Forbidden,
            format!("you cannot {what} yourself; `leave` the room instead"),
        );
    }
    Ok(())
}

fn check_reason(reason: Option<&str>) -> Result<(), Failure> {
    if reason.is_some_and(|r| r.len() > MAX_TOPIC) {
        return fail(ErrorCode::TooLong, "a reason is at most 256 bytes");
    }
    Ok(())
}

/// The event, not sent to the connection whose request caused it (that one gets the
/// `ok`, PROTOCOL-2 section 2).
pub(crate) fn skipping(mut event: RoomEvent, conn: &Peer) -> RoomEvent {
    if let RoomEvent::Broadcast { skip_conn, .. } = &mut event {
        *skip_conn = conn.key;
    }
    event
}

/// A member put out of a room (kick, ban): the events that tell it, and how to take
/// it back if its commit fails.
struct Ejection {
    writes: Vec<Write>,
    events: Vec<RoomEvent>,
    undo: Box<dyn FnOnce() + Send>,
}

/// Takes `user` (a member) out of the room: `kicked` to the members and the user's
/// protocol-2 connections, `left` to protocol-1 ones (the user's own included), and
/// a `role` event if ownership passed on.
fn eject(
    room: &Arc<Room>,
    state: &mut RoomState,
    user: &Arc<User>,
    by: &str,
    reason: Option<&str>,
    banned: bool,
    conn: &Peer,
) -> Ejection {
    let Some((member, heir)) = state.remove_member(&user.name) else {
        unreachable!("the caller checked membership under the same lock");
    };
    user.rooms.lock().remove(&room.name);
    let kicked = RoomEvent::Broadcast {
        frames: Frames {
            v2: protocol::event(
                "kicked",
                &KickedEvent {
                    room: &room.name,
                    user: &user.name,
                    by,
                    reason,
                    banned,
                },
            ),
            v1: Some(protocol::event(
                "left",
                &MemberEvent {
                    room: &room.name,
                    user: &user.name,
                },
            )),
        },
        skip_conn: conn.key,
        v1_skip_user: None,
        also: Some(Arc::clone(user)),
    };
    let mut events = vec![kicked];
    events.extend(
        heir.as_ref()
            .map(|(heir, _)| skipping(role_event(&room.name, heir, Role::Owner, by), conn)),
    );
    let mut writes = vec![Write::Leave {
        room: room.name.clone(),
        user: user.name.clone(),
    }];
    writes.extend(heir.iter().map(|(heir, _)| Write::SetRole {
        room: room.name.clone(),
        user: heir.clone(),
        role: Role::Owner.as_str(),
    }));
    Ejection {
        writes,
        events,
        undo: Box::new(readmit(room, user, member, heir)),
    }
}

/// Puts an ejected member back (their commit failed), with the heir's former role.
fn readmit(
    room: &Arc<Room>,
    user: &Arc<User>,
    member: Member,
    heir: Option<(String, Role)>,
) -> impl FnOnce() + Send + 'static {
    let (room, user) = (Arc::clone(room), Arc::clone(user));
    move || {
        let mut state = room.state.lock();
        if let Some((heir, former)) = heir
            && let Some(m) = state.members.get_mut(&heir)
        {
            m.role = former;
        }
        state.add_member(&user, member.role, member.joined);
        user.rooms.lock().insert(room.name.clone());
    }
}
