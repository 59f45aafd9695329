//! What the user types: a line parsed into a [`Command`], and `/help`.

use crate::terminal::admin::{self, AdminCommand};

/// Every command with its usage and what it does: `/help` prints this table, and a
/// usage error quotes the usage from it.
const COMMANDS: [(&str, &str); 10] = [
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
    ("/dm USER TEXT", "send a direct message to USER"),
    (
        "/history [N]",
        "show the last N messages of the current room (default 20)",
    ),
    (
        admin::USAGE,
        "server operators only: close, ban, list connections, announce, reload, set passwords, make accounts",
    ),
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
    /// `/history [N]`: the last N messages of the current room.
    History(Option<u64>),
    /// `/create ROOM [TOPIC]`.
    Create {
        /// The new room's name.
        room: String,
        /// Its topic, the rest of the line, if any.
        topic: Option<String>,
    },
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
            ("", _) | (_, "") => return Err(usage_of("/dm")),
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
        _ => return Err(ParseError::Unknown(format!("/{name}"))),
    };
    Ok(Some(command))
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
    fn bad_commands_say_how() {
        let usage = |line| match parse(line) {
            Err(ParseError::Usage(usage)) => usage,
            other => panic!("{line:?} parsed as {other:?}"),
        };
        assert_eq!(usage("/join"), "/join ROOM");
        assert_eq!(usage("/join a b"), "/join ROOM");
        assert_eq!(usage("/create"), "/create ROOM [TOPIC]");
        assert_eq!(usage("/dm bob"), "/dm USER TEXT");
        assert_eq!(usage("/dm"), "/dm USER TEXT");
        assert_eq!(usage("/history 0"), "/history [N]");
        assert_eq!(usage("/history many"), "/history [N]");
        assert_eq!(usage("/quit now"), "/quit");
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
            "/join", "/create", "/leave", "/rooms", "/who", "/dm", "/history", "/help", "/quit",
        ] {
            assert!(text.contains(name), "{name} missing from help:\n{text}");
            assert!(
                matches!(parse(name), Ok(_) | Err(ParseError::Usage(_))),
                "{name} in help but not parsed"
            );
        }
    }
}
