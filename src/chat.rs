//! Chat mode: the service that turns frames into typed requests, applies them to the
//! shared chat state (accounts, rooms) and answers, in request order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::accounts::{Accounts, INBOX_CAP, TokenHash, User};
use crate::config::{Config, Storage};
use crate::conn::{CloseReason, Conn, Flusher, Io, pending};
use crate::error_code::ErrorCode;
use crate::framing::{Split, Splitter};
use crate::hasher::Hasher;
use crate::protocol::{self, ClosingEvent, DmEvent, HistoryQuery, MemberEvent, Reply, Request};
use crate::room::{self, Room};
use crate::service::{Flow, Service};

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
    accounts: Accounts,
    rooms: RwLock<BTreeMap<String, Arc<Room>>>,
    hasher: Hasher,
    /// Hashed for logins of unknown users, so they take as long as wrong passwords.
    dummy_hash: Arc<str>,
    bcrypt_cost: u32,
    max_frame: usize,
    max_text: usize,
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
    pub(crate) fn new(config: &Config) -> Chat {
        if let Storage::Dir(dir) = &config.storage {
            log::warn!(
                "persistence is not implemented yet: state in {} is not written, and is lost on restart",
                dir.display()
            );
        }
        let dummy_hash = bcrypt::hash("parlor-dummy-password", config.bcrypt_cost)
            .expect("bcrypt cost was validated");
        Chat {
            accounts: Accounts::new(config.session_ttl),
            rooms: RwLock::new(BTreeMap::new()),
            hasher: Hasher::new(config.hash_threads, config.hash_queue),
            dummy_hash: dummy_hash.into(),
            bcrypt_cost: config.bcrypt_cost,
            max_frame: config.max_frame,
            max_text: config.max_text,
            // Without a store, memory is the only copy: keep every message.
            history_cap: usize::MAX,
        }
    }

    /// Handles every complete frame in the buffer, stopping early to park or quit.
    fn process(&self, conn: &Peer, io: &mut Io<Self>, flusher: &mut Flusher<Self>) -> Flow {
        let Io { inbuf, session } = io;
        loop {
            match session.splitter.next(inbuf.data()) {
                Split::Frame { end, next } => {
                    let step = self.handle(conn, session, &inbuf.data()[..end], flusher);
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
                    conn.send(
                        protocol::error(None, &ErrorCode::FrameTooLarge, &message),
                        flusher,
                    );
                }
                Split::Skip { next } => inbuf.consume(next),
                Split::Incomplete => return Flow::Continue,
            }
        }
    }

    fn handle(
        &self,
        conn: &Peer,
        session: &mut Session,
        frame: &[u8],
        flusher: &mut Flusher<Self>,
    ) -> Step {
        let (id, request) = match protocol::parse(frame) {
            Ok(parsed) => parsed,
            Err(fault) => {
                conn.send(
                    protocol::error(fault.id, &fault.code, &fault.message),
                    flusher,
                );
                return Step::Next;
            }
        };
        if session.login.is_none() && !request.allowed_anonymously() {
            let message = "log in first (`login` or `resume`)";
            conn.send(
                protocol::error(id, &ErrorCode::NotAuthenticated, message),
                flusher,
            );
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
            Request::Resume { session: token } => {
                return self.resume(conn, session, id, &token, flusher);
            }
            Request::Logout => Ok(self.logout(conn, session, id)),
            Request::Whoami => Ok(self.whoami(session, id)),
            Request::Create { room, topic } => self.create(session, id, &room, topic.as_deref()),
            Request::Join { room } => self.join(conn, session, id, &room, flusher),
            Request::Leave { room } => self.leave(conn, session, id, &room, flusher),
            Request::Rooms => Ok(self.list_rooms(id)),
            Request::Members { room } => self.members(id, &room),
            Request::Send { room, text } => self.send(conn, session, id, &room, &text, flusher),
            Request::Dm { to, text } => self.dm(conn, session, id, &to, &text, flusher),
            Request::History { room, query } => self.history(session, id, &room, query),
            Request::Quit => {
                step = Step::Quit;
                Ok(Some(Reply::ok(id)))
            }
        }
        .map(|reply| reply.map(Reply::finish));
        let frame = match result {
            Ok(Some(frame)) => Some(frame),
            Ok(None) => None,
            Err((code, message)) => {
                step = Step::Next;
                Some(protocol::error(id, &code, &message))
            }
        };
        if let Some(frame) = frame {
            conn.send(frame, flusher);
        }
        if matches!(step, Step::Quit) {
            conn.close_when_drained(CloseReason::Quit, None);
        }
        step
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
    fn finish_hashed(
        &self,
        conn: &Peer,
        session: &mut Session,
        hashed: Hashed,
        flusher: &mut Flusher<Self>,
    ) {
        let frame = match hashed {
            Hashed::Signup { id, user, hash } => {
                let id = id.as_deref();
                match hash.map(|hash| self.accounts.insert(&user, hash)) {
                    Some(Ok(_)) => Reply::ok(id).field("user", &user).finish(),
                    Some(Err(_)) => protocol::error(
                        id,
                        &ErrorCode::UserExists,
                        &format!("the name `{user}` is taken"),
                    ),
                    None => protocol::error(id, &ErrorCode::Internal, "password hashing failed"),
                }
            }
            Hashed::Login { id, user, verified } => {
                let id = id.as_deref();
                let account = self.accounts.user(&user).filter(|_| verified);
                self.accounts.record_login(&user, account.is_some());
                let Some(account) = account else {
                    let frame =
                        protocol::error(id, &ErrorCode::AuthFailed, "wrong user name or password");
                    conn.send(frame, flusher);
                    return;
                };
                let (token, hash) = self.accounts.new_session(&account);
                self.log_in(conn, session, account, hash);
                log::info!("conn {} logged in as {user}", conn.key);
                let frame = Reply::ok(id)
                    .field("user", &user)
                    .field("session", &token)
                    .finish();
                conn.send(frame, flusher);
                self.deliver_inbox(conn, session, flusher);
                return;
            }
        };
        conn.send(frame, flusher);
    }

    fn resume(
        &self,
        conn: &Peer,
        session: &mut Session,
        id: Option<&RawValue>,
        token: &str,
        flusher: &mut Flusher<Self>,
    ) -> Step {
        let Some((user, hash)) = self.accounts.resume(token) else {
            let frame = protocol::error(
                id,
                &ErrorCode::AuthFailed,
                "unknown, expired or revoked session",
            );
            conn.send(frame, flusher);
            return Step::Next;
        };
        let name = user.name.clone();
        self.log_in(conn, session, user, hash);
        conn.send(Reply::ok(id).field("user", &name).finish(), flusher);
        self.deliver_inbox(conn, session, flusher);
        Step::Next
    }

    fn log_in(&self, conn: &Peer, session: &mut Session, user: Arc<User>, token: TokenHash) {
        self.log_out(conn, session);
        user.online.lock().push(Arc::clone(conn));
        session.login = Some(Login { user, token });
    }

    /// Detaches the connection from its user; returns the token it used.
    fn log_out(&self, conn: &Peer, session: &mut Session) -> Option<TokenHash> {
        let login = session.login.take()?;
        login.user.online.lock().retain(|peer| peer.key != conn.key);
        self.accounts.release(&login.token);
        Some(login.token)
    }

    /// Sends the DMs kept while the user was offline, right after the login answer.
    fn deliver_inbox(&self, conn: &Peer, session: &Session, flusher: &mut Flusher<Self>) {
        let Some(login) = &session.login else { return };
        let kept = std::mem::take(&mut *login.user.inbox.lock());
        for frame in kept {
            conn.send(frame, flusher);
        }
    }

    fn logout(&self, conn: &Peer, session: &mut Session, id: Option<&RawValue>) -> Option<Reply> {
        if let Some(token) = self.log_out(conn, session) {
            self.accounts.revoke(&token);
        }
        Some(Reply::ok(id))
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
        session: &Session,
        id: Option<&RawValue>,
        room: &str,
        topic: Option<&str>,
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
        let created = Arc::new(Room::new(room, topic.to_owned(), user, self.history_cap));
        // The room is not yet visible, so its membership and the user's agree at once.
        user.rooms.lock().insert(room.to_owned());
        rooms.insert(room.to_owned(), created);
        Ok(Some(Reply::ok(id).field("room", room)))
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
        flusher: &mut Flusher<Self>,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let mut state = room.state.lock();
        if !state.members.contains_key(&user.name) {
            state.members.insert(user.name.clone(), Arc::clone(user));
            user.rooms.lock().insert(room.name.clone());
            let event = protocol::event(
                "joined",
                &MemberEvent {
                    room: &room.name,
                    user: &user.name,
                },
            );
            state.broadcast(&event, conn.key, Some(&user.name), flusher);
        }
        let members: Vec<&String> = state.members.keys().collect();
        Ok(Some(
            Reply::ok(id)
                .field("room", &room.name)
                .field("topic", &state.topic)
                .field("members", &members)
                .field("seq", &state.last_seq),
        ))
    }

    fn leave(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        flusher: &mut Flusher<Self>,
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
        let event = protocol::event(
            "left",
            &MemberEvent {
                room: &room.name,
                user: &user.name,
            },
        );
        state.broadcast(&event, conn.key, None, flusher);
        Ok(Some(Reply::ok(id).field("room", &room.name)))
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
        flusher: &mut Flusher<Self>,
    ) -> Result<Option<Reply>, Failure> {
        self.check_text(text)?;
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let mut state = room.state.lock();
        if !state.members.contains_key(&user.name) {
            return fail(
                ErrorCode::NotMember,
                format!("join `{name}` before sending to it"),
            );
        }
        let (seq, ts, event) = state.append(&room.name, &user.name, text, now_ms());
        state.broadcast(&event, conn.key, None, flusher);
        drop(state);
        Ok(Some(Reply::ok(id).field("seq", &seq).field("ts", &ts)))
    }

    fn dm(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        to: &str,
        text: &str,
        flusher: &mut Flusher<Self>,
    ) -> Result<Option<Reply>, Failure> {
        self.check_text(text)?;
        let Some(recipient) = self.accounts.user(to) else {
            return fail(ErrorCode::NoSuchUser, format!("no user is named `{to}`"));
        };
        let from = &logged_in(session).user.name;
        let ts = now_ms();
        let event = protocol::event("dm", &DmEvent { from, text, ts });
        // The inbox lock is taken under the online lock, so a login in between cannot
        // miss the message: either it sees the connection, or the login sees the inbox.
        let online = recipient.online.lock();
        if online.is_empty() {
            let mut inbox = recipient.inbox.lock();
            if inbox.len() == INBOX_CAP {
                inbox.pop_front();
            }
            inbox.push_back(event);
        } else {
            room::deliver_to(&online, &event, conn.key, flusher);
        }
        Ok(Some(Reply::ok(id).field("ts", &ts)))
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
        let state = room.state.lock();
        if !state.members.contains_key(&user.name) {
            return fail(
                ErrorCode::NotMember,
                format!("join `{name}` to read its history"),
            );
        }
        let events = state.history(query);
        drop(state);
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

    fn open(&self, _peer: SocketAddr) -> Session {
        Session {
            splitter: Splitter::new(self.max_frame),
            login: None,
            hashed: None,
            greeted: false,
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
            self.finish_hashed(conn, &mut io.session, hashed, flusher);
        }
        self.process(conn, io, flusher)
    }

    fn closed(&self, conn: &Peer, session: &mut Session, _reason: CloseReason) {
        self.log_out(conn, session);
    }

    fn closing_frame(reason: CloseReason) -> Option<Bytes> {
        match reason {
            CloseReason::SlowConsumer | CloseReason::IdleTimeout | CloseReason::Shutdown => {
                Some(protocol::event(
                    "closing",
                    &ClosingEvent {
                        reason: reason.as_str(),
                    },
                ))
            }
            CloseReason::Eof | CloseReason::Quit | CloseReason::Error => None,
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
}
