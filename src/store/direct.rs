//! The SQLite side of what concerns users rather than rooms: DM conversations, send
//! nonces and blocks (their writes, their start-up read, and `dm_history`).

use rusqlite::{Connection, params};

use crate::store::messages::{attach_reactions, pair, run};
use crate::store::{Changes, DmRow, NonceRow, Place, Snapshot, Write};

/// Applies a DM, nonce or block write (`sqlite::apply` hands only these here).
pub(super) fn apply(tx: &rusqlite::Savepoint<'_>, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::Dm(row) => {
            let (a, b) = pair(&row.from, &row.to);
            run(
                tx,
                "INSERT INTO dms (a, b, seq, sender, text, ts, reply_to, hidden)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    a,
                    b,
                    row.seq,
                    row.from,
                    row.text,
                    row.ts,
                    row.reply_to,
                    row.hidden
                ],
            )?;
        }
        Write::Nonce {
            user,
            nonce,
            op,
            target,
            answer,
            ts,
        } => run(
            tx,
            "INSERT OR REPLACE INTO nonces (user, nonce, op, target, answer, ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![user, nonce, op, target, answer, ts],
        )?,
        Write::PruneNonces { before } => {
            run(tx, "DELETE FROM nonces WHERE ts < ?1", params![before])?;
        }
        Write::Block { user, blocked, on } => {
            let sql = if *on {
                "INSERT OR IGNORE INTO blocks (user, blocked) VALUES (?1, ?2)"
            } else {
                "DELETE FROM blocks WHERE user = ?1 AND blocked = ?2"
            };
            run(tx, sql, params![user, blocked])?;
        }
        Write::Marker { .. } => super::markers::apply(tx, write)?,
        _ => {}
    }
    Ok(())
}

/// Reads back conversations, kept DMs, nonces used since `nonces_since` (ms since the
/// epoch) and blocks.
pub(super) fn load(
    conn: &Connection,
    snapshot: &mut Snapshot,
    nonces_since: u64,
) -> rusqlite::Result<()> {
    let mut dms = conn.prepare(
        "SELECT a, b, seq, sender, text, ts, reply_to, hidden, edited_ts, deleted
         FROM dms ORDER BY a, b, seq",
    )?;
    snapshot.conversations = dms
        .query_map([], |r| {
            let a: String = r.get(0)?;
            let b: String = r.get(1)?;
            let from: String = r.get(3)?;
            let to = if from == a { b } else { a };
            Ok(DmRow {
                seq: r.get(2)?,
                from,
                to,
                text: r.get(4)?,
                ts: r.get(5)?,
                reply_to: r.get(6)?,
                hidden: r.get(7)?,
                changes: Changes {
                    edited_ts: r.get(8)?,
                    deleted: r.get(9)?,
                    reactions: Default::default(),
                },
            })
        })?
        .collect::<Result<_, _>>()?;
    load_reactions(conn, &mut snapshot.conversations)?;
    let mut kept = conn.prepare(
        "SELECT recipient, sender, text, ts, seq, reply_to FROM pending_dms ORDER BY id",
    )?;
    snapshot.dms = kept
        .query_map([], |r| {
            Ok(DmRow {
                to: r.get(0)?,
                from: r.get(1)?,
                text: r.get(2)?,
                ts: r.get(3)?,
                seq: r.get(4)?,
                reply_to: r.get(5)?,
                hidden: false,
                changes: Changes::default(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut nonces =
        conn.prepare("SELECT user, nonce, op, target, answer, ts FROM nonces WHERE ts >= ?1")?;
    snapshot.nonces = nonces
        .query_map([nonces_since], |r| {
            Ok(NonceRow {
                user: r.get(0)?,
                nonce: r.get(1)?,
                op: r.get(2)?,
                target: r.get(3)?,
                answer: r.get(4)?,
                ts: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut blocks = conn.prepare("SELECT user, blocked FROM blocks")?;
    snapshot.blocks = blocks
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    super::markers::load(conn, snapshot)
}

/// The DMs between `viewer` and `with` that `viewer` sees: with `after`, the oldest
/// `limit` with seq in (after, below); otherwise the newest `limit` below `below`.
/// Oldest first.
pub(super) fn history(
    conn: &Connection,
    viewer: &str,
    with: &str,
    after: Option<u64>,
    below: u64,
    limit: usize,
) -> rusqlite::Result<Vec<DmRow>> {
    let (a, b) = pair(viewer, with);
    let row = |r: &rusqlite::Row<'_>| {
        let from: String = r.get(1)?;
        let to = if from == viewer { with } else { viewer };
        Ok(DmRow {
            seq: r.get(0)?,
            to: to.to_owned(),
            from,
            text: r.get(2)?,
            ts: r.get(3)?,
            reply_to: r.get(4)?,
            hidden: r.get(5)?,
            changes: Changes {
                edited_ts: r.get(6)?,
                deleted: r.get(7)?,
                reactions: Default::default(),
            },
        })
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // What the viewer sees: all they sent, and what was not hidden from them.
    const SEEN: &str = "a = ?1 AND b = ?2 AND (hidden = 0 OR sender = ?3)";
    let rows = match after {
        Some(after) => conn
            .prepare_cached(&format!(
                "SELECT seq, sender, text, ts, reply_to, hidden, edited_ts, deleted FROM dms
                 WHERE {SEEN} AND seq > ?4 AND seq < ?5 ORDER BY seq LIMIT ?6"
            ))?
            .query_map(params![a, b, viewer, after, below, limit], row)?
            .collect::<Result<_, _>>()?,
        None => {
            let mut rows: Vec<DmRow> = conn
                .prepare_cached(&format!(
                    "SELECT seq, sender, text, ts, reply_to, hidden, edited_ts, deleted FROM dms
                     WHERE {SEEN} AND seq < ?4 ORDER BY seq DESC LIMIT ?5"
                ))?
                .query_map(params![a, b, viewer, below, limit], row)?
                .collect::<Result<_, _>>()?;
            rows.reverse();
            rows
        }
    };
    let mut rows = rows;
    let place = Place::Dm(a.to_owned(), b.to_owned());
    attach_reactions(conn, &place, &mut rows, |r| (r.seq, &mut r.changes))?;
    Ok(rows)
}

/// Fills in the reactions of every stored DM (`rows`, by conversation then seq).
fn load_reactions(conn: &Connection, rows: &mut [DmRow]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT a, b, seq, emoji, user FROM dm_reactions")?;
    let mut index = std::collections::HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let (a, b) = pair(&row.from, &row.to);
        index.insert((a.to_owned(), b.to_owned(), row.seq), i);
    }
    let mut found = stmt.query([])?;
    while let Some(r) = found.next()? {
        let key: (String, String, u64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        if let Some(&i) = index.get(&key) {
            let users = rows[i].changes.reactions.entry(r.get(3)?).or_default();
            users.insert(r.get(4)?);
        }
    }
    Ok(())
}
