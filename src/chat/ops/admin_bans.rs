//! Account bans (`admin_ban`, `admin_unban`): what a ban refuses, when it ends, and
//! how it comes back after a restart. A ban ends by itself at its `until`: the next
//! login (or start-up) that finds it over lifts it, in the store too.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::chat::Chat;
use crate::chat::accounts::{AccountBan, User};
use crate::chat::now_ms;
use crate::chat::ops::Failure;
use crate::error_code::ErrorCode;
use crate::store::{AccountBanRow, Write};

impl Chat {
    /// The ban `user` is under now, if any; a ban found over is lifted.
    pub(crate) fn active_ban(&self, user: &User) -> Option<AccountBan> {
        let mut slot = user.ban.lock();
        let ban = slot.as_ref()?;
        if ban.until.is_some_and(|until| until <= now_ms()) {
            *slot = None;
            drop(slot);
            log::info!("the ban of {} ended", user.name);
            self.store_quietly(vec![Write::AccountUnban {
                user: user.name.clone(),
            }]);
            return None;
        }
        Some(ban.clone())
    }

    /// Puts the stored bans back on their accounts; returns the deletions of those
    /// that ended while the server was down, or whose account is gone.
    pub(crate) fn restore_account_bans(&self, rows: Vec<AccountBanRow>) -> Vec<Write> {
        let now = now_ms();
        let mut over = Vec::new();
        for row in rows {
            match self.accounts.user(&row.user) {
                Some(user) if row.until.is_none_or(|until| until > now) => {
                    *user.ban.lock() = Some(AccountBan {
                        by: row.by,
                        reason: row.reason,
                        until: row.until,
                        ts: row.ts,
                    });
                }
                _ => over.push(Write::AccountUnban { user: row.user }),
            }
        }
        over
    }
}

/// The write that stores `ban` of `user`.
pub(crate) fn ban_write(user: &Arc<User>, ban: &AccountBan) -> Write {
    Write::AccountBan(AccountBanRow {
        user: user.name.clone(),
        by: ban.by.clone(),
        reason: ban.reason.clone(),
        until: ban.until,
        ts: ban.ts,
    })
}

/// The `banned` error of a login under `ban` (PROTOCOL-2 section 3): `scope`
/// `"account"`, `reason` (string or null), `until` (ms since the epoch, or null: no
/// end).
pub(crate) fn banned(ban: &AccountBan) -> Failure {
    let message = match ban.until {
        Some(_) => "this account is banned from the server for a while",
        None => "this account is banned from the server",
    };
    Failure {
        code: ErrorCode::Banned,
        message: message.into(),
        retry_after: None,
        extra: vec![
            ("scope", json!("account")),
            (
                "reason",
                ban.reason.as_ref().map_or(Value::Null, |r| json!(r)),
            ),
            ("until", ban.until.map_or(Value::Null, |u| json!(u))),
        ],
    }
}
