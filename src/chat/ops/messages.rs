//! Room messages: `send`, and `history` from memory or the store.

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::chat::command::RoomMessage;
use crate::chat::effects::Out;
use crate::chat::ops::{Failure, fail};
use crate::chat::room::{self, HistorySource, RoomEvent};
use crate::chat::{Chat, Peer, Session, logged_in, now_ms};
use crate::error_code::ErrorCode;
use crate::protocol::json::Reply;
use crate::protocol::request::HistoryQuery;
use crate::store::Write;

impl Chat {
    pub(crate) fn send(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        text: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        self.check_text(text)?;
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let mut state = room.state.lock();
        if !state.is_member(&user.name) {
            return fail(
                ErrorCode::NotMember,
                format!("join `{name}` before sending to it"),
            );
        }
        if let Some(check) = &self.hooks.message {
            let message = RoomMessage {
                room: &room.name,
                from: &user.name,
                text,
            };
            self.hook("message", || check(&message))?;
        }
        let (seq, ts, frame) = state.append(&room.name, &user.name, text, now_ms());
        self.metrics.messages.inc();
        let ok = Reply::ok(id).field("seq", &seq).field("ts", &ts).finish();
        let write = || Write::Message {
            room: room.name.clone(),
            seq,
            from: user.name.clone(),
            text: text.to_owned(),
            ts,
        };
        let event = RoomEvent::Message {
            seq,
            frame,
            skip_conn: conn.key,
        };
        // A failed commit leaves nothing to take back: the message joins the history
        // only at its commit, and its seq stays unused.
        out.room_commit(
            &room,
            &mut state,
            || vec![write()],
            [event],
            conn,
            ok,
            || {},
        );
        Ok(None)
    }

    pub(crate) fn history(
        &self,
        session: &Session,
        id: Option<&RawValue>,
        name: &str,
        query: HistoryQuery,
    ) -> Result<Option<Reply>, Failure> {
        let room = self.room(name)?;
        let user = &logged_in(session).user;
        let source = {
            let state = room.state.lock();
            if !state.is_member(&user.name) {
                return fail(
                    ErrorCode::NotMember,
                    format!("join `{name}` to read its history"),
                );
            }
            state.history(query, self.answer_budget.history)
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
                    .map(|row| room::encode_message(&room.name, row))
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

    pub(crate) fn check_text(&self, text: &str) -> Result<(), Failure> {
        let max = self.live.max_text();
        if text.len() > max {
            return fail(ErrorCode::TooLong, format!("a text is at most {max} bytes"));
        }
        Ok(())
    }
}
