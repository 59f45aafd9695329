//! Backups of the SQLite store: a consistent copy taken from a running server's data
//! directory (SQLite's online backup API, one read transaction, so writers are never
//! blocked for long and the copy is one committed state), and putting one back into
//! the data directory of a stopped server.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;
use crate::store::sqlite::{DB_FILE, SCHEMA_VERSION, lock_dir, not_parlor};

/// Copies the database in `data_dir` to `out`, whether or not a server is running
/// on it. The copy is written beside `out` and renamed into place, so `out` is
/// either the old file or a whole backup. Returns the copy's schema version.
/// Errors: no parlor database in `data_dir`, or SQLite failing.
pub fn backup(data_dir: &Path, out: &Path) -> Result<i64, StoreError> {
    let path = data_dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StoreError::Dir {
            dir: data_dir.to_owned(),
            source: std::io::Error::other(format!("no {DB_FILE} in it")),
        });
    }
    if inside(data_dir, out) {
        return Err(StoreError::Dir {
            dir: data_dir.to_owned(),
            source: std::io::Error::other(format!(
                "the backup {} would be written inside the data directory, over the live \
                 database or beside it; choose an --out outside it",
                out.display()
            )),
        });
    }
    let source = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| not_parlor(&path, e))?;
    source.busy_timeout(Duration::from_secs(5))?;
    let version = parlor_version(&source, &path)?;
    copy(&source, out)?;
    Ok(version)
}

/// Puts the backup `from` in place as the database of `data_dir` (created if
/// missing), for a server that is not running: the directory's lock is taken for the
/// whole time, so this fails while a server holds it. Returns the schema version of
/// the backup; a server started on it migrates an older one. Errors: the directory
/// is in use, `from` is not a parlor database (or one from a newer parlor), SQLite or
/// the file system failing.
pub fn restore(from: &Path, data_dir: &Path) -> Result<i64, StoreError> {
    fs::create_dir_all(data_dir).map_err(|source| StoreError::Dir {
        dir: data_dir.to_owned(),
        source,
    })?;
    let _lock = lock_dir(data_dir)?;
    let source = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| not_parlor(from, e))?;
    let version = parlor_version(&source, from)?;
    let check: String = source
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| not_parlor(from, e))?;
    if check != "ok" {
        return Err(StoreError::NotParlor {
            path: from.to_owned(),
            detail: format!("damaged: {check}"),
        });
    }
    let target = data_dir.join(DB_FILE);
    // The old database's journal must not be replayed onto the restored file.
    for suffix in ["-wal", "-shm"] {
        let journal = PathBuf::from(format!("{}{suffix}", target.display()));
        match fs::remove_file(&journal) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Dir {
                    dir: data_dir.to_owned(),
                    source,
                });
            }
        }
    }
    copy(&source, &target)?;
    Ok(version)
}

/// The schema version of a parlor database; anything else is `NotParlor`, a newer
/// parlor's `TooNew`.
fn parlor_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| not_parlor(path, e))?;
    let has_users: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'users'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| not_parlor(path, e))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
        });
    }
    if version < 1 || !has_users {
        return Err(StoreError::NotParlor {
            path: path.to_owned(),
            detail: "no parlor schema in it".into(),
        });
    }
    Ok(version)
}

/// Copies `source` whole into a new file at `to` (written beside it, then renamed).
fn copy(source: &Connection, to: &Path) -> Result<(), StoreError> {
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    let _ = fs::remove_file(&partial);
    let mut target = Connection::open(&partial)?;
    {
        let backup = Backup::new(source, &mut target)?;
        // Every page in one step: one read transaction, so the copy is one committed
        // state however busy the server is (a step at a time restarts on each write).
        backup.step(-1)?;
    }
    drop(target);
    fs::rename(&partial, to).map_err(|source| StoreError::Dir {
        dir: to.parent().map(Path::to_owned).unwrap_or_default(),
        source,
    })
}

/// Whether `out` (which may not exist yet) lies inside `dir`: its folder, resolved
/// through links, is `dir` or below it.
fn inside(dir: &Path, out: &Path) -> bool {
    let folder = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match (fs::canonicalize(dir), fs::canonicalize(folder)) {
        (Ok(dir), Ok(folder)) => folder.starts_with(dir),
        _ => false,
    }
}
