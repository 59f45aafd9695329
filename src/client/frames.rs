//! What the server sends, typed: the events it pushes and the answers of the ops.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A room message: the `message` event, and one element of a `history` response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Message {
    /// The room it was sent to.
    pub room: String,
    /// The sender's user name.
    pub from: String,
    /// The text as sent.
    pub text: String,
    /// Its per-room sequence number (starts at 1, never reused).
    pub seq: u64,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
}

/// Something the server pushed without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Someone else sent a message to a room this user is in.
    Message(Message),
    /// A direct message to this user (live, or kept while offline).
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
    /// An event kind this client does not know (from a newer server), kept whole.
    #[serde(skip_deserializing)]
    Other(Value),
}

/// Event kinds that [`Event`] models; any other kind becomes [`Event::Other`].
pub(super) const KNOWN_EVENTS: [&str; 5] = ["message", "dm", "joined", "left", "closing"];

/// The answer to `whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Whoami {
    /// The user this connection is logged in as.
    pub user: String,
    /// The user's rooms, sorted.
    pub rooms: Vec<String>,
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

/// Which slice of a room's history `history` returns; `Default` is the newest 50.
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
