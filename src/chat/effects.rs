//! What a request causes, on its way out: answers to the requester, room events, DMs.
//!
//! With a store, effects wait for the commit of the writes they depend on (and an
//! answer waits behind the earlier answers of its connection); without one they run at
//! once. `Out` is the one place that decides which; `run_committed` is what the
//! store's writer does with a committed batch, and `delivery` the part of it that
//! runs on the worker pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::chat::accounts::{INBOX_CAP, KeptDm, User};
use crate::chat::delivery::Delivery;
use crate::chat::room::{self, Frames, Room, RoomEvent, RoomState};
use crate::chat::{Chat, Peer};
use crate::metrics::ChatMetrics;
use crate::store::{Store, Write};
use crate::transport::service::{CloseReason, Flusher, Service};

/// What waits for a store commit: the effects of one request, in order.
pub(crate) struct Deferred {
    effects: Vec<Effect>,
    owner: Arc<Pending>,
}

/// A connection's submissions to the store that carry its answers and have not been
/// handed back yet: while there are any, its later answers queue behind them, and a
/// client that stopped sending is closed only once they are answered.
#[derive(Default)]
pub(crate) struct Pending {
    count: AtomicUsize,
    /// The connection to close once `count` is 0: its client sent EOF.
    closing: Mutex<Option<Peer>>,
}

impl Pending {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.close_if_asked();
        }
    }

    fn busy(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }

    /// The client sent EOF: close `conn` once every request it sent is answered (now,
    /// if none waits for the store).
    pub(crate) fn close_when_answered(&self, conn: &Peer) {
        *self.closing.lock() = Some(Arc::clone(conn));
        if !self.busy() {
            self.close_if_asked();
        }
    }

    fn close_if_asked(&self) {
        let conn = self.closing.lock().take();
        if let Some(conn) = conn {
            conn.close_when_drained(CloseReason::Eof, None);
        }
    }
}

/// Something a request causes that others (or the requester) can see.
pub(crate) enum Effect {
    /// A frame for one connection: a response, or a kept DM after a login.
    Send(Peer, Bytes),
    /// An event in a room.
    Room(Arc<Room>, RoomEvent),
    /// A frame for every connection of `to` but `skip_conn`, as its protocol
    /// version gets it; if `to` has none, kept for the next login or dropped, as
    /// `keep` says.
    Dm {
        to: Arc<User>,
        frames: Frames,
        skip_conn: usize,
        keep: Keep,
    },
    /// A frame for every protocol-2 connection of `to` but `skip_conn`, never kept
    /// (one's own DM on one's other devices).
    User {
        to: Arc<User>,
        frame: Bytes,
        skip_conn: usize,
    },
    /// A change to memory that may show only once committed (a DM joins its
    /// conversation); dropped if the commit fails.
    Committed(Box<dyn FnOnce() + Send>),
    /// An answer decided when it runs, after every earlier commit: a repeated nonce
    /// gets its first request's answer only once that one is committed.
    Answer(Peer, Box<dyn FnOnce() -> Bytes + Send>),
    /// Close the connection once its answers are written (`quit`).
    Finish(Peer),
    /// Close the connection after what is queued to it, with a `closing` event
    /// naming `reason` (`password_changed`, `account_deleted`).
    Close(Peer, &'static str),
    /// Takes back a change made in memory ahead of its commit, if the commit fails:
    /// memory shows only what was committed.
    Undo(Undo),
    /// Runs once the change is committed (never if it fails): a user event whose
    /// delivery decides itself, such as `invited` (to protocol-2 connections, else
    /// kept).
    Call(Call),
}

/// See [`Effect::Call`].
pub(crate) type Call = Box<dyn FnOnce(&mut Flusher<Chat>) + Send>;

/// See [`Effect::Undo`].
pub(crate) type Undo = Box<dyn FnOnce() + Send>;

/// What becomes of a DM whose recipient has no connection when it is delivered.
pub(crate) enum Keep {
    /// Dropped (an embedder's event).
    Never,
    /// Kept in the recipient's inbox: it is stored already, or nothing is.
    Kept,
    /// Stored first (it was meant for a recipient who was online), then kept: memory
    /// keeps only what the store has.
    StoreFirst(Write),
}

/// A DM that found its recipient offline and must be stored before it is kept.
pub(crate) struct Unstored(Write, Effect);

impl Effect {
    /// Carries the effect out at once; returns how many message or DM deliveries it
    /// made, and a DM that must be stored before it can be kept.
    pub(crate) fn run(self, flusher: &mut Flusher<Chat>) -> (usize, Option<Unstored>) {
        match self {
            Effect::Send(peer, frame) => {
                peer.send(frame, flusher);
                (0, None)
            }
            Effect::Room(room, event) => (event.apply(&mut room.state.lock(), flusher), None),
            Effect::Dm {
                to,
                frames,
                skip_conn,
                keep,
            } => deliver_dm(to, frames, skip_conn, keep, flusher),
            Effect::User {
                to,
                frame,
                skip_conn,
            } => {
                let frames = Frames::v2_only(frame);
                let online = to.online.lock();
                let sent = room::deliver_frames(&online, &frames, skip_conn, false, flusher);
                (sent, None)
            }
            Effect::Committed(change) => {
                change();
                (0, None)
            }
            Effect::Answer(peer, answer) => {
                peer.send(answer(), flusher);
                (0, None)
            }
            Effect::Finish(peer) => {
                peer.close_when_drained(CloseReason::Quit, None);
                (0, None)
            }
            Effect::Close(peer, reason) => {
                let reason = CloseReason::Service(reason);
                peer.close_when_drained(reason, Chat::closing_frame(reason));
                (0, None)
            }
            Effect::Undo(_) => (0, None),
            Effect::Call(call) => {
                call(flusher);
                (0, None)
            }
        }
    }

    /// The store could not keep the change: nobody may be told it happened, and the
    /// requester, who cannot be answered truthfully in order, is disconnected. A
    /// message's seq stays unused (seqs are never reused).
    pub(crate) fn fail(self) {
        match self {
            Effect::Send(peer, _) | Effect::Finish(peer) | Effect::Answer(peer, _) => {
                peer.abort(CloseReason::Error);
            }
            Effect::Undo(undo) => undo(),
            Effect::Room(..)
            | Effect::Dm { .. }
            | Effect::Call(_)
            | Effect::Close(..)
            | Effect::User { .. }
            | Effect::Committed(_) => {}
        }
    }
}

/// Delivers a DM to the recipient's connections, or keeps it (see [`Keep`]). The
/// recipient's `online` lock is held throughout, so a login cannot slip in between
/// the look and the keeping.
fn deliver_dm(
    to: Arc<User>,
    frames: Frames,
    skip_conn: usize,
    keep: Keep,
    flusher: &mut Flusher<Chat>,
) -> (usize, Option<Unstored>) {
    let online = to.online.lock();
    if !online.is_empty() {
        let sent = room::deliver_frames(&online, &frames, skip_conn, true, flusher);
        return (sent, None);
    }
    match keep {
        Keep::Never => {}
        Keep::Kept => {
            let mut inbox = to.inbox.lock();
            if inbox.len() == INBOX_CAP {
                inbox.pop_front();
            }
            let Frames { v2, v1 } = frames;
            let v1 = v1.unwrap_or_else(|| v2.clone());
            inbox.push_back(KeptDm { v1, v2 });
        }
        Keep::StoreFirst(write) => {
            drop(online);
            let kept = Effect::Dm {
                to,
                frames,
                skip_conn,
                keep: Keep::Kept,
            };
            return (0, Some(Unstored(write, kept)));
        }
    }
    (0, None)
}

/// What the store's writer does with a committed batch, in commit order: a message
/// joins its room's history, answers and DMs are queued to their connections (cheap:
/// no system call), and room fan-out goes to the room's delivery lane on the worker
/// pool, as do the writes of the queued frames. Returns the DMs that turned out to
/// need storing, for the next batch.
///
/// Order (the invariant the chat relies on): everything for one connection is queued
/// here, on one thread, in commit order, so answers keep request order; a room's
/// events enter its lane in commit order and the lane runs them in that order
/// (`delivery`), so every member sees them in commit order; a message is in history
/// before its sender's `ok` is queued.
pub(crate) fn run_committed(
    batch: Vec<(Deferred, bool)>,
    delivery: &Arc<Delivery>,
    metrics: &ChatMetrics,
) -> Vec<(Vec<Write>, Deferred)> {
    let mut flusher = Flusher::default();
    let mut followups = Vec::new();
    for (deferred, committed) in batch {
        if !committed {
            fail_all(deferred.effects);
            deferred.owner.done();
            continue;
        }
        for effect in deferred.effects {
            match effect {
                Effect::Room(room, event) => {
                    event.commit(&mut room.state.lock());
                    delivery.room(&room, event);
                }
                effect => {
                    let (delivered, unstored) = effect.run(&mut flusher);
                    metrics.deliveries.add(delivered as u64);
                    if let Some(Unstored(write, kept)) = unstored {
                        let owner = Arc::new(Pending::default());
                        owner.add();
                        let effects = vec![kept];
                        followups.push((vec![write], Deferred { effects, owner }));
                    }
                }
            }
        }
        deferred.owner.done();
    }
    delivery.flush(flusher);
    delivery.help_if_behind();
    followups
}

/// The answers and effects of the requests of one read, on their way out.
pub(crate) struct Out<'a> {
    flusher: &'a mut Flusher<Chat>,
    metrics: &'a ChatMetrics,
    store: Option<&'a Store<Deferred>>,
    owner: &'a Arc<Pending>,
}

impl<'a> Out<'a> {
    /// The way out for one job's requests on a connection whose pending commits
    /// `owner` counts.
    pub(crate) fn new(
        flusher: &'a mut Flusher<Chat>,
        metrics: &'a ChatMetrics,
        store: Option<&'a Store<Deferred>>,
        owner: &'a Arc<Pending>,
    ) -> Out<'a> {
        Out {
            flusher,
            metrics,
            store,
            owner,
        }
    }

    /// Whether effects must wait for the store: they come with writes, or an earlier
    /// answer of this connection still waits (answers leave in request order).
    pub(crate) fn defers(&self, has_writes: bool) -> bool {
        self.store.is_some() && (has_writes || self.owner.busy())
    }

    /// Stores `writes`, then runs `effects` in order: at once when nothing waits for
    /// the store, else after the commit.
    pub(crate) fn commit(&mut self, writes: Vec<Write>, effects: Vec<Effect>) {
        match self.store {
            Some(store) if self.defers(!writes.is_empty()) => {
                submit(store, writes, effects, self.owner);
            }
            _ => {
                for effect in effects {
                    let (delivered, unstored) = effect.run(self.flusher);
                    self.metrics.deliveries.add(delivered as u64);
                    if let (Some(store), Some(Unstored(write, kept))) = (self.store, unstored) {
                        submit(store, vec![write], vec![kept], &Arc::default());
                    }
                }
            }
        }
    }

    /// Runs `effects` after everything submitted so far is committed (at once
    /// without a store).
    pub(crate) fn after_commits(&mut self, effects: Vec<Effect>) {
        match self.store {
            Some(store) => submit(store, Vec::new(), effects, self.owner),
            None => self.commit(Vec::new(), effects),
        }
    }

    /// Answers the requester.
    pub(crate) fn reply(&mut self, conn: &Peer, frame: Bytes) {
        if self.defers(false) {
            self.commit(Vec::new(), vec![Effect::Send(Arc::clone(conn), frame)]);
        } else {
            conn.send(frame, self.flusher);
        }
    }

    /// Stores `writes` (if there is a store) and delivers room events and the
    /// answer, called with the room's lock held so that events leave in the room's
    /// order. `undo` takes back the change to the room's memory if the commit fails.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn room_commit(
        &mut self,
        room: &Arc<Room>,
        state: &mut RoomState,
        writes: impl FnOnce() -> Vec<Write>,
        events: impl IntoIterator<Item = RoomEvent>,
        conn: &Peer,
        answer: Bytes,
        undo: impl FnOnce() + Send + 'static,
    ) {
        if self.defers(true) {
            let mut effects: Vec<Effect> = events
                .into_iter()
                .map(|event| Effect::Room(Arc::clone(room), event))
                .collect();
            effects.push(Effect::Send(Arc::clone(conn), answer));
            effects.push(Effect::Undo(Box::new(undo)));
            self.commit(writes(), effects);
        } else {
            for event in events {
                let delivered = event.apply(state, self.flusher);
                self.metrics.deliveries.add(delivered as u64);
            }
            conn.send(answer, self.flusher);
        }
    }

    /// Like [`Out::room_commit`] for one change to several rooms whose locks the
    /// caller holds (`delete_account`): stores `writes`, then delivers each room's
    /// events, then runs `effects`.
    pub(crate) fn rooms_commit(
        &mut self,
        writes: Vec<Write>,
        rooms: Vec<(&Arc<Room>, &mut RoomState, Vec<RoomEvent>)>,
        effects: Vec<Effect>,
    ) {
        if self.defers(true) {
            let mut all: Vec<Effect> = rooms
                .into_iter()
                .flat_map(|(room, _, events)| {
                    events
                        .into_iter()
                        .map(|event| Effect::Room(Arc::clone(room), event))
                })
                .collect();
            all.extend(effects);
            self.commit(writes, all);
        } else {
            for (_, state, events) in rooms {
                for event in events {
                    let delivered = event.apply(state, self.flusher);
                    self.metrics.deliveries.add(delivered as u64);
                }
            }
            self.commit(Vec::new(), effects);
        }
    }

    /// The write, if changes are stored at all.
    pub(crate) fn durable(&self, write: impl FnOnce() -> Write) -> Vec<Write> {
        if self.store.is_some() {
            vec![write()]
        } else {
            Vec::new()
        }
    }
}

/// Queues `writes` with the effects that wait for them, counted on `owner`. Called
/// under a room's lock for room writes: it never blocks. A submission the store
/// refuses (it cannot keep up, or is stopping) fails as a failed commit would.
pub(crate) fn submit(
    store: &Store<Deferred>,
    writes: Vec<Write>,
    effects: Vec<Effect>,
    owner: &Arc<Pending>,
) {
    owner.add();
    let deferred = Deferred {
        effects,
        owner: Arc::clone(owner),
    };
    if let Err(refused) = store.submit(writes, deferred) {
        fail_all(refused.effects);
        refused.owner.done();
    }
}

/// Fails a request's effects whose writes were not stored. Memory is put back first,
/// then the requester is disconnected: a client that reconnects the moment it is cut
/// off finds the state as it was (an account whose deletion failed logs in again).
fn fail_all(effects: Vec<Effect>) {
    let (undos, rest): (Vec<Effect>, Vec<Effect>) = effects
        .into_iter()
        .partition(|effect| matches!(effect, Effect::Undo(_)));
    for effect in undos.into_iter().chain(rest) {
        effect.fail();
    }
}
