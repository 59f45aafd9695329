//! What the server sends, as one line of text each.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::client::{DirectMessage, Event, Message, MessageChanges, Role};

/// Renders a server event as one line: local time, `[room]` (or `[dm]`), sender and
/// text, or what happened in words. Events that carry no `ts` are stamped with `now`.
/// Control characters in anything the server sent are escaped, so one event is always
/// one line and nobody can move the cursor or recolour the screen by sending escape
/// codes.
pub fn format_event(event: &Event, now: Timestamp, zone: &TimeZone) -> String {
    let at = clock(now, zone);
    let line = match event {
        Event::Message(message) => return format_message(message, zone),
        Event::DirectMessage(dm) => return format_dm(dm, zone),
        Event::Dm { from, text, ts } => format!("{} [dm] {from}: {text}", clock_ms(*ts, zone)),
        Event::Joined { room, user } => format!("{at} [{room}] * {user} joined"),
        Event::Left { room, user } => format!("{at} [{room}] * {user} left"),
        Event::Closing { reason } => {
            format!("{at} * the server is closing the connection ({reason})")
        }
        Event::Role {
            room,
            user,
            role,
            by,
        } => format!("{at} [{room}] * {by} made {user} {}", role_words(*role)),
        Event::Topic { room, topic, by } if topic.is_empty() => {
            format!("{at} [{room}] * {by} cleared the topic")
        }
        Event::Topic { room, topic, by } => format!("{at} [{room}] * {by} set the topic: {topic}"),
        Event::Kicked {
            room,
            user,
            by,
            reason,
            banned,
        } => {
            let did = if *banned { "banned" } else { "removed" };
            format!("{at} [{room}] * {by} {did} {user}{}", because(reason))
        }
        Event::Invited { room, by } => {
            format!("{at} * {by} invited you to {room}: /join {room} to enter")
        }
        Event::RoomDeleted { room, by } => format!("{at} [{room}] * {by} deleted the room"),
        Event::Other(frame) if frame["event"] == "announcement" => format!(
            "{at} * announcement from {}: {}",
            frame["by"].as_str().unwrap_or("the server"),
            frame["text"].as_str().unwrap_or_default()
        ),
        Event::Other(frame) => format!("{at} * event {frame}"),
        activity => activity_words(activity, &at),
    };
    printable(&line)
}

/// What people do to messages and how they are (protocol 2): edits, deletions,
/// reactions, reads on another device, typing, presence.
fn activity_words(event: &Event, at: &str) -> String {
    match event {
        Event::Edited {
            room,
            with,
            seq,
            text,
            by,
            ..
        } => format!("{at} {} * {by} edited #{seq}: {text}", place(room, with)),
        Event::Deleted {
            room,
            with,
            seq,
            by,
        } => format!("{at} {} * {by} deleted #{seq}", place(room, with)),
        Event::Reaction {
            room,
            with,
            seq,
            emoji,
            user,
            added,
        } => {
            let did = if *added { "reacted" } else { "took back" };
            format!(
                "{at} {} * {user} {did} {emoji} on #{seq}",
                place(room, with)
            )
        }
        Event::Read { room, with, seq } => match (room, with) {
            (Some(room), _) => format!("{at} [{room}] * read up to #{seq} elsewhere"),
            (_, with) => format!(
                "{at} [dm {}] * read up to #{seq} elsewhere",
                with.as_deref().unwrap_or("?")
            ),
        },
        Event::Typing {
            room, user, active, ..
        } => {
            let place = room.as_ref().map_or("dm", String::as_str);
            let doing = if *active {
                "is typing…"
            } else {
                "stopped typing"
            };
            format!("{at} [{place}] * {user} {doing}")
        }
        Event::Presence {
            user,
            status,
            message,
        } => match (status.as_str(), message) {
            ("away", Some(message)) => format!("{at} * {user} is away: {message}"),
            ("offline", _) => format!("{at} * {user} went offline"),
            (status, _) => format!("{at} * {user} is {status}"),
        },
        other => format!("{at} * {other:?}"),
    }
}

/// `[room]`, or `[dm USER]` for an event about a DM conversation.
fn place(room: &Option<String>, with: &Option<String>) -> String {
    match (room, with) {
        (Some(room), _) => format!("[{room}]"),
        (None, Some(with)) => format!("[dm {with}]"),
        (None, None) => "[?]".to_owned(),
    }
}

/// A message's text as shown: `[deleted]`, or the text with ` (edited)` and its
/// reactions (` [👍 ada bob]`).
fn shown_text(text: &str, changes: &MessageChanges) -> String {
    if changes.deleted {
        return "[deleted]".to_owned();
    }
    let mut shown = text.to_owned();
    if changes.edited_ts.is_some() {
        shown.push_str(" (edited)");
    }
    for (emoji, users) in &changes.reactions {
        shown.push_str(&format!(" [{emoji} {}]", users.join(" ")));
    }
    shown
}

/// What a role change made of a member, in words.
fn role_words(role: Role) -> &'static str {
    match role {
        Role::Owner => "the owner",
        Role::Op => "an op",
        Role::Member => "a plain member",
    }
}

/// ` (reason)` when there is one.
fn because(reason: &Option<String>) -> String {
    match reason.as_deref() {
        Some(reason) if !reason.is_empty() => format!(" ({reason})"),
        _ => String::new(),
    }
}

/// Renders a room message (live or from `history`) as one line, like [`format_event`],
/// ending in its `#SEQ` (what `/reply`, `/edit`, `/delete` and `/react` name).
pub fn format_message(message: &Message, zone: &TimeZone) -> String {
    printable(&format!(
        "{} [{}] {}{}: {}  #{}",
        clock_ms(message.ts, zone),
        message.room,
        message.from,
        reply_mark(message.reply_to),
        shown_text(&message.text, &message.changes),
        message.seq
    ))
}

/// Renders a protocol-2 DM (live or from `dm_history`) as one line: `[dm]` for one
/// received, `[dm to USER]` for one this user sent (from another connection).
pub fn format_dm(dm: &DirectMessage, zone: &TimeZone) -> String {
    let direction = if dm.from == dm.with && dm.from != dm.to {
        String::new()
    } else {
        format!(" to {}", dm.to)
    };
    printable(&format!(
        "{} [dm{direction}] {}{}: {}  #{}",
        clock_ms(dm.ts, zone),
        dm.from,
        reply_mark(dm.reply_to),
        shown_text(&dm.text, &dm.changes),
        dm.seq
    ))
}

/// ` (re #SEQ)` for a reply.
fn reply_mark(reply_to: Option<u64>) -> String {
    reply_to.map_or_else(String::new, |seq| format!(" (re #{seq})"))
}

/// `HH:MM:SS` of a protocol `ts` (milliseconds since the epoch) in `zone`.
fn clock_ms(ts: u64, zone: &TimeZone) -> String {
    let at = i64::try_from(ts)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok());
    match at {
        Some(at) => clock(at, zone),
        // Only a broken server sends a ts beyond the year 9999; say so, do not fail.
        None => "??:??:??".to_owned(),
    }
}

/// `HH:MM:SS` of `at` in `zone`.
fn clock(at: Timestamp, zone: &TimeZone) -> String {
    zone.to_datetime(at).strftime("%H:%M:%S").to_string()
}

/// `text` with every control character (newline, escape, ...) written as its Rust
/// escape (`\n`, `\u{1b}`).
pub(super) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-11-23 00:00:00.123 UTC, plus an hour, two minutes and three seconds.
    const TS: u64 = 1_763_856_000_123 + 3_723_000;

    fn now() -> Timestamp {
        Timestamp::from_second(1_763_856_000 + 59).unwrap()
    }

    #[test]
    fn events_format_as_one_line_with_local_time() {
        let zone = TimeZone::UTC;
        let message = Event::Message(Message {
            room: "lobby".into(),
            from: "bob".into(),
            text: "hi ada".into(),
            seq: 3,
            ts: TS,
            reply_to: None,
            changes: Default::default(),
        });
        assert_eq!(
            format_event(&message, now(), &zone),
            "01:02:03 [lobby] bob: hi ada  #3"
        );
        let dm = Event::Dm {
            from: "bob".into(),
            text: "psst".into(),
            ts: TS,
        };
        assert_eq!(format_event(&dm, now(), &zone), "01:02:03 [dm] bob: psst");
        let joined = Event::Joined {
            room: "lobby".into(),
            user: "bob".into(),
        };
        assert_eq!(
            format_event(&joined, now(), &zone),
            "00:00:59 [lobby] * bob joined"
        );
        let left = Event::Left {
            room: "lobby".into(),
            user: "bob".into(),
        };
        assert_eq!(
            format_event(&left, now(), &zone),
            "00:00:59 [lobby] * bob left"
        );
        let closing = Event::Closing {
            reason: "shutdown".into(),
        };
        assert_eq!(
            format_event(&closing, now(), &zone),
            "00:00:59 * the server is closing the connection (shutdown)"
        );
        let other = Event::Other(serde_json::json!({"event": "new"}));
        assert_eq!(
            format_event(&other, now(), &zone),
            r#"00:00:59 * event {"event":"new"}"#
        );
        let announced = Event::Other(serde_json::json!(
            {"event": "announcement", "text": "restart at noon", "by": "root", "ts": 1}
        ));
        assert_eq!(
            format_event(&announced, now(), &zone),
            "00:00:59 * announcement from root: restart at noon"
        );
    }

    #[test]
    fn protocol_2_events_read_as_words() {
        let zone = TimeZone::UTC;
        let shown = |event: Event| format_event(&event, now(), &zone);
        assert_eq!(
            shown(Event::Topic {
                room: "lobby".into(),
                topic: "cats".into(),
                by: "ada".into()
            }),
            "00:00:59 [lobby] * ada set the topic: cats"
        );
        assert_eq!(
            shown(Event::Role {
                room: "lobby".into(),
                user: "bob".into(),
                role: Role::Op,
                by: "ada".into()
            }),
            "00:00:59 [lobby] * ada made bob an op"
        );
        assert_eq!(
            shown(Event::Kicked {
                room: "lobby".into(),
                user: "bob".into(),
                by: "ada".into(),
                reason: Some("spam".into()),
                banned: false
            }),
            "00:00:59 [lobby] * ada removed bob (spam)"
        );
        assert_eq!(
            shown(Event::Kicked {
                room: "lobby".into(),
                user: "bob".into(),
                by: "ada".into(),
                reason: None,
                banned: true
            }),
            "00:00:59 [lobby] * ada banned bob"
        );
        assert_eq!(
            shown(Event::Invited {
                room: "den".into(),
                by: "ada".into()
            }),
            "00:00:59 * ada invited you to den: /join den to enter"
        );
        assert_eq!(
            shown(Event::RoomDeleted {
                room: "den".into(),
                by: "ada".into()
            }),
            "00:00:59 [den] * ada deleted the room"
        );
        let dm = DirectMessage {
            from: "bob".into(),
            to: "ada".into(),
            with: "bob".into(),
            seq: 4,
            ts: TS,
            text: "psst".into(),
            reply_to: Some(2),
            changes: Default::default(),
        };
        assert_eq!(
            shown(Event::DirectMessage(dm.clone())),
            "01:02:03 [dm] bob (re #2): psst  #4"
        );
        let own = DirectMessage {
            from: "ada".into(),
            to: "bob".into(),
            with: "bob".into(),
            reply_to: None,
            ..dm
        };
        assert_eq!(format_dm(&own, &zone), "01:02:03 [dm to bob] ada: psst  #4");
    }

    #[test]
    fn time_is_shown_in_the_given_zone() {
        let zone = TimeZone::fixed(jiff::tz::offset(2));
        let dm = Event::Dm {
            from: "bob".into(),
            text: "psst".into(),
            ts: TS,
        };
        assert_eq!(format_event(&dm, now(), &zone), "03:02:03 [dm] bob: psst");
        let broken = Event::Dm {
            from: "bob".into(),
            text: "psst".into(),
            ts: u64::MAX,
        };
        assert_eq!(
            format_event(&broken, now(), &zone),
            "??:??:?? [dm] bob: psst"
        );
    }

    #[test]
    fn edits_deletes_and_reactions_read_as_words() {
        let zone = TimeZone::UTC;
        let shown = |event: Event| format_event(&event, now(), &zone);
        assert_eq!(
            shown(Event::Edited {
                room: None,
                with: Some("bob".into()),
                seq: 3,
                text: "fixed".into(),
                edited_ts: TS,
                by: "bob".into()
            }),
            "00:00:59 [dm bob] * bob edited #3: fixed"
        );
        assert_eq!(
            shown(Event::Reaction {
                room: Some("lobby".into()),
                with: None,
                seq: 3,
                emoji: "+1".into(),
                user: "ada".into(),
                added: false
            }),
            "00:00:59 [lobby] * ada took back +1 on #3"
        );
        let mut changed = DirectMessage {
            from: "bob".into(),
            to: "ada".into(),
            with: "bob".into(),
            seq: 4,
            ts: TS,
            text: "psst".into(),
            reply_to: Some(2),
            changes: Default::default(),
        };
        changed.changes.edited_ts = Some(TS);
        changed
            .changes
            .reactions
            .insert("+1".into(), vec!["ada".into()]);
        assert_eq!(
            format_dm(&changed, &TimeZone::UTC),
            "01:02:03 [dm] bob (re #2): psst (edited) [+1 ada]  #4"
        );
        changed.changes.deleted = true;
        assert_eq!(
            format_dm(&changed, &TimeZone::UTC),
            "01:02:03 [dm] bob (re #2): [deleted]  #4"
        );
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let message = Message {
            room: "lobby".into(),
            from: "mallory".into(),
            text: "two\nlines \u{1b}[2J\tend".into(),
            seq: 1,
            ts: TS,
            reply_to: None,
            changes: Default::default(),
        };
        assert_eq!(
            format_message(&message, &TimeZone::UTC),
            r"01:02:03 [lobby] mallory: two\nlines \u{1b}[2J\tend  #1"
        );
    }
}
