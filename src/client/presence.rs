//! Protocol 2's read markers, typing and presence (issue 17 items 5-7): `mark_read`,
//! `unread`, `typing`, `away`, `back`, and the members' presence.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::ops::field;
use crate::client::{Client, ClientError};

/// What a marker or typing op is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A room.
    Room(&'a str),
    /// The DM conversation with this user.
    With(&'a str),
}

impl Target<'_> {
    fn fields(self) -> Value {
        match self {
            Target::Room(room) => json!({ "room": room }),
            Target::With(with) => json!({ "with": with }),
        }
    }
}

/// A room's or conversation's read marker and unread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct UnreadCount {
    /// The seq read up to (0: none).
    pub marker: u64,
    /// Messages after the marker that are not one's own.
    pub count: u64,
}

/// The answer to `unread` (and `whoami`'s `unread`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Unread {
    /// Every room the user is in, by name.
    pub rooms: BTreeMap<String, UnreadCount>,
    /// Every conversation with a message, by the other party.
    pub conversations: BTreeMap<String, UnreadCount>,
}

/// A user's presence as `members` and `join` show it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PresenceStatus {
    /// `online`, `away` or `offline`.
    pub status: String,
    /// The `away` message, if one was given.
    #[serde(default)]
    pub message: Option<String>,
}

impl Client {
    /// Moves this user's read marker in a room or conversation forward to `seq` (to
    /// the last seq at most); returns where it is now. The user's other protocol-2
    /// connections get [`crate::Event::Read`].
    pub fn mark_read(&mut self, target: Target<'_>, seq: u64) -> Result<u64, ClientError> {
        let mut fields = target.fields();
        fields["seq"] = Value::from(seq);
        let response = self.request("mark_read", fields)?;
        field(response, "mark_read", "marker")
    }

    /// Every room's and conversation's marker and unread count.
    pub fn unread(&mut self) -> Result<Unread, ClientError> {
        let response = self.request("unread", Value::Null)?;
        field(response, "unread", "unread")
    }

    /// Says this user is (`active`) or stopped typing in a room or to a user. The
    /// server relays it at most once a second and ends it after 6 s: renew it while
    /// typing goes on.
    pub fn typing(&mut self, target: Target<'_>, active: bool) -> Result<(), ClientError> {
        let mut fields = target.fields();
        fields["active"] = Value::from(active);
        self.request("typing", fields).map(drop)
    }

    /// Sets this user away, with a message (at most 256 bytes) if given.
    pub fn away(&mut self, message: Option<&str>) -> Result<(), ClientError> {
        let fields = match message {
            Some(message) => json!({ "message": message }),
            None => Value::Null,
        };
        self.request("away", fields).map(drop)
    }

    /// Ends `away`.
    pub fn back(&mut self) -> Result<(), ClientError> {
        self.request("back", Value::Null).map(drop)
    }

    /// A room's members and each one's presence.
    pub fn presence(
        &mut self,
        room: &str,
    ) -> Result<BTreeMap<String, PresenceStatus>, ClientError> {
        let response = self.request("members", json!({ "room": room }))?;
        field(response, "members", "presence")
    }
}
