//! What the SQLite store keeps for server operators: account bans, and the offline
//! password reset of `parlor admin set-password`.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Savepoint, params};

use crate::config::SyncMode;
use crate::store::direct::run;
use crate::store::sqlite::{DB_FILE, lock_dir, migrate, open_connection};
use crate::store::{AccountBanRow, StoreError, Write};

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

/// See [`crate::store::set_password_offline`].
pub(super) fn set_password_offline(
    dir: &Path,
    user: &str,
    hash: &str,
) -> Result<Option<usize>, StoreError> {
    if !dir.join(DB_FILE).exists() {
        return Err(StoreError::Dir {
            dir: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no parlor.db in it"),
        });
    }
    let _lock = lock_dir(dir)?;
    let path = dir.join(DB_FILE);
    let mut conn = open_connection(&path, SyncMode::Full)?;
    migrate(&conn, &path)?;
    let tx = conn.transaction()?;
    let known: Option<String> = tx
        .query_row("SELECT name FROM users WHERE name = ?1", [user], |r| {
            r.get(0)
        })
        .optional()?;
    if known.is_none() {
        return Ok(None);
    }
    tx.execute(
        "UPDATE users SET hash = ?2 WHERE name = ?1",
        params![user, hash],
    )?;
    let revoked = tx.execute("DELETE FROM sessions WHERE user = ?1", params![user])?;
    tx.commit()?;
    Ok(Some(revoked))
}
