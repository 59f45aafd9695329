//! Managing one's own account (protocol 2's `accounts` feature): `change_password`
//! and `delete_account`. Both check the password on the hashing pool, as `login`
//! does, and a wrong one counts as a failed login of the name.

use std::sync::Arc;

use parking_lot::MutexGuard;
use serde_json::value::RawValue;

use crate::chat::accounts::User;
use crate::chat::effects::{Effect, Out};
use crate::chat::ops::account::Hashed;
use crate::chat::ops::rooms::role_event;
use crate::chat::ops::{Failure, fail, fail_for};
use crate::chat::room::{Frames, Role, Room, RoomEvent, RoomState};
use crate::chat::{Chat, Login, MAX_PASSWORD, MIN_PASSWORD, Peer, Session, logged_in, now_ms};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as protocol, MemberEvent, Reply};
use crate::store::Write;

/// The `closing` reason the user's other connections get after `change_password`.
pub(crate) const PASSWORD_CHANGED: &str = "password_changed";
/// The `closing` reason every connection of a deleted account gets.
const ACCOUNT_DELETED: &str = "account_deleted";

/// What a deletion took out of one room, to put back if its commit fails: the
/// room, the user's role and join time there, and the heir with its former role.
type Left = (Arc<Room>, Role, u64, Option<(String, Role)>);

impl Chat {
    /// `change_password`: the new password follows `signup`'s rules; the old one is
    /// checked on the hashing pool, which hashes the new one too.
    pub(crate) fn change_password(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        old_password: &str,
        new_password: &str,
    ) -> Result<(), Failure> {
        if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&new_password.len()) {
            return fail(ErrorCode::WeakPassword, "a password is 8-72 bytes");
        }
        let user = &logged_in(session).user;
        self.begin_password_check(&user.name)?;
        let checked = user.password_generation();
        let stored = user.hash.lock().clone();
        let cost = self.bcrypt_cost;
        let (id, old, new) = (
            id.map(RawValue::to_owned),
            old_password.to_owned(),
            new_password.to_owned(),
        );
        self.run_hash(conn, move || {
            let verified = verify(&old, &stored);
            let hash = verified.then(|| bcrypt::hash(new, cost).ok()).flatten();
            Hashed::ChangePassword {
                id,
                verified,
                checked,
                hash,
            }
        })
        .inspect_err(|_| self.accounts.cancel_login(&user.name))
    }

    /// `delete_account`: the password is checked on the hashing pool first.
    pub(crate) fn delete_account(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        password: &str,
    ) -> Result<(), Failure> {
        let user = &logged_in(session).user;
        self.begin_password_check(&user.name)?;
        let checked = user.password_generation();
        let stored = user.hash.lock().clone();
        let (id, password) = (id.map(RawValue::to_owned), password.to_owned());
        self.run_hash(conn, move || Hashed::DeleteAccount {
            id,
            verified: verify(&password, &stored),
            checked,
        })
        .inspect_err(|_| self.accounts.cancel_login(&user.name))
    }

    /// Counts a password check against the name's failed-login limit, or refuses it.
    fn begin_password_check(&self, name: &str) -> Result<(), Failure> {
        self.accounts.begin_login(name).or_else(|limited| {
            fail_for(
                ErrorCode::RateLimited,
                "too many failed password checks for this name; try again later",
                limited.retry_after,
            )
        })
    }

    /// Whether the logged-in user's password generation is still `checked`: a
    /// password checked before another request changed it is wrong now.
    pub(crate) fn password_unchanged(&self, session: &Session, checked: u64) -> bool {
        session
            .login
            .as_ref()
            .is_some_and(|l| l.user.password_generation() == checked)
    }

    /// The login a checked password belongs to, if the check passed; otherwise
    /// answers the error. A pass resets the name's failed-login count.
    fn checked_login<'s>(
        &self,
        conn: &Peer,
        session: &'s Session,
        id: Option<&RawValue>,
        verified: bool,
        out: &mut Out<'_>,
    ) -> Option<&'s Login> {
        let login = session.login.as_ref().filter(|l| !l.user.is_deleted());
        let (code, message) = match login {
            None => (ErrorCode::NotAuthenticated, "log in first"),
            Some(_) if !verified => (ErrorCode::AuthFailed, "wrong password"),
            Some(login) => {
                self.accounts.login_succeeded(&login.user.name);
                return Some(login);
            }
        };
        if code == ErrorCode::AuthFailed {
            self.metrics.logins_failed.inc();
        }
        out.reply(conn, self.error(id, &code, message));
        None
    }

    /// Stores the new hash and revokes every other session of the user; once that
    /// is committed, answers and closes the user's other connections.
    pub(crate) fn finish_change_password(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        verified: bool,
        hash: Option<String>,
        out: &mut Out<'_>,
    ) {
        let Some(login) = self.checked_login(conn, session, id, verified, out) else {
            return;
        };
        let Some(hash) = hash else {
            let failed = self.error(id, &ErrorCode::Internal, "password hashing failed");
            out.reply(conn, failed);
            return;
        };
        let user = Arc::clone(&login.user);
        let old_hash = self.accounts.change_password(&user, hash.clone());
        let revoked = self.accounts.revoke_all(&user, Some(&login.token));
        let mut writes = out.durable(|| Write::PasswordHash {
            name: user.name.clone(),
            hash,
        });
        for hash in revoked.hashes() {
            writes.extend(out.durable(|| Write::RevokeSession { hash }));
        }
        log::info!("conn {}: {} changed their password", conn.key, user.name);
        let mut effects = vec![Effect::Send(Arc::clone(conn), Reply::ok(id).finish())];
        effects.extend(closes(&user, Some(conn.key), PASSWORD_CHANGED));
        let accounts = Arc::clone(&self.accounts);
        effects.push(Effect::Undo(Box::new(move || {
            accounts.unchange_password(&user, old_hash);
            accounts.reinstate(revoked);
        })));
        out.commit(writes, effects);
    }

    /// Deletes the account: out of every room (ownership handed on, `left` and
    /// `role` told), its sessions, kept DMs and name gone for good; once committed,
    /// answers and closes every connection of the user, this one included.
    pub(crate) fn finish_delete_account(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        verified: bool,
        out: &mut Out<'_>,
    ) {
        let Some(login) = self.checked_login(conn, session, id, verified, out) else {
            return;
        };
        let user = Arc::clone(&login.user);
        if !self.accounts.delete(&user) {
            let gone = self.error(id, &ErrorCode::NotAuthenticated, "log in first");
            out.reply(conn, gone);
            return;
        }
        log::info!("conn {}: {} deleted their account", conn.key, user.name);
        let revoked = self.accounts.revoke_all(&user, None);
        let inbox = std::mem::take(&mut *user.inbox.lock());
        // Every room the user is in, locked in name order (the set is sorted), so its
        // events and writes go out in each room's order, in one commit.
        let rooms: Vec<Arc<Room>> = {
            let names = user.rooms.lock().clone();
            let all = self.rooms.read();
            names.iter().filter_map(|n| all.get(n).cloned()).collect()
        };
        let mut states: Vec<MutexGuard<'_, RoomState>> =
            rooms.iter().map(|r| r.state.lock()).collect();
        let mut writes = Vec::new();
        let mut left: Vec<Left> = Vec::new();
        let mut per_room = Vec::new();
        for (room, state) in rooms.iter().zip(states.iter_mut()) {
            let Some((member, heir)) = state.remove_member(&user.name) else {
                continue;
            };
            let mut events = vec![left_event(&room.name, &user.name)];
            if let Some((heir, _)) = &heir {
                events.push(role_event(&room.name, heir, Role::Owner, &user.name));
                writes.extend(out.durable(|| Write::SetRole {
                    room: room.name.clone(),
                    user: heir.clone(),
                    role: Role::Owner.as_str(),
                }));
            }
            left.push((Arc::clone(room), member.role, member.joined, heir));
            per_room.push((room, &mut **state, events));
        }
        user.rooms.lock().clear();
        writes.extend(out.durable(|| Write::DeleteUser {
            name: user.name.clone(),
            ts: now_ms(),
        }));
        let mut effects = vec![Effect::Send(Arc::clone(conn), Reply::ok(id).finish())];
        effects.extend(closes(&user, None, ACCOUNT_DELETED));
        let accounts = Arc::clone(&self.accounts);
        effects.push(Effect::Undo(Box::new(move || {
            accounts.undelete(&user);
            accounts.reinstate(revoked);
            *user.inbox.lock() = inbox;
            rejoin(&user, left);
        })));
        out.rooms_commit(writes, per_room, effects);
    }
}

/// Checks `password` against the stored hash (a password longer than bcrypt reads
/// is wrong, as at `login`).
fn verify(password: &str, stored: &str) -> bool {
    password.len() <= MAX_PASSWORD && bcrypt::verify(password, stored).unwrap_or(false)
}

/// A `left` event for a deleted user: to every member, protocol 1 and 2 alike.
fn left_event(room: &str, user: &str) -> RoomEvent {
    RoomEvent::Broadcast {
        frames: Frames::both(protocol::event("left", &MemberEvent { room, user })),
        skip_conn: usize::MAX,
        v1_skip_user: None,
        also: None,
    }
}

/// Closes every connection of `user` but `keep`, with a `closing` event for `reason`.
pub(crate) fn closes(user: &User, keep: Option<usize>, reason: &'static str) -> Vec<Effect> {
    user.online
        .lock()
        .iter()
        .filter(|peer| Some(peer.key) != keep)
        .map(|peer| Effect::Close(Arc::clone(peer), reason))
        .collect()
}

/// Puts a user whose deletion failed to commit back in the rooms it left, with its
/// role, and its heirs back in theirs.
fn rejoin(user: &Arc<User>, left: Vec<Left>) {
    for (room, role, joined, heir) in left {
        let mut state = room.state.lock();
        if let Some((heir, former)) = heir
            && let Some(member) = state.members.get_mut(&heir)
        {
            member.role = former;
        }
        state.add_member(user, role, joined);
        user.rooms.lock().insert(room.name.clone());
    }
}
