//! The SQLite backend: one file (`parlor.db`, WAL mode) in the data directory, kept
//! off-limits to a second server by an OS lock on `parlor.lock`; the schema,
//! migrations, the start-up read, history queries and the writer's transactions.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write as _};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, params};

use crate::config::SyncMode;
use crate::store::messages::{self, query_history, run};
use crate::store::operators;
use crate::store::{
    Backend, BanRow, BatchWriter, DmRow, InviteRow, MemberRow, MessageRow, RoomRow, SessionRow,
    Snapshot, StoreError, Write, direct,
};

/// Nonces older than this are not read back: a day, as the chat layer keeps them.
const NONCE_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// The schema version this binary writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 3;
/// The database file inside the data directory.
pub(crate) const DB_FILE: &str = "parlor.db";
/// The lock file that keeps a second server off the same data directory.
const LOCK_FILE: &str = "parlor.lock";

/// The first schema (version 1).
const SCHEMA_V1: &str = "
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
        user TEXT NOT NULL REFERENCES users(name));";

/// Version 2: a session's last use, so its idle time holds across restarts. Sessions
/// stored before count as used at the upgrade.
const SCHEMA_V2: &str = "
    ALTER TABLE sessions ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0;
    UPDATE sessions SET last_used = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);";

/// Version 3 (protocol 2's rooms and accounts): roles and join order of members
/// (a room's creator, if still a member, becomes its owner), invite-only rooms, bans,
/// invitations, send nonces, blocks, the names of deleted accounts (never signed up
/// again), the last seq of deleted rooms (a room made again under the name goes
/// on after it), replies, DM conversations (`dms`: one row per DM, `a` < `b` or
/// a DM to oneself; `hidden`: from a user the recipient blocks, seen by the sender
/// only), whose kept copies carry their seq, accounts banned from the server by an
/// operator, and read markers (`kind`: `room`, or `dm` with `target` the other
/// party).
const SCHEMA_V3: &str = "
    ALTER TABLE memberships ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
    ALTER TABLE memberships ADD COLUMN joined INTEGER NOT NULL DEFAULT 0;
    UPDATE memberships SET role = 'owner'
        WHERE user = (SELECT creator FROM rooms WHERE rooms.name = memberships.room);
    ALTER TABLE rooms ADD COLUMN invite_only INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE bans (
        room TEXT NOT NULL,
        user TEXT NOT NULL,
        by_user TEXT NOT NULL,
        reason TEXT,
        ts INTEGER NOT NULL,
        PRIMARY KEY (room, user)) WITHOUT ROWID;
    CREATE TABLE invitations (
        room TEXT NOT NULL,
        user TEXT NOT NULL,
        by_user TEXT NOT NULL,
        ts INTEGER NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (room, user)) WITHOUT ROWID;
    CREATE TABLE nonces (
        user TEXT NOT NULL,
        nonce TEXT NOT NULL,
        op TEXT NOT NULL,
        target TEXT NOT NULL,
        answer TEXT NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (user, nonce)) WITHOUT ROWID;
    CREATE INDEX nonces_ts ON nonces(ts);
    CREATE TABLE blocks (
        user TEXT NOT NULL,
        blocked TEXT NOT NULL,
        PRIMARY KEY (user, blocked)) WITHOUT ROWID;
    CREATE TABLE retired_names (
        name TEXT PRIMARY KEY,
        ts INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE deleted_rooms (
        name TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL) WITHOUT ROWID;
    ALTER TABLE messages ADD COLUMN reply_to INTEGER;
    CREATE TABLE dms (
        a TEXT NOT NULL,
        b TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        ts INTEGER NOT NULL,
        reply_to INTEGER,
        hidden INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (a, b, seq)) WITHOUT ROWID;
    ALTER TABLE pending_dms ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE pending_dms ADD COLUMN reply_to INTEGER;
    CREATE TABLE account_bans (
        user TEXT PRIMARY KEY,
        by_user TEXT NOT NULL,
        reason TEXT,
        until INTEGER,
        ts INTEGER NOT NULL) WITHOUT ROWID;
    ALTER TABLE messages ADD COLUMN edited_ts INTEGER;
    ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE dms ADD COLUMN edited_ts INTEGER;
    ALTER TABLE dms ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE reactions (
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        emoji TEXT NOT NULL,
        user TEXT NOT NULL,
        PRIMARY KEY (room, seq, emoji, user)) WITHOUT ROWID;
    CREATE TABLE dm_reactions (
        a TEXT NOT NULL,
        b TEXT NOT NULL,
        seq INTEGER NOT NULL,
        emoji TEXT NOT NULL,
        user TEXT NOT NULL,
        PRIMARY KEY (a, b, seq, emoji, user)) WITHOUT ROWID;
    CREATE TABLE read_markers (
        user TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (user, kind, target)) WITHOUT ROWID;";

/// The SQLite store of one data directory.
pub(crate) struct Sqlite {
    path: PathBuf,
    sync: SyncMode,
    /// Connections for history reads, taken and given back.
    readers: Mutex<Vec<Connection>>,
    /// Held for the life of the store.
    _lock: File,
}

impl Sqlite {
    /// Opens (creating if needed) the database in `dir`, takes the directory's lock,
    /// migrates the schema, and reads everything back; `history_len` messages per
    /// room.
    pub(crate) fn open(
        dir: &Path,
        sync: SyncMode,
        history_len: usize,
    ) -> Result<(Sqlite, Snapshot), StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            dir: dir.to_owned(),
            source,
        })?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DB_FILE);
        let conn = open_connection(&path, sync)?;
        migrate(&conn, &path)?;
        let snapshot = load(&conn, history_len).map_err(|e| not_parlor(&path, e))?;
        let store = Sqlite {
            path,
            sync,
            readers: Mutex::new(vec![conn]),
            _lock: lock,
        };
        Ok((store, snapshot))
    }
}

impl Backend for Sqlite {
    fn writer(&self) -> Result<Box<dyn BatchWriter>, StoreError> {
        Ok(Box::new(Writer(open_connection(&self.path, self.sync)?)))
    }

    fn history(
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

    fn dm_history(
        &self,
        viewer: &str,
        with: &str,
        after: Option<u64>,
        below: u64,
        limit: usize,
    ) -> Result<Vec<DmRow>, StoreError> {
        let conn = match self.readers.lock().pop() {
            Some(conn) => conn,
            None => open_connection(&self.path, self.sync)?,
        };
        let result = direct::history(&conn, viewer, with, after, below, limit);
        self.readers.lock().push(conn);
        Ok(result?)
    }
}

/// The writer thread's connection.
struct Writer(Connection);

impl BatchWriter for Writer {
    /// A savepoint each, so a submission whose writes fail cannot fail the others.
    fn commit(&mut self, batch: &[&[Write]]) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.0.transaction()?;
        let mut committed = Vec::with_capacity(batch.len());
        for writes in batch {
            if writes.is_empty() {
                committed.push(true);
                continue;
            }
            let sp = tx.savepoint()?;
            match writes.iter().try_for_each(|w| apply(&sp, w)) {
                Ok(()) => {
                    sp.commit()?;
                    committed.push(true);
                }
                Err(e) => {
                    log::error!("store: writes rolled back: {e} ({:?})", writes.first());
                    drop(sp);
                    committed.push(false);
                }
            }
        }
        tx.commit()?;
        Ok(committed)
    }
}

pub(crate) fn lock_dir(dir: &Path) -> Result<File, StoreError> {
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
    if file.try_lock().is_err() {
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

pub(super) fn open_connection(path: &Path, sync: SyncMode) -> Result<Connection, StoreError> {
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

pub(crate) fn not_parlor(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::NotParlor {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Brings the schema up to `SCHEMA_VERSION`, one forward step at a time, each in its
/// own transaction.
pub(super) fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
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
    }
    let steps = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3];
    for (step, to) in steps
        .iter()
        .zip(1..)
        .skip(usize::try_from(version).unwrap_or(0))
    {
        conn.execute_batch(&format!(
            "BEGIN; {step}; PRAGMA user_version = {to}; COMMIT;"
        ))?;
    }
    Ok(())
}

fn load(conn: &Connection, history_len: usize) -> rusqlite::Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    let mut users = conn.prepare("SELECT name, hash FROM users")?;
    snapshot.users = users
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    snapshot.rooms = load_rooms(conn, history_len)?;
    let mut deleted = conn.prepare("SELECT name, last_seq FROM deleted_rooms")?;
    snapshot.deleted_rooms = deleted
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let since = now.saturating_sub(NONCE_TTL_MS);
    direct::load(conn, &mut snapshot, since)?;
    let mut sessions = conn.prepare("SELECT token_hash, user, last_used FROM sessions")?;
    snapshot.sessions = sessions
        .query_map([], |r| {
            Ok(SessionRow {
                hash: r.get(0)?,
                user: r.get(1)?,
                used: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut retired = conn.prepare("SELECT name FROM retired_names")?;
    snapshot.retired = retired
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    snapshot.account_bans = operators::load_account_bans(conn)?;
    Ok(snapshot)
}

fn load_rooms(conn: &Connection, history_len: usize) -> rusqlite::Result<Vec<RoomRow>> {
    let mut rooms = conn
        .prepare("SELECT name, topic, creator, next_seq, invite_only FROM rooms ORDER BY name")?;
    let mut members =
        conn.prepare("SELECT user, role, joined FROM memberships WHERE room = ?1 ORDER BY user")?;
    let mut bans =
        conn.prepare("SELECT user, by_user, reason, ts FROM bans WHERE room = ?1 ORDER BY user")?;
    let mut invitations = conn
        .prepare("SELECT user, by_user, delivered FROM invitations WHERE room = ?1 ORDER BY ts")?;
    let room_rows: Vec<(String, String, String, u64, bool)> = rooms
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(room_rows.len());
    for (name, topic, creator, next_seq, invite_only) in room_rows {
        let member_rows = members
            .query_map([&name], |r| {
                Ok(MemberRow {
                    user: r.get(0)?,
                    role: r.get(1)?,
                    joined: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let ban_rows = bans
            .query_map([&name], |r| {
                Ok(BanRow {
                    user: r.get(0)?,
                    by: r.get(1)?,
                    reason: r.get(2)?,
                    ts: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let invite_rows = invitations
            .query_map([&name], |r| {
                Ok(InviteRow {
                    user: r.get(0)?,
                    by: r.get(1)?,
                    delivered: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let last_seq = next_seq.saturating_sub(1);
        let recent = query_history(conn, &name, None, last_seq + 1, history_len)?;
        out.push(RoomRow {
            name,
            topic,
            creator,
            last_seq,
            invite_only,
            members: member_rows,
            recent,
            bans: ban_rows,
            invitations: invite_rows,
        });
    }
    Ok(out)
}

fn apply(tx: &rusqlite::Savepoint<'_>, write: &Write) -> rusqlite::Result<()> {
    const MEMBER: &str =
        "INSERT OR IGNORE INTO memberships (room, user, role, joined) VALUES (?1, ?2, ?3, ?4)";
    match write {
        Write::Dm(_) | Write::Nonce { .. } | Write::PruneNonces { .. } | Write::Block { .. } => {
            direct::apply(tx, write)
        }
        Write::Message { .. }
        | Write::Edit { .. }
        | Write::DeleteMessage { .. }
        | Write::React { .. } => messages::apply(tx, write),
        Write::Marker { .. } => direct::apply(tx, write),
        Write::KeepDm { .. }
        | Write::ClearDms { .. }
        | Write::PasswordHash { .. }
        | Write::Session { .. }
        | Write::TouchSession { .. }
        | Write::RevokeSession { .. }
        | Write::DeleteUser { .. } => apply_user_write(tx, write),
        Write::AccountBan(_) | Write::AccountUnban { .. } => operators::apply(tx, write),
        Write::Topic { .. }
        | Write::InviteOnly { .. }
        | Write::Ban { .. }
        | Write::Unban { .. }
        | Write::Invite { .. }
        | Write::Uninvite { .. }
        | Write::InvitesDelivered { .. }
        | Write::DeleteRoom { .. } => apply_room_write(tx, write),
        Write::User {
            name,
            hash,
            created,
        } => run(
            tx,
            "INSERT INTO users (name, hash, created) VALUES (?1, ?2, ?3)",
            params![name, hash, created],
        ),
        Write::Room {
            name,
            topic,
            creator,
            created,
            invite_only,
            next_seq,
        } => {
            run(
                tx,
                "INSERT INTO rooms (name, topic, creator, next_seq, created, invite_only)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, topic, creator, next_seq, created, invite_only],
            )?;
            run(tx, MEMBER, params![name, creator, "owner", created])
        }
        Write::Join { room, user, joined } => {
            run(tx, MEMBER, params![room, user, "member", joined])
        }
        Write::SetRole { room, user, role } => run(
            tx,
            "UPDATE memberships SET role = ?3 WHERE room = ?1 AND user = ?2",
            params![room, user, role],
        ),
        Write::Leave { room, user } => run(
            tx,
            "DELETE FROM memberships WHERE room = ?1 AND user = ?2",
            params![room, user],
        ),
    }
}

/// Deletes an account and what is kept for it; its name goes to `retired_names`.
/// Rooms it owned were handed on by `SetRole` writes before this one.
fn delete_user(tx: &rusqlite::Savepoint<'_>, name: &str, ts: u64) -> rusqlite::Result<()> {
    for sql in [
        "DELETE FROM sessions WHERE user = ?1",
        "DELETE FROM memberships WHERE user = ?1",
        "DELETE FROM invitations WHERE user = ?1",
        "DELETE FROM blocks WHERE user = ?1 OR blocked = ?1",
        "DELETE FROM nonces WHERE user = ?1",
        "DELETE FROM read_markers WHERE user = ?1 OR (kind = 'dm' AND target = ?1)",
        "DELETE FROM pending_dms WHERE recipient = ?1",
        "DELETE FROM users WHERE name = ?1",
    ] {
        run(tx, sql, params![name])?;
    }
    run(
        tx,
        "INSERT OR IGNORE INTO retired_names (name, ts) VALUES (?1, ?2)",
        params![name, ts],
    )
}

/// The writes that concern one user: kept DMs, password hashes and sessions.
fn apply_user_write(tx: &rusqlite::Savepoint<'_>, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::KeepDm {
            to,
            from,
            text,
            ts,
            seq,
            reply_to,
            cap,
        } => {
            run(
                tx,
                "INSERT INTO pending_dms (recipient, sender, text, ts, seq, reply_to)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![to, from, text, ts, seq, reply_to],
            )?;
            // The cap of kept messages holds across restarts too.
            run(
                tx,
                "DELETE FROM pending_dms WHERE recipient = ?1 AND id NOT IN
                 (SELECT id FROM pending_dms WHERE recipient = ?1 ORDER BY id DESC LIMIT ?2)",
                params![to, i64::try_from(*cap).unwrap_or(i64::MAX)],
            )
        }
        Write::ClearDms { to, count } => run(
            tx,
            "DELETE FROM pending_dms WHERE id IN
             (SELECT id FROM pending_dms WHERE recipient = ?1 ORDER BY id LIMIT ?2)",
            params![to, i64::try_from(*count).unwrap_or(i64::MAX)],
        ),
        Write::PasswordHash { name, hash } => run(
            tx,
            "UPDATE users SET hash = ?2 WHERE name = ?1",
            params![name, hash],
        ),
        Write::Session { hash, user, used } => run(
            tx,
            "INSERT OR REPLACE INTO sessions (token_hash, user, last_used) VALUES (?1, ?2, ?3)",
            params![&hash[..], user, used],
        ),
        Write::TouchSession { hash, used } => run(
            tx,
            "UPDATE sessions SET last_used = max(last_used, ?2) WHERE token_hash = ?1",
            params![&hash[..], used],
        ),
        Write::RevokeSession { hash } => run(
            tx,
            "DELETE FROM sessions WHERE token_hash = ?1",
            params![&hash[..]],
        ),
        Write::DeleteUser { name, ts } => delete_user(tx, name, *ts),
        Write::User { .. }
        | Write::Room { .. }
        | Write::Join { .. }
        | Write::Leave { .. }
        | Write::SetRole { .. }
        | Write::Message { .. }
        | Write::Dm(_)
        | Write::Nonce { .. }
        | Write::PruneNonces { .. }
        | Write::Block { .. }
        | Write::Edit { .. }
        | Write::DeleteMessage { .. }
        | Write::React { .. } => apply(tx, write),
        _ => apply_room_write(tx, write),
    }
}

/// The writes of protocol 2's room moderation: topics, invite-only, bans,
/// invitations, deletion.
fn apply_room_write(tx: &rusqlite::Savepoint<'_>, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::Topic { room, topic } => run(
            tx,
            "UPDATE rooms SET topic = ?2 WHERE name = ?1",
            params![room, topic],
        ),
        Write::InviteOnly { room, invite_only } => run(
            tx,
            "UPDATE rooms SET invite_only = ?2 WHERE name = ?1",
            params![room, invite_only],
        ),
        Write::Ban {
            room,
            user,
            by,
            reason,
            ts,
        } => run(
            tx,
            "INSERT OR REPLACE INTO bans (room, user, by_user, reason, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![room, user, by, reason, ts],
        ),
        Write::Unban { room, user } => run(
            tx,
            "DELETE FROM bans WHERE room = ?1 AND user = ?2",
            params![room, user],
        ),
        Write::Invite {
            room,
            user,
            by,
            ts,
            delivered,
        } => run(
            tx,
            "INSERT OR REPLACE INTO invitations (room, user, by_user, ts, delivered)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![room, user, by, ts, delivered],
        ),
        Write::Uninvite { room, user } => run(
            tx,
            "DELETE FROM invitations WHERE room = ?1 AND user = ?2",
            params![room, user],
        ),
        Write::InvitesDelivered { user } => run(
            tx,
            "UPDATE invitations SET delivered = 1 WHERE user = ?1",
            params![user],
        ),
        Write::DeleteRoom { room, last_seq } => {
            for table in [
                "messages",
                "reactions",
                "memberships",
                "bans",
                "invitations",
            ] {
                run(
                    tx,
                    &format!("DELETE FROM {table} WHERE room = ?1"),
                    params![room],
                )?;
            }
            run(tx, "DELETE FROM rooms WHERE name = ?1", params![room])?;
            run(
                tx,
                "DELETE FROM read_markers WHERE kind = 'room' AND target = ?1",
                params![room],
            )?;
            run(
                tx,
                "INSERT OR REPLACE INTO deleted_rooms (name, last_seq) VALUES (?1, ?2)",
                params![room, last_seq],
            )
        }
        _ => apply(tx, write),
    }
}
