//! A chat room: topic, members, its message sequence, recent history, and delivery of
//! its events to the members' connections.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::accounts::User;
use crate::chat::{Chat, Peer};
use crate::conn::Flusher;
use crate::protocol::{self, HistoryQuery, MessageEvent};

/// Most bytes of messages one `history` response holds.
const HISTORY_MAX_BYTES: usize = 1 << 20;

/// A room. Its state sits behind its own lock, so rooms never contend with each other.
pub(crate) struct Room {
    pub(crate) name: String,
    pub(crate) state: Mutex<RoomState>,
}

/// What the room's lock guards. Assigning a seq and queueing the event to every
/// recipient happen under it, as one step, so every member sees seq order without gaps.
pub(crate) struct RoomState {
    pub(crate) topic: String,
    pub(crate) members: BTreeMap<String, Arc<User>>,
    /// The seq of the newest message, 0 before the first.
    pub(crate) last_seq: u64,
    last_ts: u64,
    /// The newest messages as encoded `message` events, oldest first; seqs are
    /// contiguous, ending at `last_seq`.
    history: VecDeque<Bytes>,
    history_cap: usize,
}

impl Room {
    pub(crate) fn new(name: &str, topic: String, creator: &Arc<User>, history_cap: usize) -> Room {
        let mut members = BTreeMap::new();
        members.insert(creator.name.clone(), Arc::clone(creator));
        Room {
            name: name.to_owned(),
            state: Mutex::new(RoomState {
                topic,
                members,
                last_seq: 0,
                last_ts: 0,
                history: VecDeque::new(),
                history_cap,
            }),
        }
    }
}

impl RoomState {
    /// Appends a message from `from` and returns its seq, ts and encoded event.
    pub(crate) fn append(
        &mut self,
        room: &str,
        from: &str,
        text: &str,
        now_ms: u64,
    ) -> (u64, u64, Bytes) {
        self.last_seq += 1;
        // A clock stepping back repeats the last ts: seq order and time order agree.
        self.last_ts = self.last_ts.max(now_ms);
        let event = protocol::event(
            "message",
            &MessageEvent {
                room,
                from,
                text,
                seq: self.last_seq,
                ts: self.last_ts,
            },
        );
        if self.history.len() == self.history_cap {
            self.history.pop_front();
        }
        self.history.push_back(event.clone());
        (self.last_seq, self.last_ts, event)
    }

    /// Queues `frame` to every logged-in connection of every member, except the
    /// connection `skip_conn` and the connections of `skip_user`.
    pub(crate) fn broadcast(
        &self,
        frame: &Bytes,
        skip_conn: usize,
        skip_user: Option<&str>,
        flusher: &mut Flusher<Chat>,
    ) {
        for (name, user) in &self.members {
            if skip_user == Some(name.as_str()) {
                continue;
            }
            deliver(user, frame, skip_conn, flusher);
        }
    }

    /// The stored events a `history` query selects, oldest first.
    pub(crate) fn history(&self, query: HistoryQuery) -> Vec<Bytes> {
        let count = self.history.len() as u64;
        let Some(first) = (self.last_seq + 1).checked_sub(count) else {
            return Vec::new();
        };
        let lo = query.after.map_or(1, |a| a.saturating_add(1)).max(first);
        let hi = match query.before {
            Some(0) => return Vec::new(),
            Some(b) => (b - 1).min(self.last_seq),
            None => self.last_seq,
        };
        if count == 0 || lo > hi {
            return Vec::new();
        }
        let index = |seq: u64| (seq - first) as usize;
        let mut picked = Vec::new();
        let mut bytes = 0;
        let mut take = |event: &Bytes| {
            bytes += event.len();
            if picked.len() == query.limit || (bytes > HISTORY_MAX_BYTES && !picked.is_empty()) {
                return false;
            }
            picked.push(event.clone());
            true
        };
        let range = index(lo)..=index(hi);
        if query.after.is_some() {
            for event in self.history.range(range) {
                if !take(event) {
                    break;
                }
            }
        } else {
            for event in self.history.range(range).rev() {
                if !take(event) {
                    break;
                }
            }
            picked.reverse();
        }
        picked
    }
}

/// Queues `frame` to every logged-in connection of `user` except `skip_conn`.
pub(crate) fn deliver(user: &User, frame: &Bytes, skip_conn: usize, flusher: &mut Flusher<Chat>) {
    deliver_to(&user.online.lock(), frame, skip_conn, flusher);
}

/// Queues `frame` to each of `peers` except `skip_conn`.
pub(crate) fn deliver_to(
    peers: &[Peer],
    frame: &Bytes,
    skip_conn: usize,
    flusher: &mut Flusher<Chat>,
) {
    for peer in peers.iter().filter(|p| p.key != skip_conn) {
        peer.send(frame.clone(), flusher);
    }
}
