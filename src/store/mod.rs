//! The store the chat layer writes through: the changes it persists (`Write`), what it
//! reads back (`Snapshot`, `MessageRow`), and the group-commit writer that drives a
//! backend. The backend is SQLite (`sqlite`); another (PostgreSQL) plugs in by
//! implementing [`Backend`] and [`BatchWriter`].
//!
//! The store knows nothing of connections: each submission carries a payload that the
//! writer hands back, in submission order, once the batch holding it has committed.

pub(crate) mod backup;
mod direct;
mod markers;
mod messages;
mod offline;
mod operators;
mod sqlite;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use crate::config::SyncMode;
use crate::metrics::StoreMetrics;

/// Most submissions one transaction takes.
const MAX_BATCH: usize = 4096;
/// Submissions waiting for the writer at which connections stop being read: each
/// checks before every request it handles, so the queue stays near this mark.
const BACKLOG_HIGH: usize = 8 * 1024;
/// Submissions waiting below which they are read again.
const BACKLOG_LOW: usize = BACKLOG_HIGH / 2;
/// The submission queue's capacity. Past `BACKLOG_HIGH` only requests already being
/// handled add to it (a few submissions each, one request per worker or hashing
/// thread), so this margin is never used up; if it were, the submission is refused
/// rather than block a thread that may hold a room's lock.
const QUEUE_CAP: usize = BACKLOG_HIGH + 56 * 1024;

/// Why the store could not open or write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory cannot be created or written.
    #[error(
        "cannot use the data directory {}: {source} (check its permissions, or choose another with --data-dir)",
        dir.display()
    )]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another parlor holds the data directory.
    #[error(
        "the data directory {} is in use by another running parlor ({holder}); stop it, or choose another --data-dir",
        dir.display()
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// Who holds it (`pid N`), as its lock file says.
        holder: String,
    },
    /// The file is not a parlor database, or is damaged.
    #[error(
        "{} is not a parlor database or is damaged ({detail}); move it away to start afresh, or restore a backup",
        path.display()
    )]
    NotParlor {
        /// The database file.
        path: PathBuf,
        /// What the backend said.
        detail: String,
    },
    /// The database was written by a newer parlor.
    #[error(
        "{} was written by a newer parlor (schema version {found}; this binary knows up to {}); run a newer parlor",
        path.display(), sqlite::SCHEMA_VERSION
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The schema version found in it.
        found: i64,
    },
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// One change to persist.
#[derive(Debug)]
pub(crate) enum Write {
    User {
        name: String,
        hash: String,
        created: u64,
    },
    /// A new room; its first message will have seq `next_seq` (after a deleted
    /// room's of the same name).
    Room {
        name: String,
        topic: String,
        creator: String,
        created: u64,
        invite_only: bool,
        next_seq: u64,
    },
    /// The room's topic changed.
    Topic {
        room: String,
        topic: String,
    },
    /// The room became invite-only, or open.
    InviteOnly {
        room: String,
        invite_only: bool,
    },
    /// `user` is banned from `room` (replacing an earlier ban).
    Ban {
        room: String,
        user: String,
        by: String,
        reason: Option<String>,
        ts: u64,
    },
    Unban {
        room: String,
        user: String,
    },
    /// `user` may join `room` once; `delivered`: the `invited` event reached them.
    Invite {
        room: String,
        user: String,
        by: String,
        ts: u64,
        delivered: bool,
    },
    /// The invitation was used (or withdrawn).
    Uninvite {
        room: String,
        user: String,
    },
    /// Every kept `invited` event of `user` was delivered.
    InvitesDelivered {
        user: String,
    },
    /// The room goes with its history, members, bans and invitations; a room made
    /// again under its name goes on after `last_seq`.
    DeleteRoom {
        room: String,
        last_seq: u64,
    },
    /// A plain member joined at `joined` (ms since the epoch).
    Join {
        room: String,
        user: String,
        joined: u64,
    },
    /// A member's role changed: `owner`, `op` or `member`.
    SetRole {
        room: String,
        user: String,
        role: &'static str,
    },
    Leave {
        room: String,
        user: String,
    },
    /// `user`'s read marker in a room or conversation moved forward to `seq`.
    Marker {
        user: String,
        place: MarkerPlace,
        seq: u64,
    },
    Message {
        room: String,
        seq: u64,
        from: String,
        text: String,
        ts: u64,
        /// The seq of the message this one answers.
        reply_to: Option<u64>,
    },
    /// A direct message kept for an offline recipient.
    KeepDm {
        to: String,
        from: String,
        text: String,
        ts: u64,
        /// Its seq in the conversation.
        seq: u64,
        reply_to: Option<u64>,
        /// Most kept for one recipient: the oldest beyond it are dropped.
        cap: usize,
    },
    /// The recipient's `count` oldest kept direct messages were delivered.
    ClearDms {
        to: String,
        count: usize,
    },
    /// A user's password hash, rehashed at the current cost after a login.
    PasswordHash {
        name: String,
        hash: String,
    },
    /// A new session token, last used at `used` (ms since the Unix epoch).
    Session {
        hash: [u8; 32],
        user: String,
        used: u64,
    },
    /// The session was last used at `used` (ms since the Unix epoch): its idle time
    /// counts from there, across restarts too.
    TouchSession {
        hash: [u8; 32],
        used: u64,
    },
    /// The session is gone: logged out, expired, or revoked by a password change.
    RevokeSession {
        hash: [u8; 32],
    },
    /// The account is deleted (at `ts`, ms since the epoch): its sessions,
    /// memberships, invitations, blocks, nonces and kept DMs go, and its name is
    /// retired for good. Its messages stay in history under the name.
    DeleteUser {
        name: String,
        ts: u64,
    },
    /// A direct message, `seq` in the conversation of `from` and `to`.
    Dm(DmRow),
    /// `user` used `nonce` for `op` (`send` or `dm`) to `target` (room or user) at
    /// `ts` (ms since the epoch); `answer` is the answer's fields as a JSON object.
    Nonce {
        user: String,
        nonce: String,
        op: &'static str,
        target: String,
        answer: String,
        ts: u64,
    },
    /// Nonces used before `before` (ms since the epoch) are forgotten.
    PruneNonces {
        before: u64,
    },
    /// `user` blocks (or, `on` false, no longer blocks) `blocked`.
    Block {
        user: String,
        blocked: String,
        on: bool,
    },
    /// A server operator banned the account (replacing an earlier ban).
    AccountBan(AccountBanRow),
    /// The account's ban was lifted (by an operator, or because it ended).
    AccountUnban {
        user: String,
    },
    /// Message `seq` of `place` now reads `text`, edited at `edited_ts` (ms since
    /// the epoch).
    Edit {
        place: Place,
        seq: u64,
        text: String,
        edited_ts: u64,
    },
    /// Message `seq` of `place` is deleted: its text and reactions go, a stub stays.
    DeleteMessage {
        place: Place,
        seq: u64,
    },
    /// `user` reacted to message `seq` of `place` with `emoji` (`on`), or took it back.
    React {
        place: Place,
        seq: u64,
        emoji: String,
        user: String,
        on: bool,
    },
}

/// Where a message is: a room, or the conversation of two users (in either order).
#[derive(Debug, Clone)]
pub(crate) enum Place {
    Room(String),
    Dm(String, String),
}

/// What became of a message after it was sent (issue 17 items 3 and 4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// When its text was last edited (ms since the epoch); `None`: never.
    pub(crate) edited_ts: Option<u64>,
    /// Deleted: the text is gone (a stored deleted message has an empty text).
    pub(crate) deleted: bool,
    /// The users who reacted, by emoji (sorted; an emoji nobody uses is absent).
    pub(crate) reactions: BTreeMap<String, BTreeSet<String>>,
}

/// Where a read marker is: a room, or the conversation with a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum MarkerPlace {
    Room(String),
    With(String),
}

/// A stored read marker: `user` has read `place` up to `seq`.
#[derive(Debug, Clone)]
pub(crate) struct MarkerRow {
    pub(crate) user: String,
    pub(crate) place: MarkerPlace,
    pub(crate) seq: u64,
}

/// A stored direct message.
#[derive(Debug, Clone)]
pub(crate) struct DmRow {
    pub(crate) seq: u64,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) text: String,
    pub(crate) ts: u64,
    pub(crate) reply_to: Option<u64>,
    /// From a user the recipient blocks: only the sender sees it.
    pub(crate) hidden: bool,
    /// Edits, deletion, reactions.
    pub(crate) changes: Changes,
}

/// A stored nonce (see [`Write::Nonce`]).
pub(crate) struct NonceRow {
    pub(crate) user: String,
    pub(crate) nonce: String,
    pub(crate) op: String,
    pub(crate) target: String,
    pub(crate) answer: String,
    pub(crate) ts: u64,
}

/// A stored message.
#[derive(Debug, Clone)]
pub(crate) struct MessageRow {
    pub(crate) seq: u64,
    pub(crate) from: String,
    pub(crate) text: String,
    pub(crate) ts: u64,
    pub(crate) reply_to: Option<u64>,
    /// Edits, deletion, reactions.
    pub(crate) changes: Changes,
}

/// A stored room with its members and newest messages.
pub(crate) struct RoomRow {
    pub(crate) name: String,
    pub(crate) topic: String,
    /// Who created it (counted against `--max-rooms-per-user`).
    pub(crate) creator: String,
    pub(crate) last_seq: u64,
    pub(crate) invite_only: bool,
    pub(crate) members: Vec<MemberRow>,
    pub(crate) recent: Vec<MessageRow>,
    pub(crate) bans: Vec<BanRow>,
    pub(crate) invitations: Vec<InviteRow>,
}

/// A stored ban of a room.
pub(crate) struct BanRow {
    pub(crate) user: String,
    pub(crate) by: String,
    pub(crate) reason: Option<String>,
    /// When, in ms since the epoch.
    pub(crate) ts: u64,
}

/// A stored ban of an account from the whole server (`admin_ban`).
#[derive(Debug, Clone)]
pub(crate) struct AccountBanRow {
    pub(crate) user: String,
    /// The operator who banned it.
    pub(crate) by: String,
    pub(crate) reason: Option<String>,
    /// When it ends, in ms since the epoch (`None`: when an operator lifts it).
    pub(crate) until: Option<u64>,
    /// When it was made, in ms since the epoch.
    pub(crate) ts: u64,
}

/// A stored invitation to a room.
pub(crate) struct InviteRow {
    pub(crate) user: String,
    pub(crate) by: String,
    /// Whether the `invited` event reached the user (else it is kept for them).
    pub(crate) delivered: bool,
}

/// A stored member of a room.
pub(crate) struct MemberRow {
    pub(crate) user: String,
    /// `owner`, `op` or `member`.
    pub(crate) role: String,
    /// When they joined, in ms since the epoch (0 for members from before schema 3).
    pub(crate) joined: u64,
}

/// A stored session.
pub(crate) struct SessionRow {
    pub(crate) hash: [u8; 32],
    pub(crate) user: String,
    /// When it was last used, in ms since the Unix epoch.
    pub(crate) used: u64,
}

/// Everything read back at start-up.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub(crate) users: Vec<(String, String)>,
    pub(crate) rooms: Vec<RoomRow>,
    /// Kept DMs (`to` is the recipient), oldest first.
    pub(crate) dms: Vec<DmRow>,
    pub(crate) sessions: Vec<SessionRow>,
    /// (name, last seq) of deleted rooms.
    pub(crate) deleted_rooms: Vec<(String, u64)>,
    /// The names of deleted accounts.
    pub(crate) retired: Vec<String>,
    /// Every stored DM, by conversation then seq.
    pub(crate) conversations: Vec<DmRow>,
    /// Nonces used in the last day.
    pub(crate) nonces: Vec<NonceRow>,
    /// (user, blocked).
    pub(crate) blocks: Vec<(String, String)>,
    /// Accounts banned from the server, expired bans included.
    pub(crate) account_bans: Vec<AccountBanRow>,
    /// Every read marker.
    pub(crate) markers: Vec<MarkerRow>,
    /// (room, sender, seq) of each room message newer than its sender's marker
    /// there, by room then seq.
    pub(crate) authored: Vec<(String, String, u64)>,
}

/// A store backend: where the writer's batches go and history is read from.
pub(crate) trait Backend: Send + Sync + 'static {
    /// A connection for the writer thread (the only one that writes).
    fn writer(&self) -> Result<Box<dyn BatchWriter>, StoreError>;

    /// Stored messages of `room` for a history query: with `after`, the oldest
    /// `limit` with seq in (after, below); otherwise the newest `limit` below `below`.
    /// Oldest first.
    fn history(
        &self,
        room: &str,
        after: Option<u64>,
        below: u64,
        limit: usize,
    ) -> Result<Vec<MessageRow>, StoreError>;

    /// Stored DMs between `viewer` and `with` that `viewer` sees, selected as
    /// [`Backend::history`] selects messages. Oldest first.
    fn dm_history(
        &self,
        viewer: &str,
        with: &str,
        after: Option<u64>,
        below: u64,
        limit: usize,
    ) -> Result<Vec<DmRow>, StoreError>;
}

/// The writer's side of a backend.
pub(crate) trait BatchWriter: Send {
    /// Applies every submission's writes in one transaction; a submission whose
    /// writes fail is rolled back alone. Returns which submissions are committed.
    fn commit(&mut self, batch: &[&[Write]]) -> Result<Vec<bool>, StoreError>;
}

struct Submission<T> {
    writes: Vec<Write>,
    payload: T,
}

type Waker = Box<dyn FnOnce() + Send>;

struct Shared {
    /// Submissions queued and not yet handed back.
    queued: AtomicUsize,
    /// The server is stopping and its deadline passed: nothing more is committed.
    discard: AtomicBool,
    /// The last batch failed to commit (for `/readyz`).
    failing: AtomicBool,
    metrics: StoreMetrics,
    /// Callbacks of connections that stopped reading because the queue was high.
    waiting: Mutex<Vec<Waker>>,
}

/// An open store, and (once started) its writer thread.
pub(crate) struct Store<T: Send + 'static> {
    backend: Arc<dyn Backend>,
    submissions: Option<Sender<Submission<T>>>,
    receiver: Option<Receiver<Submission<T>>>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Store<T> {
    /// Opens (creating if needed) the SQLite store in `dir`, takes the directory's
    /// lock, migrates the schema, and reads everything back; `history_len` messages
    /// per room.
    pub(crate) fn open(
        dir: &Path,
        sync: SyncMode,
        history_len: usize,
    ) -> Result<(Self, Snapshot), StoreError> {
        let (backend, snapshot) = sqlite::Sqlite::open(dir, sync, history_len)?;
        Ok((Store::new(Arc::new(backend)), snapshot))
    }

    fn new(backend: Arc<dyn Backend>) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAP);
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            discard: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            metrics: StoreMetrics::default(),
            waiting: Mutex::new(Vec::new()),
        });
        Store {
            backend,
            submissions: Some(tx),
            receiver: Some(rx),
            shared,
            writer: None,
        }
    }

    /// Starts the writer. After each group commit, `on_commit` gets the batch's
    /// payloads in submission order, each with whether its writes are committed; what
    /// it returns (writes that turned out to be needed, with their payloads) goes
    /// into the next batch, ahead of anything queued.
    pub(crate) fn start(
        &mut self,
        on_commit: impl FnMut(Vec<(T, bool)>) -> Vec<(Vec<Write>, T)> + Send + 'static,
    ) -> Result<(), StoreError> {
        let Some(rx) = self.receiver.take() else {
            return Ok(());
        };
        let conn = self.backend.writer()?;
        let shared = Arc::clone(&self.shared);
        let writer = thread::Builder::new()
            .name("parlor-store".into())
            .spawn(move || write_loop(&rx, conn, &shared, on_commit))
            .map_err(|source| StoreError::Dir {
                dir: PathBuf::from("."),
                source,
            })?;
        self.writer = Some(writer);
        Ok(())
    }

    /// Whether writes can be stored now (for `/readyz`): the writer runs and its last
    /// commit succeeded. Err: why not.
    pub(crate) fn ready(&self) -> Result<(), String> {
        match &self.writer {
            Some(writer) if writer.is_finished() => Err("the store's writer stopped".into()),
            _ if self.shared.failing.load(Ordering::Relaxed) => {
                Err("the store's last commit failed (see the log)".into())
            }
            _ => Ok(()),
        }
    }

    /// Commit counters, for `/metrics`.
    pub(crate) fn metrics(&self) -> &StoreMetrics {
        &self.shared.metrics
    }

    /// Queues writes for the next group commit; `payload` comes back after it. Never
    /// blocks: if the queue is full (see `QUEUE_CAP`) or the writer has stopped, the
    /// payload is returned and nothing is stored.
    pub(crate) fn submit(&self, writes: Vec<Write>, payload: T) -> Result<(), T> {
        let Some(tx) = &self.submissions else {
            return Err(payload);
        };
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        match tx.try_send(Submission { writes, payload }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(s) | TrySendError::Disconnected(s)) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                log::error!("store: a submission was refused (queue full or writer stopped)");
                Err(s.payload)
            }
        }
    }

    /// Whether the queue is at its high mark (a cheap check before `wait_if_behind`).
    pub(crate) fn behind(&self) -> bool {
        self.shared.queued.load(Ordering::Relaxed) >= BACKLOG_HIGH
    }

    /// If the queue is high, keeps `wake` to call once it is down to half and returns
    /// true: the caller stops reading its client until then.
    pub(crate) fn wait_if_behind(&self, wake: impl FnOnce() + Send + 'static) -> bool {
        let mut waiting = self.shared.waiting.lock();
        if self.shared.queued.load(Ordering::Acquire) < BACKLOG_HIGH {
            return false;
        }
        waiting.push(Box::new(wake));
        true
    }

    /// Whether every submission so far has been committed and handed back.
    pub(crate) fn idle(&self) -> bool {
        self.shared.queued.load(Ordering::Acquire) == 0
    }

    /// From now on the writer commits nothing: what is queued comes back as not
    /// committed (the server is stopping and can no longer answer it).
    pub(crate) fn discard_pending(&self) {
        self.shared.discard.store(true, Ordering::Release);
    }

    /// Stored messages of `room` for a history query; see [`Backend::history`].
    pub(crate) fn history(
        &self,
        room: &str,
        after: Option<u64>,
        below: u64,
        limit: usize,
    ) -> Result<Vec<MessageRow>, StoreError> {
        self.backend.history(room, after, below, limit)
    }

    /// Stored DMs of a conversation for a `dm_history` query; see
    /// [`Backend::dm_history`].
    pub(crate) fn dm_history(
        &self,
        viewer: &str,
        with: &str,
        after: Option<u64>,
        below: u64,
        limit: usize,
    ) -> Result<Vec<DmRow>, StoreError> {
        self.backend.dm_history(viewer, with, after, below, limit)
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

/// The writer thread: takes what `on_commit` asked for last time and everything
/// queued since the last commit (up to `MAX_BATCH`), commits it in one transaction,
/// hands the payloads back in order.
fn write_loop<T>(
    rx: &Receiver<Submission<T>>,
    mut conn: Box<dyn BatchWriter>,
    shared: &Shared,
    mut on_commit: impl FnMut(Vec<(T, bool)>) -> Vec<(Vec<Write>, T)>,
) {
    let mut carried: Vec<Submission<T>> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut carried);
        if batch.is_empty() {
            match rx.recv() {
                Ok(first) => batch.push(first),
                Err(_) => return,
            }
        }
        let room = MAX_BATCH.saturating_sub(batch.len());
        batch.extend(rx.try_iter().take(room));
        let count = batch.len();
        let committed = commit_batch(&mut *conn, shared, &batch);
        let followups = on_commit(
            batch
                .into_iter()
                .map(|s| s.payload)
                .zip(committed)
                .collect(),
        );
        // Follow-ups count as queued until they too are handed back.
        shared.queued.fetch_add(followups.len(), Ordering::AcqRel);
        carried = followups
            .into_iter()
            .map(|(writes, payload)| Submission { writes, payload })
            .collect();
        let left = shared.queued.fetch_sub(count, Ordering::AcqRel) - count;
        if left <= BACKLOG_LOW {
            let wakers = std::mem::take(&mut *shared.waiting.lock());
            for wake in wakers {
                wake();
            }
        }
    }
}

/// Commits one batch (or, once the server gives up on it, nothing); returns which
/// submissions are committed.
fn commit_batch<T>(
    conn: &mut dyn BatchWriter,
    shared: &Shared,
    batch: &[Submission<T>],
) -> Vec<bool> {
    if shared.discard.load(Ordering::Acquire) {
        return vec![false; batch.len()];
    }
    let writes: usize = batch.iter().map(|s| s.writes.len()).sum();
    let started = Instant::now();
    let lists: Vec<&[Write]> = batch.iter().map(|s| &s.writes[..]).collect();
    let result = conn.commit(&lists);
    shared.failing.store(result.is_err(), Ordering::Relaxed);
    let committed = result.unwrap_or_else(|e| {
        log::error!("store: a batch of {writes} writes failed to commit: {e}");
        vec![false; batch.len()]
    });
    shared.metrics.commit_time.observe(started.elapsed());
    shared.metrics.commits.inc();
    shared.metrics.writes.add(writes as u64);
    committed
}

/// Sets `user`'s password hash in the database of `dir` while no server runs there
/// (taking the directory's lock, so a running server refuses it with
/// [`StoreError::Locked`]), and revokes the user's sessions. Returns how many sessions
/// went, or `None` if there is no such account.
pub(crate) fn set_password_offline(
    dir: &Path,
    user: &str,
    hash: &str,
) -> Result<Option<usize>, StoreError> {
    offline::set_password_offline(dir, user, hash)
}

#[cfg(test)]
mod tests;
