//! The chat operations, one file per family (as mini-redis keeps one file per
//! command): accounts and sessions (`account`), rooms (`rooms`), room messages and
//! history (`messages`), direct messages (`direct`). This file is the dispatch table:
//! a parsed request to the method that runs it, and embedders' commands.

mod account;
mod direct;
mod messages;
mod rooms;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use crate::chat::command::{Context, Handler};
use crate::chat::effects::{Effect, Out};
use crate::chat::{Chat, Peer, Session};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as protocol, OpKind, Reply, Request};

pub(crate) use account::Hashed;

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

/// A request that fails: its error code and a sentence for a human.
pub(crate) type Failure = (ErrorCode, String);

pub(crate) fn fail<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Failure> {
    Err((code, message.into()))
}

impl Chat {
    pub(crate) fn dispatch(
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
}
