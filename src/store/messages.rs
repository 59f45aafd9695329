//! The SQLite side of what happens to a message after it is sent (issue 17 items 3
//! and 4): edits, deletion and reactions, their writes, and room history reads that
//! carry them. DM reads attach theirs through `dm_changes`.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use crate::store::{Changes, MessageRow, Place, Write};

/// The stored pair of a conversation: the two names in order (a DM to oneself: the
/// name twice).
pub(super) fn pair<'a>(x: &'a str, y: &'a str) -> (&'a str, &'a str) {
    if x <= y { (x, y) } else { (y, x) }
}

/// One SQL statement (cached) with its parameters.
pub(super) fn run(
    tx: &rusqlite::Savepoint<'_>,
    sql: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<()> {
    tx.prepare_cached(sql)?.execute(args).map(|_| ())
}

/// Applies a new room message, an edit, a deletion or a reaction (`sqlite::apply`
/// hands only these here). A deleted message takes no edit (the `deleted = 0` guard
/// keeps a late edit from bringing text back).
pub(super) fn apply(tx: &rusqlite::Savepoint<'_>, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::Message {
            room,
            seq,
            from,
            text,
            ts,
            reply_to,
        } => {
            run(
                tx,
                "INSERT INTO messages (room, seq, sender, text, ts, reply_to)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![room, seq, from, text, ts, reply_to],
            )?;
            run(
                tx,
                "UPDATE rooms SET next_seq = ?2 + 1 WHERE name = ?1 AND next_seq <= ?2",
                params![room, seq],
            )
        }
        Write::Edit {
            place,
            seq,
            text,
            edited_ts,
        } => match place {
            Place::Room(room) => run(
                tx,
                "UPDATE messages SET text = ?3, edited_ts = ?4
                 WHERE room = ?1 AND seq = ?2 AND deleted = 0",
                params![room, seq, text, edited_ts],
            ),
            Place::Dm(x, y) => {
                let (a, b) = pair(x, y);
                run(
                    tx,
                    "UPDATE dms SET text = ?4, edited_ts = ?5
                     WHERE a = ?1 AND b = ?2 AND seq = ?3 AND deleted = 0",
                    params![a, b, seq, text, edited_ts],
                )
            }
        },
        Write::DeleteMessage { place, seq } => delete_message(tx, place, *seq),
        Write::React {
            place,
            seq,
            emoji,
            user,
            on,
        } => react(tx, place, *seq, emoji, user, *on),
        _ => Ok(()),
    }
}

/// A deleted message keeps its seq, author and time; its text and reactions go.
fn delete_message(tx: &rusqlite::Savepoint<'_>, place: &Place, seq: u64) -> rusqlite::Result<()> {
    match place {
        Place::Room(room) => {
            run(
                tx,
                "UPDATE messages SET text = '', deleted = 1 WHERE room = ?1 AND seq = ?2",
                params![room, seq],
            )?;
            run(
                tx,
                "DELETE FROM reactions WHERE room = ?1 AND seq = ?2",
                params![room, seq],
            )
        }
        Place::Dm(x, y) => {
            let (a, b) = pair(x, y);
            run(
                tx,
                "UPDATE dms SET text = '', deleted = 1 WHERE a = ?1 AND b = ?2 AND seq = ?3",
                params![a, b, seq],
            )?;
            run(
                tx,
                "DELETE FROM dm_reactions WHERE a = ?1 AND b = ?2 AND seq = ?3",
                params![a, b, seq],
            )
        }
    }
}

fn react(
    tx: &rusqlite::Savepoint<'_>,
    place: &Place,
    seq: u64,
    emoji: &str,
    user: &str,
    on: bool,
) -> rusqlite::Result<()> {
    match (place, on) {
        (Place::Room(room), true) => run(
            tx,
            "INSERT OR IGNORE INTO reactions (room, seq, emoji, user) VALUES (?1, ?2, ?3, ?4)",
            params![room, seq, emoji, user],
        ),
        (Place::Room(room), false) => run(
            tx,
            "DELETE FROM reactions WHERE room = ?1 AND seq = ?2 AND emoji = ?3 AND user = ?4",
            params![room, seq, emoji, user],
        ),
        (Place::Dm(x, y), true) => {
            let (a, b) = pair(x, y);
            run(
                tx,
                "INSERT OR IGNORE INTO dm_reactions (a, b, seq, emoji, user)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a, b, seq, emoji, user],
            )
        }
        (Place::Dm(x, y), false) => {
            let (a, b) = pair(x, y);
            run(
                tx,
                "DELETE FROM dm_reactions
                 WHERE a = ?1 AND b = ?2 AND seq = ?3 AND emoji = ?4 AND user = ?5",
                params![a, b, seq, emoji, user],
            )
        }
    }
}

/// The reactions to messages `lo..=hi` of `place`, by seq.
fn reactions(
    conn: &Connection,
    place: &Place,
    lo: u64,
    hi: u64,
) -> rusqlite::Result<HashMap<u64, Changes>> {
    let mut by_seq: HashMap<u64, Changes> = HashMap::new();
    let mut add = |r: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
        let changes = by_seq.entry(r.get(0)?).or_default();
        let users = changes.reactions.entry(r.get(1)?).or_default();
        users.insert(r.get(2)?);
        Ok(())
    };
    match place {
        Place::Room(room) => {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, emoji, user FROM reactions
                 WHERE room = ?1 AND seq >= ?2 AND seq <= ?3",
            )?;
            let mut rows = stmt.query(params![room, lo, hi])?;
            while let Some(r) = rows.next()? {
                add(r)?;
            }
        }
        Place::Dm(x, y) => {
            let (a, b) = pair(x, y);
            let mut stmt = conn.prepare_cached(
                "SELECT seq, emoji, user FROM dm_reactions
                 WHERE a = ?1 AND b = ?2 AND seq >= ?3 AND seq <= ?4",
            )?;
            let mut rows = stmt.query(params![a, b, lo, hi])?;
            while let Some(r) = rows.next()? {
                add(r)?;
            }
        }
    }
    Ok(by_seq)
}

/// Fills in the reactions of `rows` (sorted by seq) of `place`; `changes` gives a
/// row's seq and `Changes`.
pub(super) fn attach_reactions<R>(
    conn: &Connection,
    place: &Place,
    rows: &mut [R],
    changes: impl Fn(&mut R) -> (u64, &mut Changes),
) -> rusqlite::Result<()> {
    let seqs: Vec<u64> = rows.iter_mut().map(|r| changes(r).0).collect();
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
        return Ok(());
    };
    let mut found = reactions(conn, place, first, last)?;
    for row in rows {
        let (seq, row_changes) = changes(row);
        if let Some(c) = found.remove(&seq) {
            row_changes.reactions = c.reactions;
        }
    }
    Ok(())
}

/// Stored messages of `room`: with `after`, the oldest `limit` with seq in (after,
/// below); otherwise the newest `limit` below `below`. Oldest first, with their edits,
/// deletion and reactions.
pub(super) fn query_history(
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
            reply_to: r.get(4)?,
            changes: Changes {
                edited_ts: r.get(5)?,
                deleted: r.get(6)?,
                reactions: Default::default(),
            },
        })
    };
    const COLUMNS: &str = "seq, sender, text, ts, reply_to, edited_ts, deleted";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows: Vec<MessageRow> = match after {
        Some(after) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages
                 WHERE room = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq LIMIT ?4"
            ))?
            .query_map(params![room, after, below, limit], row)?
            .collect::<Result<_, _>>()?,
        None => {
            let mut rows: Vec<MessageRow> = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM messages
                     WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
                ))?
                .query_map(params![room, below, limit], row)?
                .collect::<Result<_, _>>()?;
            rows.reverse();
            rows
        }
    };
    let place = Place::Room(room.to_owned());
    attach_reactions(conn, &place, &mut rows, |r| (r.seq, &mut r.changes))?;
    Ok(rows)
}
