//! Send nonces (issue 16 item 2, PROTOCOL-2 section 6): per user, shared by `send`
//! and `dm`, so a client that retries after a lost connection never posts twice.
//! A nonce is used up only by a request that succeeds; its answer (seq and ts) is
//! kept for [`NONCE_TTL_MS`], in memory and in the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::store::NonceRow;

/// How long a used nonce is kept: a day (the protocol asks for at least that).
pub(crate) const NONCE_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// How often memory and the store forget the nonces past [`NONCE_TTL_MS`].
const PRUNE_EVERY_MS: u64 = 60 * 60 * 1000;

/// The request a nonce was used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NonceOp {
    Send,
    Dm,
}

impl NonceOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NonceOp::Send => "send",
            NonceOp::Dm => "dm",
        }
    }
}

/// The fields of a nonce's first answer, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub(crate) seq: u64,
    pub(crate) ts: u64,
}

/// A used nonce.
#[derive(Debug)]
pub(crate) struct Used {
    pub(crate) op: NonceOp,
    /// The room or recipient.
    pub(crate) target: String,
    pub(crate) answer: Answer,
    /// When it was used (ms since the epoch).
    used: u64,
}

impl Used {
    pub(crate) fn new(op: NonceOp, target: &str, answer: Answer, used: u64) -> Used {
        Used {
            op,
            target: target.to_owned(),
            answer,
            used,
        }
    }

    /// Whether a request for `op` to `target` repeats this one (else it reuses the
    /// nonce for something else: `bad_request`).
    pub(crate) fn matches(&self, op: NonceOp, target: &str) -> bool {
        self.op == op && self.target == target
    }
}

/// One user's used nonces. Its lock is held from the look-up until the request is
/// handed to the store, so two requests with one nonce never both run.
pub(crate) type UserNonces = HashMap<String, Used>;

/// Every user's used nonces.
#[derive(Default)]
pub(crate) struct Nonces {
    users: Mutex<HashMap<String, Arc<Mutex<UserNonces>>>>,
    /// When they were last pruned (ms since the epoch).
    pruned: AtomicU64,
}

impl Nonces {
    /// Brings back the stored nonces (those of the last day).
    pub(crate) fn restore(&self, rows: Vec<NonceRow>) {
        for row in rows {
            let op = match row.op.as_str() {
                "send" => NonceOp::Send,
                "dm" => NonceOp::Dm,
                _ => continue,
            };
            let Ok(answer) = serde_json::from_str::<Answer>(&row.answer) else {
                continue;
            };
            let used = Used::new(op, &row.target, answer, row.ts);
            self.of(&row.user).lock().insert(row.nonce, used);
        }
    }

    /// `user`'s nonces.
    pub(crate) fn of(&self, user: &str) -> Arc<Mutex<UserNonces>> {
        let mut users = self.users.lock();
        match users.get(user) {
            Some(found) => Arc::clone(found),
            None => Arc::clone(users.entry(user.to_owned()).or_default()),
        }
    }

    /// Whether `user` still has `nonce` with this answer (its request was not taken
    /// back by a failed commit).
    pub(crate) fn holds(&self, user: &str, nonce: &str, answer: Answer) -> bool {
        self.of(user)
            .lock()
            .get(nonce)
            .is_some_and(|used| used.answer == answer)
    }

    /// Takes back a nonce whose request's commit failed: it was not used up.
    pub(crate) fn forget(&self, user: &str, nonce: &str, answer: Answer) {
        let nonces = self.of(user);
        let mut nonces = nonces.lock();
        if nonces.get(nonce).is_some_and(|used| used.answer == answer) {
            nonces.remove(nonce);
        }
    }

    /// Once an hour: forgets the nonces past [`NONCE_TTL_MS`] and returns the time
    /// before which the store must forget them too.
    pub(crate) fn prune(&self, now: u64) -> Option<u64> {
        let last = self.pruned.load(Ordering::Relaxed);
        if now.saturating_sub(last) < PRUNE_EVERY_MS
            || self
                .pruned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        let before = now.saturating_sub(NONCE_TTL_MS);
        let users: Vec<Arc<Mutex<UserNonces>>> = self.users.lock().values().cloned().collect();
        // A user whose nonces are in use right now (perhaps by the caller) is pruned
        // next time.
        for nonces in users {
            if let Some(mut nonces) = nonces.try_lock() {
                nonces.retain(|_, used| used.used >= before);
            }
        }
        Some(before)
    }
}

/// The stored form of an answer.
pub(crate) fn stored(answer: Answer) -> String {
    serde_json::to_string(&answer).expect("serialising to a String cannot fail")
}
