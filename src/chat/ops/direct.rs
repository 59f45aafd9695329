//! Direct messages (issue 17 item 1, PROTOCOL-2 sections 2, 6, 7): `dm`, stored in
//! its conversation with the next seq and delivered to every connection of the
//! recipient (kept for the next login if none) and to the sender's other protocol-2
//! connections; `dm_history` and `conversations`.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::chat::accounts::{INBOX_CAP, User};
use crate::chat::budget;
use crate::chat::conversation::{self, DmSource};
use crate::chat::effects::{Effect, Keep, Out};
use crate::chat::nonces::{Answer, NonceOp, Used};
use crate::chat::ops::messages::check_reply;
use crate::chat::ops::{Failure, fail};
use crate::chat::room::Frames;
use crate::chat::{Chat, Peer, Session, logged_in, now_ms};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as protocol, DmEvent, Reply};
use crate::protocol::request::{HistoryQuery, Message, Page};
use crate::store::{DmRow, MarkerPlace, Write};

impl Chat {
    /// `dm {to, text, nonce?, reply_to?}`: answers `seq` and `ts` once stored.
    pub(crate) fn dm(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        to: &str,
        message: &Message<'_>,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        let sender = &logged_in(session).user;
        let from = &sender.name;
        let nonces = message.nonce.as_deref().map(|n| (n, self.nonces.of(from)));
        let mut used = nonces.as_ref().map(|(n, lock)| (*n, lock.lock()));
        if let Some((nonce, used)) = &used
            && let Some(first) = used.get(*nonce)
        {
            return self.repeat(conn, id, from, nonce, first, NonceOp::Dm, to, out);
        }
        self.check_text(&message.text)?;
        let Some(recipient) = self.accounts.user(to) else {
            return fail(ErrorCode::NoSuchUser, format!("no user is named `{to}`"));
        };
        let conversation = self.conversations.open(from, to, self.history_cap);
        let mut state = conversation.state.lock();
        check_reply(message.reply_to, state.last_seq)?;
        let (seq, ts) = state.next(now_ms());
        let row = DmRow {
            seq,
            from: from.clone(),
            to: recipient.name.clone(),
            text: message.text.to_string(),
            ts,
            reply_to: message.reply_to,
            hidden: from != to && recipient.blocks(from),
            changes: Default::default(),
        };
        let answer = Answer { seq, ts };
        let mut writes = out.durable(|| Write::Dm(row.clone()));
        if let Some((nonce, used)) = &mut used {
            used.insert((*nonce).to_owned(), Used::new(NonceOp::Dm, to, answer, ts));
            writes.extend(self.nonce_writes(from, nonce, NonceOp::Dm, to, answer, ts));
        }
        let mut effects = Vec::with_capacity(6);
        // The DM joins its conversation at its commit, before anyone hears of it
        // (at once without a store: under this lock, so not through an effect).
        let deliveries = self.dm_deliveries(conn, sender, &recipient, &row, &mut writes, out);
        if out.defers(true) {
            let joined = Arc::clone(&conversation);
            effects.push(Effect::Committed(Box::new(move || {
                joined.state.lock().commit(&joined.users, row);
            })));
        } else {
            state.commit(&conversation.users, row);
        }
        effects.extend(deliveries);
        let ok = Reply::ok(id).field("seq", &seq).field("ts", &ts).finish();
        effects.push(Effect::Send(Arc::clone(conn), ok));
        let undo = self.nonce_undo(from, message.nonce.as_deref(), answer);
        effects.push(Effect::Undo(Box::new(undo)));
        // Under the conversation's lock: its DMs reach the store, and so everyone, in
        // seq order.
        out.commit(writes, effects);
        Ok(None)
    }

    /// Who gets DM `row`: the recipient's connections (not if the recipient blocks
    /// the sender; kept if they have none, its keeping stored with `writes`), and
    /// the sender's other protocol-2 connections. A DM to oneself reaches one's other
    /// connections as the recipient's, by v1's rule too.
    fn dm_deliveries(
        &self,
        conn: &Peer,
        sender: &Arc<User>,
        recipient: &Arc<User>,
        row: &DmRow,
        writes: &mut Vec<Write>,
        out: &Out<'_>,
    ) -> Vec<Effect> {
        let mut effects = Vec::with_capacity(2);
        if !row.hidden {
            let v1 = protocol::event(
                "dm",
                &DmEvent {
                    from: &row.from,
                    text: &row.text,
                    ts: row.ts,
                },
            );
            let frames = Frames {
                v2: conversation::encode(&row.to, row, 2),
                v1: Some(v1),
            };
            let keep = || Write::KeepDm {
                to: row.to.clone(),
                from: row.from.clone(),
                text: row.text.clone(),
                ts: row.ts,
                seq: row.seq,
                reply_to: row.reply_to,
                cap: INBOX_CAP,
            };
            // A DM for someone offline is kept, so stored now. One for someone online
            // is not, unless they are gone by the time it is delivered: then it is
            // stored first and kept after that commit (`Keep::StoreFirst`), so memory
            // never keeps what the store does not.
            let keep = if recipient.online.lock().is_empty() {
                writes.extend(out.durable(keep));
                Keep::Kept
            } else {
                out.durable(keep).pop().map_or(Keep::Kept, Keep::StoreFirst)
            };
            effects.push(Effect::Dm {
                to: Arc::clone(recipient),
                frames,
                skip_conn: conn.key,
                keep,
            });
        }
        let elsewhere = || {
            let online = sender.online.lock();
            online
                .iter()
                .any(|peer| peer.key != conn.key && peer.tag.protocol() >= 2)
        };
        // Encoded only for a sender who has another protocol-2 connection.
        if row.from != row.to && elsewhere() {
            effects.push(Effect::User {
                to: Arc::clone(sender),
                frame: conversation::encode(&row.from, row, 2),
                skip_conn: conn.key,
            });
        }
        effects
    }

    /// `dm_history {with, before?, after?, limit?}`: the DMs with `with` the caller
    /// sees, paged as `history` pages a room's messages.
    pub(crate) fn dm_history(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        with: &str,
        query: HistoryQuery,
    ) -> Result<Option<Reply>, Failure> {
        let viewer = &logged_in(session).user.name;
        if self.accounts.user(with).is_none() {
            return fail(ErrorCode::NoSuchUser, format!("no user is named `{with}`"));
        }
        let budget = self.answer_budget.history;
        let protocol = conn.tag.protocol();
        let source = match self.conversations.get(viewer, with) {
            Some(conversation) => {
                let state = conversation.state.lock();
                state.history(viewer, query, budget, protocol)
            }
            None => DmSource::Memory(Vec::new()),
        };
        let events = match source {
            DmSource::Memory(events) => events,
            DmSource::Store { after, below } => {
                let Some(store) = &self.store else {
                    return fail(ErrorCode::Internal, "history is not available");
                };
                let rows = store
                    .dm_history(viewer, with, after, below, query.limit)
                    .or_else(|e| {
                        log::error!("dm_history of {viewer} with {with}: {e}");
                        fail(ErrorCode::Internal, "the history could not be read")
                    })?;
                let encoded = rows
                    .iter()
                    .map(|row| conversation::encode(viewer, row, protocol));
                if after.is_some() {
                    budget::take_within(encoded, budget)
                } else {
                    let mut newest_first = budget::take_within(encoded.rev(), budget);
                    newest_first.reverse();
                    newest_first
                }
            }
        };
        Ok(Some(
            Reply::ok(id).raw_array("messages", events.iter().map(|e| &e[..])),
        ))
    }

    /// `conversations {limit?, after?}`: the caller's conversations with a DM they
    /// see, newest first (by the last such DM's ts, then name), paged per PROTOCOL-2
    /// section 4; `next` is `"<ts>:<with>"` of the last entry given.
    pub(crate) fn conversations(
        &self,
        session: &Session,
        id: Option<&RawValue>,
        page: &Page<'_>,
    ) -> Result<Option<Reply>, Failure> {
        #[derive(Serialize)]
        struct Entry<'a> {
            with: &'a str,
            seq: u64,
            ts: u64,
            unread: u64,
        }
        let user = &logged_in(session).user.name;
        let cursor = match page.after.as_deref().map(parse_cursor) {
            Some(None) => {
                return fail(
                    ErrorCode::BadRequest,
                    "`after` must be the `next` of an earlier `conversations` answer",
                );
            }
            Some(Some(cursor)) => Some(cursor),
            None => None,
        };
        let after_cursor = |ts: u64, name: &str| {
            cursor
                .as_ref()
                .is_none_or(|(cts, cname)| ts < *cts || (ts == *cts && name > cname.as_str()))
        };
        // (ts, with, seq, unread) of each conversation the caller sees a DM of.
        let mut rows: Vec<(u64, String, u64, u64)> = self
            .conversations
            .of(user)
            .into_iter()
            .filter_map(|c| {
                let side = c.side(user);
                let state = c.state.lock();
                let (seq, ts) = state.last_seen(side);
                let with = &c.users[1 - side];
                (seq > 0 && after_cursor(ts, with)).then(|| {
                    let marker = self.markers.get(user, &MarkerPlace::With(with.clone()));
                    (ts, with.clone(), seq, state.unread(side, marker))
                })
            })
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let more = rows.len() > page.limit;
        rows.truncate(page.limit);
        let encoded = rows.iter().map(|(ts, with, seq, unread)| {
            let entry = Entry {
                with,
                seq: *seq,
                ts: *ts,
                unread: *unread,
            };
            Bytes::from(serde_json::to_vec(&entry).expect("serialising to a Vec cannot fail"))
        });
        let list = budget::take_within(encoded, self.answer_budget.rooms);
        let reply = Reply::ok(id).raw_array("conversations", list.iter().map(|e| &e[..]));
        let more = more || list.len() < rows.len();
        Ok(Some(
            match list.len().checked_sub(1).map(|last| &rows[last]) {
                Some((ts, with, ..)) if more => reply.field("next", &format!("{ts}:{with}")),
                _ => reply,
            },
        ))
    }
}

/// A `conversations` cursor: the last entry's ts and name.
fn parse_cursor(after: &str) -> Option<(u64, String)> {
    let (ts, with) = after.split_once(':')?;
    Some((ts.parse().ok()?, with.to_owned()))
}
