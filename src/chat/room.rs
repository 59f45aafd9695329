//! A chat room: topic, members, its message sequence, recent history, its events and
//! their delivery to the members' connections, and its delivery lane (see
//! `delivery`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::chat::access::Access;
use crate::chat::accounts::User;
use crate::chat::budget;
use crate::chat::{Chat, Peer};
use crate::protocol::json::{self as protocol, ChangesFields, MessageEvent};
use crate::protocol::request::HistoryQuery;
use crate::store::{Changes, MessageRow};
use crate::transport::service::Flusher;

/// A room. Its state sits behind its own lock, so rooms never contend with each other.
pub(crate) struct Room {
    pub(crate) name: String,
    pub(crate) state: Mutex<RoomState>,
    /// Committed events waiting for delivery on the worker pool, in commit order.
    pub(crate) lane: Mutex<Lane>,
}

/// A room's committed events on their way to the members, and whether a delivery job
/// has the room (queued or running): one at a time, so the events leave in order.
#[derive(Default)]
pub(crate) struct Lane {
    events: VecDeque<RoomEvent>,
    claimed: bool,
}

impl Lane {
    /// Adds a committed event; returns true if the room must be queued for delivery
    /// (no job has it).
    pub(crate) fn push(&mut self, event: RoomEvent) -> bool {
        self.events.push_back(event);
        !std::mem::replace(&mut self.claimed, true)
    }

    /// The events to deliver now, oldest first; the job keeps the room.
    pub(crate) fn take(&mut self) -> VecDeque<RoomEvent> {
        std::mem::take(&mut self.events)
    }

    /// The job delivered what it took. Returns true if more came meanwhile (the job
    /// keeps the room and must queue it again); otherwise the room is released.
    pub(crate) fn done(&mut self) -> bool {
        if self.events.is_empty() {
            self.claimed = false;
        }
        self.claimed
    }
}

/// An event for a room's members.
pub(crate) enum RoomEvent {
    /// Message `seq`: to members who joined before it, except the sending connection.
    Message {
        seq: u64,
        frame: Bytes,
        skip_conn: usize,
    },
    /// Any other event (`joined`, `left`, `topic`, an embedder's...): to the members'
    /// connections, and those of `also` (one who is no longer a member: who left or
    /// was kicked), as their protocol version gets it, except the connection
    /// `skip_conn` and the protocol-1 connections of `v1_skip_user` (protocol 2 also
    /// tells the actor's other connections, PROTOCOL-2 section 2).
    Broadcast {
        frames: Frames,
        skip_conn: usize,
        v1_skip_user: Option<String>,
        also: Option<Arc<User>>,
    },
}

/// An event as each protocol version gets it (PROTOCOL-2 section 1): a protocol-1
/// connection gets only v1's kinds, some in a v1 form (`left` for `kicked`).
#[derive(Clone, Debug)]
pub(crate) struct Frames {
    /// For connections speaking protocol 2.
    pub(crate) v2: Bytes,
    /// For connections speaking protocol 1; `None`: they do not get this event.
    pub(crate) v1: Option<Bytes>,
}

impl Frames {
    /// The same frame for both versions (a kind v1 knows).
    pub(crate) fn both(frame: Bytes) -> Frames {
        Frames {
            v1: Some(frame.clone()),
            v2: frame,
        }
    }

    /// A kind only protocol 2 knows.
    pub(crate) fn v2_only(frame: Bytes) -> Frames {
        Frames {
            v2: frame,
            v1: None,
        }
    }

    /// The frame for a connection speaking `protocol`, if it gets one.
    pub(crate) fn for_protocol(&self, protocol: u8) -> Option<&Bytes> {
        if protocol >= 2 {
            Some(&self.v2)
        } else {
            self.v1.as_ref()
        }
    }
}

/// A member's role in a room (PROTOCOL-2 section 3): `owner` (at most one), `op`, or
/// a plain `member`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    Member,
    Op,
    Owner,
}

impl Role {
    /// The wire and stored name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Op => "op",
            Role::Owner => "owner",
        }
    }

    /// The role a wire or stored name names.
    pub(crate) fn parse(name: &str) -> Option<Role> {
        match name {
            "member" => Some(Role::Member),
            "op" => Some(Role::Op),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

impl RoomEvent {
    /// Makes a message part of the room's history: it is committed (or, in memory,
    /// happening now).
    pub(crate) fn commit(&self, state: &mut RoomState) {
        if let RoomEvent::Message { seq, frame, .. } = self {
            state.commit_message(*seq, frame);
        }
    }

    /// Queues the event to its recipients; returns how many message deliveries that
    /// made.
    pub(crate) fn deliver(self, state: &RoomState, flusher: &mut Flusher<Chat>) -> usize {
        match self {
            RoomEvent::Message {
                seq,
                frame,
                skip_conn,
            } => state.deliver_message(seq, &frame, skip_conn, flusher),
            RoomEvent::Broadcast {
                frames,
                skip_conn,
                v1_skip_user,
                also,
            } => {
                let skip = v1_skip_user.as_deref();
                state.broadcast(&frames, skip_conn, skip, also.as_deref(), flusher);
                0
            }
        }
    }

    /// Commits and delivers the event at once (no store, or nothing to wait for).
    pub(crate) fn apply(self, state: &mut RoomState, flusher: &mut Flusher<Chat>) -> usize {
        self.commit(state);
        self.deliver(state, flusher)
    }
}

/// A member of a room.
pub(crate) struct Member {
    pub(crate) user: Arc<User>,
    /// The room's last seq when the user joined: later messages reach them live,
    /// earlier ones are history.
    since: u64,
    pub(crate) role: Role,
    /// When they joined (ms since the epoch, as stored): who stands longest.
    pub(crate) joined: u64,
}

/// What the room's lock guards. Assigning a seq and handing the message on (to
/// delivery at once, or to the store in the same order) happen under it, as one step,
/// so the store commits a room's writes in seq order and every member sees that
/// order. A seq whose commit fails is left unused (seqs are never reused): it is
/// neither in memory nor stored, and nobody received it.
pub(crate) struct RoomState {
    pub(crate) topic: String,
    pub(crate) members: BTreeMap<String, Member>,
    /// The seq of the newest message, 0 before the first.
    pub(crate) last_seq: u64,
    /// The seq of the newest message that is stored (or, in memory, delivered):
    /// `history` shows nothing newer, so nobody reads what a crash could take back.
    committed_seq: u64,
    last_ts: u64,
    /// The newest committed messages, oldest first: a message enters at its commit,
    /// so a failed one never shows.
    history: VecDeque<Kept>,
    history_cap: usize,
    /// Invite-only, bans, invitations (protocol 2).
    pub(crate) access: Access,
    /// No message has a lower seq: a room made again under a deleted room's name
    /// starts after its seqs, and `history` need not look below.
    pub(crate) first_seq: u64,
}

impl Room {
    /// A room as stored: `recent` holds its newest messages, oldest first;
    /// `last_ts` is the newest message's time, so time never goes back.
    pub(crate) fn new(
        name: &str,
        topic: String,
        last_seq: u64,
        last_ts: u64,
        recent: &[MessageRow],
        history_cap: usize,
    ) -> Room {
        let recent = recent.iter().map(|row| Kept::new(name, row)).collect();
        Room {
            name: name.to_owned(),
            state: Mutex::new(RoomState {
                topic,
                members: BTreeMap::new(),
                last_seq,
                committed_seq: last_seq,
                last_ts,
                history: recent,
                history_cap,
                access: Access::default(),
                first_seq: 1,
            }),
            lane: Mutex::new(Lane::default()),
        }
    }
}

/// A message as `history` shows it: its `message` event as protocol 2 has it and,
/// for a deleted message only, as protocol 1 has it (the text `"[deleted]"`). An
/// unchanged message is encoded once, and both versions share that frame.
pub(crate) struct Kept {
    seq: u64,
    frame: Bytes,
    v1: Option<Bytes>,
}

impl Kept {
    fn new(room: &str, row: &MessageRow) -> Kept {
        Kept {
            seq: row.seq,
            frame: encode_message(room, row, 2),
            v1: row.changes.deleted.then(|| encode_message(room, row, 1)),
        }
    }

    fn for_protocol(&self, protocol: u8) -> &Bytes {
        match &self.v1 {
            Some(v1) if protocol < 2 => v1,
            _ => &self.frame,
        }
    }
}

/// The fields a kept frame is read back from when the message changes: changes are
/// rare, so the history keeps frames rather than rows.
#[derive(serde::Deserialize)]
struct KeptFields {
    from: String,
    #[serde(default)]
    text: String,
    seq: u64,
    ts: u64,
    #[serde(default)]
    reply_to: Option<u64>,
    #[serde(default)]
    edited_ts: Option<u64>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    reactions: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

/// Where a `history` query must be answered from.
pub(crate) enum HistorySource {
    /// Memory holds every message the query can select.
    Memory(Vec<Bytes>),
    /// Older than memory reaches: ask the store for seqs in (after, below).
    Store { after: Option<u64>, below: u64 },
}

impl RoomState {
    /// Adds `user` with `role`, joined at `joined` (ms since the epoch); returns
    /// false if they were a member already.
    pub(crate) fn add_member(&mut self, user: &Arc<User>, role: Role, joined: u64) -> bool {
        if self.members.contains_key(&user.name) {
            return false;
        }
        let member = Member {
            user: Arc::clone(user),
            since: self.last_seq,
            role,
            joined,
        };
        self.members.insert(user.name.clone(), member);
        true
    }

    /// Takes `name` out of the room; their role ends with it (PROTOCOL-2 section 7).
    /// If they were the owner, ownership passes on (`hand_on`); returns the member and
    /// the new owner with the role they had, if any.
    pub(crate) fn remove_member(&mut self, name: &str) -> Option<(Member, Option<(String, Role)>)> {
        let member = self.members.remove(name)?;
        let heir = (member.role == Role::Owner)
            .then(|| self.hand_on())
            .flatten();
        Some((member, heir))
    }

    /// Makes the longest-standing op the owner, else the longest-standing member;
    /// returns their name and former role (`None`: the room is empty and stays
    /// without owner).
    pub(crate) fn hand_on(&mut self) -> Option<(String, Role)> {
        let heir = self
            .members
            .iter()
            .max_by_key(|(name, m)| (m.role, std::cmp::Reverse((m.joined, (*name).clone()))))
            .map(|(name, _)| name.clone())?;
        let member = self.members.get_mut(&heir)?;
        let former = std::mem::replace(&mut member.role, Role::Owner);
        Some((heir, former))
    }

    /// The member's role; `None` for a non-member.
    pub(crate) fn role_of(&self, name: &str) -> Option<Role> {
        self.members.get(name).map(|m| m.role)
    }

    /// The `roles` object of a `members` answer: every owner and op (a member not in
    /// it is a plain member).
    pub(crate) fn roles(&self) -> BTreeMap<&str, &'static str> {
        self.members
            .iter()
            .filter(|(_, m)| m.role != Role::Member)
            .map(|(name, m)| (name.as_str(), m.role.as_str()))
            .collect()
    }

    pub(crate) fn is_member(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// Adds committed message `seq` to the history `history` serves. Commits come in
    /// seq order (see `RoomState`), so the history stays sorted.
    pub(crate) fn commit_message(&mut self, seq: u64, frame: &Bytes) {
        self.committed_seq = self.committed_seq.max(seq);
        if self.history.len() == self.history_cap {
            self.history.pop_front();
        }
        self.history.push_back(Kept {
            seq,
            frame: frame.clone(),
            v1: None,
        });
    }

    /// The newest seq `history` may show (committed).
    pub(crate) fn committed_seq(&self) -> u64 {
        self.committed_seq
    }

    /// Whether memory holds every committed message from `seq` on (older ones are
    /// the store's).
    pub(crate) fn holds(&self, seq: u64) -> bool {
        self.history.front().is_some_and(|kept| kept.seq <= seq)
    }

    /// Committed message `seq` as memory holds it, if it does.
    pub(crate) fn message(&self, seq: u64) -> Option<MessageRow> {
        let kept = self.kept(seq)?;
        let f: KeptFields = match serde_json::from_slice(&kept.frame) {
            Ok(fields) => fields,
            Err(e) => {
                log::error!("room {seq}: a kept message does not read back: {e}");
                return None;
            }
        };
        Some(MessageRow {
            seq: f.seq,
            from: f.from,
            text: f.text,
            ts: f.ts,
            reply_to: f.reply_to,
            changes: Changes {
                edited_ts: f.edited_ts,
                deleted: f.deleted,
                reactions: f.reactions,
            },
        })
    }

    /// Shows `row` as `history` shows its seq from now on, if memory holds it.
    pub(crate) fn set_message(&mut self, room: &str, row: &MessageRow) {
        let at = self.history.partition_point(|kept| kept.seq < row.seq);
        if let Some(kept) = self.history.get_mut(at).filter(|k| k.seq == row.seq) {
            *kept = Kept::new(room, row);
        }
    }

    fn kept(&self, seq: u64) -> Option<&Kept> {
        let at = self.history.partition_point(|kept| kept.seq < seq);
        self.history.get(at).filter(|kept| kept.seq == seq)
    }

    /// Queues message `seq` to every member who joined before it, except the
    /// connection `skip_conn`. Returns how many connections it was queued to.
    pub(crate) fn deliver_message(
        &self,
        seq: u64,
        frame: &Bytes,
        skip_conn: usize,
        flusher: &mut Flusher<Chat>,
    ) -> usize {
        self.members
            .values()
            .filter(|m| m.since < seq)
            .map(|m| deliver(&m.user, frame, skip_conn, flusher))
            .sum()
    }

    /// Assigns the next seq to a message from `from` (answering `reply_to`); returns
    /// its seq, ts and encoded event. It joins the history at its commit
    /// (`commit_message`).
    pub(crate) fn append(
        &mut self,
        room: &str,
        from: &str,
        text: &str,
        reply_to: Option<u64>,
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
                text: Some(text),
                seq: self.last_seq,
                ts: self.last_ts,
                reply_to,
                changes: ChangesFields::default(),
            },
        );
        (self.last_seq, self.last_ts, event)
    }

    /// Queues `frames` to every logged-in connection of every member and of `also`
    /// (if not a member) as its version gets it, except the connection `skip_conn`
    /// and the protocol-1 connections of `v1_skip_user`.
    pub(crate) fn broadcast(
        &self,
        frames: &Frames,
        skip_conn: usize,
        v1_skip_user: Option<&str>,
        also: Option<&User>,
        flusher: &mut Flusher<Chat>,
    ) {
        let outsider = also.filter(|user| !self.members.contains_key(&user.name));
        let users = self.members.values().map(|m| &*m.user).chain(outsider);
        for user in users {
            let v1_too = v1_skip_user != Some(user.name.as_str());
            deliver_frames(&user.online.lock(), frames, skip_conn, v1_too, flusher);
        }
    }

    /// The events a `history` query selects, oldest first, as a connection speaking
    /// `protocol` gets them, if memory holds them all (no more than `budget` bytes of
    /// them, see `cap`); otherwise the range to read from the store.
    pub(crate) fn history(
        &self,
        query: HistoryQuery,
        budget: usize,
        protocol: u8,
    ) -> HistorySource {
        let newest = self.committed_seq;
        let below = query.before.map_or(newest + 1, |b| b.min(newest + 1));
        let lo = query
            .after
            .map_or(1, |a| a.saturating_add(1))
            .max(self.first_seq);
        if lo >= below {
            return HistorySource::Memory(Vec::new());
        }
        let hi = below - 1;
        let first = self.history.front().map_or(newest + 1, |kept| kept.seq);
        let needed_from = match query.after {
            Some(_) => lo,
            None => hi.saturating_sub(query.limit as u64 - 1).max(lo),
        };
        if needed_from < first {
            return HistorySource::Store {
                after: query.after,
                below,
            };
        }
        let start = self.history.partition_point(|kept| kept.seq < lo);
        let end = self.history.partition_point(|kept| kept.seq <= hi);
        let selected = self
            .history
            .range(start..end)
            .map(|kept| kept.for_protocol(protocol));
        HistorySource::Memory(match query.after {
            Some(_) => cap(selected, query.limit, budget),
            None => {
                let mut newest_first = cap(selected.rev(), query.limit, budget);
                newest_first.reverse();
                newest_first
            }
        })
    }
}

/// Encodes a stored message as `history` shows it to a connection speaking
/// `protocol`: its current text with `edited_ts` and `reactions`, or, deleted, a stub
/// without text (PROTOCOL-2 section 6) that protocol 1 gets as the text `"[deleted]"`
/// (section 1).
pub(crate) fn encode_message(room: &str, row: &MessageRow, protocol: u8) -> Bytes {
    let (text, changes) = shown(&row.text, &row.changes, protocol);
    let deleted = row.changes.deleted;
    protocol::event(
        "message",
        &MessageEvent {
            room,
            from: &row.from,
            text,
            seq: row.seq,
            ts: row.ts,
            reply_to: row.reply_to.filter(|_| !deleted),
            changes,
        },
    )
}

/// What protocol 1 reads for a deleted message (PROTOCOL-2 section 1).
pub(crate) const DELETED_TEXT: &str = "[deleted]";

/// The text and change fields of a message as a connection speaking `protocol`
/// sees them.
pub(crate) fn shown<'a>(
    text: &'a str,
    changes: &'a Changes,
    protocol: u8,
) -> (Option<&'a str>, ChangesFields<'a>) {
    match (changes.deleted, protocol >= 2) {
        (true, true) => (
            None,
            ChangesFields {
                deleted: true,
                ..ChangesFields::default()
            },
        ),
        (true, false) => (Some(DELETED_TEXT), ChangesFields::default()),
        (false, _) => (
            Some(text),
            ChangesFields {
                edited_ts: changes.edited_ts,
                deleted: false,
                reactions: (!changes.reactions.is_empty()).then_some(&changes.reactions),
            },
        ),
    }
}

/// Takes events from the cursor outwards: at most `limit`, and no more than `budget`
/// bytes (always at least one; the budget is `AnswerBudget::history`).
pub(crate) fn cap<'a>(
    events: impl Iterator<Item = &'a Bytes>,
    limit: usize,
    budget: usize,
) -> Vec<Bytes> {
    budget::take_within(events.take(limit).cloned(), budget)
}

/// Queues `frame` to every logged-in connection of `user` except `skip_conn`;
/// returns to how many.
pub(crate) fn deliver(
    user: &User,
    frame: &Bytes,
    skip_conn: usize,
    flusher: &mut Flusher<Chat>,
) -> usize {
    deliver_to(&user.online.lock(), frame, skip_conn, flusher)
}

/// Queues `frames` to each of `peers` but `skip_conn`, as its protocol version gets
/// them (protocol-1 connections only if `v1_too`); returns to how many.
pub(crate) fn deliver_frames(
    peers: &[Peer],
    frames: &Frames,
    skip_conn: usize,
    v1_too: bool,
    flusher: &mut Flusher<Chat>,
) -> usize {
    let mut sent = 0;
    for peer in peers.iter().filter(|p| p.key != skip_conn) {
        let protocol = peer.tag.protocol();
        if let Some(frame) = frames.for_protocol(protocol)
            && (v1_too || protocol >= 2)
        {
            peer.send(frame.clone(), flusher);
            sent += 1;
        }
    }
    sent
}

/// Queues `frame` to each of `peers` except `skip_conn`; returns to how many.
pub(crate) fn deliver_to(
    peers: &[Peer],
    frame: &Bytes,
    skip_conn: usize,
    flusher: &mut Flusher<Chat>,
) -> usize {
    let mut sent = 0;
    for peer in peers.iter().filter(|p| p.key != skip_conn) {
        peer.send(frame.clone(), flusher);
        sent += 1;
    }
    sent
}
