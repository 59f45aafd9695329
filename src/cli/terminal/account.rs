//! The commands about one's own account: password, deletion, blocking.

use crate::client::ClientError;
use crate::terminal::chat::{Chat, Flow};

impl Chat {
    /// `/password`: asks for the old password and the new one twice, without echo
    /// on a terminal, then changes it. This connection stays logged in; the user's
    /// other sessions end.
    pub(super) fn change_password(&mut self) -> Result<(), ClientError> {
        let Some(old) = self.ask("current password: ", true) else {
            return Ok(());
        };
        let Some(new) = self.ask("new password: ", true) else {
            return Ok(());
        };
        let Some(again) = self.ask("new password again: ", true) else {
            return Ok(());
        };
        if new != again {
            self.screen
                .notice("the two new passwords differ; the password is unchanged");
            return Ok(());
        }
        self.call(|c| c.change_password(&old, &new))?;
        self.screen
            .notice("password changed; your other sessions are logged out");
        Ok(())
    }

    /// `/delete-account`: asks for the password and for a confirmation, then deletes
    /// the account; the chat ends once it is gone.
    pub(super) fn delete_account(&mut self) -> Result<Flow, ClientError> {
        let Some(password) = self.ask("password: ", true) else {
            return Ok(Flow::Continue);
        };
        let question = format!(
            "delete account {} for good? Its rooms pass on, the name cannot be used again. Type yes to confirm: ",
            self.me
        );
        if self.ask(&question, false).as_deref() != Some("yes") {
            self.screen.notice("account kept");
            return Ok(Flow::Continue);
        }
        self.call(|c| c.delete_account(&password))?;
        self.screen
            .notice(format!("account {} deleted; goodbye", self.me));
        Ok(Flow::Quit)
    }

    /// `/block USER` (`block`) or `/unblock USER`.
    pub(super) fn block(&mut self, user: &str, block: bool) -> Result<(), ClientError> {
        if block {
            self.call(|c| c.block(user))?;
            self.screen.notice(format!(
                "blocked {user}: their direct messages and invitations are dropped"
            ));
        } else {
            self.call(|c| c.unblock(user))?;
            self.screen.notice(format!("unblocked {user}"));
        }
        Ok(())
    }

    /// Asks for one line (a password when `secret`); `None` when input ended or
    /// failed (said on the screen), which cancels the command.
    fn ask(&mut self, prompt: &str, secret: bool) -> Option<String> {
        match self.keyboard.ask(&mut self.screen, prompt, secret) {
            Ok(Some(line)) => Some(line),
            Ok(None) => {
                self.screen.notice("no answer; cancelled");
                None
            }
            Err(e) => {
                self.screen
                    .notice(format!("cannot read the answer ({e}); cancelled"));
                None
            }
        }
    }
}
