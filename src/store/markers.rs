//! The SQLite side of read markers (issue 17 item 5): their writes, and at start-up
//! the markers and each member's own room messages after their marker (what the chat
//! layer subtracts from a room's unread count).

use rusqlite::{Connection, params};

use crate::store::messages::run;
use crate::store::{MarkerPlace, MarkerRow, Snapshot, Write};

/// The `kind` column of a marker: a room, or a DM conversation named by the other
/// party.
fn kind_and_target(place: &MarkerPlace) -> (&'static str, &str) {
    match place {
        MarkerPlace::Room(room) => ("room", room),
        MarkerPlace::With(with) => ("dm", with),
    }
}

/// Stores a marker (`Write::Marker`); it only ever moves forward.
pub(super) fn apply(tx: &rusqlite::Savepoint<'_>, write: &Write) -> rusqlite::Result<()> {
    if let Write::Marker { user, place, seq } = write {
        let (kind, target) = kind_and_target(place);
        run(
            tx,
            "INSERT INTO read_markers (user, kind, target, seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user, kind, target) DO UPDATE SET seq = max(seq, excluded.seq)",
            params![user, kind, target, seq],
        )?;
    }
    Ok(())
}

/// Reads back every marker, and the seqs of room messages newer than their author's
/// marker in that room (all of them where the author has none), by room then seq.
pub(super) fn load(conn: &Connection, snapshot: &mut Snapshot) -> rusqlite::Result<()> {
    let mut markers = conn.prepare("SELECT user, kind, target, seq FROM read_markers")?;
    snapshot.markers = markers
        .query_map([], |r| {
            let kind: String = r.get(1)?;
            let target: String = r.get(2)?;
            let place = if kind == "room" {
                MarkerPlace::Room(target)
            } else {
                MarkerPlace::With(target)
            };
            Ok(MarkerRow {
                user: r.get(0)?,
                place,
                seq: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut own = conn.prepare(
        "SELECT m.room, m.sender, m.seq FROM messages m
         LEFT JOIN read_markers r
           ON r.user = m.sender AND r.kind = 'room' AND r.target = m.room
         WHERE m.seq > COALESCE(r.seq, 0) ORDER BY m.room, m.seq",
    )?;
    snapshot.authored = own
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(())
}
