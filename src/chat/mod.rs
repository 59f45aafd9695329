//! The chat layer: accounts, rooms, direct messages and history, behind the service
//! seam the transport calls (`Service` for `Chat`, at the end of this file).
//!
//! This file holds the service and its per-connection state; `ops/` the operations,
//! one file per family; `effects` what they cause and when it runs (after the store's
//! commit), and `delivery` the part of that which runs on the worker pool; `accounts`,
//! `room` and `hasher` the state they work on; `budget` how large a list answer may
//! be; `command` the embedding API. Files below this one use its shared items (`Chat`,
//! `Session`, `Peer`, the name rules); it uses theirs only through their public items.

pub(crate) mod access;
pub(crate) mod accounts;
mod budget;
pub(crate) mod command;
mod conversation;
mod delivery;
pub(crate) mod effects;
mod hasher;
mod limiter;
mod markers;
mod nonces;
mod ops;
mod presence;
pub(crate) mod room;
mod timer;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::live::Live;
use parking_lot::{Mutex, RwLock};
use serde_json::value::RawValue;

use crate::chat::access::{Access, KeptInvites};
use crate::chat::accounts::{Accounts, KeptDm, TokenHash, User};
use crate::chat::budget::AnswerBudget;
use crate::chat::command::{CommandError, Extensions, Hooks};
use crate::chat::conversation::Conversations;
use crate::chat::delivery::Delivery;
use crate::chat::effects::{Deferred, Out, Pending, run_committed, submit};
use crate::chat::hasher::Hasher;
use crate::chat::limiter::FrameLimiter;
use crate::chat::markers::Markers;
use crate::chat::nonces::Nonces;
use crate::chat::ops::{Failure, Hashed, Op, Step, fail};
use crate::chat::presence::Presence;
use crate::chat::room::{Role, Room};
use crate::chat::timer::Timer;
use crate::config::Config;
use crate::error_code::ErrorCode;
use crate::metrics::{ChatMetrics, Encoder};
use crate::protocol::framing::{Split, Splitter};
use crate::protocol::json::{self as protocol, ClosingEvent, DmEvent};
use crate::protocol::request::{self, OpKind};
use crate::store::{DmRow, SessionRow, Snapshot, Store, Write};
use crate::transport::service::{CloseReason, Conn, Flow, Flusher, Io, Pool, Service, pending};

/// A logged-in connection as the chat state sees it: where its events are queued.
pub(crate) type Peer = Arc<Conn<Chat>>;

/// What the chat layer keeps on each connection for others to read (`Conn::tag`):
/// delivery reads it for every recipient.
#[derive(Default)]
pub(crate) struct ConnTag {
    /// The protocol version the connection speaks; 0 (never said `hello`) is 1.
    protocol: AtomicU8,
    /// The user it is logged in as, for an operator's listing (`admin_connections`).
    user: Mutex<Option<String>>,
}

impl ConnTag {
    /// The protocol version the connection speaks: 1 until its `hello` says 2.
    pub(crate) fn protocol(&self) -> u8 {
        self.protocol.load(Ordering::Relaxed).max(1)
    }

    pub(crate) fn set_protocol(&self, version: u8) {
        self.protocol.store(version, Ordering::Relaxed);
    }

    /// The user the connection is logged in as, if any.
    pub(crate) fn user(&self) -> Option<String> {
        self.user.lock().clone()
    }

    fn set_user(&self, user: Option<&str>) {
        *self.user.lock() = user.map(str::to_owned);
    }
}

/// The first byte of a TLS handshake record: a TLS client on the plain port.
const TLS_HANDSHAKE: u8 = 0x16;
/// Longest room topic, in bytes.
const MAX_TOPIC: usize = 256;
const MAX_USER_NAME: usize = 32;
const MAX_ROOM_NAME: usize = 64;
pub(crate) const MIN_PASSWORD: usize = 8;
/// bcrypt reads no further than this.
pub(crate) const MAX_PASSWORD: usize = 72;

/// The chat service and all chat state.
pub(crate) struct Chat {
    /// Every op by name: built-in or the embedder's.
    ops: HashMap<String, Op>,
    metrics: Arc<ChatMetrics>,
    hooks: Hooks,
    accounts: Arc<Accounts>,
    rooms: Arc<RwLock<BTreeMap<String, Arc<Room>>>>,
    /// Every DM conversation.
    conversations: Conversations,
    /// The nonces of `send` and `dm`.
    nonces: Arc<Nonces>,
    hasher: Hasher,
    /// Where changes are made durable; `None` keeps everything in memory only.
    store: Option<Store<Deferred>>,
    /// Runs what a commit causes on the worker pool.
    delivery: Arc<Delivery>,
    /// Open while requests are taken: a shutdown closes it (under the write lock, so
    /// no request is half handled), and what was accepted is then finished.
    accepting: RwLock<bool>,
    bcrypt_cost: u32,
    /// Limits, operators and signup, as the last reload left them.
    live: Arc<Live>,
    history_cap: usize,
    /// How many bytes a `rooms` page and a `history` answer may hold.
    answer_budget: AnswerBudget,
    /// `invited` events waiting for their user's next protocol-2 login.
    kept_invites: Arc<KeptInvites>,
    /// The last seq of each deleted room, by name: a room made again under the name
    /// goes on after it (PROTOCOL-2 section 7).
    deleted_rooms: Mutex<HashMap<String, u64>>,
    /// Every open connection, for the operators' ops (set once the server runs).
    pool: OnceLock<Pool<Chat>>,
    /// Every user's read markers.
    markers: Markers,
    /// Who is online or away, and who is typing where.
    presence: Arc<Presence>,
    /// Ends typing indicators and announces `offline` after its grace.
    timer: Arc<Timer>,
}

/// One connection's chat state.
pub(crate) struct Session {
    splitter: Splitter,
    login: Option<Login>,
    /// A password hash finished by the hashing pool, waiting to be applied.
    hashed: Option<Hashed>,
    /// The first bytes have been looked at (for a TLS client on the plain port).
    greeted: bool,
    /// The per-connection frame rate limit.
    limiter: FrameLimiter,
    /// The next line, split but over the rate: handled when the throttle ends.
    held: Option<Split>,
    /// Submissions to the store that carry this connection's answers and have not
    /// been committed yet: while there are any, later answers queue behind them.
    in_store: Arc<Pending>,
}

struct Login {
    user: Arc<User>,
    token: TokenHash,
}

impl Chat {
    /// The chat service, with the state read back from `store` (or empty, in memory).
    pub(crate) fn new(
        config: &Config,
        store: Option<(Store<Deferred>, Snapshot)>,
        extensions: Extensions,
        live: Arc<Live>,
    ) -> Result<Chat, crate::store::StoreError> {
        // One hash at the configured cost, timed: what the hashing pool expects of a
        // job until it has measured its own.
        let started = Instant::now();
        bcrypt::hash("parlor-first-estimate", config.bcrypt_cost)
            .expect("bcrypt cost was validated");
        let first_estimate = started.elapsed();
        let (store, snapshot) = match store {
            Some((store, snapshot)) => (Some(store), snapshot),
            None => (None, Snapshot::default()),
        };
        // One dispatch table: the built-in ops, then the embedder's commands (whose
        // names the builder checked against these).
        let mut ops: HashMap<String, Op> = OpKind::ALL
            .iter()
            .map(|&(name, kind)| (name.to_owned(), Op::Builtin(kind)))
            .collect();
        for (name, handler) in extensions.commands {
            ops.insert(name, Op::Custom(handler));
        }
        let metrics = Arc::new(ChatMetrics::new(OpKind::ALL.iter().map(|&(name, _)| name)));
        let delivery = Arc::new(Delivery::new(Arc::clone(&metrics)));
        let mut chat = Chat {
            ops,
            timer: Timer::start(Arc::clone(&delivery)),
            delivery,
            accepting: RwLock::new(true),
            metrics,
            hooks: extensions.hooks,
            accounts: Arc::new(Accounts::new(config.session_ttl)),
            rooms: Arc::default(),
            conversations: Conversations::default(),
            nonces: Arc::default(),
            hasher: Hasher::new(config.hash_threads, config.max_hash_wait, first_estimate),
            store,
            bcrypt_cost: config.bcrypt_cost,
            live,
            history_cap: 0,
            answer_budget: AnswerBudget::new(config.max_outbound),
            kept_invites: Arc::default(),
            deleted_rooms: Mutex::default(),
            pool: OnceLock::new(),
            markers: Markers::default(),
            presence: Arc::default(),
        };
        // With a store, memory keeps the newest messages and the store the rest;
        // without one, memory is the only copy and keeps them all.
        chat.history_cap = if chat.store.is_some() {
            config.history_len
        } else {
            usize::MAX
        };
        let expired = chat.restore(snapshot);
        if let Some(store) = &mut chat.store {
            let metrics = Arc::clone(&chat.metrics);
            let delivery = Arc::clone(&chat.delivery);
            store.start(move |batch| run_committed(batch, &delivery, &metrics))?;
        }
        chat.store_quietly(expired);
        Ok(chat)
    }

    /// Brings back the stored state; returns the writes that delete what expired
    /// while the server was down.
    fn restore(&self, snapshot: Snapshot) -> Vec<Write> {
        for (name, hash) in snapshot.users {
            let _ = self.accounts.insert(&name, hash, |_| {});
        }
        *self.deleted_rooms.lock() = snapshot.deleted_rooms.into_iter().collect();
        for name in snapshot.retired {
            self.accounts.retire(name);
        }
        let mut rooms = self.rooms.write();
        for mut row in snapshot.rooms {
            if let Some(creator) = self.accounts.user(&row.creator) {
                creator.rooms_created.fetch_add(1, Ordering::Relaxed);
            }
            let last_ts = row.recent.last().map_or(0, |m| m.ts);
            let access = Access::restore(&mut row, &self.kept_invites);
            let room = Room::new(
                &row.name,
                row.topic,
                row.last_seq,
                last_ts,
                &row.recent,
                self.history_cap,
            );
            {
                let mut state = room.state.lock();
                state.access = access;
                for member in &row.members {
                    let Some(user) = self.accounts.user(&member.user) else {
                        continue;
                    };
                    let role = Role::parse(&member.role).unwrap_or(Role::Member);
                    state.add_member(&user, role, member.joined);
                    user.rooms.lock().insert(row.name.clone());
                }
            }
            rooms.insert(row.name, Arc::new(room));
        }
        drop(rooms);
        self.restore_direct(snapshot.conversations, snapshot.dms);
        self.nonces.restore(snapshot.nonces);
        self.markers.restore(snapshot.markers, snapshot.authored);
        for (user, blocked) in snapshot.blocks {
            if let Some(user) = self.accounts.user(&user) {
                user.blocked.lock().insert(blocked);
            }
        }
        let mut expired = self.restore_sessions(snapshot.sessions);
        expired.extend(self.restore_account_bans(snapshot.account_bans));
        expired
    }

    /// Brings back the DM conversations and the DMs kept for offline users.
    fn restore_direct(&self, conversations: Vec<DmRow>, kept: Vec<DmRow>) {
        for row in conversations {
            let conversation = self
                .conversations
                .open(&row.from, &row.to, self.history_cap);
            conversation.state.lock().commit(&conversation.users, row);
        }
        for row in kept {
            if let Some(user) = self.accounts.user(&row.to) {
                let v1 = protocol::event(
                    "dm",
                    &DmEvent {
                        from: &row.from,
                        text: &row.text,
                        ts: row.ts,
                    },
                );
                let v2 = conversation::encode(&row.to, &row, 2);
                user.inbox.lock().push_back(KeptDm { v1, v2 });
            }
        }
    }

    /// Brings back the stored sessions with the idle time they had; returns the
    /// deletions of those past `--session-ttl`.
    fn restore_sessions(&self, sessions: Vec<SessionRow>) -> Vec<Write> {
        let now = now_ms();
        let mut expired = Vec::new();
        for row in sessions {
            let idle = Duration::from_millis(now.saturating_sub(row.used));
            match self.accounts.user(&row.user) {
                Some(user) if idle < self.accounts.session_ttl() => {
                    self.accounts.restore_session(row.hash, user, row.used);
                }
                _ => expired.push(Write::RevokeSession { hash: row.hash }),
            }
        }
        expired
    }

    /// Stores `writes` that nobody waits for (a session's last use, expired
    /// sessions): the store keeps them in order with everything else.
    fn store_quietly(&self, writes: Vec<Write>) {
        if let Some(store) = &self.store
            && !writes.is_empty()
        {
            submit(store, writes, Vec::new(), &Arc::default());
        }
    }

    /// Handles every complete frame in the buffer, stopping early to park or quit.
    fn process(&self, conn: &Peer, io: &mut Io<Self>, flusher: &mut Flusher<Self>) -> Flow {
        let Io { inbuf, session } = io;
        let owner = Arc::clone(&session.in_store);
        let mut out = Out::new(flusher, &self.metrics, self.store.as_ref(), &owner);
        // One clock reading serves every frame of this read.
        let now = Instant::now();
        let mut throttle = None;
        loop {
            if self.store_behind(conn) {
                return Flow::Park;
            }
            let split = match session.held.take() {
                Some(split) => split,
                None => session.splitter.next(inbuf.data()),
            };
            // Every line counts toward the rate, blank and over-long ones too. One over
            // it waits, in the buffer and the socket, until the budget refills: TCP
            // slows the sender and nothing is lost (PROTOCOL-2 section 3).
            if split.is_line()
                && let Err(wait) = session.limiter.admit(now)
            {
                session.held = Some(split);
                throttle = Some(wait);
                break;
            }
            match split {
                Split::Frame { end, next } => {
                    self.metrics.frames_in.inc();
                    let step = self.handle(conn, session, &inbuf.data()[..end], &mut out);
                    inbuf.consume(next);
                    match step {
                        Step::Next => {}
                        Step::Park => return Flow::Park,
                        Step::Quit => return Flow::Stop,
                    }
                }
                Split::TooLarge { next } => {
                    inbuf.consume(next);
                    let max = session.splitter.max_frame();
                    let message = format!("the frame is longer than {max} bytes");
                    out.reply(conn, self.error(None, &ErrorCode::FrameTooLarge, &message));
                }
                Split::Blank { next } | Split::Skip { next } => inbuf.consume(next),
                Split::Incomplete => break,
            }
        }
        if self.store_behind(conn) {
            Flow::Park
        } else {
            throttle.map_or(Flow::Continue, Flow::Throttle)
        }
    }

    /// When the store's queue is high, stops reading this client until it is down
    /// again (checked before every request, so the queue stays bounded).
    fn store_behind(&self, conn: &Peer) -> bool {
        self.store.as_ref().is_some_and(|store| {
            let waker = Arc::clone(conn);
            store.behind() && store.wait_if_behind(move || waker.schedule(pending::WAKE))
        })
    }

    fn handle(&self, conn: &Peer, session: &mut Session, frame: &[u8], out: &mut Out<'_>) -> Step {
        let started = Instant::now();
        match request::parse_head(frame) {
            Ok(head) => {
                let step = self.dispatch(conn, session, &head, out);
                self.metrics.handled(&head.op, started.elapsed());
                step
            }
            Err(fault) => {
                out.reply(conn, self.error(fault.id, &fault.code, &fault.message));
                Step::Next
            }
        }
    }

    /// An error response, counted for `/metrics`.
    fn error(&self, id: Option<&RawValue>, code: &ErrorCode, message: &str) -> Bytes {
        self.metrics.error(code.as_str());
        protocol::error(id, code, message)
    }

    /// Runs a hook; a panic in it is reported as `internal`.
    fn hook<T>(
        &self,
        name: &str,
        call: impl FnOnce() -> Result<T, CommandError>,
    ) -> Result<T, Failure> {
        match panic::catch_unwind(AssertUnwindSafe(call)) {
            Ok(result) => result.map_err(Failure::from),
            Err(_) => {
                log::error!("the `{name}` hook panicked");
                fail(ErrorCode::Internal, "the server's hook failed")
            }
        }
    }

    /// Whether `name` is a server operator (`--operator`): it may act as owner in
    /// any room.
    pub(crate) fn is_operator(&self, name: &str) -> bool {
        self.live.is_operator(name)
    }

    /// The room of that name, for an embedder's command.
    pub(crate) fn room_named(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.read().get(name).cloned()
    }

    /// The user of that name, for an embedder's command.
    pub(crate) fn user_named(&self, name: &str) -> Option<Arc<User>> {
        self.accounts.user(name)
    }
}

/// The login of a session that passed the authentication gate.
fn logged_in(session: &Session) -> &Login {
    session
        .login
        .as_ref()
        .expect("ops that need a login are gated before they run")
}

/// User and room names: `max` bytes at most of `[A-Za-z0-9_.-]`, at least one.
fn valid_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Service for Chat {
    type Session = Session;
    type Tag = ConnTag;
    const BACKPRESSURE: bool = false;

    fn read_limit(&self) -> usize {
        self.live.max_frame()
    }

    fn ready(&self) -> Result<(), String> {
        self.store.as_ref().map_or(Ok(()), Store::ready)
    }

    fn open(&self, peer: SocketAddr) -> Session {
        if let Some(hook) = &self.hooks.opened {
            let _ = self.hook("open", || {
                hook(peer);
                Ok(())
            });
        }
        Session {
            splitter: Splitter::new(self.live.max_frame()),
            login: None,
            hashed: None,
            greeted: false,
            limiter: FrameLimiter::new(self.live.max_frame_rate()),
            held: None,
            in_store: Arc::default(),
        }
    }

    fn input(&self, conn: &Peer, io: &mut Io<Self>, flusher: &mut Flusher<Self>) -> Flow {
        let accepting = self.accepting.read();
        if !*accepting {
            return Flow::Park;
        }
        if !io.session.greeted {
            io.session.greeted = true;
            if io.inbuf.data().first() == Some(&TLS_HANDSHAKE) {
                log::info!(
                    "conn {}: TLS handshake on the plain port; closing",
                    conn.key
                );
                conn.request_close(CloseReason::Error);
                return Flow::Stop;
            }
        }
        self.process(conn, io, flusher)
    }

    fn wake(&self, conn: &Peer, io: &mut Io<Self>, flusher: &mut Flusher<Self>) -> Flow {
        let accepting = self.accepting.read();
        if !*accepting {
            // Stopping: a finished hash is neither applied nor answered.
            return Flow::Park;
        }
        if let Some(hashed) = io.session.hashed.take() {
            let owner = Arc::clone(&io.session.in_store);
            let mut out = Out::new(&mut *flusher, &self.metrics, self.store.as_ref(), &owner);
            self.finish_hashed(conn, &mut io.session, hashed, &mut out);
        }
        self.process(conn, io, flusher)
    }

    fn input_ended(&self, conn: &Peer, session: &mut Session) {
        // Nothing more is read; the requests already read are answered (some after
        // their commit), then the connection closes.
        conn.set_parked(true);
        session.in_store.close_when_answered(conn);
    }

    fn attach(&self, pool: Pool<Self>) {
        let _ = self.pool.set(pool.clone());
        self.delivery.attach(pool);
    }

    fn quiesce(&self, deadline: Instant) {
        // No request is being handled once the write lock is had, and none starts
        // after: what was submitted is all there is.
        *self.accepting.write() = false;
        let Some(store) = &self.store else {
            return;
        };
        while !(store.idle() && self.delivery.idle()) {
            if Instant::now() >= deadline {
                log::warn!("shutdown: the store did not finish in time; the rest is not stored");
                store.discard_pending();
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn closed(&self, conn: &Peer, session: &mut Session, _reason: CloseReason) {
        // Logged out first: even a hook whose panic escapes its guard cannot leave the
        // connection in its user's online list, holding its socket.
        let user = session.login.as_ref().map(|l| Arc::clone(&l.user));
        self.log_out(conn, session);
        if let Some(hook) = &self.hooks.closed {
            let _ = self.hook("close", || {
                hook(conn.peer, user.as_ref().map(|u| u.name.as_str()));
                Ok(())
            });
        }
    }

    fn closing_frame(reason: CloseReason) -> Option<Bytes> {
        match reason {
            CloseReason::SlowConsumer
            | CloseReason::IdleTimeout
            | CloseReason::Shutdown
            | CloseReason::ServerFull
            | CloseReason::Service(_) => Some(protocol::event(
                "closing",
                &ClosingEvent {
                    reason: reason.as_str(),
                },
            )),
            CloseReason::Eof
            | CloseReason::Quit
            | CloseReason::Error
            | CloseReason::HandshakeTimeout => None,
        }
    }

    fn encode_metrics(&self, out: &mut Encoder<'_>) -> std::fmt::Result {
        self.metrics.encode(out, self.hasher.queued())?;
        match &self.store {
            Some(store) => store.metrics().encode(out),
            None => Ok(()),
        }
    }
}
