//! The chat operations, one file per family (as mini-redis keeps one file per
//! command): accounts and sessions (`account`), rooms (`rooms`), room messages and
//! history (`messages`), direct messages (`direct`), managing one's own account
//! (`profile`), server operators' ops (`admin`, `admin_bans`). This file is the dispatch table:
//! a parsed request to the method that runs it, and embedders' commands.

mod account;
mod admin;
pub(crate) mod admin_bans;
mod blocks;
mod direct;
mod edits;
mod hello;
mod idempotency;
mod invites;
mod markers;
mod messages;
mod moderation;
mod presence;
mod profile;
mod rooms;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use crate::chat::command::{CommandError, Context, Handler};
use crate::chat::effects::{Effect, Out};
use crate::chat::{Chat, Peer, Session};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as encode, Reply};
use crate::protocol::request::{self as protocol, OpKind, Request};

pub(crate) use account::Hashed;
use edits::Change;

/// An entry of the dispatch table.
pub(crate) enum Op {
    Builtin(OpKind),
    Custom(Arc<Handler>),
}

/// What handling one request leaves to do.
pub(crate) enum Step {
    /// Answered; go on with the next frame.
    Next,
    /// Waiting for the hashing pool; read nothing more until it wakes the connection.
    Park,
    /// `quit`: the connection closes after its answer.
    Quit,
}

/// A request that fails: its error code, a sentence for a human, and for `server_busy`
/// and `rate_limited` when trying again has a chance (milliseconds).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) retry_after: Option<u64>,
    /// More fields of the error response (`not_member`'s `user`, `banned`'s `scope`).
    pub(crate) extra: Vec<(&'static str, serde_json::Value)>,
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Failure {
        Failure {
            code: e.code,
            message: e.message,
            retry_after: None,
            extra: Vec::new(),
        }
    }
}

pub(crate) fn fail<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        code,
        message: message.into(),
        retry_after: None,
        extra: Vec::new(),
    })
}

/// A refusal with more fields in the error response.
pub(crate) fn fail_with<T>(
    code: ErrorCode,
    message: impl Into<String>,
    extra: Vec<(&'static str, serde_json::Value)>,
) -> Result<T, Failure> {
    Err(Failure {
        code,
        message: message.into(),
        retry_after: None,
        extra,
    })
}

/// A refusal to try again after `wait` (rounded up to whole milliseconds, at least 1).
pub(crate) fn fail_for<T>(
    code: ErrorCode,
    message: impl Into<String>,
    wait: Duration,
) -> Result<T, Failure> {
    let ms = u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
    Err(Failure {
        code,
        message: message.into(),
        retry_after: Some(ms.max(1)),
        extra: Vec::new(),
    })
}

impl Chat {
    pub(crate) fn dispatch(
        &self,
        conn: &Peer,
        session: &mut Session,
        head: &protocol::Head<'_>,
        out: &mut Out<'_>,
    ) -> Step {
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
            Err(fault) => {
                out.reply(conn, self.error(fault.id, &fault.code, &fault.message));
                return Step::Next;
            }
        };
        // A connection of a deleted account (closing already) is logged out.
        if session.login.as_ref().is_some_and(|l| l.user.is_deleted()) {
            self.log_out(conn, session);
        }
        if session.login.is_none() && !request.allowed_anonymously() {
            let message = "log in first (`login` or `resume`)";
            out.reply(conn, self.error(id, &ErrorCode::NotAuthenticated, message));
            return Step::Next;
        }
        let (result, step) = self.run(conn, session, id, request, out);
        match result {
            Ok(Some(reply)) => out.reply(conn, reply.finish()),
            Ok(None) => {}
            Err(failure) => {
                out.reply(conn, self.failure(id, &failure));
                return Step::Next;
            }
        }
        step
    }

    /// Runs a built-in op for a caller that passed the login gate.
    fn run(
        &self,
        conn: &Peer,
        session: &mut Session,
        id: Option<&RawValue>,
        request: Request<'_>,
        out: &mut Out<'_>,
    ) -> (Result<Option<Reply>, Failure>, Step) {
        let parked = |result: Result<(), Failure>| (result.map(|()| None), Step::Park);
        let result = match request {
            Request::Hello { protocol } => Ok(Some(self.hello(conn, id, protocol))),
            Request::Ping => Ok(Some(Reply::ok(id).field("pong", &true))),
            Request::Echo { data } => Ok(Some(Reply::ok(id).field("data", &data))),
            Request::Signup { user, password } => {
                return parked(self.signup(conn, id, &user, &password));
            }
            Request::Login { user, password } => {
                return parked(self.login(conn, id, &user, &password));
            }
            Request::Resume { session: token } => Ok(self.resume(conn, session, id, &token, out)),
            Request::Logout => Ok(self.logout(conn, session, id, out)),
            Request::Whoami => Ok(self.whoami(session, id)),
            Request::Create {
                room,
                topic,
                invite_only,
            } => self.create(conn, session, id, &room, topic.as_deref(), invite_only, out),
            Request::Join { room } => self.join(conn, session, id, &room, out),
            Request::Leave { room } => self.leave(conn, session, id, &room, out),
            Request::Rooms { page } => {
                let viewer = session.login.as_ref().map(|l| l.user.name.as_str());
                Ok(Some(self.list_rooms(id, &page, viewer)))
            }
            Request::Members { room } => self.members(session, id, &room),
            Request::Send { room, message } => self.send(conn, session, id, &room, &message, out),
            Request::Dm { to, message } => self.dm(conn, session, id, &to, &message, out),
            Request::History { room, query } => self.history(conn, session, id, &room, query),
            Request::Quit => {
                let ok = Reply::ok(id).finish();
                out.commit(
                    Vec::new(),
                    vec![
                        Effect::Send(Arc::clone(conn), ok),
                        Effect::Finish(Arc::clone(conn)),
                    ],
                );
                return (Ok(None), Step::Quit);
            }
            Request::DmHistory { with, query } => self.dm_history(conn, session, id, &with, query),
            Request::Conversations { page } => self.conversations(session, id, &page),
            Request::Block { user, on } => self.block(conn, session, id, &user, on, out),
            Request::Blocks => Ok(Some(self.blocks(session, id))),
            Request::ChangePassword {
                old_password,
                new_password,
            } => {
                return parked(self.change_password(
                    conn,
                    session,
                    id,
                    &old_password,
                    &new_password,
                ));
            }
            Request::DeleteAccount { password } => {
                return parked(self.delete_account(conn, session, id, &password));
            }
            Request::Admin(request) => return self.run_admin(conn, session, id, request, out),
            request => self.run_moderation(conn, session, id, request, out),
        };
        (result, Step::Next)
    }

    /// Runs a protocol-2 room op (`moderation`, `invites`) or a marker, typing or
    /// presence op (`markers`, `presence`).
    fn run_moderation(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        request: Request<'_>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        match request {
            Request::SetRole { room, user, role } => {
                let target = protocol::Target { room, user };
                self.set_role(conn, session, id, &target, &role, out)
            }
            Request::SetTopic { room, topic } => {
                self.set_topic(conn, session, id, &room, &topic, out)
            }
            Request::Kick { target, reason } => {
                self.kick(conn, session, id, &target, reason.as_deref(), out)
            }
            Request::Ban { target, reason } => {
                self.ban(conn, session, id, &target, reason.as_deref(), out)
            }
            Request::Unban { target } => self.unban(conn, session, id, &target, out),
            Request::Bans { room, page } => self.bans(session, id, &room, &page),
            Request::SetRoom { room, invite_only } => {
                self.set_room(conn, session, id, &room, invite_only, out)
            }
            Request::Invite { target } => self.invite(conn, session, id, &target, out),
            Request::DeleteRoom { room } => self.delete_room(conn, session, id, &room, out),
            Request::Edit { target, text } => {
                self.change_message(conn, session, id, &target, Change::Edit(&text), out)
            }
            Request::Delete { target } => {
                self.change_message(conn, session, id, &target, Change::Delete, out)
            }
            Request::React { target, emoji, on } => {
                let change = Change::React { emoji: &emoji, on };
                self.change_message(conn, session, id, &target, change, out)
            }
            Request::MarkRead { place, seq } => self.mark_read(conn, session, id, &place, seq, out),
            Request::Unread => Ok(Some(self.unread(session, id))),
            Request::Typing { place, active } => {
                self.typing(conn, session, id, &place, active, out)
            }
            Request::Away { message } => {
                let away = Some(message.map(|m| m.into_owned()));
                Ok(Some(self.set_away(conn, session, id, away, out)))
            }
            Request::Back => Ok(Some(self.set_away(conn, session, id, None, out))),
            _ => unreachable!("`run` handles every other op"),
        }
    }

    /// The error response for a failed request, counted for `/metrics`.
    pub(crate) fn failure(&self, id: Option<&RawValue>, failure: &Failure) -> bytes::Bytes {
        self.metrics.error(failure.code.as_str());
        encode::error_with(
            id,
            &failure.code,
            &failure.message,
            failure.retry_after,
            &failure.extra,
        )
    }

    /// Runs an embedder's command. A panic in it answers `internal` to this caller
    /// only; what the command meant to send is dropped with it.
    pub(crate) fn custom(
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
            Ok(Ok(value)) => encode::reply_with(head.id, value),
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
}
