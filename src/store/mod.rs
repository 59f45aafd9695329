//! The embedded store: chat state in SQLite (WAL mode) in the data directory, written
//! by one writer thread in group commits, read back at start-up and for history older
//! than what memory holds.
//!
//! The store knows nothing of connections: each submission carries a payload that the
//! writer hands back, in submission order, once the batch holding it has committed.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};

use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use fs2::FileExt;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, params};

use crate::config::SyncMode;
use crate::metrics::StoreMetrics;

/// The schema version this binary writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;
/// Most submissions one transaction takes.
const MAX_BATCH: usize = 4096;
/// Writes waiting for the writer beyond which senders stop being read.
const BACKLOG_HIGH: usize = 16 * 1024;
/// Writes waiting below which they are read again.
const BACKLOG_LOW: usize = BACKLOG_HIGH / 2;

/// The database file inside the data directory.
pub(crate) const DB_FILE: &str = "parlor.db";
/// The lock file that keeps a second server off the same data directory.
const LOCK_FILE: &str = "parlor.lock";

/// Why the store could not open or write.
#[derive(Debug)]
pub enum StoreError {
    /// The data directory cannot be created or written.
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// Another parlor holds the data directory.
    Locked { dir: PathBuf, holder: String },
    /// The file is not a parlor database, or is damaged.
    NotParlor { path: PathBuf, detail: String },
    /// The database was written by a newer parlor.
    TooNew { path: PathBuf, found: i64 },
    /// SQLite failed.
    Sqlite(rusqlite::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Dir { dir, source } => write!(
                f,
                "cannot use the data directory {}: {source} (check its permissions, or choose another with --data-dir)",
                dir.display()
            ),
            StoreError::Locked { dir, holder } => write!(
                f,
                "the data directory {} is in use by another running parlor ({holder}); stop it, or choose another --data-dir",
                dir.display()
            ),
            StoreError::NotParlor { path, detail } => write!(
                f,
                "{} is not a parlor database or is damaged ({detail}); move it away to start afresh, or restore a backup",
                path.display()
            ),
            StoreError::TooNew { path, found } => write!(
                f,
                "{} was written by a newer parlor (schema version {found}; this binary knows up to {SCHEMA_VERSION}); run a newer parlor",
                path.display()
            ),
            StoreError::Sqlite(e) => write!(f, "database error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// One change to persist.
#[derive(Debug)]
pub(crate) enum Write {
    User {
        name: String,
        hash: String,
        created: u64,
    },
    Room {
        name: String,
        topic: String,
        creator: String,
        created: u64,
    },
    Join {
        room: String,
        user: String,
    },
    Leave {
        room: String,
        user: String,
    },
    Message {
        room: String,
        seq: u64,
        from: String,
        text: String,
        ts: u64,
    },
    /// A direct message kept for an offline recipient.
    KeepDm {
        to: String,
        from: String,
        text: String,
        ts: u64,
        /// Most kept for one recipient: the oldest beyond it are dropped.
        cap: usize,
    },
    /// The recipient's kept direct messages were delivered.
    ClearDms {
        to: String,
    },
    /// A user's password hash, rehashed at the current cost after a login.
    PasswordHash {
        name: String,
        hash: String,
    },
    Session {
        hash: [u8; 32],
        user: String,
    },
    RevokeSession {
        hash: [u8; 32],
    },
}

/// A stored message.
#[derive(Debug, Clone)]
pub(crate) struct MessageRow {
    pub(crate) seq: u64,
    pub(crate) from: String,
    pub(crate) text: String,
    pub(crate) ts: u64,
}

/// A stored room with its members and newest messages.
pub(crate) struct RoomRow {
    pub(crate) name: String,
    pub(crate) topic: String,
    pub(crate) last_seq: u64,
    pub(crate) members: Vec<String>,
    pub(crate) recent: Vec<MessageRow>,
}

/// Everything read back at start-up.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub(crate) users: Vec<(String, String)>,
    pub(crate) rooms: Vec<RoomRow>,
    /// (recipient, from, text, ts), oldest first.
    pub(crate) dms: Vec<(String, String, String, u64)>,
    pub(crate) sessions: Vec<([u8; 32], String)>,
}

struct Submission<T> {
    writes: Vec<Write>,
    payload: T,
}

type Waker = Box<dyn FnOnce() + Send>;

struct Shared {
    /// Writes submitted and not yet committed.
    backlog: AtomicUsize,
    metrics: StoreMetrics,
    /// Callbacks of connections that stopped reading because the backlog was high.
    waiting: Mutex<Vec<Waker>>,
}

/// An open store, and (once started) its writer thread.
pub(crate) struct Store<T: Send + 'static> {
    path: PathBuf,
    sync: SyncMode,
    submissions: Option<Sender<Submission<T>>>,
    receiver: Option<Receiver<Submission<T>>>,
    shared: Arc<Shared>,
    readers: Mutex<Vec<Connection>>,
    writer: Option<JoinHandle<()>>,
    _lock: File,
}

impl<T: Send + 'static> Store<T> {
    /// Opens (creating if needed) the store in `dir`, takes the directory's lock,
    /// migrates the schema, and reads everything back; `history_len` messages per room.
    pub(crate) fn open(
        dir: &Path,
        sync: SyncMode,
        history_len: usize,
    ) -> Result<(Self, Snapshot), StoreError> {
        let dir_err = |source| StoreError::Dir {
            dir: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(dir_err)?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DB_FILE);
        let conn = open_connection(&path, sync)?;
        migrate(&conn, &path)?;
        let snapshot = load(&conn, history_len).map_err(|e| not_parlor(&path, e))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let store = Store {
            path,
            sync,
            submissions: Some(tx),
            receiver: Some(rx),
            shared: Arc::new(Shared {
                backlog: AtomicUsize::new(0),
                metrics: StoreMetrics::default(),
                waiting: Mutex::new(Vec::new()),
            }),
            readers: Mutex::new(vec![conn]),
            writer: None,
            _lock: lock,
        };
        Ok((store, snapshot))
    }

    /// Starts the writer. After each group commit, `on_commit` gets the batch's
    /// payloads in submission order, each with whether its writes are committed.
    pub(crate) fn start(
        &mut self,
        mut on_commit: impl FnMut(Vec<(T, bool)>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let Some(rx) = self.receiver.take() else {
            return Ok(());
        };
        let mut conn = open_connection(&self.path, self.sync)?;
        let shared = Arc::clone(&self.shared);
        let writer = thread::Builder::new()
            .name("parlor-store".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(MAX_BATCH - 1));
                    let writes: usize = batch.iter().map(|s| s.writes.len()).sum();
                    let started = Instant::now();
                    let committed = match commit(&mut conn, &batch) {
                        Ok(committed) => committed,
                        Err(e) => {
                            log::error!("store: a batch of {writes} writes failed to commit: {e}");
                            vec![false; batch.len()]
                        }
                    };
                    shared.metrics.commit_time.observe(started.elapsed());
                    shared.metrics.commits.inc();
                    shared.metrics.writes.add(writes as u64);
                    on_commit(
                        batch
                            .into_iter()
                            .map(|s| s.payload)
                            .zip(committed)
                            .collect(),
                    );
                    let left = shared.backlog.fetch_sub(writes, Ordering::AcqRel) - writes;
                    if left <= BACKLOG_LOW {
                        let wakers = std::mem::take(&mut *shared.waiting.lock());
                        for wake in wakers {
                            wake();
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Dir {
                dir: self.path.clone(),
                source: e,
            })?;
        self.writer = Some(writer);
        Ok(())
    }

    /// Commit counters, for `/metrics`.
    pub(crate) fn metrics(&self) -> &StoreMetrics {
        &self.shared.metrics
    }

    /// Queues writes for the next group commit; `payload` comes back after it.
    pub(crate) fn submit(&self, writes: Vec<Write>, payload: T) {
        self.shared
            .backlog
            .fetch_add(writes.len(), Ordering::AcqRel);
        if let Some(tx) = &self.submissions
            && tx.send(Submission { writes, payload }).is_err()
        {
            log::error!("store: the writer has stopped; a submission is lost");
        }
    }

    /// If the writer is too far behind, keeps `wake` to call once it catches up and
    /// returns true: the caller stops reading its client until then.
    pub(crate) fn wait_if_behind(&self, wake: impl FnOnce() + Send + 'static) -> bool {
        let mut waiting = self.shared.waiting.lock();
        if self.shared.backlog.load(Ordering::Acquire) <= BACKLOG_HIGH {
            return false;
        }
        waiting.push(Box::new(wake));
        true
    }

    /// Stored messages of `room` for a history query: with `after`, the oldest `limit`
    /// with seq in (after, below); otherwise the newest `limit` below `below`. Oldest
    /// first.
    pub(crate) fn history(
        &self,
        room: &str,
        after: Option<u64>,
        below: u64,
        limit: usize,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let conn = match self.readers.lock().pop() {
            Some(conn) => conn,
            None => open_connection(&self.path, self.sync)?,
        };
        let result = query_history(&conn, room, after, below, limit);
        self.readers.lock().push(conn);
        Ok(result?)
    }
}

impl<T: Send + 'static> Drop for Store<T> {
    fn drop(&mut self) {
        // Closing the queue lets the writer commit what is left, then stop.
        self.submissions = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StoreError::Dir {
            dir: dir.to_owned(),
            source,
        })?;
    if file.try_lock_exclusive().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => "unknown process".to_owned(),
            pid => format!("pid {pid}"),
        };
        return Err(StoreError::Locked {
            dir: dir.to_owned(),
            holder,
        });
    }
    // The pid makes the "in use" message say by whom.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

fn open_connection(path: &Path, sync: SyncMode) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| match e.sqlite_error_code() {
            Some(
                rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::PermissionDenied
                | rusqlite::ErrorCode::ReadOnly,
            ) => StoreError::Dir {
                dir: path.parent().map(Path::to_owned).unwrap_or_default(),
                source: std::io::Error::other(e.to_string()),
            },
            _ => not_parlor(path, e),
        })?;
    // Reading the schema first makes a file that is not a database fail here, at
    // start-up, with a clear message.
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| not_parlor(path, e))?;
    let synchronous = match sync {
        SyncMode::Normal => "NORMAL",
        SyncMode::Full => "FULL",
    };
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| not_parlor(path, e))?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn not_parlor(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::NotParlor {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Brings the schema up to `SCHEMA_VERSION`, one forward step at a time.
fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
        });
    }
    if version == 0 {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(StoreError::NotParlor {
                path: path.to_owned(),
                detail: "it holds tables but no parlor schema version".into(),
            });
        }
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE users (
                 name TEXT PRIMARY KEY,
                 hash TEXT NOT NULL,
                 created INTEGER NOT NULL);
             CREATE TABLE rooms (
                 name TEXT PRIMARY KEY,
                 topic TEXT NOT NULL,
                 creator TEXT NOT NULL,
                 next_seq INTEGER NOT NULL,
                 created INTEGER NOT NULL);
             CREATE TABLE memberships (
                 room TEXT NOT NULL REFERENCES rooms(name),
                 user TEXT NOT NULL REFERENCES users(name),
                 PRIMARY KEY (room, user)) WITHOUT ROWID;
             CREATE TABLE messages (
                 room TEXT NOT NULL REFERENCES rooms(name),
                 seq INTEGER NOT NULL,
                 sender TEXT NOT NULL,
                 text TEXT NOT NULL,
                 ts INTEGER NOT NULL,
                 PRIMARY KEY (room, seq)) WITHOUT ROWID;
             CREATE TABLE pending_dms (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 recipient TEXT NOT NULL REFERENCES users(name),
                 sender TEXT NOT NULL,
                 text TEXT NOT NULL,
                 ts INTEGER NOT NULL);
             CREATE INDEX pending_dms_recipient ON pending_dms(recipient, id);
             CREATE TABLE sessions (
                 token_hash BLOB PRIMARY KEY,
                 user TEXT NOT NULL REFERENCES users(name));
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    Ok(())
}

fn load(conn: &Connection, history_len: usize) -> rusqlite::Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    let mut users = conn.prepare("SELECT name, hash FROM users")?;
    snapshot.users = users
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut rooms = conn.prepare("SELECT name, topic, next_seq FROM rooms ORDER BY name")?;
    let mut members = conn.prepare("SELECT user FROM memberships WHERE room = ?1 ORDER BY user")?;
    let room_rows: Vec<(String, String, u64)> = rooms
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (name, topic, next_seq) in room_rows {
        let member_names = members
            .query_map([&name], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let last_seq = next_seq.saturating_sub(1);
        let recent = query_history(conn, &name, None, last_seq + 1, history_len)?;
        snapshot.rooms.push(RoomRow {
            name,
            topic,
            last_seq,
            members: member_names,
            recent,
        });
    }
    let mut dms =
        conn.prepare("SELECT recipient, sender, text, ts FROM pending_dms ORDER BY id")?;
    snapshot.dms = dms
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut sessions = conn.prepare("SELECT token_hash, user FROM sessions")?;
    snapshot.sessions = sessions
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(snapshot)
}

fn query_history(
    conn: &Connection,
    room: &str,
    after: Option<u64>,
    below: u64,
    limit: usize,
) -> rusqlite::Result<Vec<MessageRow>> {
    let row = |r: &rusqlite::Row<'_>| {
        Ok(MessageRow {
            seq: r.get(0)?,
            from: r.get(1)?,
            text: r.get(2)?,
            ts: r.get(3)?,
        })
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match after {
        Some(after) => {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, sender, text, ts FROM messages
                 WHERE room = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq LIMIT ?4",
            )?;
            stmt.query_map(params![room, after, below, limit], row)?
                .collect()
        }
        None => {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, sender, text, ts FROM messages
                 WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
            )?;
            let mut rows: Vec<MessageRow> = stmt
                .query_map(params![room, below, limit], row)?
                .collect::<Result<_, _>>()?;
            rows.reverse();
            Ok(rows)
        }
    }
}

/// Commits every submission of a batch in one transaction. A submission whose writes
/// fail is rolled back alone (a savepoint each), so it cannot fail the others; the
/// result says which submissions are committed.
fn commit<T>(conn: &mut Connection, batch: &[Submission<T>]) -> Result<Vec<bool>, StoreError> {
    let mut tx = conn.transaction()?;
    let mut committed = Vec::with_capacity(batch.len());
    for submission in batch {
        if submission.writes.is_empty() {
            committed.push(true);
            continue;
        }
        let sp = tx.savepoint()?;
        let result = submission.writes.iter().try_for_each(|w| apply(&sp, w));
        match result {
            Ok(()) => {
                sp.commit()?;
                committed.push(true);
            }
            Err(e) => {
                log::error!(
                    "store: writes rolled back: {e} ({:?})",
                    submission.writes.first()
                );
                drop(sp);
                committed.push(false);
            }
        }
    }
    tx.commit()?;
    Ok(committed)
}

fn apply(tx: &rusqlite::Savepoint<'_>, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::User {
            name,
            hash,
            created,
        } => {
            tx.prepare_cached("INSERT INTO users (name, hash, created) VALUES (?1, ?2, ?3)")?
                .execute(params![name, hash, created])?;
        }
        Write::Room {
            name,
            topic,
            creator,
            created,
        } => {
            tx.prepare_cached("INSERT INTO rooms (name, topic, creator, next_seq, created) VALUES (?1, ?2, ?3, 1, ?4)")?
                .execute(params![name, topic, creator, created])?;
            tx.prepare_cached("INSERT OR IGNORE INTO memberships (room, user) VALUES (?1, ?2)")?
                .execute(params![name, creator])?;
        }
        Write::PasswordHash { name, hash } => {
            tx.prepare_cached("UPDATE users SET hash = ?2 WHERE name = ?1")?
                .execute(params![name, hash])?;
        }
        Write::Join { room, user } => {
            tx.prepare_cached("INSERT OR IGNORE INTO memberships (room, user) VALUES (?1, ?2)")?
                .execute(params![room, user])?;
        }
        Write::Leave { room, user } => {
            tx.prepare_cached("DELETE FROM memberships WHERE room = ?1 AND user = ?2")?
                .execute(params![room, user])?;
        }
        Write::Message {
            room,
            seq,
            from,
            text,
            ts,
        } => {
            tx.prepare_cached(
                "INSERT INTO messages (room, seq, sender, text, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![room, seq, from, text, ts])?;
            tx.prepare_cached(
                "UPDATE rooms SET next_seq = ?2 + 1 WHERE name = ?1 AND next_seq <= ?2",
            )?
            .execute(params![room, seq])?;
        }
        Write::KeepDm {
            to,
            from,
            text,
            ts,
            cap,
        } => {
            tx.prepare_cached(
                "INSERT INTO pending_dms (recipient, sender, text, ts) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![to, from, text, ts])?;
            // The cap of kept messages holds across restarts too.
            tx.prepare_cached(
                "DELETE FROM pending_dms WHERE recipient = ?1 AND id NOT IN
                 (SELECT id FROM pending_dms WHERE recipient = ?1 ORDER BY id DESC LIMIT ?2)",
            )?
            .execute(params![to, i64::try_from(*cap).unwrap_or(i64::MAX)])?;
        }
        Write::ClearDms { to } => {
            tx.prepare_cached("DELETE FROM pending_dms WHERE recipient = ?1")?
                .execute(params![to])?;
        }
        Write::Session { hash, user } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sessions (token_hash, user) VALUES (?1, ?2)",
            )?
            .execute(params![&hash[..], user])?;
        }
        Write::RevokeSession { hash } => {
            tx.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
                .execute(params![&hash[..]])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("parlor-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_survive_reopening() {
        let dir = temp_dir("reopen");
        {
            let (mut store, snapshot) = Store::<u32>::open(&dir, SyncMode::Normal, 10).unwrap();
            assert!(snapshot.users.is_empty());
            let (tx, rx) = crossbeam_channel::unbounded();
            store
                .start(move |payloads| {
                    for (p, committed) in payloads {
                        assert!(committed);
                        tx.send(p).unwrap();
                    }
                })
                .unwrap();
            let writes = vec![
                Write::User {
                    name: "ada".into(),
                    hash: "h".into(),
                    created: 1,
                },
                Write::Room {
                    name: "r".into(),
                    topic: "t".into(),
                    creator: "ada".into(),
                    created: 1,
                },
                Write::Message {
                    room: "r".into(),
                    seq: 1,
                    from: "ada".into(),
                    text: "hi".into(),
                    ts: 5,
                },
            ];
            store.submit(writes, 7);
            assert_eq!(rx.recv().unwrap(), 7);
        }
        let (_store, snapshot) = Store::<u32>::open(&dir, SyncMode::Normal, 10).unwrap();
        assert_eq!(snapshot.users, [("ada".to_owned(), "h".to_owned())]);
        assert_eq!(snapshot.rooms[0].last_seq, 1);
        assert_eq!(snapshot.rooms[0].members, ["ada"]);
        assert_eq!(snapshot.rooms[0].recent[0].text, "hi");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_store_on_the_same_dir_is_refused() {
        let dir = temp_dir("locked");
        let (_first, _) = Store::<()>::open(&dir, SyncMode::Normal, 10).unwrap();
        let second = Store::<()>::open(&dir, SyncMode::Normal, 10);
        assert!(
            matches!(second, Err(StoreError::Locked { .. })),
            "{:?}",
            second.err()
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn garbage_is_not_a_parlor_database() {
        let dir = temp_dir("garbage");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(DB_FILE), vec![b'x'; 8192]).unwrap();
        let opened = Store::<()>::open(&dir, SyncMode::Normal, 10);
        assert!(
            matches!(opened, Err(StoreError::NotParlor { .. })),
            "{:?}",
            opened.err()
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
