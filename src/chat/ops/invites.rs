//! Private rooms and room deletion (protocol 2): `set_room` (invite-only or not),
//! `invite`, `delete_room`. `join`'s checks of bans and invitations are `admission`.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::chat::access::invited_event;
use crate::chat::accounts::User;
use crate::chat::effects::{Effect, Out};
use crate::chat::ops::moderation::require;
use crate::chat::ops::{Failure, fail, fail_with};
use crate::chat::room::{self, Frames, Role, Room, RoomEvent, RoomState};
use crate::chat::{Chat, Peer, Session, logged_in, now_ms};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as protocol, ByEvent, MemberEvent, Reply};
use crate::protocol::request::Target;
use crate::store::Write;
use crate::transport::service::Flusher;

impl Chat {
    /// Whether `user`, not a member, may join: `banned`, then `not_invited` (a server
    /// operator needs no invitation), in PROTOCOL-2 section 5's order.
    pub(crate) fn admission(
        &self,
        state: &RoomState,
        user: &str,
        room: &str,
    ) -> Result<(), Failure> {
        if state.access.deleted {
            return fail(ErrorCode::NoSuchRoom, format!("no room is named `{room}`"));
        }
        if let Some(ban) = state.access.bans.get(user) {
            return fail_with(
                ErrorCode::Banned,
                format!("you are banned from `{room}`"),
                vec![
                    ("scope", "room".into()),
                    ("reason", ban.reason.clone().into()),
                ],
            );
        }
        if state.access.invite_only
            && !state.access.invited.contains(user)
            && !self.is_operator(user)
        {
            return fail(
                ErrorCode::NotInvited,
                format!("`{room}` is invite-only; ask its owner or an op for an invitation"),
            );
        }
        Ok(())
    }

    /// Whether `viewer` may see an invite-only room: its members and server
    /// operators (PROTOCOL-2 section 7).
    pub(crate) fn may_see(&self, state: &RoomState, viewer: Option<&str>) -> bool {
        !state.access.invite_only
            || viewer.is_some_and(|v| state.is_member(v) || self.is_operator(v))
    }

    pub(crate) fn set_room(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        invite_only: bool,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let me = &logged_in(session).user;
        let mut state = room.state.lock();
        let standing = self.standing(&state, &me.name, &room.name)?;
        require(
            standing,
            Role::Owner,
            "only the room's owner changes its settings",
        )?;
        let former = std::mem::replace(&mut state.access.invite_only, invite_only);
        let ok = Reply::ok(id)
            .field("room", &room.name)
            .field("invite_only", &invite_only)
            .finish();
        let writes = || {
            vec![Write::InviteOnly {
                room: room.name.clone(),
                invite_only,
            }]
        };
        let undo_room = Arc::clone(&room);
        let undo = move || undo_room.state.lock().access.invite_only = former;
        out.room_commit(&room, &mut state, writes, [], conn, ok, undo);
        Ok(None)
    }

    pub(crate) fn invite(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        target: &Target<'_>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(&target.room)?;
        let me = &logged_in(session).user;
        let state = room.state.lock();
        let standing = self.standing(&state, &me.name, &room.name)?;
        require(standing, Role::Op, "only the owner and ops invite")?;
        let user = self.target_user(&target.user)?;
        let ok = Reply::ok(id)
            .field("room", &room.name)
            .field("user", &user.name)
            .finish();
        // An invitation from someone the user blocks is dropped without telling the
        // inviter (PROTOCOL-2 section 7), as is one for a member.
        if state.is_member(&user.name) || user.blocks(&me.name) {
            drop(state);
            out.reply(conn, ok);
            return Ok(None);
        }
        if let Some(ban) = state.access.bans.get(&user.name) {
            return fail_with(
                ErrorCode::Banned,
                format!(
                    "`{}` is banned from `{}`; unban them first",
                    user.name, room.name
                ),
                vec![
                    ("scope", "room".into()),
                    ("reason", ban.reason.clone().into()),
                ],
            );
        }
        self.record_invitation(&room, state, &user, &me.name, conn, ok, out);
        Ok(None)
    }

    /// Notes the invitation (under the room's lock, released here) and, after its
    /// commit, tells the user's protocol-2 connections, or keeps it for their next
    /// login if they have none.
    #[allow(clippy::too_many_arguments)]
    fn record_invitation(
        &self,
        room: &Arc<Room>,
        mut state: parking_lot::MutexGuard<'_, RoomState>,
        user: &Arc<User>,
        by: &str,
        conn: &Peer,
        ok: bytes::Bytes,
        out: &mut Out<'_>,
    ) {
        let fresh = state.access.invited.insert(user.name.clone());
        let delivered = user.online.lock().iter().any(|p| p.tag.protocol() >= 2);
        let writes = out.durable(|| Write::Invite {
            room: room.name.clone(),
            user: user.name.clone(),
            by: by.to_owned(),
            ts: now_ms(),
            delivered,
        });
        let frame = invited_event(&room.name, by);
        let (to, kept, room_name) = (
            Arc::clone(user),
            Arc::clone(&self.kept_invites),
            room.name.clone(),
        );
        let tell = move |flusher: &mut Flusher<Chat>| {
            let online = to.online.lock();
            let frames = Frames::v2_only(frame.clone());
            if room::deliver_frames(&online, &frames, usize::MAX, false, flusher) == 0 {
                kept.keep(&to.name, &room_name, frame);
            }
        };
        let (undo_room, undo_user) = (Arc::clone(room), user.name.clone());
        let undo = move || {
            if fresh {
                undo_room.state.lock().access.invited.remove(&undo_user);
            }
        };
        let effects = vec![
            Effect::Call(Box::new(tell)),
            Effect::Send(Arc::clone(conn), ok),
            Effect::Undo(Box::new(undo)),
        ];
        // Submitted under the room's lock: invitations and joins commit in order.
        out.commit(writes, effects);
        drop(state);
    }

    pub(crate) fn delete_room(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let me = &logged_in(session).user;
        // The rooms lock, then the room's: the order `create` takes them in.
        let mut rooms = self.rooms.write();
        let mut state = room.state.lock();
        let standing = self.standing(&state, &me.name, &room.name)?;
        require(
            standing,
            Role::Owner,
            "only the room's owner or a server operator deletes it",
        )?;
        state.access.deleted = true;
        let members = std::mem::take(&mut state.members);
        for member in members.values() {
            member.user.rooms.lock().remove(&room.name);
        }
        for user in &state.access.invited {
            self.kept_invites.forget(user, &room.name);
        }
        rooms.remove(&room.name);
        let last_seq = state.last_seq;
        // Kept even if the deletion fails: it is read only by `create`, which cannot
        // run while the room stands.
        self.deleted_rooms
            .lock()
            .insert(room.name.clone(), last_seq);
        drop(rooms);
        let events: Vec<RoomEvent> = members
            .values()
            .map(|m| deleted_event(&room.name, &m.user, &me.name, conn))
            .collect();
        let writes = || {
            vec![Write::DeleteRoom {
                room: room.name.clone(),
                last_seq,
            }]
        };
        let ok = Reply::ok(id).field("room", &room.name).finish();
        let undo = self.undelete(&room, members);
        out.room_commit(&room, &mut state, writes, events, conn, ok, undo);
        Ok(None)
    }

    /// Puts a deleted room back when its deletion fails to commit (unless a room of
    /// that name was made meanwhile, which then stands).
    fn undelete(
        &self,
        room: &Arc<Room>,
        members: std::collections::BTreeMap<String, room::Member>,
    ) -> impl FnOnce() + Send + 'static {
        let (all, room) = (Arc::clone(&self.rooms), Arc::clone(room));
        move || {
            let mut rooms = all.write();
            if rooms.contains_key(&room.name) {
                return;
            }
            let mut state = room.state.lock();
            state.access.deleted = false;
            for member in members.values() {
                member.user.rooms.lock().insert(room.name.clone());
            }
            state.members = members;
            drop(state);
            rooms.insert(room.name.clone(), Arc::clone(&room));
        }
    }
}

/// `room_deleted` for one former member: protocol 2 gets it, protocol 1 `left` with
/// the member's own name (PROTOCOL-2 section 1).
fn deleted_event(room: &str, member: &Arc<User>, by: &str, conn: &Peer) -> RoomEvent {
    RoomEvent::Broadcast {
        frames: Frames {
            v2: protocol::event("room_deleted", &ByEvent { room, by }),
            v1: Some(protocol::event(
                "left",
                &MemberEvent {
                    room,
                    user: &member.name,
                },
            )),
        },
        skip_conn: conn.key,
        v1_skip_user: None,
        also: Some(Arc::clone(member)),
    }
}
