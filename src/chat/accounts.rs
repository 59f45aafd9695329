//! Users, their password hashes, session tokens and the failed-login limiter.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};

use crate::chat::{Peer, now_ms};

/// Failed logins in a row after which a name is limited.
const MAX_FAILURES: u32 = 5;
/// How long a limited name answers `rate_limited`.
const LIMIT_TIME: Duration = Duration::from_secs(60);
/// Direct messages kept for a user who is offline; older ones are dropped.
pub(crate) const INBOX_CAP: usize = 1000;
/// Entries the failed-login table holds before expired ones are swept.
const FAILURES_SWEEP_AT: usize = 10_000;

/// A registered user.
pub(crate) struct User {
    pub(crate) name: String,
    /// bcrypt hash of the password.
    pub(crate) hash: String,
    /// The connections logged in as this user right now.
    pub(crate) online: Mutex<Vec<Peer>>,
    /// The rooms the user is a member of (kept with each room's member list, under the
    /// room's lock).
    pub(crate) rooms: Mutex<BTreeSet<String>>,
    /// `dm` events that arrived while no connection was logged in.
    pub(crate) inbox: Mutex<VecDeque<Bytes>>,
}

/// A session token's SHA-256: what the server keeps instead of the token.
pub(crate) type TokenHash = [u8; 32];

struct SessionRecord {
    user: Arc<User>,
    /// Connections logged in through this token.
    live: usize,
    /// When the last connection stopped using it, in ms since the Unix epoch: the wall
    /// clock, which (unlike `Instant`) means the same after a restart.
    idle_since: u64,
}

#[derive(Default)]
struct Failures {
    count: u32,
    limited_until: Option<Instant>,
}

/// Every account and session.
pub(crate) struct Accounts {
    users: RwLock<HashMap<String, Arc<User>>>,
    sessions: Mutex<HashMap<TokenHash, SessionRecord>>,
    failures: Mutex<HashMap<String, Failures>>,
    session_ttl: Duration,
}

/// The name is taken.
#[derive(Debug)]
pub(crate) struct UserExists;

impl Accounts {
    pub(crate) fn new(session_ttl: Duration) -> Accounts {
        Accounts {
            users: RwLock::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            session_ttl,
        }
    }

    pub(crate) fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users.read().get(name).cloned()
    }

    /// Registers a user whose password was hashed to `hash`. `then` runs while no
    /// other registration can start, so what it hands the store is in order.
    pub(crate) fn insert(
        &self,
        name: &str,
        hash: String,
        then: impl FnOnce(&Arc<User>),
    ) -> Result<Arc<User>, UserExists> {
        let mut users = self.users.write();
        if users.contains_key(name) {
            return Err(UserExists);
        }
        let user = Arc::new(User {
            name: name.to_owned(),
            hash,
            online: Mutex::new(Vec::new()),
            rooms: Mutex::new(BTreeSet::new()),
            inbox: Mutex::new(VecDeque::new()),
        });
        users.insert(name.to_owned(), Arc::clone(&user));
        then(&user);
        Ok(user)
    }

    /// Takes back a registration whose commit failed (if `user` is still the one
    /// registered under its name).
    pub(crate) fn remove(&self, user: &Arc<User>) {
        let mut users = self.users.write();
        if users.get(&user.name).is_some_and(|u| Arc::ptr_eq(u, user)) {
            users.remove(&user.name);
        }
    }

    /// Whether logins for `name` are refused for now (5 failures in a row).
    pub(crate) fn login_limited(&self, name: &str) -> bool {
        let mut failures = self.failures.lock();
        let Some(entry) = failures.get_mut(name) else {
            return false;
        };
        match entry.limited_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                failures.remove(name);
                false
            }
            None => false,
        }
    }

    /// Counts a finished login attempt for `name`.
    pub(crate) fn record_login(&self, name: &str, ok: bool) {
        let mut failures = self.failures.lock();
        if ok {
            failures.remove(name);
            return;
        }
        if failures.len() >= FAILURES_SWEEP_AT {
            let now = Instant::now();
            failures.retain(|_, f| f.limited_until.is_some_and(|until| until > now));
        }
        let entry = failures.entry(name.to_owned()).or_default();
        if entry.limited_until.is_some() {
            return;
        }
        entry.count += 1;
        if entry.count >= MAX_FAILURES {
            entry.limited_until = Some(Instant::now() + LIMIT_TIME);
        }
    }

    /// How long an unused session lasts (`--session-ttl`).
    pub(crate) fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    /// Issues a new session token for `user`, counted as used by one connection;
    /// returns it, its hash, and the hashes of the expired sessions swept meanwhile
    /// (for the store to delete).
    pub(crate) fn new_session(&self, user: &Arc<User>) -> (String, TokenHash, Vec<TokenHash>) {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).expect("the OS random source failed");
        let token = hex(&raw);
        let hash = token_hash(&token);
        let mut sessions = self.sessions.lock();
        let now = now_ms();
        let mut expired = Vec::new();
        sessions.retain(|hash, s| {
            let keep = s.live > 0 || !self.expired(s, now);
            if !keep {
                expired.push(*hash);
            }
            keep
        });
        sessions.insert(
            hash,
            SessionRecord {
                user: Arc::clone(user),
                live: 1,
                idle_since: now,
            },
        );
        (token, hash, expired)
    }

    /// Brings back a stored session, last used at `used` (ms since the Unix epoch).
    pub(crate) fn restore_session(&self, hash: TokenHash, user: Arc<User>, used: u64) {
        let record = SessionRecord {
            user,
            live: 0,
            idle_since: used,
        };
        self.sessions.lock().insert(hash, record);
    }

    /// The user of a live, unexpired token; counts one more connection using it.
    pub(crate) fn resume(&self, token: &str) -> Option<(Arc<User>, TokenHash)> {
        let hash = token_hash(token);
        let mut sessions = self.sessions.lock();
        let record = sessions.get_mut(&hash)?;
        if record.live == 0 && self.expired(record, now_ms()) {
            sessions.remove(&hash);
            return None;
        }
        record.live += 1;
        Some((Arc::clone(&record.user), hash))
    }

    /// A connection stopped using the token (logged in as someone else, or closed).
    /// Returns true if no connection uses it any more: its idle time starts now.
    pub(crate) fn release(&self, hash: &TokenHash) -> bool {
        let mut sessions = self.sessions.lock();
        let Some(record) = sessions.get_mut(hash) else {
            return false;
        };
        record.live = record.live.saturating_sub(1);
        if record.live == 0 {
            record.idle_since = now_ms();
        }
        record.live == 0
    }

    /// Whether an unused session has been idle for `--session-ttl`.
    fn expired(&self, record: &SessionRecord, now: u64) -> bool {
        Duration::from_millis(now.saturating_sub(record.idle_since)) >= self.session_ttl
    }

    /// `logout`: no later `resume` accepts the token.
    pub(crate) fn revoke(&self, hash: &TokenHash) {
        self.sessions.lock().remove(hash);
    }
}

fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}
