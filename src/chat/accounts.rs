//! Users, their password hashes, session tokens and the failed-login limiter.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};

use crate::chat::{MAX_USER_NAME, Peer, now_ms, valid_name};

/// Login attempts one name may start in a window; more answer `rate_limited`.
const MAX_ATTEMPTS: u32 = 5;
/// The window of [`MAX_ATTEMPTS`], from a name's first attempt.
const WINDOW: Duration = Duration::from_secs(60);
/// Idle sessions (no connection using them) one user may hold; a new login beyond it
/// revokes the least recently used.
const MAX_IDLE_SESSIONS: usize = 100;
/// Direct messages kept for a user who is offline; older ones are dropped.
pub(crate) const INBOX_CAP: usize = 1000;
/// Most names the login limiter keeps; beyond, expired windows go, then the oldest.
/// Only valid user names are kept (at most 32 bytes each), so its memory is bounded.
const ATTEMPTS_CAP: usize = 10_000;
/// bcrypt's costs are 4..=31.
const COSTS: usize = 32;

/// A registered user.
pub(crate) struct User {
    pub(crate) name: String,
    /// bcrypt hash of the password (replaced when a login rehashes it at a new cost).
    pub(crate) hash: Mutex<String>,
    /// The connections logged in as this user right now.
    pub(crate) online: Mutex<Vec<Peer>>,
    /// The rooms the user is a member of (kept with each room's member list, under the
    /// room's lock).
    pub(crate) rooms: Mutex<BTreeSet<String>>,
    /// `dm` events that arrived while no connection was logged in.
    pub(crate) inbox: Mutex<VecDeque<KeptDm>>,
    /// The users whose DMs this user does not get (PROTOCOL-2 section 7).
    pub(crate) blocked: Mutex<BTreeSet<String>>,
    /// Rooms this user created since the server started (for `--max-rooms-per-user`).
    pub(crate) rooms_created: AtomicUsize,
    /// How many times the password was changed (`change_password`; not a rehash):
    /// a password checked before a change is not accepted after it.
    generation: AtomicU64,
    /// The account was deleted: a connection still logged in as it (closing) is
    /// treated as logged out.
    deleted: AtomicBool,
    /// A server operator's ban (`admin_ban`): logins are refused while it lasts.
    pub(crate) ban: Mutex<Option<AccountBan>>,
}

/// An account's ban from the server.
#[derive(Debug, Clone)]
pub(crate) struct AccountBan {
    /// The operator who banned it.
    pub(crate) by: String,
    pub(crate) reason: Option<String>,
    /// When it ends, in ms since the epoch (`None`: when an operator lifts it).
    pub(crate) until: Option<u64>,
    /// When it was made, in ms since the epoch.
    pub(crate) ts: u64,
}

impl User {
    /// See [`User::generation`]: read before a password check, compared after it.
    pub(crate) fn password_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the account was deleted (`delete_account`).
    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }
}

/// A kept `dm` event, as each protocol version gets it.
pub(crate) struct KeptDm {
    pub(crate) v1: Bytes,
    pub(crate) v2: Bytes,
}

impl KeptDm {
    /// The frame for a connection speaking `protocol`.
    pub(crate) fn for_protocol(&self, protocol: u8) -> &Bytes {
        if protocol >= 2 { &self.v2 } else { &self.v1 }
    }
}

impl User {
    /// Whether this user blocks `name`: DMs and invitations from them are dropped
    /// without telling them (PROTOCOL-2 section 7).
    pub(crate) fn blocks(&self, name: &str) -> bool {
        self.blocked.lock().contains(name)
    }
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

/// The login attempts of one name in its current window.
struct Attempts {
    started: u32,
    since: Instant,
}

/// Logins for the name are refused for `retry_after`.
#[derive(Debug)]
pub(crate) struct Limited {
    pub(crate) retry_after: Duration,
}

/// Sessions taken away from a user (`change_password`, `delete_account`), held so a
/// failed commit can give them back.
pub(crate) struct Revoked(Vec<(TokenHash, SessionRecord)>);

impl Revoked {
    /// The token hashes, for the store to delete.
    pub(crate) fn hashes(&self) -> impl Iterator<Item = TokenHash> + '_ {
        self.0.iter().map(|(hash, _)| *hash)
    }
}

/// Every account and session.
pub(crate) struct Accounts {
    users: RwLock<HashMap<String, Arc<User>>>,
    /// Names of deleted accounts: never signed up again (taken with `users` locked).
    retired: RwLock<HashSet<String>>,
    sessions: Mutex<HashMap<TokenHash, SessionRecord>>,
    attempts: Mutex<HashMap<String, Attempts>>,
    /// How many stored password hashes there are of each bcrypt cost.
    costs: Mutex<[usize; COSTS]>,
    session_ttl: Duration,
}

/// The name is taken.
#[derive(Debug)]
pub(crate) struct UserExists;

impl Accounts {
    pub(crate) fn new(session_ttl: Duration) -> Accounts {
        Accounts {
            users: RwLock::new(HashMap::new()),
            retired: RwLock::new(HashSet::new()),
            sessions: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
            costs: Mutex::new([0; COSTS]),
            session_ttl,
        }
    }

    pub(crate) fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users.read().get(name).cloned()
    }

    /// Whether `name` belongs to an account, or did to a deleted one.
    pub(crate) fn taken(&self, name: &str) -> bool {
        self.users.read().contains_key(name) || self.retired.read().contains(name)
    }

    /// Registers a user whose password was hashed to `hash` (refused if the name is
    /// taken, see [`Accounts::taken`]). `then` runs while no other registration can
    /// start, so what it hands the store is in order.
    pub(crate) fn insert(
        &self,
        name: &str,
        hash: String,
        then: impl FnOnce(&Arc<User>),
    ) -> Result<Arc<User>, UserExists> {
        let mut users = self.users.write();
        if users.contains_key(name) || self.retired.read().contains(name) {
            return Err(UserExists);
        }
        self.count_cost(&hash, 1);
        let user = Arc::new(User {
            name: name.to_owned(),
            hash: Mutex::new(hash),
            online: Mutex::new(Vec::new()),
            rooms: Mutex::new(BTreeSet::new()),
            inbox: Mutex::new(VecDeque::new()),
            blocked: Mutex::new(BTreeSet::new()),
            rooms_created: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            deleted: AtomicBool::new(false),
            ban: Mutex::new(None),
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

    /// Deletes `user`'s account: its name is retired for good. Returns false if it
    /// was deleted already.
    pub(crate) fn delete(&self, user: &Arc<User>) -> bool {
        let mut users = self.users.write();
        if !users.get(&user.name).is_some_and(|u| Arc::ptr_eq(u, user)) {
            return false;
        }
        users.remove(&user.name);
        self.retired.write().insert(user.name.clone());
        user.deleted.store(true, Ordering::Release);
        self.count_cost(&user.hash.lock(), -1);
        true
    }

    /// Takes back a deletion whose commit failed.
    pub(crate) fn undelete(&self, user: &Arc<User>) {
        let mut users = self.users.write();
        self.retired.write().remove(&user.name);
        user.deleted.store(false, Ordering::Release);
        self.count_cost(&user.hash.lock(), 1);
        users.insert(user.name.clone(), Arc::clone(user));
    }

    /// A name of a deleted account, read back at start-up.
    pub(crate) fn retire(&self, name: String) {
        self.retired.write().insert(name);
    }

    /// Counts a login attempt for `name` as it starts, or refuses it: at most
    /// [`MAX_ATTEMPTS`] per name in a window, whether finished or still hashing. A
    /// name that no account can have is not kept (the answer is `auth_failed` anyway).
    pub(crate) fn begin_login(&self, name: &str) -> Result<(), Limited> {
        if !valid_name(name, MAX_USER_NAME) {
            return Ok(());
        }
        let now = Instant::now();
        let mut attempts = self.attempts.lock();
        if attempts.len() >= ATTEMPTS_CAP && !attempts.contains_key(name) {
            make_room(&mut attempts, now);
        }
        let entry = attempts.entry(name.to_owned()).or_insert(Attempts {
            started: 0,
            since: now,
        });
        if now.duration_since(entry.since) >= WINDOW {
            *entry = Attempts {
                started: 0,
                since: now,
            };
        }
        if entry.started >= MAX_ATTEMPTS {
            return Err(Limited {
                retry_after: (entry.since + WINDOW).saturating_duration_since(now),
            });
        }
        entry.started += 1;
        Ok(())
    }

    /// An attempt counted by [`Accounts::begin_login`] was never checked (the
    /// hashing pool refused it): it does not count.
    pub(crate) fn cancel_login(&self, name: &str) {
        if let Some(entry) = self.attempts.lock().get_mut(name) {
            entry.started = entry.started.saturating_sub(1);
        }
    }

    /// A login succeeded: its name starts afresh.
    pub(crate) fn login_succeeded(&self, name: &str) {
        self.attempts.lock().remove(name);
    }

    /// The highest bcrypt cost of any stored hash, or `current` if higher: every
    /// failed login takes as long as one check at this cost, so its time does not
    /// tell whether the name exists, nor at which cost its hash was made.
    pub(crate) fn slowest_cost(&self, current: u32) -> u32 {
        let costs = self.costs.lock();
        let stored = (0..COSTS).rev().find(|&c| costs[c] > 0).unwrap_or(0);
        u32::try_from(stored).map_or(current, |stored| stored.max(current))
    }

    /// Replaces `user`'s password hash (a rehash at the current cost).
    pub(crate) fn set_hash(&self, user: &User, hash: String) {
        let mut stored = user.hash.lock();
        self.count_cost(&stored, -1);
        self.count_cost(&hash, 1);
        *stored = hash;
    }

    /// Replaces `user`'s password (`change_password`): checks of the old one still
    /// under way fail. Returns the old hash.
    pub(crate) fn change_password(&self, user: &User, hash: String) -> String {
        let old = user.hash.lock().clone();
        self.set_hash(user, hash);
        user.generation.fetch_add(1, Ordering::AcqRel);
        old
    }

    /// Takes back a password change whose commit failed.
    pub(crate) fn unchange_password(&self, user: &User, old: String) {
        self.set_hash(user, old);
        user.generation.fetch_sub(1, Ordering::AcqRel);
    }

    fn count_cost(&self, hash: &str, change: isize) {
        if let Some(cost) = bcrypt_cost(hash) {
            let slot = &mut self.costs.lock()[cost as usize];
            *slot = slot.saturating_add_signed(change);
        }
    }

    /// How long an unused session lasts (`--session-ttl`).
    pub(crate) fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    /// Issues a new session token for `user`, counted as used by one connection;
    /// returns it, its hash, and the hashes of the sessions it ended (for the store to
    /// delete): every expired one, and the user's least recently used idle ones past
    /// [`MAX_IDLE_SESSIONS`].
    pub(crate) fn new_session(&self, user: &Arc<User>) -> (String, TokenHash, Vec<TokenHash>) {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).expect("the OS random source failed");
        let token = hex::encode(raw);
        let hash = token_hash(&token);
        let mut sessions = self.sessions.lock();
        let now = now_ms();
        let mut expired = Vec::new();
        // The user's idle sessions, for the cap: (last use, token hash).
        let mut idle = Vec::new();
        sessions.retain(|hash, s| {
            let keep = s.live > 0 || !self.expired(s, now);
            if !keep {
                expired.push(*hash);
            } else if s.live == 0 && Arc::ptr_eq(&s.user, user) {
                idle.push((s.idle_since, *hash));
            }
            keep
        });
        // Past the cap, the user's least recently used idle sessions go, so logging in
        // again and again cannot grow the table (and the store) without bound.
        if idle.len() >= MAX_IDLE_SESSIONS {
            idle.sort_unstable();
            for (_, hash) in &idle[..=idle.len() - MAX_IDLE_SESSIONS] {
                sessions.remove(hash);
                expired.push(*hash);
            }
        }
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

    /// Revokes every session of `user` but `keep`; returns them.
    pub(crate) fn revoke_all(&self, user: &Arc<User>, keep: Option<&TokenHash>) -> Revoked {
        let mut sessions = self.sessions.lock();
        let hashes: Vec<TokenHash> = sessions
            .iter()
            .filter(|(hash, s)| Arc::ptr_eq(&s.user, user) && Some(*hash) != keep)
            .map(|(hash, _)| *hash)
            .collect();
        Revoked(
            hashes
                .into_iter()
                .filter_map(|hash| sessions.remove(&hash).map(|s| (hash, s)))
                .collect(),
        )
    }

    /// Gives back sessions revoked by a change whose commit failed.
    pub(crate) fn reinstate(&self, revoked: Revoked) {
        self.sessions.lock().extend(revoked.0);
    }

    /// `logout`: no later `resume` accepts the token.
    pub(crate) fn revoke(&self, hash: &TokenHash) {
        self.sessions.lock().remove(hash);
    }
}

/// Frees one slot of a full limiter: expired windows first, else the oldest window.
fn make_room(attempts: &mut HashMap<String, Attempts>, now: Instant) {
    attempts.retain(|_, a| now.duration_since(a.since) < WINDOW);
    if attempts.len() >= ATTEMPTS_CAP {
        let oldest = attempts
            .iter()
            .min_by_key(|(_, a)| a.since)
            .map(|(name, _)| name.clone());
        if let Some(name) = oldest {
            attempts.remove(&name);
        }
    }
}

/// The cost of a bcrypt hash (`$2b$12$...`), if it reads as one.
pub(crate) fn bcrypt_cost(hash: &str) -> Option<u32> {
    let cost: u32 = hash.split('$').nth(2)?.parse().ok()?;
    (cost < COSTS as u32).then_some(cost)
}

fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_limiter_stays_bounded_and_keeps_only_possible_names() {
        let accounts = Accounts::new(Duration::from_secs(60));
        for i in 0..ATTEMPTS_CAP + 100 {
            accounts.begin_login(&format!("name{i}")).unwrap();
        }
        accounts.begin_login(&"x".repeat(1000)).unwrap();
        accounts.begin_login("not a name").unwrap();
        let attempts = accounts.attempts.lock();
        assert_eq!(attempts.len(), ATTEMPTS_CAP);
        assert!(attempts.keys().all(|name| name.len() <= MAX_USER_NAME));
    }

    #[test]
    fn the_slowest_cost_follows_the_stored_hashes() {
        let accounts = Accounts::new(Duration::from_secs(60));
        assert_eq!(accounts.slowest_cost(4), 4);
        let user = accounts
            .insert("ada", "$2b$10$abcdefghijklmnopqrstuv".into(), |_| {})
            .unwrap();
        assert_eq!(accounts.slowest_cost(4), 10);
        accounts.set_hash(&user, "$2b$04$abcdefghijklmnopqrstuv".into());
        assert_eq!(accounts.slowest_cost(4), 4);
        assert_eq!(accounts.slowest_cost(12), 12);
    }
}
