//! Direct messages: `dm`, delivered to every connection of the recipient, or kept for
//! the next login.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::chat::accounts::INBOX_CAP;
use crate::chat::effects::{Effect, Keep, Out};
use crate::chat::ops::{Failure, fail};
use crate::chat::{Chat, Peer, Session, logged_in, now_ms};
use crate::error_code::ErrorCode;
use crate::protocol::json::{self as protocol, DmEvent, Reply};
use crate::store::Write;

impl Chat {
    pub(crate) fn dm(
        &self,
        conn: &Peer,
        session: &Session,
        id: Option<&RawValue>,
        to: &str,
        text: &str,
        out: &mut Out<'_>,
    ) -> Result<Option<Reply>, Failure> {
        self.check_text(text)?;
        let Some(recipient) = self.accounts.user(to) else {
            return fail(ErrorCode::NoSuchUser, format!("no user is named `{to}`"));
        };
        let from = &logged_in(session).user.name;
        let ts = now_ms();
        let frame = protocol::event("dm", &DmEvent { from, text, ts });
        let keep = || Write::KeepDm {
            to: to.to_owned(),
            from: from.clone(),
            text: text.to_owned(),
            ts,
            cap: INBOX_CAP,
        };
        // A DM for someone offline is kept, so stored now. One for someone online is
        // not, unless they are gone by the time it is delivered: then it is stored
        // first and kept after that commit (`Keep::StoreFirst`), so memory never
        // keeps what the store does not.
        let offline = recipient.online.lock().is_empty();
        let (write, keep) = if offline {
            (out.durable(keep), Keep::Kept)
        } else {
            match out.durable(keep).pop() {
                Some(write) => (Vec::new(), Keep::StoreFirst(write)),
                None => (Vec::new(), Keep::Kept),
            }
        };
        let ok = Reply::ok(id).field("ts", &ts).finish();
        let effects = vec![
            Effect::Dm {
                to: recipient,
                frame,
                skip_conn: conn.key,
                keep,
            },
            Effect::Send(Arc::clone(conn), ok),
        ];
        out.commit(write, effects);
        Ok(None)
    }
}
