//! The commands that act on the current room through protocol 2's ops: topic, roles,
//! kicks, bans, invitations, invite-only, deletion.

use crate::client::{ClientError, Role};
use crate::terminal::Command;
use crate::terminal::chat::Chat;

impl Chat {
    /// Runs a room command on the current room and says what it did; the server's
    /// refusal (`forbidden`, `not_member`...) is shown by the caller.
    pub(super) fn moderate(&mut self, command: Command) -> Result<(), ClientError> {
        let Some(room) = self.current() else {
            return Ok(());
        };
        let room = room.as_str();
        let done = match command {
            Command::Topic(topic) => {
                self.call(|c| c.set_topic(room, &topic))?;
                format!("topic of {room} set: {topic}")
            }
            Command::Op(user) => {
                self.call(|c| c.set_role(room, &user, Role::Op))?;
                format!("{user} is now an op of {room}")
            }
            Command::Deop(user) => {
                self.call(|c| c.set_role(room, &user, Role::Member))?;
                format!("{user} is now a plain member of {room}")
            }
            Command::Kick { user, reason } => {
                self.call(|c| c.kick(room, &user, reason.as_deref()))?;
                format!("removed {user} from {room}")
            }
            Command::Ban { user, reason } => {
                self.call(|c| c.ban(room, &user, reason.as_deref()))?;
                format!("banned {user} from {room}")
            }
            Command::Unban(user) => {
                self.call(|c| c.unban(room, &user))?;
                format!("{user} may join {room} again")
            }
            Command::Invite(user) => {
                self.call(|c| c.invite(room, &user))?;
                format!("invited {user} to {room}")
            }
            Command::Private(invite_only) => {
                self.call(|c| c.set_room(room, invite_only))?;
                if invite_only {
                    format!("{room} is now invite-only: /invite USER lets someone in")
                } else {
                    format!("{room} is open to everyone again")
                }
            }
            Command::DeleteRoom => {
                self.call(|c| c.delete_room(room))?;
                self.room = None;
                format!("deleted {room}; no current room now")
            }
            // The chat loop hands this only the commands above.
            other => format!("{other:?} is not a room command"),
        };
        self.screen.notice(done);
        Ok(())
    }
}
