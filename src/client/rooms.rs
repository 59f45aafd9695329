//! Protocol 2's room ops: roles, topics, moderation, invite-only rooms and deleting a
//! room (issue 16, PROTOCOL-2 sections 5 and 7), one typed method each.
//!
//! The errors they share, in the server's order: `no_such_room`, `not_member` (the
//! caller is not in the room; a server operator may act anyway), `forbidden` (the
//! caller's role does not allow it), `no_such_user` (an unknown target),
//! `not_member` (the target is not in the room).

use serde_json::{Value, json};

use crate::client::ops::encode;
use crate::client::{Ban, Client, ClientError, CreateOptions, Role};

impl Client {
    /// Creates a room as [`Client::create`] does, with [`CreateOptions`] (an
    /// invite-only room, say).
    pub fn create_with(&mut self, room: &str, options: &CreateOptions) -> Result<(), ClientError> {
        let mut fields = encode(options, "create options")?;
        fields["room"] = Value::from(room);
        self.request("create", fields).map(drop)
    }

    /// Sets a member's role, by the owner: [`Role::Op`] or [`Role::Member`], or
    /// [`Role::Owner`] to hand the room over (the old owner becomes an op). Every
    /// member gets [`Event::Role`](crate::Event::Role).
    pub fn set_role(&mut self, room: &str, user: &str, role: Role) -> Result<(), ClientError> {
        let fields = json!({ "room": room, "user": user, "role": role });
        self.request("set_role", fields).map(drop)
    }

    /// Sets a room's topic (at most 256 bytes, `too_long` past it), by its owner or an
    /// op. Every member gets [`Event::Topic`](crate::Event::Topic).
    pub fn set_topic(&mut self, room: &str, topic: &str) -> Result<(), ClientError> {
        let fields = json!({ "room": room, "topic": topic });
        self.request("set_topic", fields).map(drop)
    }

    /// Removes a member from a room, by its owner or an op (an op cannot kick the
    /// owner or another op: `forbidden`). Every member, the kicked user's own
    /// connections included, gets [`Event::Kicked`](crate::Event::Kicked).
    pub fn kick(
        &mut self,
        room: &str,
        user: &str,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        self.request("kick", target(room, user, reason)).map(drop)
    }

    /// Bans a user from a room, by its owner or an op: a member is kicked as by
    /// [`Client::kick`], and the user's `join` answers `banned` until
    /// [`Client::unban`]. Works on any existing user, member or not.
    pub fn ban(&mut self, room: &str, user: &str, reason: Option<&str>) -> Result<(), ClientError> {
        self.request("ban", target(room, user, reason)).map(drop)
    }

    /// Lifts a ban, by the room's owner or an op.
    pub fn unban(&mut self, room: &str, user: &str) -> Result<(), ClientError> {
        self.request("unban", target(room, user, None)).map(drop)
    }

    /// Lists a room's bans, to its owner and ops (asking page after page when there
    /// are more than the server gives at once).
    pub fn bans(&mut self, room: &str) -> Result<Vec<Ban>, ClientError> {
        self.all_pages("bans", json!({ "room": room }), "bans")
    }

    /// Makes a room invite-only or open, by its owner. In an invite-only room, `join`
    /// without an invitation answers `not_invited`.
    pub fn set_room(&mut self, room: &str, invite_only: bool) -> Result<(), ClientError> {
        let fields = json!({ "room": room, "invite_only": invite_only });
        self.request("set_room", fields).map(drop)
    }

    /// Invites a user to a room, by its owner or an op: the user may then join it once,
    /// and gets [`Event::Invited`](crate::Event::Invited) (kept while offline).
    pub fn invite(&mut self, room: &str, user: &str) -> Result<(), ClientError> {
        self.request("invite", target(room, user, None)).map(drop)
    }

    /// Deletes a room, by its owner or a server operator: its history, roles, bans and
    /// invitations go, every member gets [`Event::RoomDeleted`](crate::Event::RoomDeleted),
    /// and the name may be created again.
    pub fn delete_room(&mut self, room: &str) -> Result<(), ClientError> {
        self.request("delete_room", json!({ "room": room }))
            .map(drop)
    }
}

/// The fields of an op on one user in one room, with the reason if one is given.
fn target(room: &str, user: &str, reason: Option<&str>) -> Value {
    let mut fields = json!({ "room": room, "user": user });
    if let Some(reason) = reason {
        fields["reason"] = Value::from(reason);
    }
    fields
}
