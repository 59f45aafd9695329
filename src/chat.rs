//! Chat mode: the service that turns frames into typed requests, applies them to the
//! shared chat state (accounts, rooms) and answers, in request order.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::accounts::{Accounts, INBOX_CAP, TokenHash, User};
use crate::command::{CommandError, Context, Extensions, Handler, Hooks, RoomMessage};
use crate::config::Config;
use crate::conn::{CloseReason, Conn, Flusher, Io, pending};
use crate::error_code::ErrorCode;
use crate::framing::{Split, Splitter};
use crate::hasher::Hasher;
use crate::metrics::ChatMetrics;
use crate::protocol::{
    self, ClosingEvent, DmEvent, HistoryQuery, MemberEvent, OpKind, Reply, Request,
};
use crate::room::{self, HistorySource, Room, RoomState};
use crate::service::{Flow, Service};
use crate::store::{Snapshot, Store, Write};

/// A logged-in connection as the chat state sees it: where its events are queued.
pub(crate) type Peer = Arc<Conn<Chat>>;

/// The first byte of a TLS handshake record: a TLS client on the plain port.
const TLS_HANDSHAKE: u8 = 0x16;
/// Longest room topic, in bytes.
const MAX_TOPIC: usize = 256;
const MAX_USER_NAME: usize = 32;
const MAX_ROOM_NAME: usize = 64;
const MIN_PASSWORD: usize = 8;
/// bcrypt reads no further than this.
const MAX_PASSWORD: usize = 72;

/// The chat service and all chat state.
pub(crate) struct Chat {
    /// Every op by name: built-in or the embedder's.
    ops: HashMap<String, Op>,
    metrics: Arc<ChatMetrics>,
    hooks: Hooks,
    accounts: Accounts,
    rooms: RwLock<BTreeMap<String, Arc<Room>>>,
    hasher: Hasher,
    /// Where changes are made durable; `None` keeps everything in memory only.
    store: Option<Store<Deferred>>,
    /// Hashed for logins of unknown users, so they take as long as wrong passwords.
    dummy_hash: Arc<str>,
    bcrypt_cost: u32,
    max_frame: usize,
    max_text: usize,
    max_frame_rate: u32,
    max_rooms: usize,
    max_room_members: usize,
    history_cap: usize,
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
    /// Submissions to the store that carry this connection's answers and have not
    /// been committed yet: while there are any, later answers queue behind them.
    in_store: Arc<AtomicUsize>,
}

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
    fn apply(self, state: &mut RoomState, flusher: &mut Flusher<Chat>) -> usize {
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
    fn run(self, flusher: &mut Flusher<Chat>) -> usize {
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
    fn fail(self) {
        match self {
            Effect::Send(peer, _) | Effect::Finish(peer) => peer.abort(CloseReason::Error),
            Effect::Room(..) | Effect::Dm { .. } => {}
        }
    }
}

/// Runs the effects of a committed batch, in order, and writes them out.
fn run_committed(batch: Vec<(Deferred, bool)>, metrics: &ChatMetrics) {
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
struct Out<'a> {
    flusher: &'a mut Flusher<Chat>,
    metrics: &'a ChatMetrics,
    store: Option<&'a Store<Deferred>>,
    owner: &'a Arc<AtomicUsize>,
}

impl Out<'_> {
    /// Whether effects must wait for the store: they come with writes, or an earlier
    /// answer of this connection still waits (answers leave in request order).
    fn defers(&self, has_writes: bool) -> bool {
        self.store.is_some() && (has_writes || self.owner.load(Ordering::Acquire) > 0)
    }

    /// Stores `writes`, then runs `effects` in order: at once when nothing waits for
    /// the store, else after the commit.
    fn commit(&mut self, writes: Vec<Write>, effects: Vec<Effect>) {
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
    fn reply(&mut self, conn: &Peer, frame: Bytes) {
        if self.defers(false) {
            self.commit(Vec::new(), vec![Effect::Send(Arc::clone(conn), frame)]);
        } else {
            conn.send(frame, self.flusher);
        }
    }

    /// Stores `write` (if there is a store) and delivers a room event and the answer,
    /// called with the room's lock held so that events leave in the room's order.
    fn room_commit(
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
    fn durable(&self, write: impl FnOnce() -> Write) -> Vec<Write> {
        if self.store.is_some() {
            vec![write()]
        } else {
            Vec::new()
        }
    }
}

struct Login {
    user: Arc<User>,
    token: TokenHash,
}

/// The result of a `signup` or `login` that went to the hashing pool.
enum Hashed {
    Signup {
        id: Option<Box<RawValue>>,
        user: String,
        hash: Option<String>,
    },
    Login {
        id: Option<Box<RawValue>>,
        user: String,
        verified: bool,
    },
}

/// A token bucket: `rate` frames a second on average, bursts of twice that.
struct FrameLimiter {
    /// Frames a second; 0 admits everything.
    rate: f64,
    tokens: f64,
    last: Instant,
    /// Frames refused in a row.
    refused: u32,
}

impl FrameLimiter {
    fn new(rate: u32) -> FrameLimiter {
        FrameLimiter {
            rate: f64::from(rate),
            tokens: f64::from(rate) * 2.0,
            last: Instant::now(),
            refused: 0,
        }
    }

    /// Takes a token for one frame, if there is one.
    fn admit(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            true
        } else {
            self.refused += 1;
            false
        }
    }

    /// A client that goes on after a whole burst's worth of refusals is not going to
    /// slow down.
    fn flooding(&self) -> bool {
        f64::from(self.refused) > self.rate * 2.0
    }
}

/// An entry of the dispatch table.
enum Op {
    Builtin(OpKind),
    Custom(Arc<Handler>),
}

/// What handling one request leaves to do.
enum Step {
    /// Answered; go on with the next frame.
    Next,
    /// Waiting for the hashing pool; read nothing more until it wakes the connection.
    Park,
    /// `quit`: the connection closes after its answer.
    Quit,
}

/// A request that fails: its error code and a sentence for a human.
type Failure = (ErrorCode, String);

fn fail<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Failure> {
    Err((code, message.into()))
}

impl Chat {
    /// The chat service, with the state read back from `store` (or empty, in memory).
    pub(crate) fn new(
        config: &Config,
        store: Option<(Store<Deferred>, Snapshot)>,
        extensions: Extensions,
    ) -> Result<Chat, crate::store::StoreError> {
        let dummy_hash = bcrypt::hash("parlor-dummy-password", config.bcrypt_cost)
            .expect("bcrypt cost was validated");
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
        let mut chat = Chat {
            ops,
            metrics: Arc::new(ChatMetrics::new(OpKind::ALL.iter().map(|&(name, _)| name))),
            hooks: extensions.hooks,
            accounts: Accounts::new(config.session_ttl),
            rooms: RwLock::new(BTreeMap::new()),
            hasher: Hasher::new(config.hash_threads, config.hash_queue),
            store,
            dummy_hash: dummy_hash.into(),
            bcrypt_cost: config.bcrypt_cost,
            max_frame: config.max_frame,
            max_text: config.max_text,
            max_frame_rate: config.max_frame_rate,
            max_rooms: config.max_rooms,
            max_room_members: config.max_room_members,
            history_cap: 0,
        };
        // With a store, memory keeps the newest messages and the store the rest;
        // without one, memory is the only copy and keeps them all.
        chat.history_cap = if chat.store.is_some() {
            config.history_len
        } else {
            usize::MAX
        };
        chat.restore(snapshot);
        if let Some(store) = &mut chat.store {
            let metrics = Arc::clone(&chat.metrics);
            store.start(move |batch| run_committed(batch, &metrics))?;
        }
        Ok(chat)
    }

    fn restore(&self, snapshot: Snapshot) {
        for (name, hash) in snapshot.users {
            let _ = self.accounts.insert(&name, hash, |_| {});
        }
        let mut rooms = self.rooms.write();
        for row in snapshot.rooms {
            let recent = row
                .recent
                .iter()
                .map(|m| (m.seq, room::encode_message(&row.name, m)))
                .collect();
            let last_ts = row.recent.last().map_or(0, |m| m.ts);
            let room = Room::new(
                &row.name,
                row.topic,
                row.last_seq,
                last_ts,
                recent,
                self.history_cap,
            );
            {
                let mut state = room.state.lock();
                for user in row
                    .members
                    .iter()
                    .filter_map(|name| self.accounts.user(name))
                {
                    state.add_member(&user);
                    user.rooms.lock().insert(row.name.clone());
                }
            }
            rooms.insert(row.name, Arc::new(room));
        }
        for (to, from, text, ts) in snapshot.dms {
            if let Some(user) = self.accounts.user(&to) {
                let event = protocol::event(
                    "dm",
                    &DmEvent {
                        from: &from,
                        text: &text,
                        ts,
                    },
                );
                user.inbox.lock().push_back(event);
            }
        }
        for (hash, name) in snapshot.sessions {
            if let Some(user) = self.accounts.user(&name) {
                self.accounts.restore_session(hash, user);
            }
        }
    }

    /// Handles every complete frame in the buffer, stopping early to park or quit.
    fn process(&self, conn: &Peer, io: &mut Io<Self>, flusher: &mut Flusher<Self>) -> Flow {
        let Io { inbuf, session } = io;
        let owner = Arc::clone(&session.in_store);
        let mut out = Out {
            flusher,
            metrics: &self.metrics,
            store: self.store.as_ref(),
            owner: &owner,
        };
        // One clock reading serves every frame of this read.
        let now = Instant::now();
        loop {
            match session.splitter.next(inbuf.data()) {
                Split::Frame { end, next } => {
                    self.metrics.frames_in.inc();
                    let frame = &inbuf.data()[..end];
                    let step = if session.limiter.admit(now) {
                        self.handle(conn, session, frame, &mut out)
                    } else if session.limiter.flooding() {
                        log::warn!("conn {}: closing a client that keeps flooding", conn.key);
                        conn.abort(CloseReason::Flood);
                        return Flow::Stop;
                    } else {
                        let id = protocol::parse_head(frame).ok().and_then(|head| head.id);
                        let message = "too many frames; slow down";
                        out.reply(conn, self.error(id, &ErrorCode::RateLimited, message));
                        Step::Next
                    };
                    inbuf.consume(next);
                    match step {
                        Step::Next => {}
                        Step::Park => return Flow::Park,
                        Step::Quit => return Flow::Stop,
                    }
                }
                Split::TooLarge { next } => {
                    inbuf.consume(next);
                    let message = format!("the frame is longer than {} bytes", self.max_frame);
                    out.reply(conn, self.error(None, &ErrorCode::FrameTooLarge, &message));
                }
                Split::Skip { next } => inbuf.consume(next),
                Split::Incomplete => break,
            }
        }
        // When the writer falls behind, stop reading this client until it catches up.
        let waker = Arc::clone(conn);
        match &self.store {
            Some(store) if store.wait_if_behind(move || waker.schedule(pending::WAKE)) => {
                Flow::Park
            }
            _ => Flow::Continue,
        }
    }

    fn handle(&self, conn: &Peer, session: &mut Session, frame: &[u8], out: &mut Out<'_>) -> Step {
        let started = Instant::now();
        match protocol::parse_head(frame) {
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

    fn dispatch(
        &self,
        conn: &Peer,
        session: &mut Session,
        head: &protocol::Head<'_>,
        out: &mut Out<'_>,
    ) -> Step {
        let refuse = |fault: protocol::Fault<'_>, out: &mut Out<'_>| {
            out.reply(conn, self.error(fault.id, &fault.code, &fault.message));
            Step::Next
        };
        let parsed = match self.ops.get(head.op.as_ref()) {
            Some(Op::Builtin(kind)) => protocol::parse_request(head, *kind),
            Some(Op::Custom(handler)) => {
                self.custom(conn, session, head, handler.as_ref(), out);
                return Step::Next;
            }
            None => Err(protocol::unknown_op(head)),
        };
        let id = head.id;
        let request = match parsed {
            Ok(request) => request,
            Err(fault) => return refuse(fault, out),
        };
        if session.login.is_none() && !request.allowed_anonymously() {
            let message = "log in first (`login` or `resume`)";
            out.reply(conn, self.error(id, &ErrorCode::NotAuthenticated, message));
            return Step::Next;
        }
        let mut step = Step::Next;
        let result = match request {
            Request::Ping => Ok(Some(Reply::ok(id).field("pong", &true))),
            Request::Echo { data } => Ok(Some(Reply::ok(id).field("data", &data))),
            Request::Signup { user, password } => {
                self.signup(conn, id, &user, &password).map(|()| {
                    step = Step::Park;
                    None
                })
            }
            Request::Login { user, password } => self.login(conn, id, &user, &password).map(|()| {
                step = Step::Park;
                None
            }),
            Request::Resume { session: token } => Ok(self.resume(conn, session, id, &token, out)),
            Request::Logout => Ok(self.logout(conn, session, id, out)),
            Request::Whoami => Ok(self.whoami(session, id)),
            Request::Create { room, topic } => {
                self.create(conn, session, id, &room, topic.as_deref(), out)
            }
            Request::Join { room } => self.join(conn, session, id, &room, out),
            Request::Leave { room } => self.leave(conn, session, id, &room, out),
            Request::Rooms => Ok(self.list_rooms(id)),
            Request::Members { room } => self.members(id, &room),
            Request::Send { room, text } => self.send(conn, session, id, &room, &text, out),
            Request::Dm { to, text } => self.dm(conn, session, id, &to, &text, out),
            Request::History { room, query } => self.history(session, id, &room, query),
            Request::Quit => {
                let ok = Reply::ok(id).finish();
                out.commit(
                    Vec::new(),
                    vec![
                        Effect::Send(Arc::clone(conn), ok),
                        Effect::Finish(Arc::clone(conn)),
                    ],
                );
                return Step::Quit;
            }
        };
        match result {
            Ok(Some(reply)) => out.reply(conn, reply.finish()),
            Ok(None) => {}
            Err((code, message)) => {
                step = Step::Next;
                out.reply(conn, self.error(id, &code, &message));
            }
        }
        step
    }

    /// Runs an embedder's command. A panic in it answers `internal` to this caller
    /// only; what the command meant to send is dropped with it.
    fn custom(
        &self,
        conn: &Peer,
        session: &Session,
        head: &protocol::Head<'_>,
        handler: &Handler,
        out: &mut Out<'_>,
    ) {
        let mut cx = Context {
            chat: self,
            conn,
            user: session.login.as_ref().map(|l| l.user.name.as_str()),
            effects: Vec::new(),
        };
        let result = panic::catch_unwind(AssertUnwindSafe(|| handler(head.text, &mut cx)));
        let mut effects = cx.effects;
        let answer = match result {
            Ok(Ok(value)) => protocol::reply_with(head.id, value),
            Ok(Err(e)) => self.error(head.id, &e.code, &e.message),
            Err(_) => {
                log::error!("conn {}: the `{}` command panicked", conn.key, head.op);
                effects.clear();
                self.error(head.id, &ErrorCode::Internal, "the command failed")
            }
        };
        effects.push(Effect::Send(Arc::clone(conn), answer));
        out.commit(Vec::new(), effects);
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
            Ok(result) => result.map_err(|e| (e.code, e.message)),
            Err(_) => {
                log::error!("the `{name}` hook panicked");
                fail(ErrorCode::Internal, "the server's hook failed")
            }
        }
    }

    /// The room of that name, for an embedder's command.
    pub(crate) fn room_named(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.read().get(name).cloned()
    }

    /// The user of that name, for an embedder's command.
    pub(crate) fn user_named(&self, name: &str) -> Option<Arc<User>> {
        self.accounts.user(name)
    }

    fn signup(
        &self,
        conn: &Peer,
        id: Option<&RawValue>,
        user: &str,
        password: &str,
    ) -> Result<(), Failure> {
        if !valid_name(user, MAX_USER_NAME) {
            return fail(
                ErrorCode::BadName,
                "a user name is 1-32 bytes of A-Z a-z 0-9 _ . -",
            );
        }
        if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&password.len()) {
            return fail(ErrorCode::WeakPassword, "a password is 8-72 bytes");
        }
        if self.accounts.user(user).is_some() {
            return fail(ErrorCode::UserExists, format!("the name `{user}` is taken"));
        }
        let (conn, cost) = (Arc::clone(conn), self.bcrypt_cost);
        let (id, user, password) = (
            id.map(RawValue::to_owned),
            user.to_owned(),
            password.to_owned(),
        );
        self.run_hash(move || {
            let hash = bcrypt::hash(password, cost).ok();
            wake_with(&conn, Hashed::Signup { id, user, hash });
        })
    }

    fn login(
        &self,
        conn: &Peer,
        id: Option<&RawValue>,
        user: &str,
        password: &str,
    ) -> Result<(), Failure> {
        if self.accounts.login_limited(user) {
            return fail(
                ErrorCode::RateLimited,
                "too many failed logins for this name; try again in a minute",
            );
        }
        let known = (password.len() <= MAX_PASSWORD)
            .then(|| self.accounts.user(user))
            .flatten()
            .map(|u| u.hash.clone());
        let conn = Arc::clone(conn);
        let dummy = Arc::clone(&self.dummy_hash);
        let (id, user) = (id.map(RawValue::to_owned), user.to_owned());
        let password = password.as_bytes()[..password.len().min(MAX_PASSWORD)].to_vec();
        self.run_hash(move || {
            let verified = match known {
                Some(hash) => bcrypt::verify(&password, &hash).unwrap_or(false),
                None => {
                    // Same work as a real check, so the answer time tells nothing.
                    let _ = bcrypt::verify(&password, &dummy);
                    false
                }
            };
            wake_with(&conn, Hashed::Login { id, user, verified });
        })
    }

    fn run_hash(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Failure> {
        self.hasher.try_run(job).or_else(|_| {
            fail(
                ErrorCode::ServerBusy,
                "the server is busy hashing passwords; retry shortly",
            )
        })
    }

    /// Applies a finished hash: the parked `signup` or `login` is answered now.
    fn finish_hashed(&self, conn: &Peer, session: &mut Session, hashed: Hashed, out: &mut Out<'_>) {
        match hashed {
            Hashed::Signup { id, user, hash } => {
                let id = id.as_deref();
                let Some(hash) = hash else {
                    out.reply(
                        conn,
                        self.error(id, &ErrorCode::Internal, "password hashing failed"),
                    );
                    return;
                };
                let stored = hash.clone();
                let inserted = self.accounts.insert(&user, hash, |_| {
                    let write = out.durable(|| Write::User {
                        name: user.clone(),
                        hash: stored,
                        created: now_ms(),
                    });
                    let ok = Reply::ok(id).field("user", &user).finish();
                    out.commit(write, vec![Effect::Send(Arc::clone(conn), ok)]);
                });
                if inserted.is_err() {
                    let message = format!("the name `{user}` is taken");
                    out.reply(conn, self.error(id, &ErrorCode::UserExists, &message));
                }
            }
            Hashed::Login { id, user, verified } => {
                let id = id.as_deref();
                let account = self.accounts.user(&user).filter(|_| verified);
                self.accounts.record_login(&user, account.is_some());
                let counter = if account.is_some() {
                    &self.metrics.logins_ok
                } else {
                    &self.metrics.logins_failed
                };
                counter.inc();
                let Some(account) = account else {
                    out.reply(
                        conn,
                        self.error(id, &ErrorCode::AuthFailed, "wrong user name or password"),
                    );
                    return;
                };
                let (token, hash) = self.accounts.new_session(&account);
                log::info!("conn {} logged in as {user}", conn.key);
                let ok = Reply::ok(id)
                    .field("user", &user)
                    .field("session", &token)
                    .finish();
                let mut writes = out.durable(|| Write::Session {
                    hash,
                    user: user.clone(),
                });
                self.log_in(conn, session, account, hash, ok, &mut writes, out);
            }
        }
    }

    fn resume(
        &self,
        conn: &Peer,
        session: &mut Session,
        id: Option<&RawValue>,
        token: &str,
        out: &mut Out<'_>,
    ) -> Option<Reply> {
        let Some((user, hash)) = self.accounts.resume(token) else {
            out.reply(
                conn,
                self.error(
                    id,
                    &ErrorCode::AuthFailed,
                    "unknown, expired or revoked session",
                ),
            );
            return None;
        };
        let ok = Reply::ok(id).field("user", &user.name).finish();
        self.log_in(conn, session, user, hash, ok, &mut Vec::new(), out);
        None
    }

    /// Attaches the connection to `user`, answers `ok`, and hands over the direct
    /// messages kept while the user was offline, right after the answer.
    #[allow(clippy::too_many_arguments)]
    fn log_in(
        &self,
        conn: &Peer,
        session: &mut Session,
        user: Arc<User>,
        token: TokenHash,
        ok: Bytes,
        writes: &mut Vec<Write>,
        out: &mut Out<'_>,
    ) {
        self.log_out(conn, session);
        let kept = {
            let mut online = user.online.lock();
            online.push(Arc::clone(conn));
            std::mem::take(&mut *user.inbox.lock())
        };
        if !kept.is_empty() {
            writes.extend(out.durable(|| Write::ClearDms {
                to: user.name.clone(),
            }));
        }
        let mut effects = Vec::with_capacity(kept.len() + 1);
        effects.push(Effect::Send(Arc::clone(conn), ok));
        effects.extend(
            kept.into_iter()
                .map(|dm| Effect::Send(Arc::clone(conn), dm)),
        );
        out.commit(std::mem::take(writes), effects);
        if let Some(hook) = &self.hooks.logged_in {
            let _ = self.hook("login", || {
                hook(&user.name, conn.peer);
                Ok(())
            });
        }
        session.login = Some(Login { user, token });
    }

    /// Detaches the connection from its user; returns the token it used.
    fn log_out(&self, conn: &Peer, session: &mut Session) -> Option<TokenHash> {
        let login = session.login.take()?;
        login.user.online.lock().retain(|peer| peer.key != conn.key);
        self.accounts.release(&login.token);
        Some(login.token)
    }

    fn logout(
        &self,
        conn: &Peer,
        session: &mut Session,
        id: Option<&RawValue>,
        out: &mut Out<'_>,
    ) -> Option<Reply> {
        let token = self.log_out(conn, session)?;
        self.accounts.revoke(&token);
        let write = out.durable(|| Write::RevokeSession { hash: token });
        out.commit(
            write,
            vec![Effect::Send(Arc::clone(conn), Reply::ok(id).finish())],
        );
        None
    }

    fn whoami(&self, session: &Session, id: Option<&RawValue>) -> Option<Reply> {
        let user = &logged_in(session).user;
        let rooms: Vec<String> = user.rooms.lock().iter().cloned().collect();
        Some(
            Reply::ok(id)
                .field("user", &user.name)
                .field("rooms", &rooms),
        )
    }

    fn create(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        room: &str,
        topic: Option<&str>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        if !valid_name(room, MAX_ROOM_NAME) {
            return fail(
                ErrorCode::BadName,
                "a room name is 1-64 bytes of A-Z a-z 0-9 _ . -",
            );
        }
        let topic = topic.unwrap_or("");
        if topic.len() > MAX_TOPIC {
            return fail(ErrorCode::TooLong, "a topic is at most 256 bytes");
        }
        let user = &logged_in(session).user;
        let mut rooms = self.rooms.write();
        if rooms.contains_key(room) {
            return fail(
                ErrorCode::RoomExists,
                format!("the room `{room}` exists; `join` it"),
            );
        }
        if rooms.len() >= self.max_rooms {
            let message = format!("the server holds its maximum of {} rooms", self.max_rooms);
            return fail(ErrorCode::TooManyRooms, message);
        }
        let created = Room::new(room, topic.to_owned(), 0, 0, Vec::new(), self.history_cap);
        created.state.lock().add_member(user);
        user.rooms.lock().insert(room.to_owned());
        rooms.insert(room.to_owned(), Arc::new(created));
        // Still under the rooms lock: the store sees the room before anything in it.
        let write = out.durable(|| Write::Room {
            name: room.to_owned(),
            topic: topic.to_owned(),
            creator: user.name.clone(),
            created: now_ms(),
        });
        let ok = Reply::ok(id).field("room", room).finish();
        out.commit(write, vec![Effect::Send(Arc::clone(conn), ok)]);
        Ok(None)
    }

    fn room(&self, name: &str) -> Result<Arc<Room>, Failure> {
        match self.rooms.read().get(name) {
            Some(room) => Ok(Arc::clone(room)),
            None => fail(ErrorCode::NoSuchRoom, format!("no room is named `{name}`")),
        }
    }

    fn join(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let mut state = room.state.lock();
        if !state.is_member(&user.name) && state.members.len() >= self.max_room_members {
            let message = format!(
                "`{name}` has its maximum of {} members",
                self.max_room_members
            );
            return fail(ErrorCode::RoomFull, message);
        }
        let added = state.add_member(user);
        let members: Vec<&String> = state.members.keys().collect();
        let ok = Reply::ok(id)
            .field("room", &room.name)
            .field("topic", &state.topic)
            .field("members", &members)
            .field("seq", &state.last_seq)
            .finish();
        if !added {
            drop(state);
            out.reply(conn, ok);
            return Ok(None);
        }
        user.rooms.lock().insert(room.name.clone());
        let event = RoomEvent::Broadcast {
            frame: protocol::event(
                "joined",
                &MemberEvent {
                    room: &room.name,
                    user: &user.name,
                },
            ),
            skip_conn: conn.key,
            skip_user: Some(user.name.clone()),
        };
        let write = || Write::Join {
            room: room.name.clone(),
            user: user.name.clone(),
        };
        out.room_commit(&room, &mut state, write, event, conn, ok);
        Ok(None)
    }

    fn leave(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let mut state = room.state.lock();
        if state.members.remove(&user.name).is_none() {
            return fail(
                ErrorCode::NotMember,
                format!("you are not a member of `{name}`"),
            );
        }
        user.rooms.lock().remove(&room.name);
        let event = RoomEvent::Broadcast {
            frame: protocol::event(
                "left",
                &MemberEvent {
                    room: &room.name,
                    user: &user.name,
                },
            ),
            skip_conn: conn.key,
            skip_user: None,
        };
        let write = || Write::Leave {
            room: room.name.clone(),
            user: user.name.clone(),
        };
        let ok = Reply::ok(id).field("room", &room.name).finish();
        out.room_commit(&room, &mut state, write, event, conn, ok);
        Ok(None)
    }

    fn list_rooms(&self, id: Option<&RawValue>) -> Option<Reply> {
        #[derive(Serialize)]
        struct Entry {
            room: String,
            topic: String,
            members: usize,
        }
        let rooms: Vec<Arc<Room>> = self.rooms.read().values().cloned().collect();
        let list: Vec<Entry> = rooms
            .iter()
            .map(|room| {
                let state = room.state.lock();
                Entry {
                    room: room.name.clone(),
                    topic: state.topic.clone(),
                    members: state.members.len(),
                }
            })
            .collect();
        Some(Reply::ok(id).field("rooms", &list))
    }

    fn members(&self, id: Option<&RawValue>, name: &str) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let state = room.state.lock();
        let members: Vec<&String> = state.members.keys().collect();
        Ok(Some(
            Reply::ok(id)
                .field("room", &room.name)
                .field("members", &members),
        ))
    }

    fn send(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        text: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        self.check_text(text)?;
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let mut state = room.state.lock();
        if !state.is_member(&user.name) {
            return fail(
                ErrorCode::NotMember,
                format!("join `{name}` before sending to it"),
            );
        }
        if let Some(check) = &self.hooks.message {
            let message = RoomMessage {
                room: &room.name,
                from: &user.name,
                text,
            };
            self.hook("message", || check(&message))?;
        }
        let (seq, ts, frame) = state.append(&room.name, &user.name, text, now_ms());
        self.metrics.messages.inc();
        let ok = Reply::ok(id).field("seq", &seq).field("ts", &ts).finish();
        let write = || Write::Message {
            room: room.name.clone(),
            seq,
            from: user.name.clone(),
            text: text.to_owned(),
            ts,
        };
        let event = RoomEvent::Message {
            seq,
            frame,
            skip_conn: conn.key,
        };
        out.room_commit(&room, &mut state, write, event, conn, ok);
        Ok(None)
    }

    fn dm(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        to: &str,
        text: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        self.check_text(text)?;
        let Some(recipient) = self.accounts.user(to) else {
            return fail(ErrorCode::NoSuchUser, format!("no user is named `{to}`"));
        };
        let from = &logged_in(session).user.name;
        let ts = now_ms();
        let frame = protocol::event("dm", &DmEvent { from, text, ts });
        // Only a message for someone offline is kept, so only that one is stored.
        let offline = recipient.online.lock().is_empty();
        let write = if offline {
            out.durable(|| Write::KeepDm {
                to: to.to_owned(),
                from: from.clone(),
                text: text.to_owned(),
                ts,
            })
        } else {
            Vec::new()
        };
        let ok = Reply::ok(id).field("ts", &ts).finish();
        let effects = vec![
            Effect::Dm {
                to: recipient,
                frame,
                skip_conn: conn.key,
                keep: true,
            },
            Effect::Send(Arc::clone(conn), ok),
        ];
        out.commit(write, effects);
        Ok(None)
    }

    fn history(
        &self,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        query: HistoryQuery,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let source = {
            let state = room.state.lock();
            if !state.is_member(&user.name) {
                return fail(
                    ErrorCode::NotMember,
                    format!("join `{name}` to read its history"),
                );
            }
            state.history(query)
        };
        let events = match source {
            HistorySource::Memory(events) => events,
            HistorySource::Store { after, below } => {
                let Some(store) = &self.store else {
                    return fail(ErrorCode::Internal, "history is not available");
                };
                let rows = store
                    .history(&room.name, after, below, query.limit)
                    .map_err(|e| {
                        log::error!("history of {name}: {e}");
                        (
                            ErrorCode::Internal,
                            "the history could not be read".to_owned(),
                        )
                    })?;
                let encoded: Vec<Bytes> = rows
                    .iter()
                    .map(|row| room::encode_message(&room.name, row))
                    .collect();
                if after.is_some() {
                    room::cap(encoded.iter(), query.limit)
                } else {
                    let mut newest_first = room::cap(encoded.iter().rev(), query.limit);
                    newest_first.reverse();
                    newest_first
                }
            }
        };
        Ok(Some(
            Reply::ok(id).raw_array("messages", events.iter().map(|e| &e[..])),
        ))
    }

    fn check_text(&self, text: &str) -> Result<(), Failure> {
        if text.len() > self.max_text {
            return fail(
                ErrorCode::TooLong,
                format!("a text is at most {} bytes", self.max_text),
            );
        }
        Ok(())
    }
}

/// Hands a hashing result to the parked connection and wakes its job.
fn wake_with(conn: &Peer, hashed: Hashed) {
    conn.io.lock().session.hashed = Some(hashed);
    conn.schedule(pending::WAKE);
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
    const BACKPRESSURE: bool = false;

    fn read_limit(&self) -> usize {
        self.max_frame
    }

    fn open(&self, peer: SocketAddr) -> Session {
        if let Some(hook) = &self.hooks.opened {
            let _ = self.hook("open", || {
                hook(peer);
                Ok(())
            });
        }
        Session {
            splitter: Splitter::new(self.max_frame),
            login: None,
            hashed: None,
            greeted: false,
            limiter: FrameLimiter::new(self.max_frame_rate),
            in_store: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn input(&self, conn: &Peer, io: &mut Io<Self>, flusher: &mut Flusher<Self>) -> Flow {
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
        if let Some(hashed) = io.session.hashed.take() {
            let owner = Arc::clone(&io.session.in_store);
            let mut out = Out {
                flusher: &mut *flusher,
                metrics: &self.metrics,
                store: self.store.as_ref(),
                owner: &owner,
            };
            self.finish_hashed(conn, &mut io.session, hashed, &mut out);
        }
        self.process(conn, io, flusher)
    }

    fn closed(&self, conn: &Peer, session: &mut Session, _reason: CloseReason) {
        if let Some(hook) = &self.hooks.closed {
            let user = session.login.as_ref().map(|l| l.user.name.as_str());
            let _ = self.hook("close", || {
                hook(conn.peer, user);
                Ok(())
            });
        }
        self.log_out(conn, session);
    }

    fn closing_frame(reason: CloseReason) -> Option<Bytes> {
        match reason {
            CloseReason::SlowConsumer
            | CloseReason::IdleTimeout
            | CloseReason::Shutdown
            | CloseReason::Flood => Some(protocol::event(
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

    fn server_full_frame() -> Option<Bytes> {
        Some(protocol::event(
            "closing",
            &ClosingEvent {
                reason: "server_full",
            },
        ))
    }

    fn render_metrics(&self, out: &mut String) {
        self.metrics.render(out, self.hasher.queued());
        if let Some(store) = &self.store {
            store.metrics().render(out);
        }
    }
}
