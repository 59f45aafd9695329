//! Read markers, typing and presence in the terminal (issue 17 item 9): the marker
//! follows what is shown, `/rooms` counts what is unread, `/away` and `/back`, and
//! typing shown sparingly.

use std::time::{Duration, Instant};

use crate::client::{ClientError, Event, Target, Unread};
use crate::terminal::chat::Chat;

/// A user typing in one place is shown again only after this long.
const TYPING_QUIET: Duration = Duration::from_secs(10);

impl Chat {
    /// Moves the read marker to `seq` (what was just shown). A server without read
    /// markers refuses; that is not worth a word.
    pub(super) fn mark_read(&mut self, target: Target<'_>, seq: u64) {
        match self.call(|c| c.mark_read(target, seq)) {
            Ok(_) | Err(ClientError::Server { .. }) => {}
            Err(e) => self.fail(e),
        }
    }

    /// Whether an event gets a line: not `read` (another device of this user), not a
    /// typing indicator ending, nor one shown a moment ago. A DM shown moves its
    /// conversation's marker.
    pub(super) fn worth_showing(&mut self, event: &Event) -> bool {
        match event {
            Event::Read { .. } => false,
            Event::Typing { active: false, .. } => false,
            Event::Typing {
                room, with, user, ..
            } => {
                let place = room.as_ref().or(with.as_ref()).cloned().unwrap_or_default();
                let now = Instant::now();
                self.typing_shown
                    .retain(|_, at| now.duration_since(*at) < TYPING_QUIET);
                self.typing_shown
                    .insert((user.clone(), place), now)
                    .is_none()
            }
            Event::DirectMessage(dm) => {
                if dm.from != self.me {
                    self.mark_read(Target::With(&dm.with), dm.seq);
                }
                true
            }
            _ => true,
        }
    }

    /// `/away [MESSAGE]`.
    pub(super) fn away(&mut self, message: Option<String>) -> Result<(), ClientError> {
        self.call(|c| c.away(message.as_deref()))?;
        self.screen.notice("you show as away: /back to return");
        Ok(())
    }

    /// `/back`.
    pub(super) fn away_back(&mut self) -> Result<(), ClientError> {
        self.call(|c| c.back())?;
        self.screen.notice("you show as online");
        Ok(())
    }

    /// The unread counts, if the server keeps read markers.
    pub(super) fn unread_counts(&mut self) -> Option<Unread> {
        self.call(|c| c.unread()).ok()
    }

    /// `, N unread` for a room with unread messages.
    pub(super) fn unread_words(&self, unread: Option<&Unread>, room: &str) -> String {
        match unread.and_then(|u| u.rooms.get(room)) {
            Some(line) if line.count > 0 => format!(", {} unread", line.count),
            _ => String::new(),
        }
    }
}
