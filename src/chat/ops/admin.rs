//! The server operators' ops (issue 23, feature `admin`): `admin_kill`, `admin_ban`,
//! `admin_unban`, `admin_connections`, `admin_announce`, `admin_set_password`,
//! `admin_signup`, `admin_reload`. Each is refused with `forbidden` to anyone not
//! named an operator (`--operator`, config `operators`), after the length rules and
//! before looking at the target (PROTOCOL-2 section 5), and each is logged at info
//! level with the operator who did it.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::chat::accounts::{AccountBan, User};
use crate::chat::effects::{Effect, Out};
use crate::chat::ops::account::{Hashed, password_rule};
use crate::chat::ops::admin_bans::ban_write;
use crate::chat::ops::profile::{PASSWORD_CHANGED, closes};
use crate::chat::ops::{Failure, Step, fail};
use crate::chat::{Chat, Peer, Session, logged_in, now_ms};
use crate::error_code::ErrorCode;
use crate::protocol::admin::AdminRequest;
use crate::protocol::json::{self as protocol, Reply};
use crate::protocol::request::Page;
use crate::store::Write;

/// The `closing` reason of `admin_kill`.
const KILLED: &str = "killed";
/// The `closing` reason of `admin_ban`.
const BANNED: &str = "banned";
/// What `admin_connections` shows as `node` until there is a cluster.
const NODE: &str = "local";

/// An `admin_connections` row (PROTOCOL-2 section 3).
#[derive(Serialize)]
struct ConnectionRow {
    user: Option<String>,
    peer: String,
    listener: &'static str,
    node: &'static str,
    since: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// An `announcement` event.
#[derive(Serialize)]
struct Announcement<'a> {
    text: &'a str,
    by: &'a str,
    ts: u64,
}

impl Chat {
    /// Runs an operator's op for a logged-in caller.
    pub(crate) fn run_admin(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        request: AdminRequest<'_>,
        out: &mut Out<'_>,
    ) -> (Result<Option<Reply>, Failure>, Step) {
        let result = match request {
            AdminRequest::Kill { user, reason } => {
                self.admin_kill(conn, session, id, &user, reason.as_deref(), out)
            }
            AdminRequest::Ban {
                user,
                reason,
                duration,
            } => {
                let reason = reason.map(|r| r.into_owned());
                self.admin_ban(conn, session, id, &user, reason, duration, out)
            }
            AdminRequest::Unban { user } => self.admin_unban(conn, session, id, &user, out),
            AdminRequest::Connections { page } => self.admin_connections(session, id, &page),
            AdminRequest::Announce { text } => self.admin_announce(conn, session, id, &text, out),
            AdminRequest::Reload => self.admin_reload(session, id),
            AdminRequest::SetPassword { user, password } => {
                let started = self.admin_set_password(conn, session, id, &user, &password);
                return (started.map(|()| None), Step::Park);
            }
            AdminRequest::Signup { user, password } => {
                let started = password_rule(&password)
                    .and_then(|()| self.operator(session))
                    .and_then(|by| {
                        log::info!("admin: {by} signs up {user}");
                        self.signup(conn, id, &user, &password)
                    });
                return (started.map(|()| None), Step::Park);
            }
        };
        (result, Step::Next)
    }

    /// The caller's name, if it is a server operator; else `forbidden`.
    fn operator<'s>(&self, session: &'s Session) -> Result<&'s str, Failure> {
        let name = logged_in(session).user.name.as_str();
        if self.is_operator(name) {
            Ok(name)
        } else {
            fail(ErrorCode::Forbidden, "only a server operator may do this")
        }
    }

    /// The account an op names, or `no_such_user`.
    fn target(&self, name: &str) -> Result<Arc<User>, Failure> {
        match self.accounts.user(name) {
            Some(user) => Ok(user),
            None => fail(ErrorCode::NoSuchUser, format!("there is no user `{name}`")),
        }
    }

    /// `admin_kill`: closes every connection of the user (`closing` `killed`);
    /// answers how many.
    fn admin_kill(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        user: &str,
        reason: Option<&str>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let by = self.operator(session)?;
        let target = self.target(user)?;
        let closing = closes(&target, None, KILLED);
        log::info!(
            "admin: {by} killed {user}'s {} connection(s) (reason: {})",
            closing.len(),
            reason.unwrap_or("none given")
        );
        let ok = Reply::ok(id).field("closed", &closing.len()).finish();
        let mut effects = vec![Effect::Send(Arc::clone(conn), ok)];
        effects.extend(closing);
        out.commit(Vec::new(), effects);
        Ok(None)
    }

    /// `admin_ban`: the user's sessions are revoked, its connections closed
    /// (`closing` `banned`), and its logins refused until `duration` seconds have
    /// passed (`None`: until `admin_unban`). A new ban replaces an earlier one.
    #[allow(clippy::too_many_arguments)]
    fn admin_ban(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        user: &str,
        reason: Option<String>,
        duration: Option<u64>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let by = self.operator(session)?;
        let target = self.target(user)?;
        let ts = now_ms();
        let until = duration.map(|secs| ts.saturating_add(secs.saturating_mul(1000)));
        let ban = AccountBan {
            by: by.to_owned(),
            reason,
            until,
            ts,
        };
        log::info!(
            "admin: {by} banned {user} {} (reason: {})",
            duration.map_or("until unbanned".to_owned(), |s| format!("for {s} s")),
            ban.reason.as_deref().unwrap_or("none given")
        );
        let mut writes = out.durable(|| ban_write(&target, &ban));
        let earlier = target.ban.lock().replace(ban);
        let revoked = self.accounts.revoke_all(&target, None);
        for hash in revoked.hashes() {
            writes.extend(out.durable(|| Write::RevokeSession { hash }));
        }
        let ok = Reply::ok(id).field("until", &until).finish();
        let mut effects = vec![Effect::Send(Arc::clone(conn), ok)];
        effects.extend(closes(&target, None, BANNED));
        let accounts = Arc::clone(&self.accounts);
        effects.push(Effect::Undo(Box::new(move || {
            *target.ban.lock() = earlier;
            accounts.reinstate(revoked);
        })));
        out.commit(writes, effects);
        Ok(None)
    }

    /// `admin_unban`: lifts the user's ban (`ok` if there was none).
    fn admin_unban(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        user: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let by = self.operator(session)?;
        let target = self.target(user)?;
        let earlier = target.ban.lock().take();
        log::info!(
            "admin: {by} unbanned {user} (banned: {})",
            earlier.is_some()
        );
        let writes = out.durable(|| Write::AccountUnban {
            user: user.to_owned(),
        });
        let effects = vec![
            Effect::Send(Arc::clone(conn), Reply::ok(id).finish()),
            Effect::Undo(Box::new(move || *target.ban.lock() = earlier)),
        ];
        out.commit(writes, effects);
        Ok(None)
    }

    /// `admin_connections`: one page of the open connections, by accept order
    /// (`next` is the last one's key).
    fn admin_connections(
        &self,
        session: &Session,
        id: Option<&RawValue>,
        page: &Page<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let by = self.operator(session)?;
        let after = match page.after.as_deref() {
            None => None,
            Some(after) => match after.parse::<usize>() {
                Ok(key) => Some(key),
                Err(_) => return fail(ErrorCode::BadRequest, "`after` is not a `next` of ours"),
            },
        };
        let mut conns = self.pool.get().map(|p| p.connections()).unwrap_or_default();
        conns.retain(|c| after.is_none_or(|after| c.key > after));
        conns.sort_unstable_by_key(|c| c.key);
        let more = conns.len() > page.limit;
        conns.truncate(page.limit);
        let rows: Vec<ConnectionRow> = conns
            .iter()
            .map(|c| ConnectionRow {
                user: c.tag.user(),
                peer: c.peer.to_string(),
                listener: if c.is_tls() { "tls" } else { "tcp" },
                node: NODE,
                since: c.stats().since_ms(),
                bytes_in: c.stats().bytes_in(),
                bytes_out: c.stats().bytes_out(),
            })
            .collect();
        log::info!("admin: {by} listed {} connection(s)", rows.len());
        let mut reply = Reply::ok(id).field("connections", &rows);
        if more && let Some(last) = conns.last() {
            reply = reply.field("next", &last.key.to_string());
        }
        Ok(Some(reply))
    }

    /// `admin_announce`: an `announcement` event to every other logged-in
    /// protocol-2 connection; answers how many got it.
    fn admin_announce(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        text: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        if text.len() > self.live.max_text() {
            let message = format!("a text is at most {} bytes", self.live.max_text());
            return fail(ErrorCode::TooLong, message);
        }
        let by = self.operator(session)?;
        let ts = now_ms();
        let frame = protocol::event("announcement", &Announcement { text, by, ts });
        let mut effects: Vec<Effect> = self
            .pool
            .get()
            .map(|p| p.connections())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.key != conn.key && c.tag.protocol() >= 2 && c.tag.user().is_some())
            .map(|c| Effect::Send(c, frame.clone()))
            .collect();
        log::info!(
            "admin: {by} announced to {} connection(s): {text}",
            effects.len()
        );
        let ok = Reply::ok(id).field("delivered", &effects.len()).finish();
        effects.insert(0, Effect::Send(Arc::clone(conn), ok));
        out.commit(Vec::new(), effects);
        Ok(None)
    }

    /// `admin_reload`: runs the server's reload hook and answers what it reports.
    fn admin_reload(
        &self,
        session: &Session,
        id: Option<&RawValue>,
    ) -> Result<Option<Reply>, Failure> {
        let by = self.operator(session)?;
        let Some(reload) = self.hooks.reload.clone() else {
            return fail(
                ErrorCode::Internal,
                "reload is not available: the server was started without --config",
            );
        };
        match self.hook("reload", || Ok(reload())) {
            Ok(Ok(report)) => {
                log::info!("admin: {by} reloaded the configuration: {report}");
                Ok(Some(Reply::ok(id).field("report", &report)))
            }
            Ok(Err(why)) => {
                log::warn!("admin: {by} asked for a reload, which changed nothing: {why}");
                fail(ErrorCode::Internal, format!("the reload failed: {why}"))
            }
            Err(failure) => Err(failure),
        }
    }

    /// `admin_set_password`: the new password follows `signup`'s rules and is hashed
    /// on the hashing pool; [`Chat::finish_admin_set_password`] applies it.
    fn admin_set_password(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        user: &str,
        password: &str,
    ) -> Result<(), Failure> {
        password_rule(password)?;
        self.operator(session)?;
        self.target(user)?;
        let cost = self.bcrypt_cost;
        let (id, user, password) = (
            id.map(RawValue::to_owned),
            user.to_owned(),
            password.to_owned(),
        );
        self.run_hash(conn, move || Hashed::AdminSetPassword {
            id,
            hash: bcrypt::hash(password, cost).ok(),
            user,
        })
    }

    /// Stores the new hash and revokes every session of the user (but the caller's,
    /// when it set its own); once committed, answers and closes the user's other
    /// connections (`closing` `password_changed`).
    pub(crate) fn finish_admin_set_password(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        user: &str,
        hash: Option<String>,
        out: &mut Out<'_>,
    ) {
        let result = match (self.target(user), hash) {
            (Err(failure), _) => Err(failure),
            (Ok(_), None) => fail(ErrorCode::Internal, "password hashing failed"),
            (Ok(target), Some(hash)) => Ok((target, hash)),
        };
        let (target, hash) = match result {
            Ok(found) => found,
            Err(failure) => return out.reply(conn, self.failure(id, &failure)),
        };
        let by = session.login.as_ref().map_or("?", |l| l.user.name.as_str());
        log::info!("admin: {by} set the password of {user}");
        let own = session
            .login
            .as_ref()
            .filter(|l| Arc::ptr_eq(&l.user, &target));
        let old_hash = self.accounts.change_password(&target, hash.clone());
        let revoked = self.accounts.revoke_all(&target, own.map(|l| &l.token));
        let mut writes = out.durable(|| Write::PasswordHash {
            name: target.name.clone(),
            hash,
        });
        for hash in revoked.hashes() {
            writes.extend(out.durable(|| Write::RevokeSession { hash }));
        }
        let mut effects = vec![Effect::Send(Arc::clone(conn), Reply::ok(id).finish())];
        effects.extend(closes(&target, Some(conn.key), PASSWORD_CHANGED));
        let accounts = Arc::clone(&self.accounts);
        effects.push(Effect::Undo(Box::new(move || {
            accounts.unchange_password(&target, old_hash);
            accounts.reinstate(revoked);
        })));
        out.commit(writes, effects);
    }
}
