//! What `send` and `dm` share about nonces (PROTOCOL-2 section 6): answering a
//! repeat, storing a nonce, and taking one back when its request's commit fails.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::chat::effects::{Effect, Out};
use crate::chat::nonces::{self, Answer, NonceOp, Used};
use crate::chat::ops::{Failure, fail};
use crate::chat::{Chat, Peer, now_ms};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as protocol, Reply};
use crate::store::Write;

impl Chat {
    /// Answers a request whose nonce `user` used already for `first`: with the first
    /// answer, once that one is committed (a request arriving before then waits for
    /// it), or `bad_request` if the nonce was used for another op or target.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn repeat(
        &self,
        conn: &Peer,
        id: Option<&RawValue>,
        user: &str,
        nonce: &str,
        first: &Used,
        op: NonceOp,
        target: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        if !first.matches(op, target) {
            return fail(
                ErrorCode::BadRequest,
                format!(
                    "the nonce was used for `{}` to `{}`",
                    first.op.as_str(),
                    first.target
                ),
            );
        }
        let answer = first.answer;
        let ok = Reply::ok(id)
            .field("seq", &answer.seq)
            .field("ts", &answer.ts);
        if self.store.is_none() {
            // Nothing waits for a commit: the first is done.
            return Ok(Some(ok));
        }
        let ok = ok.finish();
        let failed = protocol::error(
            id,
            &ErrorCode::Internal,
            "the first request with this nonce could not be stored; send it again",
        );
        let (nonces, user, nonce) = (Arc::clone(&self.nonces), user.to_owned(), nonce.to_owned());
        let decide = move || {
            if nonces.holds(&user, &nonce, answer) {
                ok
            } else {
                failed
            }
        };
        out.after_commits(vec![Effect::Answer(Arc::clone(conn), Box::new(decide))]);
        Ok(None)
    }

    /// The writes that store a nonce `user` used up (and, once an hour, forget the
    /// nonces past their day); none without a store.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn nonce_writes(
        &self,
        user: &str,
        nonce: &str,
        op: NonceOp,
        target: &str,
        answer: Answer,
        ts: u64,
    ) -> Vec<Write> {
        let prune = self.nonces.prune(now_ms());
        if self.store.is_none() {
            return Vec::new();
        }
        let mut writes = vec![Write::Nonce {
            user: user.to_owned(),
            nonce: nonce.to_owned(),
            op: op.as_str(),
            target: target.to_owned(),
            answer: nonces::stored(answer),
            ts,
        }];
        writes.extend(prune.map(|before| Write::PruneNonces { before }));
        writes
    }

    /// What takes a nonce back if its request's commit fails (nothing without one).
    pub(crate) fn nonce_undo(
        &self,
        user: &str,
        nonce: Option<&str>,
        answer: Answer,
    ) -> impl FnOnce() + Send + 'static {
        let taken = nonce.map(|n| (Arc::clone(&self.nonces), user.to_owned(), n.to_owned()));
        move || {
            if let Some((nonces, user, nonce)) = taken {
                nonces.forget(&user, &nonce, answer);
            }
        }
    }
}
