//! Read markers (issue 17 item 5): how far each user has read each room and
//! conversation, and what a room's unread count must leave out (one's own messages).
//!
//! Counting is cheap by construction: a room's unread count is its messages after the
//! marker (`last_seq - marker`, seqs being gap-free) minus the reader's own messages
//! after it, and only those own seqs are kept here (pruned as the marker moves past
//! them), so a count is a subtraction and a binary search, never a scan of history.
//! A conversation counts from its own list of incoming seqs (`ConvState::unread`).

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::store::{MarkerPlace, MarkerRow};

#[derive(Default)]
struct Inner {
    /// user -> place -> the seq read up to.
    marks: HashMap<String, HashMap<MarkerPlace, u64>>,
    /// (room, author) -> the author's own message seqs after their marker, ascending.
    own: HashMap<(String, String), Vec<u64>>,
}

/// Every user's read markers.
#[derive(Default)]
pub(crate) struct Markers {
    inner: Mutex<Inner>,
}

impl Markers {
    /// Brings back stored markers and the own seqs after them (`authored`: room,
    /// author, seq, ascending per room).
    pub(crate) fn restore(&self, markers: Vec<MarkerRow>, authored: Vec<(String, String, u64)>) {
        let mut inner = self.inner.lock();
        for row in markers {
            inner
                .marks
                .entry(row.user)
                .or_default()
                .insert(row.place, row.seq);
        }
        for (room, author, seq) in authored {
            inner.own.entry((room, author)).or_default().push(seq);
        }
    }

    /// `user`'s marker at `place`; 0 if none.
    pub(crate) fn get(&self, user: &str, place: &MarkerPlace) -> u64 {
        let inner = self.inner.lock();
        inner
            .marks
            .get(user)
            .and_then(|m| m.get(place))
            .copied()
            .unwrap_or(0)
    }

    /// Moves `user`'s marker at `place` forward to `seq`; returns false (and changes
    /// nothing) if it is there or further already.
    pub(crate) fn advance(&self, user: &str, place: &MarkerPlace, seq: u64) -> bool {
        let mut inner = self.inner.lock();
        let mark = inner
            .marks
            .entry(user.to_owned())
            .or_default()
            .entry(place.clone())
            .or_insert(0);
        if *mark >= seq {
            return false;
        }
        *mark = seq;
        if let MarkerPlace::Room(room) = place
            && let Some(seqs) = inner.own.get_mut(&(room.clone(), user.to_owned()))
        {
            let read = seqs.partition_point(|&s| s <= seq);
            seqs.drain(..read);
        }
        true
    }

    /// Notes that `author` wrote message `seq` of `room`.
    pub(crate) fn authored(&self, room: &str, author: &str, seq: u64) {
        let mut inner = self.inner.lock();
        let key = (room.to_owned(), author.to_owned());
        inner.own.entry(key).or_default().push(seq);
    }

    /// `user`'s marker in `room` and the unread count there: messages with seq in
    /// (max(marker, first_seq - 1), last_seq] not by `user`.
    pub(crate) fn room_unread(
        &self,
        room: &str,
        user: &str,
        first_seq: u64,
        last_seq: u64,
    ) -> (u64, u64) {
        let inner = self.inner.lock();
        let place = MarkerPlace::Room(room.to_owned());
        let marker = inner
            .marks
            .get(user)
            .and_then(|m| m.get(&place))
            .copied()
            .unwrap_or(0);
        let floor = marker.max(first_seq.saturating_sub(1)).min(last_seq);
        let own = inner
            .own
            .get(&(room.to_owned(), user.to_owned()))
            .map_or(0, |seqs| seqs.len() - seqs.partition_point(|&s| s <= floor));
        (
            marker.min(last_seq),
            (last_seq - floor).saturating_sub(own as u64),
        )
    }
}
