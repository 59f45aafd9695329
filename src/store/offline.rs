//! Changes to a data directory while no server runs: the password reset of `parlor
//! admin set-password`, for an operator locked out of the server.

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use crate::config::SyncMode;
use crate::store::StoreError;
use crate::store::sqlite::{DB_FILE, lock_dir, migrate, open_connection};

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
