//! Who may come into a room (protocol 2): whether it is invite-only, its bans, its
//! open invitations; and the `invited` events kept for users with no protocol-2
//! connection until their next login.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::protocol::json::{self as protocol, ByEvent};
use crate::store::RoomRow;

/// A ban of one user from a room.
#[derive(Clone, Debug)]
pub(crate) struct Ban {
    pub(crate) by: String,
    pub(crate) reason: Option<String>,
    /// When, in ms since the epoch.
    pub(crate) ts: u64,
}

/// A room's access rules, kept under the room's lock.
#[derive(Default)]
pub(crate) struct Access {
    /// Only invited users may join.
    pub(crate) invite_only: bool,
    /// Banned users by name: they cannot join.
    pub(crate) bans: BTreeMap<String, Ban>,
    /// Users who may join once (invite-only or not: an invitation outlives a switch).
    pub(crate) invited: BTreeSet<String>,
    /// The room was deleted: a request that found it before cannot change it.
    pub(crate) deleted: bool,
}

/// `invited` events for users who had no protocol-2 connection when invited: handed
/// over once, after their next login or resume on a protocol-2 connection.
#[derive(Default)]
pub(crate) struct KeptInvites {
    /// By user: (room, encoded `invited` event), oldest first.
    by_user: Mutex<HashMap<String, Vec<(String, Bytes)>>>,
}

impl KeptInvites {
    /// Keeps `frame` (an invitation to `room`) for `user`; a newer invitation to the
    /// same room replaces the older.
    pub(crate) fn keep(&self, user: &str, room: &str, frame: Bytes) {
        let mut all = self.by_user.lock();
        let kept = all.entry(user.to_owned()).or_default();
        kept.retain(|(r, _)| r != room);
        kept.push((room.to_owned(), frame));
    }

    /// Takes every kept event of `user`, oldest first.
    pub(crate) fn take(&self, user: &str) -> Vec<Bytes> {
        self.by_user
            .lock()
            .remove(user)
            .map(|kept| kept.into_iter().map(|(_, frame)| frame).collect())
            .unwrap_or_default()
    }

    /// Drops the kept invitation of `user` to `room` (used, or the room is gone).
    pub(crate) fn forget(&self, user: &str, room: &str) {
        let mut all = self.by_user.lock();
        if let Some(kept) = all.get_mut(user) {
            kept.retain(|(r, _)| r != room);
            if kept.is_empty() {
                all.remove(user);
            }
        }
    }
}

impl Access {
    /// A room's access rules as stored; the invitations whose event never reached
    /// the user are kept in `kept` again.
    pub(crate) fn restore(row: &mut RoomRow, kept: &KeptInvites) -> Access {
        let bans = std::mem::take(&mut row.bans)
            .into_iter()
            .map(|b| {
                let ban = Ban {
                    by: b.by,
                    reason: b.reason,
                    ts: b.ts,
                };
                (b.user, ban)
            })
            .collect();
        let mut invited = BTreeSet::new();
        for invite in std::mem::take(&mut row.invitations) {
            if !invite.delivered {
                kept.keep(
                    &invite.user,
                    &row.name,
                    invited_event(&row.name, &invite.by),
                );
            }
            invited.insert(invite.user);
        }
        Access {
            invite_only: row.invite_only,
            bans,
            invited,
            deleted: false,
        }
    }
}

/// The `invited` event: `by` invited the receiving user to `room`.
pub(crate) fn invited_event(room: &str, by: &str) -> Bytes {
    protocol::event("invited", &ByEvent { room, by })
}
