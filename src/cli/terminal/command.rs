//! What the user types: a line parsed into a [`Command`], and `/help`.

use crate::terminal::admin::{self, AdminCommand};

/// Every command with its usage and what it does: `/help` prints this table, and a
/// usage error quotes the usage from it.
const COMMANDS: [(&str, &str); 29] = [
    (
        "/join ROOM",
        "join ROOM, make it the current room, show its last messages",
    ),
    (
        "/create ROOM [TOPIC]",
        "create ROOM (you are its first member) and make it current",
    ),
    ("/leave", "leave the current room"),
    ("/rooms", "list every room"),
    ("/who", "list the members of the current room"),
    (
        "/dm USER [TEXT]",
        "send USER a direct message, or without TEXT open your conversation with USER \
         (lines you type then go to USER until /join)",
    ),
    (
        "/history [N]",
        "show the last N messages of the current room or conversation (default 20)",
    ),
    (
        "/reply SEQ TEXT",
        "answer message #SEQ of the current room or conversation",
    ),
    ("/edit SEQ TEXT", "replace the text of your message #SEQ"),
    (
        "/delete SEQ",
        "delete message #SEQ (yours, or any in a room where you are owner or op)",
    ),
    ("/react SEQ EMOJI", "react to message #SEQ with EMOJI"),
    ("/topic TEXT", "set the current room's topic (owner or op)"),
    ("/op USER", "make USER an op of the current room (owner)"),
    (
        "/deop USER",
        "make USER a plain member of the current room again (owner)",
    ),
    (
        "/kick USER [REASON]",
        "remove USER from the current room (owner or op)",
    ),
    (
        "/ban USER [REASON]",
        "remove USER from the current room and keep them out (owner or op)",
    ),
    (
        "/unban USER",
        "let USER join the current room again (owner or op)",
    ),
    (
        "/invite USER",
        "let USER join the current room once, even if it is private (owner or op)",
    ),
    (
        "/private on|off",
        "make the current room invite-only, or open to all (owner)",
    ),
    (
        "/delete-room",
        "delete the current room and its history (owner)",
    ),
    (
        "/block USER",
        "drop direct messages and invitations from USER",
    ),
    ("/unblock USER", "stop blocking USER"),
    (
        "/password",
        "change your password (asks for the old one and the new one)",
    ),
    (
        "/delete-account",
        "delete your account for good (asks for your password, then to confirm)",
    ),
    (
        admin::USAGE,
        "server operators only: close, ban, list connections, announce, reload, set passwords, make accounts",
    ),
    (
        "/away [MESSAGE]",
        "show as away to those who share a room or conversation with you",
    ),
    ("/back", "no longer away"),
    ("/help", "show this list"),
    (
        "/quit",
        "leave parlor chat (so do Ctrl-D and Ctrl-C at the prompt)",
    ),
];

/// One line typed by the user, parsed. More commands may come: match with a wildcard
/// arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// A plain line: a message to the current room.
    Say(String),
    /// `/join ROOM`.
    Join(String),
    /// `/leave`: leave the current room.
    Leave,
    /// `/rooms`.
    Rooms,
    /// `/who`: the members of the current room.
    Who,
    /// `/dm USER TEXT`.
    Dm {
        /// The recipient.
        to: String,
        /// The message.
        text: String,
    },
    /// `/history [N]`: the last N messages of the current room or conversation.
    History(Option<u64>),
    /// `/dm USER`: open the conversation with USER (typed lines go there).
    OpenDm(String),
    /// `/reply SEQ TEXT` in the current room or conversation.
    Reply {
        /// The message answered.
        seq: u64,
        /// The answer.
        text: String,
    },
    /// `/edit SEQ TEXT`.
    Edit {
        /// One's own message.
        seq: u64,
        /// Its new text.
        text: String,
    },
    /// `/delete SEQ`.
    Delete(u64),
    /// `/react SEQ EMOJI`.
    React {
        /// The message.
        seq: u64,
        /// The reaction.
        emoji: String,
    },
    /// `/create ROOM [TOPIC]`.
    Create {
        /// The new room's name.
        room: String,
        /// Its topic, the rest of the line, if any.
        topic: Option<String>,
    },
    /// `/topic TEXT`: set the current room's topic.
    Topic(String),
    /// `/op USER`: make USER an op of the current room.
    Op(String),
    /// `/deop USER`: make USER a plain member of the current room.
    Deop(String),
    /// `/kick USER [REASON]`.
    Kick {
        /// Who to remove from the current room.
        user: String,
        /// Why, the rest of the line, if given.
        reason: Option<String>,
    },
    /// `/ban USER [REASON]`.
    Ban {
        /// Who to ban from the current room.
        user: String,
        /// Why, the rest of the line, if given.
        reason: Option<String>,
    },
    /// `/unban USER`.
    Unban(String),
    /// `/invite USER` to the current room.
    Invite(String),
    /// `/private on|off`: whether the current room is invite-only.
    Private(bool),
    /// `/delete-room`: delete the current room.
    DeleteRoom,
    /// `/block USER`.
    Block(String),
    /// `/unblock USER`.
    Unblock(String),
    /// `/password`: change the password (asked for afterwards, without echo).
    Password,
    /// `/delete-account` (the password and a confirmation are asked for afterwards).
    DeleteAccount,
    /// `/away [MESSAGE]`: show as away to others.
    Away(Option<String>),
    /// `/back`: no longer away.
    Back,
    /// `/quit`.
    Quit,
    /// `/help`.
    Help,
    /// `/admin ...`: a server operator's op.
    Admin(AdminCommand),
}

/// Why a typed line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The line starts with `/` and a word that names no command.
    #[error(
        "unknown command {0}: /help lists the commands; start a line with // to send it as text"
    )]
    Unknown(String),
    /// A known command with the wrong arguments; holds its usage, e.g. `/join ROOM`.
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// Parses one typed line: `Ok(None)` for a blank line, a [`Command::Say`] for text,
/// and a command for a line starting with `/`. A line starting with `//` is text that
/// starts with `/`.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line.to_owned())));
    };
    if rest.starts_with('/') {
        return Ok(Some(Command::Say(rest.to_owned())));
    }
    let (name, args) = split_word(rest);
    let command = match name {
        "join" => match split_word(args) {
            (room, "") if !room.is_empty() => Command::Join(room.to_owned()),
            _ => return Err(usage_of("/join")),
        },
        "create" => match split_word(args) {
            ("", _) => return Err(usage_of("/create")),
            (room, topic) => Command::Create {
                room: room.to_owned(),
                topic: (!topic.is_empty()).then(|| topic.to_owned()),
            },
        },
        "dm" => match split_word(args) {
            ("", _) => return Err(usage_of("/dm")),
            (to, "") => Command::OpenDm(to.to_owned()),
            (to, text) => Command::Dm {
                to: to.to_owned(),
                text: text.to_owned(),
            },
        },
        "history" if args.is_empty() => Command::History(None),
        "history" => match args.parse::<u64>() {
            Ok(count) if count > 0 => Command::History(Some(count)),
            _ => return Err(usage_of("/history")),
        },
        "leave" => bare(args, "/leave", Command::Leave)?,
        "rooms" => bare(args, "/rooms", Command::Rooms)?,
        "who" => bare(args, "/who", Command::Who)?,
        "quit" => bare(args, "/quit", Command::Quit)?,
        "help" => bare(args, "/help", Command::Help)?,
        "admin" => Command::Admin(admin::parse(args)?),
        _ => protocol2(name, args)?,
    };
    Ok(Some(command))
}

/// Parses the commands of protocol 2's ops: moderation, room settings, accounts.
fn protocol2(name: &str, args: &str) -> Result<Command, ParseError> {
    let command = match name {
        "topic" if !args.is_empty() => Command::Topic(args.to_owned()),
        "topic" => return Err(usage_of("/topic")),
        "op" => Command::Op(one_word(args, "/op")?),
        "deop" => Command::Deop(one_word(args, "/deop")?),
        "kick" => {
            let (user, reason) = user_and_reason(args, "/kick")?;
            Command::Kick { user, reason }
        }
        "ban" => {
            let (user, reason) = user_and_reason(args, "/ban")?;
            Command::Ban { user, reason }
        }
        "unban" => Command::Unban(one_word(args, "/unban")?),
        "invite" => Command::Invite(one_word(args, "/invite")?),
        "private" => match args {
            "on" => Command::Private(true),
            "off" => Command::Private(false),
            _ => return Err(usage_of("/private")),
        },
        "delete-room" => bare(args, "/delete-room", Command::DeleteRoom)?,
        "block" => Command::Block(one_word(args, "/block")?),
        "unblock" => Command::Unblock(one_word(args, "/unblock")?),
        "password" => bare(args, "/password", Command::Password)?,
        "delete-account" => bare(args, "/delete-account", Command::DeleteAccount)?,
        "reply" => {
            let (seq, text) = seq_and_rest(args, "/reply")?;
            Command::Reply { seq, text }
        }
        "edit" => {
            let (seq, text) = seq_and_rest(args, "/edit")?;
            Command::Edit { seq, text }
        }
        "delete" => match args.trim().parse::<u64>() {
            Ok(seq) => Command::Delete(seq),
            Err(_) => return Err(usage_of("/delete")),
        },
        "react" => {
            let (seq, emoji) = seq_and_rest(args, "/react")?;
            Command::React { seq, emoji }
        }
        "away" => Command::Away((!args.trim().is_empty()).then(|| args.trim().to_owned())),
        "back" => bare(args, "/back", Command::Back)?,
        _ => return Err(ParseError::Unknown(format!("/{name}"))),
    };
    Ok(command)
}

/// The one word `name` takes (a user name), else its usage error.
fn one_word(args: &str, name: &'static str) -> Result<String, ParseError> {
    match split_word(args) {
        (word, "") if !word.is_empty() => Ok(word.to_owned()),
        _ => Err(usage_of(name)),
    }
}

/// A message's seq and, as the rest of the line, the text (not empty) it takes.
fn seq_and_rest(args: &str, name: &'static str) -> Result<(u64, String), ParseError> {
    match split_word(args) {
        (seq, rest) if !rest.is_empty() => match seq.strip_prefix('#').unwrap_or(seq).parse() {
            Ok(seq) => Ok((seq, rest.to_owned())),
            Err(_) => Err(usage_of(name)),
        },
        _ => Err(usage_of(name)),
    }
}

/// A user name and, as the rest of the line, an optional reason.
fn user_and_reason(args: &str, name: &'static str) -> Result<(String, Option<String>), ParseError> {
    match split_word(args) {
        ("", _) => Err(usage_of(name)),
        (user, reason) => Ok((
            user.to_owned(),
            (!reason.is_empty()).then(|| reason.to_owned()),
        )),
    }
}

/// Splits off the first whitespace-separated word; the rest comes back trimmed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

/// `command` if it was given no arguments, else its usage error.
fn bare(args: &str, name: &'static str, command: Command) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(usage_of(name))
    }
}

/// The usage error of the command `name` (e.g. `/join`), quoted from [`COMMANDS`].
fn usage_of(name: &'static str) -> ParseError {
    let usage = COMMANDS
        .iter()
        .map(|(usage, _)| *usage)
        .find(|usage| usage.split(' ').next() == Some(name))
        .unwrap_or(name);
    ParseError::Usage(usage)
}

/// The lines `/help` prints.
pub fn help() -> Vec<String> {
    let width = COMMANDS
        .iter()
        .map(|(usage, _)| usage.len())
        .max()
        .unwrap_or_default();
    let mut lines = vec![
        "type a line to send it to the current room (start it with // to send a line that begins with /)"
            .to_owned(),
    ];
    lines.extend(
        COMMANDS
            .iter()
            .map(|(usage, what)| format!("  {usage:<width$}  {what}")),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Command {
        match parse(line) {
            Ok(Some(command)) => command,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn plain_lines_are_messages() {
        assert_eq!(parsed("hello there"), Command::Say("hello there".into()));
        assert_eq!(parsed("  indented\r\n"), Command::Say("  indented".into()));
        assert_eq!(parsed("//shrug"), Command::Say("/shrug".into()));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   \t"), Ok(None));
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parsed("/join lobby"), Command::Join("lobby".into()));
        assert_eq!(parsed("/join   lobby  "), Command::Join("lobby".into()));
        assert_eq!(parsed("/leave"), Command::Leave);
        assert_eq!(parsed("/rooms"), Command::Rooms);
        assert_eq!(parsed("/who"), Command::Who);
        assert_eq!(parsed("/quit"), Command::Quit);
        assert_eq!(parsed("/help"), Command::Help);
        assert_eq!(parsed("/history"), Command::History(None));
        assert_eq!(parsed("/history 5"), Command::History(Some(5)));
        assert_eq!(
            parsed("/dm bob  see you  at noon"),
            Command::Dm {
                to: "bob".into(),
                text: "see you  at noon".into()
            }
        );
        assert_eq!(
            parsed("/create lobby"),
            Command::Create {
                room: "lobby".into(),
                topic: None
            }
        );
        assert_eq!(
            parsed("/create lobby say hello"),
            Command::Create {
                room: "lobby".into(),
                topic: Some("say hello".into())
            }
        );
    }

    #[test]
    fn protocol_2_commands_parse() {
        assert_eq!(
            parsed("/topic  all about  cats "),
            Command::Topic("all about  cats".into())
        );
        assert_eq!(parsed("/op bob"), Command::Op("bob".into()));
        assert_eq!(parsed("/deop bob"), Command::Deop("bob".into()));
        assert_eq!(
            parsed("/kick bob"),
            Command::Kick {
                user: "bob".into(),
                reason: None
            }
        );
        assert_eq!(
            parsed("/ban bob  spam, again"),
            Command::Ban {
                user: "bob".into(),
                reason: Some("spam, again".into())
            }
        );
        assert_eq!(parsed("/unban bob"), Command::Unban("bob".into()));
        assert_eq!(parsed("/invite carol"), Command::Invite("carol".into()));
        assert_eq!(parsed("/private on"), Command::Private(true));
        assert_eq!(parsed("/private off"), Command::Private(false));
        assert_eq!(parsed("/delete-room"), Command::DeleteRoom);
        assert_eq!(parsed("/away"), Command::Away(None));
        assert_eq!(
            parsed("/away  at lunch "),
            Command::Away(Some("at lunch".into()))
        );
        assert_eq!(parsed("/back"), Command::Back);
        assert_eq!(parsed("/block eve"), Command::Block("eve".into()));
        assert_eq!(parsed("/unblock eve"), Command::Unblock("eve".into()));
        assert_eq!(parsed("/password"), Command::Password);
        assert_eq!(parsed("/delete-account"), Command::DeleteAccount);
    }

    #[test]
    fn bad_commands_say_how() {
        let usage = |line| match parse(line) {
            Err(ParseError::Usage(usage)) => usage,
            other => panic!("{line:?} parsed as {other:?}"),
        };
        assert_eq!(usage("/join"), "/join ROOM");
        assert_eq!(usage("/join a b"), "/join ROOM");
        assert_eq!(usage("/create"), "/create ROOM [TOPIC]");
        assert_eq!(usage("/dm"), "/dm USER [TEXT]");
        assert_eq!(usage("/reply 3"), "/reply SEQ TEXT");
        assert_eq!(usage("/edit x hi"), "/edit SEQ TEXT");
        assert_eq!(usage("/delete"), "/delete SEQ");
        assert_eq!(usage("/react 2"), "/react SEQ EMOJI");
        assert_eq!(
            parse("/dm bob").unwrap(),
            Some(Command::OpenDm("bob".into()))
        );
        assert_eq!(
            parse("/reply #3 yes, that").unwrap(),
            Some(Command::Reply {
                seq: 3,
                text: "yes, that".into()
            })
        );
        assert_eq!(parse("/delete 4").unwrap(), Some(Command::Delete(4)));
        assert_eq!(
            parse("/react 4 +1").unwrap(),
            Some(Command::React {
                seq: 4,
                emoji: "+1".into()
            })
        );
        assert_eq!(usage("/history 0"), "/history [N]");
        assert_eq!(usage("/history many"), "/history [N]");
        assert_eq!(usage("/quit now"), "/quit");
        assert_eq!(usage("/topic"), "/topic TEXT");
        assert_eq!(usage("/op"), "/op USER");
        assert_eq!(usage("/op a b"), "/op USER");
        assert_eq!(usage("/kick"), "/kick USER [REASON]");
        assert_eq!(usage("/private maybe"), "/private on|off");
        assert_eq!(usage("/password now"), "/password");
        assert_eq!(usage("/delete-room x"), "/delete-room");
        assert_eq!(
            parse("/frobnicate x"),
            Err(ParseError::Unknown("/frobnicate".into()))
        );
        assert_eq!(
            ParseError::Usage("/join ROOM").to_string(),
            "usage: /join ROOM"
        );
    }

    #[test]
    fn help_lists_every_command() {
        let text = help().join("\n");
        for name in [
            "/join",
            "/create",
            "/leave",
            "/rooms",
            "/who",
            "/dm",
            "/history",
            "/topic",
            "/op",
            "/deop",
            "/kick",
            "/ban",
            "/unban",
            "/invite",
            "/private",
            "/delete-room",
            "/block",
            "/unblock",
            "/password",
            "/delete-account",
            "/help",
            "/quit",
        ] {
            assert!(text.contains(name), "{name} missing from help:\n{text}");
            assert!(
                matches!(parse(name), Ok(_) | Err(ParseError::Usage(_))),
                "{name} in help but not parsed"
            );
        }
    }
}
