//! Accounts and sessions: `signup`, `login` (both hashed off the workers), `resume`,
//! `logout`, `whoami`.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::chat::accounts::{TokenHash, User, bcrypt_cost};
use crate::chat::budget::take_within;
use crate::chat::effects::{Effect, Out};
use crate::chat::hasher::Then;
use crate::chat::ops::admin_bans::banned;
use crate::chat::ops::{Failure, fail, fail_for};
use crate::chat::{
    Chat, Login, MAX_PASSWORD, MAX_USER_NAME, MIN_PASSWORD, Peer, Session, logged_in, now_ms,
    valid_name,
};
use crate::error_code::ErrorCode;
use crate::protocol::json::Reply;
use crate::store::Write;
use crate::transport::service::pending;

/// The result of a request that went to the hashing pool.
pub(crate) enum Hashed {
    Signup {
        id: Option<Box<RawValue>>,
        user: String,
        hash: Option<String>,
    },
    Login {
        id: Option<Box<RawValue>>,
        user: String,
        verified: bool,
        /// The account's password generation when checked (see
        /// `User::password_generation`): a login whose account changed its password
        /// meanwhile fails.
        checked: Option<u64>,
        /// The password hashed at the current cost, when the stored hash has another.
        rehash: Option<String>,
    },
    /// `change_password`: whether the old password was right, and the new one's
    /// hash (`None` if it was wrong or hashing failed).
    ChangePassword {
        id: Option<Box<RawValue>>,
        verified: bool,
        checked: u64,
        hash: Option<String>,
    },
    /// `delete_account`: whether the password was right.
    DeleteAccount {
        id: Option<Box<RawValue>>,
        verified: bool,
        checked: u64,
    },
    /// `admin_set_password`: the new password's hash for `user` (`None`: hashing
    /// failed).
    AdminSetPassword {
        id: Option<Box<RawValue>>,
        user: String,
        hash: Option<String>,
    },
}

impl Chat {
    pub(crate) fn signup(
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
        password_rule(password)?;
        if !self.live.signup_open() {
            return fail(
                ErrorCode::Forbidden,
                "signup is closed on this server (--signup closed): ask an operator",
            );
        }
        // A deleted account's name stays taken for good.
        if self.accounts.taken(user) {
            return fail(ErrorCode::UserExists, format!("the name `{user}` is taken"));
        }
        let cost = self.bcrypt_cost;
        let (id, user, password) = (
            id.map(RawValue::to_owned),
            user.to_owned(),
            password.to_owned(),
        );
        self.run_hash(conn, move || {
            let hash = bcrypt::hash(password, cost).ok();
            Hashed::Signup { id, user, hash }
        })
    }

    pub(crate) fn login(
        &self,
        conn: &Peer,
        id: Option<&RawValue>,
        user: &str,
        password: &str,
    ) -> Result<(), Failure> {
        if let Err(limited) = self.accounts.begin_login(user) {
            return fail_for(
                ErrorCode::RateLimited,
                "too many failed logins for this name; try again later",
                limited.retry_after,
            );
        }
        let account = (password.len() <= MAX_PASSWORD)
            .then(|| self.accounts.user(user))
            .flatten();
        let checked = account.as_ref().map(|u| u.password_generation());
        let stored = account.map(|u| u.hash.lock().clone());
        let slowest = self.accounts.slowest_cost(self.bcrypt_cost);
        let cost = self.bcrypt_cost;
        let (id, name) = (id.map(RawValue::to_owned), user.to_owned());
        let password = password.as_bytes()[..password.len().min(MAX_PASSWORD)].to_vec();
        self.run_hash(conn, move || {
            let verified = check_password(&password, stored.as_deref(), slowest);
            let rehash = stored
                .filter(|hash| verified && bcrypt_cost(hash) != Some(cost))
                .and_then(|_| bcrypt::hash(&password, cost).ok());
            Hashed::Login {
                id,
                user: name,
                verified,
                checked,
                rehash,
            }
        })
        .inspect_err(|_| self.accounts.cancel_login(user))
    }

    /// Hands `job` to the hashing pool, whose result wakes `conn` to finish the parked
    /// request, or answers `server_busy` when it would wait longer than
    /// `--max-hash-wait`.
    pub(crate) fn run_hash(
        &self,
        conn: &Peer,
        job: impl FnOnce() -> Hashed + Send + 'static,
    ) -> Result<(), Failure> {
        let peer = Arc::clone(conn);
        let job = move || -> Then {
            let hashed = job();
            Box::new(move || wake_with(&peer, hashed))
        };
        self.hasher.try_run(conn.peer.ip(), job).or_else(|busy| {
            fail_for(
                ErrorCode::ServerBusy,
                "the server is busy hashing passwords; retry shortly",
                busy.retry_after,
            )
        })
    }

    /// Applies a finished hash: the parked `signup` or `login` is answered now.
    pub(crate) fn finish_hashed(
        &self,
        conn: &Peer,
        session: &mut Session,
        hashed: Hashed,
        out: &mut Out<'_>,
    ) {
        match hashed {
            Hashed::Signup { id, user, hash } => {
                self.finish_signup(conn, id.as_deref(), user, hash, out);
            }
            Hashed::Login {
                id,
                user,
                verified,
                checked,
                rehash,
            } => {
                let account = self
                    .accounts
                    .user(&user)
                    .filter(|a| verified && checked == Some(a.password_generation()));
                self.finish_login(conn, session, id.as_deref(), account, rehash, out);
            }
            Hashed::ChangePassword {
                id,
                verified,
                checked,
                hash,
            } => {
                let verified = verified && self.password_unchanged(session, checked);
                self.finish_change_password(conn, session, id.as_deref(), verified, hash, out);
            }
            Hashed::DeleteAccount {
                id,
                verified,
                checked,
            } => {
                let verified = verified && self.password_unchanged(session, checked);
                self.finish_delete_account(conn, session, id.as_deref(), verified, out);
            }
            Hashed::AdminSetPassword { id, user, hash } => {
                self.finish_admin_set_password(conn, session, id.as_deref(), &user, hash, out);
            }
        }
    }

    fn finish_signup(
        &self,
        conn: &Peer,
        id: Option<&RawValue>,
        user: String,
        hash: Option<String>,
        out: &mut Out<'_>,
    ) {
        let Some(hash) = hash else {
            out.reply(
                conn,
                self.error(id, &ErrorCode::Internal, "password hashing failed"),
            );
            return;
        };
        let stored = hash.clone();
        let inserted = self.accounts.insert(&user, hash, |account| {
            let write = out.durable(|| Write::User {
                name: user.clone(),
                hash: stored,
                created: now_ms(),
            });
            let ok = Reply::ok(id).field("user", &user).finish();
            let (accounts, account) = (Arc::clone(&self.accounts), Arc::clone(account));
            let effects = vec![
                Effect::Send(Arc::clone(conn), ok),
                Effect::Undo(Box::new(move || accounts.remove(&account))),
            ];
            out.commit(write, effects);
        });
        if inserted.is_err() {
            let message = format!("the name `{user}` is taken");
            out.reply(conn, self.error(id, &ErrorCode::UserExists, &message));
        }
    }

    /// Answers a checked login: a new session, and the hash rehashed at the current
    /// cost stored with it (verify-and-update).
    fn finish_login(
        &self,
        conn: &Peer,
        session: &mut Session,
        id: Option<&RawValue>,
        account: Option<Arc<User>>,
        rehash: Option<String>,
        out: &mut Out<'_>,
    ) {
        let Some(account) = account else {
            self.metrics.logins_failed.inc();
            out.reply(
                conn,
                self.error(id, &ErrorCode::AuthFailed, "wrong user name or password"),
            );
            return;
        };
        // Only the holder of the right password learns of a ban.
        if let Some(ban) = self.active_ban(&account) {
            self.metrics.logins_failed.inc();
            out.reply(conn, self.failure(id, &banned(&ban)));
            return;
        }
        self.metrics.logins_ok.inc();
        let user = account.name.clone();
        self.accounts.login_succeeded(&user);
        let (token, hash, expired) = self.accounts.new_session(&account);
        self.store_quietly(
            expired
                .into_iter()
                .map(|hash| Write::RevokeSession { hash })
                .collect(),
        );
        log::info!("conn {} logged in as {user}", conn.key);
        let ok = Reply::ok(id)
            .field("user", &user)
            .field("session", &token)
            .finish();
        let mut writes = out.durable(|| Write::Session {
            hash,
            user: user.clone(),
            used: now_ms(),
        });
        if let Some(rehash) = rehash {
            self.accounts.set_hash(&account, rehash.clone());
            writes.extend(out.durable(|| Write::PasswordHash {
                name: user,
                hash: rehash,
            }));
        }
        self.log_in(conn, session, account, hash, ok, &mut writes, out);
    }

    pub(crate) fn resume(
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
        // Its last use, stored: were the server to stop now, the idle time would
        // count from here.
        let mut writes = out.durable(|| Write::TouchSession {
            hash,
            used: now_ms(),
        });
        self.log_in(conn, session, user, hash, ok, &mut writes, out);
        None
    }

    /// Attaches the connection to `user`, answers `ok`, and hands over the direct
    /// messages kept while the user was offline, right after the answer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log_in(
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
        // The kept DMs that fit the answer budget, oldest first: all of them at once
        // could pass the outbound limit and cut the client off with them. The rest
        // stay kept (and stored) for the next login.
        // Invitations kept for a protocol-2 connection (protocol 1 has no such
        // event), taken under the `online` lock as they are kept under it.
        let protocol = conn.tag.protocol();
        let (kept, invites, first): (Vec<Bytes>, Vec<Bytes>, bool) = {
            let mut online = user.online.lock();
            let first = online.is_empty();
            online.push(Arc::clone(conn));
            let mut inbox = user.inbox.lock();
            let frames = inbox.iter().map(|dm| dm.for_protocol(protocol));
            let fit = take_within(frames, self.answer_budget.kept_dms).len();
            let invites = if protocol >= 2 {
                self.kept_invites.take(&user.name)
            } else {
                Vec::new()
            };
            let kept = inbox
                .drain(..fit)
                .map(|dm| dm.for_protocol(protocol).clone())
                .collect();
            (kept, invites, first)
        };
        if !kept.is_empty() {
            writes.extend(out.durable(|| Write::ClearDms {
                to: user.name.clone(),
                count: kept.len(),
            }));
        }
        if !invites.is_empty() {
            writes.extend(out.durable(|| Write::InvitesDelivered {
                user: user.name.clone(),
            }));
        }
        let mut effects = Vec::with_capacity(kept.len() + invites.len() + 1);
        effects.push(Effect::Send(Arc::clone(conn), ok));
        effects.extend(
            kept.into_iter()
                .chain(invites)
                .map(|frame| Effect::Send(Arc::clone(conn), frame)),
        );
        out.commit(std::mem::take(writes), effects);
        if first {
            self.announce_arrival(&user, out);
        }
        if let Some(hook) = &self.hooks.logged_in {
            let _ = self.hook("login", || {
                hook(&user.name, conn.peer);
                Ok(())
            });
        }
        conn.tag.set_user(Some(&user.name));
        session.login = Some(Login { user, token });
    }

    /// Detaches the connection from its user; returns the token it used. A token no
    /// connection uses any more starts its idle time now, in the store too.
    pub(crate) fn log_out(&self, conn: &Peer, session: &mut Session) -> Option<TokenHash> {
        let login = session.login.take()?;
        conn.tag.set_user(None);
        let last = {
            let mut online = login.user.online.lock();
            online.retain(|peer| peer.key != conn.key);
            online.is_empty()
        };
        if last {
            self.announce_departure(&login.user);
        }
        if self.accounts.release(&login.token) {
            self.store_quietly(vec![Write::TouchSession {
                hash: login.token,
                used: now_ms(),
            }]);
        }
        Some(login.token)
    }

    pub(crate) fn logout(
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

    pub(crate) fn whoami(&self, session: &Session, id: Option<&RawValue>) -> Option<Reply> {
        let user = &logged_in(session).user;
        let rooms: Vec<String> = user.rooms.lock().iter().cloned().collect();
        Some(
            Reply::ok(id)
                .field("user", &user.name)
                .field("rooms", &rooms)
                .field("unread", &self.unread_report(user)),
        )
    }
}

/// A new password's rule (`signup`'s): 8-72 bytes, as bcrypt reads no further.
pub(crate) fn password_rule(password: &str) -> Result<(), Failure> {
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&password.len()) {
        Ok(())
    } else {
        fail(ErrorCode::WeakPassword, "a password is 8-72 bytes")
    }
}

/// Checks `password` against `stored` (`None`: no such account). A check that fails
/// takes as long as one at cost `slowest`, whatever the stored hash's cost or whether
/// there is one: bcrypt's time doubles with each cost step, so hashes at costs
/// `c..slowest` after a check at `c` add up to one at `slowest`.
fn check_password(password: &[u8], stored: Option<&str>, slowest: u32) -> bool {
    let checked = stored.and_then(|hash| Some((hash, bcrypt_cost(hash)?)));
    let padding = match checked {
        Some((hash, cost)) => {
            if bcrypt::verify(password, hash).unwrap_or(false) {
                return true;
            }
            cost..slowest
        }
        None => slowest..slowest + 1,
    };
    for cost in padding {
        let _ = bcrypt::hash_with_salt(password, cost, PAD_SALT);
    }
    false
}

/// The salt of the padding hashes (their results are thrown away).
const PAD_SALT: [u8; 16] = *b"parlor-pad-salt!";

/// Hands a hashing result to the parked connection and wakes its job.
pub(crate) fn wake_with(conn: &Peer, hashed: Hashed) {
    conn.io.lock().session.hashed = Some(hashed);
    conn.schedule(pending::WAKE);
}
