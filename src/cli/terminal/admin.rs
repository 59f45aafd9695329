//! `/admin ...` in `parlor chat`: the server operators' ops, parsed from a typed line
//! and run through [`crate::Client`]'s methods. A new password (`set-password`,
//! `signup`) is asked for without echo on a terminal, else it is the next line of
//! stdin (for scripts).

use jiff::Timestamp;

use crate::client::ClientError;
use crate::terminal::chat::Chat;
use crate::terminal::command::ParseError;

/// The usage line of `/admin` (in `/help` and usage errors).
pub(super) const USAGE: &str = "/admin kill USER [REASON] | ban USER [SECS] [REASON] | unban USER | connections | announce TEXT | reload | set-password USER | signup USER";

/// One `/admin` command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminCommand {
    /// `/admin kill USER [REASON]`.
    Kill {
        /// The account whose connections close.
        user: String,
        /// Why (logged by the server).
        reason: Option<String>,
    },
    /// `/admin ban USER [SECS] [REASON]`.
    Ban {
        /// The account.
        user: String,
        /// For how long, in seconds (`None`: until unbanned).
        secs: Option<u64>,
        /// Why (told to the user at login).
        reason: Option<String>,
    },
    /// `/admin unban USER`.
    Unban(String),
    /// `/admin connections`.
    Connections,
    /// `/admin announce TEXT`.
    Announce(String),
    /// `/admin reload`.
    Reload,
    /// `/admin set-password USER`: the password is the next line typed.
    SetPassword(String),
    /// `/admin signup USER`: the password is the next line typed.
    Signup(String),
}

/// Parses what follows `/admin`.
pub(super) fn parse(args: &str) -> Result<AdminCommand, ParseError> {
    let usage = || ParseError::Usage(USAGE);
    let (action, rest) = split_word(args);
    let (user, more) = split_word(rest);
    let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let one = |command: fn(String) -> AdminCommand| {
        if user.is_empty() || !more.is_empty() {
            Err(usage())
        } else {
            Ok(command(user.to_owned()))
        }
    };
    match action {
        "kill" if !user.is_empty() => Ok(AdminCommand::Kill {
            user: user.to_owned(),
            reason: text(more),
        }),
        "ban" if !user.is_empty() => {
            let (first, after) = split_word(more);
            let (secs, reason) = match first.parse::<u64>() {
                Ok(secs) if secs > 0 => (Some(secs), after),
                _ => (None, more),
            };
            Ok(AdminCommand::Ban {
                user: user.to_owned(),
                secs,
                reason: text(reason),
            })
        }
        "unban" => one(AdminCommand::Unban),
        "set-password" => one(AdminCommand::SetPassword),
        "signup" => one(AdminCommand::Signup),
        "connections" if rest.is_empty() => Ok(AdminCommand::Connections),
        "reload" if rest.is_empty() => Ok(AdminCommand::Reload),
        "announce" if !rest.is_empty() => Ok(AdminCommand::Announce(rest.to_owned())),
        _ => Err(usage()),
    }
}

fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

impl Chat {
    /// Runs an `/admin` command and shows its outcome in words.
    pub(super) fn admin(&mut self, command: AdminCommand) -> Result<(), ClientError> {
        let said = match command {
            AdminCommand::Kill { user, reason } => {
                let closed = self.call(|c| c.admin_kill(&user, reason.as_deref()))?;
                format!("{user}: {closed} connection(s) closed")
            }
            AdminCommand::Ban { user, secs, reason } => {
                let until = self.call(|c| c.admin_ban(&user, secs, reason.as_deref()))?;
                match until.and_then(|ms| Timestamp::from_millisecond(ms as i64).ok()) {
                    Some(at) => format!("{user} is banned until {at}"),
                    None => format!("{user} is banned until unbanned"),
                }
            }
            AdminCommand::Unban(user) => {
                self.call(|c| c.admin_unban(&user))?;
                format!("{user} is no longer banned")
            }
            AdminCommand::Connections => {
                for row in self.call(|c| c.admin_connections())? {
                    let user = row.user.as_deref().unwrap_or("(not logged in)");
                    self.screen.line(format!(
                        "  {user} from {} on {} since {} ({} bytes in, {} out)",
                        row.peer,
                        row.listener,
                        Timestamp::from_millisecond(row.since as i64)
                            .map_or_else(|_| row.since.to_string(), |t| t.to_string()),
                        row.bytes_in,
                        row.bytes_out
                    ));
                }
                return Ok(());
            }
            AdminCommand::Announce(text) => {
                let delivered = self.call(|c| c.admin_announce(&text))?;
                format!("announced to {delivered} connection(s)")
            }
            AdminCommand::Reload => self.call(|c| c.admin_reload())?,
            AdminCommand::SetPassword(user) => return self.ask_password(PasswordFor::Set(user)),
            AdminCommand::Signup(user) => return self.ask_password(PasswordFor::Signup(user)),
        };
        self.screen.notice(said);
        Ok(())
    }

    /// Asks for the password: on a terminal without echo (the line editor is idle
    /// until the next prompt, and keeps no history of it), else it is the next line
    /// of stdin.
    fn ask_password(&mut self, wanted: PasswordFor) -> Result<(), ClientError> {
        let user = match &wanted {
            PasswordFor::Set(user) | PasswordFor::Signup(user) => user.clone(),
        };
        if self.keyboard.waits_for_prompt() {
            match rpassword::prompt_password(format!("new password for {user}: ")) {
                Ok(password) => return self.send_password(wanted, &password),
                Err(e) => {
                    self.screen
                        .notice(format!("no password read ({e}); nothing sent"));
                    return Ok(());
                }
            }
        }
        self.password_for = Some(wanted);
        self.screen.notice(format!(
            "type the password for {user} on the next line (sent, not shown in the chat)"
        ));
        Ok(())
    }

    /// Sends the password typed after `/admin set-password` or `/admin signup`.
    pub(super) fn send_password(
        &mut self,
        wanted: PasswordFor,
        password: &str,
    ) -> Result<(), ClientError> {
        let said = match wanted {
            PasswordFor::Set(user) => {
                self.call(|c| c.admin_set_password(&user, password))?;
                format!("the password of {user} is set; its sessions are revoked")
            }
            PasswordFor::Signup(user) => {
                self.call(|c| c.admin_signup(&user, password))?;
                format!("account {user} created")
            }
        };
        self.screen.notice(said);
        Ok(())
    }
}

/// What the next typed line is the password for.
#[derive(Debug)]
pub(super) enum PasswordFor {
    Set(String),
    Signup(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_commands_parse() {
        let kill = parse("kill ada too loud").unwrap();
        let reason = Some("too loud".to_owned());
        assert_eq!(
            kill,
            AdminCommand::Kill {
                user: "ada".into(),
                reason
            }
        );
        let ban = parse("ban ada 60 spam").unwrap();
        let (secs, reason) = (Some(60), Some("spam".to_owned()));
        assert_eq!(
            ban,
            AdminCommand::Ban {
                user: "ada".into(),
                secs,
                reason
            }
        );
        let forever = parse("ban ada spam links").unwrap();
        let reason = Some("spam links".to_owned());
        let expected = AdminCommand::Ban {
            user: "ada".into(),
            secs: None,
            reason,
        };
        assert_eq!(forever, expected);
        assert_eq!(
            parse("unban ada").unwrap(),
            AdminCommand::Unban("ada".into())
        );
        assert_eq!(parse("connections").unwrap(), AdminCommand::Connections);
        assert_eq!(
            parse("announce back soon").unwrap(),
            AdminCommand::Announce("back soon".into())
        );
        assert_eq!(parse("reload").unwrap(), AdminCommand::Reload);
        assert_eq!(
            parse("set-password ada").unwrap(),
            AdminCommand::SetPassword("ada".into())
        );
        assert_eq!(
            parse("signup eve").unwrap(),
            AdminCommand::Signup("eve".into())
        );
    }

    #[test]
    fn bad_admin_commands_say_how() {
        for bad in [
            "",
            "kill",
            "unban",
            "unban a b",
            "announce",
            "reload now",
            "frob x",
        ] {
            assert_eq!(parse(bad), Err(ParseError::Usage(USAGE)), "{bad:?}");
        }
    }
}
