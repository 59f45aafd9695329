//! Room messages: `send`, and `history` from memory or the store.

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::chat::command::RoomMessage;
use crate::chat::effects::Out;
use crate::chat::nonces::{Answer, NonceOp, Used};
use crate::chat::ops::{Failure, fail};
use crate::chat::room::{self, HistorySource, RoomEvent};
use crate::chat::{Chat, Peer, Session, logged_in, now_ms};
use crate::error_code::ErrorCode;
use crate::protocol::json::Reply;
use crate::protocol::request::{HistoryQuery, Message};
use crate::store::Write;

impl Chat {
    /// `send {room, text, nonce?, reply_to?}`: the next message of the room.
    pub(crate) fn send(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        message: &Message<'_>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let user = &logged_in(session).user;
        let nonces = message
            .nonce
            .as_deref()
            .map(|n| (n, self.nonces.of(&user.name)));
        let mut used = nonces.as_ref().map(|(n, lock)| (*n, lock.lock()));
        if let Some((nonce, used)) = &used
            && let Some(first) = used.get(*nonce)
        {
            return self.repeat(conn, id, &user.name, nonce, first, NonceOp::Send, name, out);
        }
        let text = &message.text;
        self.check_text(text)?;
        let room = self.room(name)?;
        let mut state = room.state.lock();
        if !state.is_member(&user.name) {
            return fail(
                ErrorCode::NotMember,
                format!("join `{name}` before sending to it"),
            );
        }
        check_reply(message.reply_to, state.last_seq)?;
        self.message_hook(&room.name, &user.name, text)?;
        let reply_to = message.reply_to;
        let (seq, ts, frame) = state.append(&room.name, &user.name, text, reply_to, now_ms());
        self.metrics.messages.inc();
        self.markers.authored(&room.name, &user.name, seq);
        let ok = Reply::ok(id).field("seq", &seq).field("ts", &ts).finish();
        let answer = Answer { seq, ts };
        let nonce_write = used.as_mut().map(|(nonce, used)| {
            let target = &room.name;
            used.insert(
                (*nonce).to_owned(),
                Used::new(NonceOp::Send, target, answer, ts),
            );
            self.nonce_writes(&user.name, nonce, NonceOp::Send, target, answer, ts)
        });
        let write = || Write::Message {
            room: room.name.clone(),
            seq,
            from: user.name.clone(),
            text: text.to_string(),
            ts,
            reply_to,
        };
        let event = RoomEvent::Message {
            seq,
            frame,
            skip_conn: conn.key,
        };
        let undo = self.nonce_undo(&user.name, message.nonce.as_deref(), answer);
        // A failed commit leaves nothing to take back but the nonce: the message
        // joins the history only at its commit, and its seq stays unused.
        out.room_commit(
            &room,
            &mut state,
            || {
                [write()]
                    .into_iter()
                    .chain(nonce_write.into_iter().flatten())
                    .collect()
            },
            [event],
            conn,
            ok,
            undo,
        );
        Ok(None)
    }

    pub(crate) fn history(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        query: HistoryQuery,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let source = {
            let state = room.state.lock();
            // Server operators may act as owner in any room (PROTOCOL-2 section 5).
            if !state.is_member(&user.name) && !self.is_operator(&user.name) {
                return fail(
                    ErrorCode::NotMember,
                    format!("join `{name}` to read its history"),
                );
            }
            state.history(query, self.answer_budget.history, conn.tag.protocol())
        };
        let events = match source {
            HistorySource::Memory(events) => events,
            HistorySource::Store { after, below } => {
                let Some(store) = &self.store else {
                    return fail(ErrorCode::Internal, "history is not available");
                };
                let rows = store
                    .history(&room.name, after, below, query.limit)
                    .or_else(|e| {
                        log::error!("history of {name}: {e}");
                        fail(ErrorCode::Internal, "the history could not be read")
                    })?;
                let encoded: Vec<Bytes> = rows
                    .iter()
                    .map(|row| room::encode_message(&room.name, row, conn.tag.protocol()))
                    .collect();
                let budget = self.answer_budget.history;
                if after.is_some() {
                    room::cap(encoded.iter(), query.limit, budget)
                } else {
                    let mut newest_first = room::cap(encoded.iter().rev(), query.limit, budget);
                    newest_first.reverse();
                    newest_first
                }
            }
        };
        Ok(Some(
            Reply::ok(id).raw_array("messages", events.iter().map(|e| &e[..])),
        ))
    }

    /// The embedder's check of a room message, if any.
    pub(super) fn message_hook(&self, room: &str, from: &str, text: &str) -> Result<(), Failure> {
        match &self.hooks.message {
            Some(check) => self.hook("message", || check(&RoomMessage { room, from, text })),
            None => Ok(()),
        }
    }

    pub(crate) fn check_text(&self, text: &str) -> Result<(), Failure> {
        let max = self.live.max_text();
        if text.len() > max {
            return fail(ErrorCode::TooLong, format!("a text is at most {max} bytes"));
        }
        Ok(())
    }
}

/// `reply_to` must name a seq that exists: 1 to `last_seq`.
pub(crate) fn check_reply(reply_to: Option<u64>, last_seq: u64) -> Result<(), Failure> {
    match reply_to {
        Some(seq) if seq == 0 || seq > last_seq => fail(
            ErrorCode::NoSuchMessage,
            format!("there is no message {seq} to reply to"),
        ),
        _ => Ok(()),
    }
}
