//! DM conversations and what acts on one message: `/dm USER` (open a conversation),
//! `/history` of it, `/reply`, `/edit`, `/delete` and `/react` in the current room or
//! conversation.

use crate::client::{ClientError, HistoryQuery, Place};
use crate::terminal::Command;
use crate::terminal::chat::{Chat, Outgoing, Target};
use crate::terminal::format_dm;

/// DMs shown when a conversation is opened.
const OPEN_HISTORY: u64 = 10;

impl Chat {
    /// `/dm USER`: typed lines go to USER from now on; shows the newest DMs.
    pub(super) fn open_dm(&mut self, user: String) -> Result<(), ClientError> {
        let query = HistoryQuery {
            limit: Some(OPEN_HISTORY),
            ..HistoryQuery::default()
        };
        self.dm_history(&user, query)?;
        self.screen.notice(format!(
            "conversation with {user}: lines you type go to {user} until /join"
        ));
        self.with = Some(user);
        Ok(())
    }

    /// Shows DMs with `with`, oldest first.
    pub(super) fn dm_history(
        &mut self,
        with: &str,
        query: HistoryQuery,
    ) -> Result<(), ClientError> {
        let messages = self.call(|c| c.dm_history(with, query))?;
        if messages.is_empty() {
            self.screen.notice(format!("no messages with {with} yet"));
        }
        for dm in &messages {
            let line = format_dm(dm, &self.zone);
            self.screen.line(line);
        }
        Ok(())
    }

    /// `/reply SEQ TEXT` to the current room or conversation.
    pub(super) fn reply(&mut self, seq: u64, text: String) -> Result<(), ClientError> {
        let Some(to) = self.place() else {
            return Ok(());
        };
        let mut outgoing = Outgoing::new(to, text);
        outgoing.reply_to = Some(seq);
        self.post(outgoing)
    }

    /// `/edit`, `/delete` or `/react` on a message of the current room or
    /// conversation; says what it did (others see it as an event).
    pub(super) fn change(&mut self, command: Command) -> Result<(), ClientError> {
        let Some(target) = self.place() else {
            return Ok(());
        };
        let place = match &target {
            Target::Room(room) => Place::Room(room),
            Target::User(user) => Place::With(user),
        };
        let done = match command {
            Command::Edit { seq, text } => {
                self.call(|c| c.edit(place, seq, &text))?;
                format!("edited #{seq}")
            }
            Command::Delete(seq) => {
                self.call(|c| c.delete(place, seq))?;
                format!("deleted #{seq}")
            }
            Command::React { seq, emoji } => {
                self.call(|c| c.react(place, seq, &emoji))?;
                format!("reacted {emoji} to #{seq}")
            }
            // The chat loop hands this only the commands above.
            other => format!("{other:?} does not act on a message"),
        };
        self.screen.notice(done);
        Ok(())
    }
}
