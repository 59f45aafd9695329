//! DM conversations (issue 17 item 1, PROTOCOL-2 section 6): one per pair of users,
//! with its own gap-free seq, what each side sees of it (a DM from a user the
//! recipient blocks is the sender's only), and its newest DMs for `dm_history`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::chat::{budget, room};
use crate::protocol::json::{self as protocol, DmEvent2};
use crate::protocol::request::HistoryQuery;
use crate::store::{Changes, DmRow};

/// A conversation. Its state sits behind its own lock: assigning a seq and handing
/// the DM on to the store happen under it, so DMs commit in seq order.
pub(crate) struct Conversation {
    /// The two names in order; the same name twice for one's notes to oneself.
    pub(crate) users: [String; 2],
    pub(crate) state: Mutex<ConvState>,
}

/// A conversation's seq, and per side (index into `Conversation::users`) what that
/// side sees.
pub(crate) struct ConvState {
    /// The seq of the newest DM, 0 before the first.
    pub(crate) last_seq: u64,
    last_ts: u64,
    /// The newest committed seq: `dm_history` shows nothing newer.
    committed_seq: u64,
    /// Every committed DM from this seq on is in `recent`.
    memory_from: u64,
    /// The newest committed DMs, oldest first.
    recent: VecDeque<DmRow>,
    cap: usize,
    /// The newest DM each side sees: (seq, ts), (0, 0) if none.
    last_seen: [(u64, u64); 2],
    /// The seqs of the DMs from the other party each side sees, ascending: what
    /// `unread` counts.
    incoming: [Vec<u64>; 2],
}

/// Where a `dm_history` query must be answered from.
pub(crate) enum DmSource {
    /// Memory holds every DM the query can select: these, encoded, oldest first.
    Memory(Vec<Bytes>),
    /// Older than memory reaches: ask the store for seqs in (after, below).
    Store { after: Option<u64>, below: u64 },
}

impl Conversation {
    fn new(x: &str, y: &str, cap: usize) -> Conversation {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        Conversation {
            users: [a.to_owned(), b.to_owned()],
            state: Mutex::new(ConvState {
                last_seq: 0,
                last_ts: 0,
                committed_seq: 0,
                memory_from: 1,
                recent: VecDeque::new(),
                cap,
                last_seen: [(0, 0); 2],
                incoming: [Vec::new(), Vec::new()],
            }),
        }
    }

    /// `name`'s side of the conversation.
    pub(crate) fn side(&self, name: &str) -> usize {
        usize::from(self.users[0] != name)
    }
}

impl ConvState {
    /// Assigns the next seq and its ts (never before the last one's).
    pub(crate) fn next(&mut self, now_ms: u64) -> (u64, u64) {
        self.last_seq += 1;
        self.last_ts = self.last_ts.max(now_ms);
        (self.last_seq, self.last_ts)
    }

    /// Makes a committed DM (or, at start-up, a stored one) part of the conversation.
    /// Commits come in seq order, so `recent` stays sorted.
    pub(crate) fn commit(&mut self, users: &[String; 2], row: DmRow) {
        self.committed_seq = self.committed_seq.max(row.seq);
        self.last_seq = self.last_seq.max(row.seq);
        self.last_ts = self.last_ts.max(row.ts);
        let sender = usize::from(users[0] != row.from);
        self.last_seen[sender] = (row.seq, row.ts);
        if row.from != row.to && !row.hidden {
            self.last_seen[1 - sender] = (row.seq, row.ts);
            self.incoming[1 - sender].push(row.seq);
        }
        if self.recent.len() >= self.cap
            && let Some(old) = self.recent.pop_front()
        {
            self.memory_from = old.seq + 1;
        }
        self.recent.push_back(row);
    }

    /// Committed DM `seq`, if memory holds it; `Err(true)` if the store may (it is
    /// older than memory reaches), `Err(false)` if there is no such DM.
    pub(crate) fn row(&self, seq: u64) -> Result<&DmRow, bool> {
        if seq == 0 || seq > self.committed_seq {
            return Err(false);
        }
        if seq < self.memory_from {
            return Err(true);
        }
        let at = self.recent.partition_point(|row| row.seq < seq);
        self.recent
            .get(at)
            .filter(|row| row.seq == seq)
            .ok_or(false)
    }

    /// Shows `changes` for DM `seq` from now on, if memory holds it.
    pub(crate) fn set_changes(&mut self, seq: u64, text: &str, changes: &Changes) {
        let at = self.recent.partition_point(|row| row.seq < seq);
        if let Some(row) = self.recent.get_mut(at).filter(|row| row.seq == seq) {
            text.clone_into(&mut row.text);
            row.changes = changes.clone();
        }
    }

    /// The newest DM `side` sees: (seq, ts), (0, 0) if none.
    pub(crate) fn last_seen(&self, side: usize) -> (u64, u64) {
        self.last_seen[side]
    }

    /// How many DMs from the other party `side` sees after seq `marker` (its read
    /// marker; 0 before it has one).
    pub(crate) fn unread(&self, side: usize, marker: u64) -> u64 {
        let seqs = &self.incoming[side];
        (seqs.len() - seqs.partition_point(|&seq| seq <= marker)) as u64
    }

    /// The DMs a `dm_history` query of `viewer` (on a connection speaking
    /// `protocol`) selects, if memory holds them all (no more than `budget` bytes, as
    /// `history` does); otherwise the range to read from the store.
    pub(crate) fn history(
        &self,
        viewer: &str,
        query: HistoryQuery,
        budget: usize,
        protocol: u8,
    ) -> DmSource {
        let below = query
            .before
            .map_or(self.committed_seq + 1, |b| b.min(self.committed_seq + 1));
        let lo = query.after.map_or(1, |a| a.saturating_add(1));
        if lo >= below {
            return DmSource::Memory(Vec::new());
        }
        let start = self.recent.partition_point(|row| row.seq < lo);
        let end = self.recent.partition_point(|row| row.seq < below);
        let seen = |row: &&DmRow| sees(viewer, row);
        let store = DmSource::Store {
            after: query.after,
            below,
        };
        let range = self.recent.range(start..end);
        if query.after.is_some() {
            if lo < self.memory_from {
                return store;
            }
            let rows = range.filter(seen).take(query.limit);
            return DmSource::Memory(cap(rows.map(|row| encode(viewer, row, protocol)), budget));
        }
        let rows: Vec<&DmRow> = range.rev().filter(seen).take(query.limit).collect();
        if rows.len() < query.limit && lo < self.memory_from {
            return store;
        }
        let mut newest_first = cap(
            rows.into_iter().map(|row| encode(viewer, row, protocol)),
            budget,
        );
        newest_first.reverse();
        DmSource::Memory(newest_first)
    }
}

fn cap(events: impl Iterator<Item = Bytes>, budget: usize) -> Vec<Bytes> {
    budget::take_within(events, budget)
}

/// Whether `viewer` sees `row`: all they sent, and what was not hidden from them.
pub(crate) fn sees(viewer: &str, row: &DmRow) -> bool {
    !row.hidden || row.from == viewer
}

/// A DM as the protocol-2 `dm` event `viewer` gets (`with`: the other party), with
/// its edits and reactions; deleted, as `history` shows a deleted message to a
/// connection speaking `protocol` (see `room::shown`).
pub(crate) fn encode(viewer: &str, row: &DmRow, protocol: u8) -> Bytes {
    let (text, changes) = room::shown(&row.text, &row.changes, protocol);
    protocol::event(
        "dm",
        &DmEvent2 {
            from: &row.from,
            to: &row.to,
            with: other(viewer, row),
            seq: row.seq,
            ts: row.ts,
            text,
            reply_to: row.reply_to.filter(|_| !row.changes.deleted),
            changes,
        },
    )
}

/// The other party of `row` as `viewer` sees it (oneself in a DM to oneself).
pub(crate) fn other<'a>(viewer: &str, row: &'a DmRow) -> &'a str {
    if row.from == viewer {
        &row.to
    } else {
        &row.from
    }
}

/// Every conversation, by each of its users and the other.
#[derive(Default)]
pub(crate) struct Conversations {
    by_user: RwLock<HashMap<String, HashMap<String, Arc<Conversation>>>>,
}

impl Conversations {
    /// The conversation of `x` and `y`, if they have one.
    pub(crate) fn get(&self, x: &str, y: &str) -> Option<Arc<Conversation>> {
        self.by_user.read().get(x)?.get(y).cloned()
    }

    /// The conversation of `x` and `y`, made if they have none; `cap` DMs are kept
    /// in memory.
    pub(crate) fn open(&self, x: &str, y: &str, cap: usize) -> Arc<Conversation> {
        if let Some(found) = self.get(x, y) {
            return found;
        }
        let mut by_user = self.by_user.write();
        if let Some(found) = by_user.get(x).and_then(|m| m.get(y)) {
            return Arc::clone(found);
        }
        let conversation = Arc::new(Conversation::new(x, y, cap));
        for (me, other) in [(x, y), (y, x)] {
            by_user
                .entry(me.to_owned())
                .or_default()
                .insert(other.to_owned(), Arc::clone(&conversation));
        }
        conversation
    }

    /// `user`'s conversations.
    pub(crate) fn of(&self, user: &str) -> Vec<Arc<Conversation>> {
        self.by_user
            .read()
            .get(user)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}
