//! `hello`: what this server is, which protocol version the connection speaks from
//! now on, and what it offers (PROTOCOL-2 section 1).

use serde::Serialize;
use serde_json::value::RawValue;

use crate::chat::{Chat, Peer};
use crate::protocol::json::Reply;
use crate::protocol::request::HISTORY_MAX_LIMIT;

/// The newest protocol version this server speaks.
pub(crate) const PROTOCOL: u8 = 2;

/// What `hello` names in `features`: each protocol-2 feature that works on this
/// server, by its name in PROTOCOL-2 section 1.
const FEATURES: &[&str] = &[
    "roles",
    "topics",
    "moderation",
    "invite_only",
    "room_deletion",
    "accounts",
    "idempotency",
    "dm_history",
    "replies",
    "blocking",
    "admin",
    "edits",
    "reactions",
    "read_markers",
    "typing",
    "presence",
];

/// `hello`'s `limits`: sizes in bytes, `idle_timeout` in seconds, `max_frame_rate`
/// in frames per second (0: no limit).
#[derive(Serialize)]
struct Limits {
    max_frame: usize,
    max_text: usize,
    max_enc: usize,
    history_max: u64,
    idle_timeout: u64,
    max_frame_rate: u32,
}

impl Chat {
    /// Answers `hello` and sets the connection's version: the lower of the client's
    /// and [`PROTOCOL`], 1 when the client named none.
    pub(crate) fn hello(&self, conn: &Peer, id: Option<&RawValue>, asked: Option<u64>) -> Reply {
        let protocol = asked.map_or(1, |v| v.min(u64::from(PROTOCOL)));
        let protocol = u8::try_from(protocol).unwrap_or(PROTOCOL);
        conn.tag.set_protocol(protocol);
        let limits = Limits {
            max_frame: self.live.max_frame(),
            max_text: self.live.max_text(),
            max_enc: self.max_enc(),
            history_max: HISTORY_MAX_LIMIT,
            idle_timeout: self.live.idle_timeout().as_secs(),
            max_frame_rate: self.live.max_frame_rate(),
        };
        Reply::ok(id)
            .field("server", "parlor")
            .field("version", env!("CARGO_PKG_VERSION"))
            .field("protocol", &protocol)
            .field("features", FEATURES)
            .field("limits", &limits)
    }

    /// The largest `enc` payload (PROTOCOL-2 section 6): the smaller of twice
    /// `max_text` plus 4096 and `max_frame` less 1024.
    fn max_enc(&self) -> usize {
        (2 * self.live.max_text() + 4096).min(self.live.max_frame().saturating_sub(1024))
    }
}
