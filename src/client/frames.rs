//! What the server sends, typed: the events it pushes and the answers of the ops.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A room message: the `message` event, and one element of a `history` response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Message {
    /// The room it was sent to.
    pub room: String,
    /// The sender's user name.
    pub from: String,
    /// The text as sent (as last edited, in `history`; empty once deleted).
    #[serde(default)]
    pub text: String,
    /// Its per-room sequence number (starts at 1, never reused).
    pub seq: u64,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// The seq of the message (in the same room) this one answers, if it is a reply
    /// (protocol 2: [`SendOptions::reply_to`]).
    #[serde(default)]
    pub reply_to: Option<u64>,
    /// What happened to it since (in `history`): edits, deletion, reactions. A
    /// deleted message has an empty `text` (protocol 1 reads `"[deleted]"`).
    #[serde(flatten)]
    pub changes: MessageChanges,
}

/// What `history` and `dm_history` show of a message's edits, deletion and reactions
/// (protocol 2, features `edits` and `reactions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MessageChanges {
    /// When its text was last edited, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub edited_ts: Option<u64>,
    /// Deleted: the text is gone.
    #[serde(default)]
    pub deleted: bool,
    /// Who reacted, by emoji (users sorted).
    #[serde(default)]
    pub reactions: BTreeMap<String, Vec<String>>,
}

/// Where a message is, for [`Client::edit`](crate::Client::edit) and its kin: a
/// room, or this user's conversation with another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// A room message.
    Room(&'a str),
    /// A DM of the conversation with this user.
    With(&'a str),
}

/// A direct message as protocol 2 shows it: the `dm` event on a connection that said
/// [`Client::hello`](crate::Client::hello) with 2, and one element of a
/// [`Client::dm_history`](crate::Client::dm_history) answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DirectMessage {
    /// The sender's user name (this user's own, for a DM sent from another connection).
    pub from: String,
    /// The recipient's user name.
    pub to: String,
    /// The other party of the conversation as this user sees it (oneself in a DM to
    /// oneself). A server that leaves it out of `dm_history` elements gets it filled
    /// in by the client from the `with` asked for.
    #[serde(default)]
    pub with: String,
    /// Its per-conversation sequence number (from 1, gap-free, like a room's).
    pub seq: u64,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// The text as sent (as last edited; empty once deleted).
    #[serde(default)]
    pub text: String,
    /// The seq of the message (in the same conversation) this one answers, if any.
    #[serde(default)]
    pub reply_to: Option<u64>,
    /// What happened to it since (in `dm_history`).
    #[serde(flatten)]
    pub changes: MessageChanges,
}

/// A member's standing in a room (protocol 2): the creator is its `owner`, who may
/// make members `op` ([`Client::set_role`](crate::Client::set_role)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A plain member.
    Member,
    /// May set the topic, kick, ban and invite (but not kick the owner or another op).
    Op,
    /// Everything an op may, plus set roles, `set_room` and `delete_room`.
    Owner,
}

/// Something the server pushed without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Someone else sent a message to a room this user is in.
    Message(Message),
    /// A direct message to this user (live, or kept while offline), as a connection
    /// speaking protocol 1 gets it (and one speaking 2 from a server without DM
    /// history, whose `dm` carries no `seq`); protocol 2 has [`Event::DirectMessage`].
    Dm {
        /// The sender's user name.
        from: String,
        /// The text as sent.
        text: String,
        /// When the server accepted it, in milliseconds since the Unix epoch.
        ts: u64,
    },
    /// Another user joined a room this user is in.
    Joined {
        /// The room.
        room: String,
        /// Who joined.
        user: String,
    },
    /// Another user left a room this user is in.
    Left {
        /// The room.
        room: String,
        /// Who left.
        user: String,
    },
    /// The server is about to close this connection.
    Closing {
        /// Why: `slow_consumer`, `idle_timeout`, `shutdown` or `server_full` (PROTOCOL-2
        /// adds more; a client shows an unknown reason as it is).
        reason: String,
    },
    /// A member's role changed (protocol 2).
    Role {
        /// The room.
        room: String,
        /// Whose role changed.
        user: String,
        /// The new role.
        role: Role,
        /// Who changed it.
        by: String,
    },
    /// A room's topic changed (protocol 2); also to the setter's other connections.
    Topic {
        /// The room.
        room: String,
        /// The new topic (`""`: none).
        topic: String,
        /// Who set it.
        by: String,
    },
    /// A member was removed from a room by an owner or op (protocol 2; protocol 1
    /// gets [`Event::Left`]), also to the kicked user's own connections. A ban
    /// removes the member the same way.
    Kicked {
        /// The room.
        room: String,
        /// Who was removed.
        user: String,
        /// Who removed them.
        by: String,
        /// Why, if the remover said.
        #[serde(default)]
        reason: Option<String>,
        /// Removed by a ban (kept out until unbanned), not a kick.
        #[serde(default)]
        banned: bool,
    },
    /// This user was invited to a room (protocol 2), and may now join it once even if
    /// it is invite-only. Kept for the user while offline, like a DM.
    Invited {
        /// The room.
        room: String,
        /// Who invited.
        by: String,
    },
    /// A room this user was in was deleted (protocol 2): its history is gone and the
    /// name is free again.
    RoomDeleted {
        /// The room.
        room: String,
        /// Its owner, or the server operator, who deleted it.
        by: String,
    },
    /// A message was edited (protocol 2): `room` for a room message, `with` (the
    /// other party) for a DM.
    Edited {
        /// The room, for a room message.
        #[serde(default)]
        room: Option<String>,
        /// The other party, for a DM.
        #[serde(default)]
        with: Option<String>,
        /// The message.
        seq: u64,
        /// Its new text.
        text: String,
        /// When, in milliseconds since the Unix epoch.
        edited_ts: u64,
        /// Who edited it (its author).
        by: String,
    },
    /// A message was deleted (protocol 2).
    Deleted {
        /// The room, for a room message.
        #[serde(default)]
        room: Option<String>,
        /// The other party, for a DM.
        #[serde(default)]
        with: Option<String>,
        /// The message.
        seq: u64,
        /// Who deleted it: its author, an op or owner, or a server operator.
        by: String,
    },
    /// Someone reacted to a message, or took a reaction back (protocol 2).
    Reaction {
        /// The room, for a room message.
        #[serde(default)]
        room: Option<String>,
        /// The other party, for a DM.
        #[serde(default)]
        with: Option<String>,
        /// The message.
        seq: u64,
        /// The reaction.
        emoji: String,
        /// Who reacted.
        user: String,
        /// True: added; false: taken back.
        added: bool,
    },
    /// This user's read marker moved on another connection (protocol 2): `room` or
    /// `with` (the conversation's other party) names where.
    Read {
        /// The room, if in a room.
        #[serde(default)]
        room: Option<String>,
        /// The other party, if in a conversation.
        #[serde(default)]
        with: Option<String>,
        /// The seq now read up to.
        seq: u64,
    },
    /// Someone started or stopped typing (protocol 2); `active: false` also when an
    /// indicator expires.
    Typing {
        /// The room, if in a room.
        #[serde(default)]
        room: Option<String>,
        /// In a DM: the typer.
        #[serde(default)]
        with: Option<String>,
        /// Who is typing.
        user: String,
        /// Typing now, or stopped.
        active: bool,
    },
    /// A user who shares a room or conversation with this one came online, went away
    /// or offline (protocol 2).
    Presence {
        /// Whose status changed.
        user: String,
        /// `online`, `away` or `offline`.
        status: String,
        /// The `away` message, if any.
        #[serde(default)]
        message: Option<String>,
    },
    /// A direct message to this user, or one this user sent from another connection,
    /// on a connection speaking protocol 2.
    #[serde(skip_deserializing)]
    DirectMessage(DirectMessage),
    /// An event kind this client does not know (from a newer server), kept whole.
    #[serde(skip_deserializing)]
    Other(Value),
}

/// Event kinds that [`Event`] models; any other kind becomes [`Event::Other`].
pub(super) const KNOWN_EVENTS: [&str; 16] = [
    "message",
    "dm",
    "joined",
    "left",
    "closing",
    "role",
    "topic",
    "kicked",
    "invited",
    "room_deleted",
    "edited",
    "deleted",
    "reaction",
    "read",
    "typing",
    "presence",
];

/// The answer to `whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Whoami {
    /// The user this connection is logged in as.
    pub user: String,
    /// The user's rooms, sorted.
    pub rooms: Vec<String>,
    /// Read markers and unread counts (a server with `read_markers`; else empty).
    #[serde(default)]
    pub unread: crate::client::Unread,
}

/// The answer to `join`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Joined {
    /// The room joined.
    pub room: String,
    /// Its topic (`""` if none was set).
    pub topic: String,
    /// Its members, the joiner included.
    pub members: Vec<String>,
    /// The room's last seq at the moment of joining (0 if none): messages up to it are
    /// history, later ones arrive as events.
    pub seq: u64,
    /// Each member's presence (a server with `presence`; else empty).
    #[serde(default)]
    pub presence: std::collections::BTreeMap<String, crate::client::PresenceStatus>,
}

/// One room in the answer to `rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoomInfo {
    /// The room's name.
    pub room: String,
    /// Its topic (`""` if none was set).
    pub topic: String,
    /// How many members it has.
    pub members: u64,
}

/// The answer to `send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Sent {
    /// The message's per-room sequence number.
    pub seq: u64,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
}

/// The answer to [`Client::dm_with`](crate::Client::dm_with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct DmSent {
    /// The DM's per-conversation sequence number; `None` from a server that does not
    /// keep DM history (no `dm_history` in [`Hello::features`]).
    #[serde(default)]
    pub seq: Option<u64>,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
}

/// The answer to `hello`: what the server is and offers (PROTOCOL-2 section 1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Hello {
    /// The server's name: `"parlor"`.
    pub server: String,
    /// The server's crate version, e.g. `"0.1.0"`.
    pub version: String,
    /// The protocol version this connection speaks from now on: the lower of the
    /// client's and the server's.
    pub protocol: u64,
    /// The protocol-2 features that work on this server (`"roles"`, `"idempotency"`,
    /// `"dm_history"`...); see [`Hello::has`].
    pub features: Vec<String>,
    /// The server's limits.
    pub limits: Limits,
}

impl Hello {
    /// Whether the server names `feature` in `features`.
    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// The server's limits, as `hello` tells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Limits {
    /// The longest request line accepted, in bytes.
    pub max_frame: u64,
    /// The longest message `text`, in bytes.
    pub max_text: u64,
    /// The largest `enc` payload as encoded, in bytes.
    pub max_enc: u64,
    /// The largest `limit` that `history` and `dm_history` accept.
    pub history_max: u64,
    /// Seconds of silence after which the server closes a connection.
    pub idle_timeout: u64,
    /// Frames per second a connection may send on average; 0: no limit.
    pub max_frame_rate: u64,
}

/// A ban in the answer to [`Client::bans`](crate::Client::bans).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ban {
    /// The banned user.
    pub user: String,
    /// Who banned them.
    pub by: String,
    /// Why, if the banner said.
    pub reason: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub ts: u64,
}

/// One DM conversation in the answer to
/// [`Client::conversations`](crate::Client::conversations).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Conversation {
    /// The other party.
    pub with: String,
    /// The last message's seq.
    pub seq: u64,
    /// The last message's `ts`, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// How many messages from the other party are after this user's read marker.
    #[serde(default)]
    pub unread: u64,
}

/// The optional parts of a message (protocol 2), for
/// [`Client::send_with`](crate::Client::send_with) and
/// [`Client::dm_with`](crate::Client::dm_with).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SendOptions {
    /// Makes the request idempotent: 1-64 bytes, unique per user for at least 24 h
    /// ([`fresh_nonce`](crate::client::fresh_nonce) makes one). A repeat with the same
    /// nonce (after a lost connection, say) is not executed again: it gets the first
    /// answer, and no second event goes out. Reusing one for another op, room or
    /// recipient is `bad_request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Makes the message a reply to this seq of the same room or conversation
    /// (`no_such_message` if there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
}

/// How [`Client::create_with`](crate::Client::create_with) sets up a room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CreateOptions {
    /// Its topic (at most 256 bytes); none if `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Whether only invited users may join (protocol 2; `rooms` lists it only to its
    /// members).
    pub invite_only: bool,
}

/// Which slice of a room's or conversation's history `history` and `dm_history`
/// return; `Default` is the newest 50.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryQuery {
    /// Only messages with a seq below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Only messages with a seq above this; the oldest `limit` of them are returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// At most this many messages (1-500; the server's default is 50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}
