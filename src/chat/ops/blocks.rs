//! Blocking (issue 16 item 9, PROTOCOL-2 section 7): `block`, `unblock`, `blocks`.
//! What a block does to DMs is `direct`'s; to invitations, the rooms' (`User::blocks`).

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::chat::effects::{Effect, Out};
use crate::chat::ops::{Failure, fail};
use crate::chat::{Chat, Peer, Session, logged_in};
use crate::error_code::ErrorCode;
use crate::protocol::json::Reply;
use crate::store::Write;

impl Chat {
    /// `block {user}` (`on`) or `unblock {user}`: answers once stored; blocking whom
    /// one blocks already, or unblocking whom one does not, is `ok` too.
    pub(crate) fn block(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        on: bool,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let user = &logged_in(session).user;
        if self.accounts.user(name).is_none() {
            return fail(ErrorCode::NoSuchUser, format!("no user is named `{name}`"));
        }
        if on && name == user.name {
            return fail(ErrorCode::BadRequest, "one cannot block oneself");
        }
        // Changed in memory before the commit, under the lock, so a DM handled after
        // this request is dropped; a failed commit takes it back.
        let mut blocked = user.blocked.lock();
        let changed = if on {
            blocked.insert(name.to_owned())
        } else {
            blocked.remove(name)
        };
        let writes = out.durable(|| Write::Block {
            user: user.name.clone(),
            blocked: name.to_owned(),
            on,
        });
        let mut effects = vec![Effect::Send(Arc::clone(conn), Reply::ok(id).finish())];
        if changed {
            let (user, name) = (Arc::clone(user), name.to_owned());
            effects.push(Effect::Undo(Box::new(move || {
                let mut blocked = user.blocked.lock();
                if on {
                    blocked.remove(&name);
                } else {
                    blocked.insert(name);
                }
            })));
        }
        out.commit(writes, effects);
        Ok(None)
    }

    /// `blocks`: the names the caller blocks, sorted.
    pub(crate) fn blocks(&self, session: &Session, id: Option<&RawValue>) -> Reply {
        let user = &logged_in(session).user;
        let blocked = user.blocked.lock();
        Reply::ok(id).field("blocks", &*blocked)
    }
}
