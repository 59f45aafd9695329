//! What a request causes, on its way out: answers to the requester, room events, DMs.
//!
//! With a store, effects wait for the commit of the writes they depend on (and an
//! answer waits behind the earlier answers of its connection); without one they run at
//! once. `Out` is the one place that decides which.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use crate::chat::accounts::{INBOX_CAP, User};
use crate::chat::room::{self, Room, RoomState};
use crate::chat::{Chat, Peer};
use crate::metrics::ChatMetrics;
use crate::store::{Store, Write};
use crate::transport::conn::{CloseReason, Flusher};

/// What waits for a store commit: the effects of one or more requests, in order.
pub(crate) struct Deferred {
    effects: Vec<Effect>,
    owner: Arc<AtomicUsize>,
}

/// Something a request causes that others (or the requester) can see.
pub(crate) enum Effect {
    /// A frame for one connection: a response, or a kept DM after a login.
    Send(Peer, Bytes),
    /// An event in a room.
    Room(Arc<Room>, RoomEvent),
    /// A frame for every connection of `to` but `skip_conn`; if `to` has none, kept
    /// for the next login when `keep` (a `dm`), else dropped.
    Dm {
        to: Arc<User>,
        frame: Bytes,
        skip_conn: usize,
        keep: bool,
    },
    /// Close the connection once its answers are written (`quit`).
    Finish(Peer),
}

/// An event for a room's members.
pub(crate) enum RoomEvent {
    /// Message `seq`: to members who joined before it, except the sending connection.
    Message {
        seq: u64,
        frame: Bytes,
        skip_conn: usize,
    },
    /// `joined`/`left` or an embedder's event: to the members' connections.
    Broadcast {
        frame: Bytes,
        skip_conn: usize,
        skip_user: Option<String>,
    },
}

impl RoomEvent {
    /// Delivers the event; returns how many message deliveries that made.
    pub(crate) fn apply(self, state: &mut RoomState, flusher: &mut Flusher<Chat>) -> usize {
        match self {
            RoomEvent::Message {
                seq,
                frame,
                skip_conn,
            } => state.deliver_message(seq, &frame, skip_conn, flusher),
            RoomEvent::Broadcast {
                frame,
                skip_conn,
                skip_user,
            } => {
                state.broadcast(&frame, skip_conn, skip_user.as_deref(), flusher);
                0
            }
        }
    }
}

impl Effect {
    /// Carries the effect out; returns how many message or DM deliveries it made.
    pub(crate) fn run(self, flusher: &mut Flusher<Chat>) -> usize {
        match self {
            Effect::Send(peer, frame) => {
                peer.send(frame, flusher);
                0
            }
            Effect::Room(room, event) => event.apply(&mut room.state.lock(), flusher),
            Effect::Dm {
                to,
                frame,
                skip_conn,
                keep,
            } => {
                let online = to.online.lock();
                if online.is_empty() && keep {
                    let mut inbox = to.inbox.lock();
                    if inbox.len() == INBOX_CAP {
                        inbox.pop_front();
                    }
                    inbox.push_back(frame);
                    0
                } else {
                    room::deliver_to(&online, &frame, skip_conn, flusher)
                }
            }
            Effect::Finish(peer) => {
                peer.close_when_drained(CloseReason::Quit, None);
                0
            }
        }
    }

    /// The store could not keep the change: nobody may be told it happened, and the
    /// requester, who cannot be answered truthfully in order, is disconnected.
    pub(crate) fn fail(self) {
        match self {
            Effect::Send(peer, _) | Effect::Finish(peer) => peer.abort(CloseReason::Error),
            Effect::Room(..) | Effect::Dm { .. } => {}
        }
    }
}

/// Runs the effects of a committed batch, in order, and writes them out.
pub(crate) fn run_committed(batch: Vec<(Deferred, bool)>, metrics: &ChatMetrics) {
    let mut flusher = Flusher::default();
    for (deferred, committed) in batch {
        for effect in deferred.effects {
            if committed {
                metrics.deliveries.add(effect.run(&mut flusher) as u64);
            } else {
                effect.fail();
            }
        }
        deferred.owner.fetch_sub(1, Ordering::AcqRel);
    }
    flusher.flush_all();
}

/// The answers and effects of the requests of one read, on their way out.
pub(crate) struct Out<'a> {
    flusher: &'a mut Flusher<Chat>,
    metrics: &'a ChatMetrics,
    store: Option<&'a Store<Deferred>>,
    owner: &'a Arc<AtomicUsize>,
}

impl<'a> Out<'a> {
    /// The way out for one job's requests on a connection whose pending commits
    /// `owner` counts.
    pub(crate) fn new(
        flusher: &'a mut Flusher<Chat>,
        metrics: &'a ChatMetrics,
        store: Option<&'a Store<Deferred>>,
        owner: &'a Arc<AtomicUsize>,
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
        self.store.is_some() && (has_writes || self.owner.load(Ordering::Acquire) > 0)
    }

    /// Stores `writes`, then runs `effects` in order: at once when nothing waits for
    /// the store, else after the commit.
    pub(crate) fn commit(&mut self, writes: Vec<Write>, effects: Vec<Effect>) {
        match self.store {
            Some(store) if self.defers(!writes.is_empty()) => {
                self.owner.fetch_add(1, Ordering::AcqRel);
                let owner = Arc::clone(self.owner);
                store.submit(writes, Deferred { effects, owner });
            }
            _ => {
                for effect in effects {
                    self.metrics.deliveries.add(effect.run(self.flusher) as u64);
                }
            }
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

    /// Stores `write` (if there is a store) and delivers a room event and the answer,
    /// called with the room's lock held so that events leave in the room's order.
    pub(crate) fn room_commit(
        &mut self,
        room: &Arc<Room>,
        state: &mut RoomState,
        write: impl FnOnce() -> Write,
        event: RoomEvent,
        conn: &Peer,
        answer: Bytes,
    ) {
        if self.defers(true) {
            let effects = vec![
                Effect::Room(Arc::clone(room), event),
                Effect::Send(Arc::clone(conn), answer),
            ];
            self.commit(vec![write()], effects);
        } else {
            let delivered = event.apply(state, self.flusher);
            self.metrics.deliveries.add(delivered as u64);
            conn.send(answer, self.flusher);
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
