//! What the SQLite store keeps for server operators: account bans.

use rusqlite::{Connection, Savepoint, params};

use crate::store::messages::run;
use crate::store::{AccountBanRow, Write};

/// Every stored account ban.
pub(super) fn load_account_bans(conn: &Connection) -> rusqlite::Result<Vec<AccountBanRow>> {
    let mut bans = conn.prepare("SELECT user, by_user, reason, until, ts FROM account_bans")?;
    bans.query_map([], |r| {
        Ok(AccountBanRow {
            user: r.get(0)?,
            by: r.get(1)?,
            reason: r.get(2)?,
            until: r.get(3)?,
            ts: r.get(4)?,
        })
    })?
    .collect()
}

/// The writes of server operators.
pub(super) fn apply(tx: &Savepoint<'_>, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::AccountBan(ban) => run(
            tx,
            "INSERT OR REPLACE INTO account_bans (user, by_user, reason, until, ts)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ban.user, ban.by, ban.reason, ban.until, ban.ts],
        ),
        Write::AccountUnban { user } => run(
            tx,
            "DELETE FROM account_bans WHERE user = ?1",
            params![user],
        ),
        other => unreachable!("not an operator's write: {other:?}"),
    }
}
