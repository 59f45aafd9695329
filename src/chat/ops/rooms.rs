//! Rooms: `create`, `join`, `leave`, `rooms`, `members`.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::chat::accounts::User;
use crate::chat::budget;
use crate::chat::effects::{Effect, Out, Undo};
use crate::chat::ops::{Failure, fail};
use crate::chat::room::{Frames, Role, Room, RoomEvent};
use crate::chat::{Chat, MAX_ROOM_NAME, MAX_TOPIC, Peer, Session, logged_in, now_ms, valid_name};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as protocol, MemberEvent, Reply, RoleEvent};
use crate::protocol::request::Page;
use crate::store::Write;

impl Chat {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        room: &str,
        topic: Option<&str>,
        invite_only: bool,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        if !valid_name(room, MAX_ROOM_NAME) {
            return fail(
                ErrorCode::BadName,
                "a room name is 1-64 bytes of A-Z a-z 0-9 _ . -",
            );
        }
        let topic = topic.unwrap_or("");
        if topic.len() > MAX_TOPIC {
            return fail(ErrorCode::TooLong, "a topic is at most 256 bytes");
        }
        let user = &logged_in(session).user;
        let mut rooms = self.rooms.write();
        if rooms.contains_key(room) {
            return fail(
                ErrorCode::RoomExists,
                format!("the room `{room}` exists; `join` it"),
            );
        }
        let max_rooms = self.live.max_rooms();
        if rooms.len() >= max_rooms {
            let message = format!("the server holds its maximum of {max_rooms} rooms");
            return fail(ErrorCode::TooManyRooms, message);
        }
        let created_before = user.rooms_created.load(Ordering::Relaxed);
        let per_user = self.live.max_rooms_per_user();
        if per_user > 0 && created_before >= per_user {
            let message = format!("you have created the maximum of {per_user} rooms one user may");
            return fail(ErrorCode::TooManyRooms, message);
        }
        // Under the rooms lock: one user's creates cannot pass the cap together.
        user.rooms_created
            .store(created_before + 1, Ordering::Relaxed);
        // A room made again under a deleted one's name goes on after its seqs.
        let last_seq = self.deleted_rooms.lock().get(room).copied().unwrap_or(0);
        let created = Arc::new(Room::new(
            room,
            topic.to_owned(),
            last_seq,
            0,
            &[],
            self.history_cap,
        ));
        let now = now_ms();
        {
            let mut state = created.state.lock();
            state.add_member(user, Role::Owner, now);
            state.access.invite_only = invite_only;
            state.first_seq = last_seq + 1;
        }
        user.rooms.lock().insert(room.to_owned());
        rooms.insert(room.to_owned(), Arc::clone(&created));
        // Still under the rooms lock: the store sees the room before anything in it.
        let write = out.durable(|| Write::Room {
            name: room.to_owned(),
            topic: topic.to_owned(),
            creator: user.name.clone(),
            created: now,
            invite_only,
            next_seq: last_seq + 1,
        });
        let ok = Reply::ok(id).field("room", room).finish();
        let effects = vec![
            Effect::Send(Arc::clone(conn), ok),
            Effect::Undo(self.uncreate(created, user)),
        ];
        out.commit(write, effects);
        Ok(None)
    }

    /// Takes a room back out of memory when its creation fails to commit (unless it
    /// was replaced meanwhile), with the creator's count of rooms made.
    fn uncreate(&self, created: Arc<Room>, creator: &Arc<User>) -> Undo {
        let (all, creator) = (Arc::clone(&self.rooms), Arc::clone(creator));
        Box::new(move || {
            creator.rooms_created.fetch_sub(1, Ordering::Relaxed);
            let mut rooms = all.write();
            if rooms
                .get(&created.name)
                .is_some_and(|r| Arc::ptr_eq(r, &created))
            {
                rooms.remove(&created.name);
                for member in created.state.lock().members.values() {
                    member.user.rooms.lock().remove(&created.name);
                }
            }
        })
    }

    pub(crate) fn room(&self, name: &str) -> Result<Arc<Room>, Failure> {
        match self.rooms.read().get(name) {
            Some(room) => Ok(Arc::clone(room)),
            None => fail(ErrorCode::NoSuchRoom, format!("no room is named `{name}`")),
        }
    }

    pub(crate) fn join(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let mut state = room.state.lock();
        if !state.is_member(&user.name) {
            self.admission(&state, &user.name, name)?;
        }
        let max = self.live.max_room_members();
        if !state.is_member(&user.name) && state.members.len() >= max {
            let message = format!("`{name}` has its maximum of {max} members");
            return fail(ErrorCode::RoomFull, message);
        }
        let joined = now_ms();
        let added = state.add_member(user, Role::Member, joined);
        let ok = Reply::ok(id)
            .field("room", &room.name)
            .field("topic", &state.topic)
            .field("members", &state.members.keys().collect::<Vec<_>>())
            .field("roles", &state.roles())
            .field("presence", &self.presence_of(state.members.keys()))
            .field("seq", &state.last_seq)
            .finish();
        if !added {
            drop(state);
            out.reply(conn, ok);
            return Ok(None);
        }
        user.rooms.lock().insert(room.name.clone());
        let marked = self.join_marker(&user.name, &room.name, state.last_seq);
        // An invitation lets one in once.
        let invited = state.access.invited.remove(&user.name);
        if invited {
            self.kept_invites.forget(&user.name, &room.name);
        }
        let event = RoomEvent::Broadcast {
            frames: Frames::both(protocol::event(
                "joined",
                &MemberEvent {
                    room: &room.name,
                    user: &user.name,
                },
            )),
            skip_conn: conn.key,
            v1_skip_user: Some(user.name.clone()),
            also: None,
        };
        let writes = || {
            let mut writes = vec![Write::Join {
                room: room.name.clone(),
                user: user.name.clone(),
                joined,
            }];
            writes.extend(marked);
            if invited {
                writes.push(Write::Uninvite {
                    room: room.name.clone(),
                    user: user.name.clone(),
                });
            }
            writes
        };
        let (undo_room, undo_user) = (Arc::clone(&room), Arc::clone(user));
        let undo = move || {
            let mut state = undo_room.state.lock();
            state.members.remove(&undo_user.name);
            if invited {
                state.access.invited.insert(undo_user.name.clone());
            }
            undo_user.rooms.lock().remove(&undo_room.name);
        };
        out.room_commit(&room, &mut state, writes, [event], conn, ok, undo);
        Ok(None)
    }

    pub(crate) fn leave(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let mut state = room.state.lock();
        let Some((member, heir)) = state.remove_member(&user.name) else {
            return fail(
                ErrorCode::NotMember,
                format!("you are not a member of `{name}`"),
            );
        };
        user.rooms.lock().remove(&room.name);
        let left = RoomEvent::Broadcast {
            frames: Frames::both(protocol::event(
                "left",
                &MemberEvent {
                    room: &room.name,
                    user: &user.name,
                },
            )),
            skip_conn: conn.key,
            // v1 never told the leaver's other connections (they were no longer
            // the room's); protocol 2 does.
            v1_skip_user: Some(user.name.clone()),
            also: Some(Arc::clone(user)),
        };
        let handed_on = heir
            .as_ref()
            .map(|(heir, _)| role_event(&room.name, heir, Role::Owner, &user.name));
        let writes = || {
            let mut writes = vec![Write::Leave {
                room: room.name.clone(),
                user: user.name.clone(),
            }];
            writes.extend(heir.iter().map(|(heir, _)| Write::SetRole {
                room: room.name.clone(),
                user: heir.clone(),
                role: Role::Owner.as_str(),
            }));
            writes
        };
        let ok = Reply::ok(id).field("room", &room.name).finish();
        let (undo_room, undo_user) = (Arc::clone(&room), Arc::clone(user));
        let undo_heir = heir.clone();
        let undo = move || {
            let mut state = undo_room.state.lock();
            if let Some((heir, former)) = undo_heir
                && let Some(m) = state.members.get_mut(&heir)
            {
                m.role = former;
            }
            state.add_member(&undo_user, member.role, member.joined);
            undo_user.rooms.lock().insert(undo_room.name.clone());
        };
        let events = std::iter::once(left).chain(handed_on);
        out.room_commit(&room, &mut state, writes, events, conn, ok, undo);
        Ok(None)
    }

    /// One page of the rooms, by name: at most `page.limit` after `page.after`, and
    /// no more entries than fit the rooms budget (`AnswerBudget`; always one), with
    /// `next` (the last name given) when more remain (PROTOCOL-2 §4). An invite-only
    /// room is listed only to its members and server operators.
    pub(crate) fn list_rooms(
        &self,
        id: Option<&RawValue>,
        page: &Page<'_>,
        viewer: Option<&str>,
    ) -> Reply {
        #[derive(Serialize)]
        struct Entry<'a> {
            room: &'a str,
            topic: &'a str,
            members: usize,
        }
        let (rooms, more) = {
            let all = self.rooms.read();
            let start = match &page.after {
                Some(after) => Bound::Excluded(after.as_ref()),
                None => Bound::Unbounded,
            };
            let mut range = all.range::<str, _>((start, Bound::Unbounded));
            let rooms: Vec<Arc<Room>> = range
                .by_ref()
                .filter(|(_, r)| self.may_see(&r.state.lock(), viewer))
                .take(page.limit)
                .map(|(_, r)| Arc::clone(r))
                .collect();
            let more = range.any(|(_, r)| self.may_see(&r.state.lock(), viewer));
            (rooms, more)
        };
        let encoded = rooms.iter().map(|room| {
            let state = room.state.lock();
            let entry = Entry {
                room: &room.name,
                topic: &state.topic,
                members: state.members.len(),
            };
            serde_json::to_vec(&entry).expect("serialising to a Vec cannot fail")
        });
        let list = budget::take_within(encoded, self.answer_budget.rooms);
        let reply = Reply::ok(id).raw_array("rooms", list.iter().map(Vec::as_slice));
        let more = more || list.len() < rooms.len();
        match list.len().checked_sub(1).map(|last| &rooms[last]) {
            Some(last) if more => reply.field("next", &last.name),
            _ => reply,
        }
    }

    pub(crate) fn members(
        &self,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let state = room.state.lock();
        if !self.may_see(&state, Some(logged_in(session).user.name.as_str())) {
            return fail(
                ErrorCode::NotMember,
                format!("`{name}` is invite-only; only its members see who is in it"),
            );
        }
        let members: Vec<&String> = state.members.keys().collect();
        Ok(Some(
            Reply::ok(id)
                .field("room", &room.name)
                .field("members", &members)
                .field("roles", &state.roles())
                .field("presence", &self.presence_of(state.members.keys())),
        ))
    }
}

/// A `role` event (protocol 2 only): `user` now has `role` in `room`, by `by`.
pub(crate) fn role_event(room: &str, user: &str, role: Role, by: &str) -> RoomEvent {
    RoomEvent::Broadcast {
        frames: Frames::v2_only(protocol::event(
            "role",
            &RoleEvent {
                room,
                user,
                role: role.as_str(),
                by,
            },
        )),
        skip_conn: usize::MAX,
        v1_skip_user: None,
        also: None,
    }
}
