//! The logged-in chat: the main loop between the keyboard and the connection, the
//! commands, and reconnecting.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::ErrorCode;
use crate::client::{Client, ClientError, Event, HistoryQuery, Message, TlsOptions};
use crate::terminal::admin::PasswordFor;
use crate::terminal::screen::{Input, Keyboard, Screen};
use crate::terminal::{
    Command, TerminalError, connect, error::Described, format_event, format_message, help, parse,
};

/// How long the main loop waits for a server event before looking at the keyboard
/// again: the longest a typed line waits before it is handled.
const POLL: Duration = Duration::from_millis(50);

/// A listening client must ping at least every `idle_timeout / 2`; the server's
/// default idle timeout is 300 s, and once a minute stays inside any sane setting.
const PING_EVERY: Duration = Duration::from_secs(60);

/// The wait before the first reconnect attempt; it doubles after each failure...
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// ...up to this.
const LAST_RETRY: Duration = Duration::from_secs(30);

/// Messages shown on `/join`.
const JOIN_HISTORY: u64 = 10;

/// Messages shown by `/history` without a count.
const DEFAULT_HISTORY: u64 = 20;

/// Most missed messages of the current room shown after a reconnect.
const CATCH_UP: u64 = 100;

/// The connection, or the lack of one while reconnecting.
pub(super) enum Link {
    Up {
        client: Client,
        /// When the last request went out: a ping is due `PING_EVERY` after it.
        last_sent: Instant,
    },
    Down {
        /// When to try again.
        retry_at: Instant,
        /// The wait before this try; the next one waits twice as long.
        delay: Duration,
    },
}

/// Whether to go on after a typed line.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// The logged-in chat: connection, current room, keyboard and screen.
pub(super) struct Chat {
    pub(super) addrs: Vec<SocketAddr>,
    /// How to speak TLS, with the server name filled in; `None` for plain TCP.
    pub(super) tls: Option<TlsOptions>,
    pub(super) session: String,
    pub(super) link: Link,
    /// The current room, where plain lines go.
    pub(super) room: Option<String>,
    /// The highest seq of the current room shown so far: a message at or below it is
    /// not shown again (history and live events overlap around a join or reconnect).
    pub(super) seen: u64,
    pub(super) keyboard: Keyboard,
    pub(super) screen: Screen,
    pub(super) zone: TimeZone,
    /// The next typed line is a password (`/admin set-password`, `/admin signup`).
    pub(super) password_for: Option<PasswordFor>,
}

impl Chat {
    pub(super) fn run(&mut self) -> Result<(), TerminalError> {
        self.keyboard.ready(self.prompt());
        loop {
            // While connected, the wait happens in `next_event`; while not, here.
            let wait = match self.link {
                Link::Up { .. } => Duration::ZERO,
                Link::Down { .. } => POLL,
            };
            if let Some(input) = self.keyboard.next(wait) {
                let flow = match input {
                    Input::Line(line) => self.on_line(&line),
                    Input::End => Flow::Quit,
                    Input::Failed(e) => return Err(TerminalError::Input(e)),
                };
                if flow == Flow::Quit {
                    self.goodbye();
                    return self.screen.check();
                }
                self.keyboard.ready(self.prompt());
            }
            self.tend()?;
            self.screen.check()?;
        }
    }

    fn prompt(&self) -> String {
        match &self.room {
            Some(room) => format!("[{room}]> "),
            None => "> ".to_owned(),
        }
    }

    /// Reads events, pings when idle, and reconnects when it is time.
    fn tend(&mut self) -> Result<(), TerminalError> {
        let polled = match &mut self.link {
            Link::Up { client, .. } => client.next_event(POLL),
            Link::Down { retry_at, .. } if Instant::now() >= *retry_at => {
                return self.reconnect();
            }
            Link::Down { .. } => return Ok(()),
        };
        match polled {
            Ok(Some(event)) => self.show(event),
            Ok(None) => {}
            Err(e) => {
                self.lost(e);
                return Ok(());
            }
        }
        if let Link::Up { last_sent, .. } = &self.link
            && last_sent.elapsed() >= PING_EVERY
            && let Err(e) = self.call(Client::ping)
        {
            self.fail(e);
        }
        Ok(())
    }

    fn show(&mut self, event: Event) {
        if let Event::Message(message) = &event
            && self.room.as_deref() == Some(&message.room)
        {
            if message.seq <= self.seen {
                return;
            }
            self.seen = message.seq;
        }
        let line = format_event(&event, Timestamp::now(), &self.zone);
        self.screen.line(line);
    }

    fn on_line(&mut self, line: &str) -> Flow {
        if let Some(wanted) = self.password_for.take() {
            let password = line.trim_end_matches(['\r', '\n']);
            if let Err(e) = self.send_password(wanted, password) {
                self.fail(e);
            }
            return Flow::Continue;
        }
        let command = match parse(line) {
            Ok(Some(command)) => command,
            Ok(None) => return Flow::Continue,
            Err(e) => {
                self.screen.notice(e);
                return Flow::Continue;
            }
        };
        let done = match command {
            Command::Quit => return Flow::Quit,
            Command::Help => {
                help().into_iter().for_each(|line| self.screen.line(line));
                return Flow::Continue;
            }
            _ if matches!(self.link, Link::Down { .. }) => {
                self.screen
                    .notice("not connected (reconnecting): try again in a moment");
                return Flow::Continue;
            }
            Command::Say(text) => self.say(&text),
            Command::Join(room) => self.join(room),
            Command::Leave => self.leave(),
            Command::Rooms => self.rooms(),
            Command::Who => self.who(),
            Command::Dm { to, text } => self.call(|c| c.dm(&to, &text)).map(drop),
            Command::History(count) => self.history(count.unwrap_or(DEFAULT_HISTORY)),
            Command::Create { room, topic } => self.create(room, topic.as_deref()),
            Command::Admin(admin) => self.admin(admin),
        };
        if let Err(e) = done {
            self.fail(e);
        }
        Flow::Continue
    }

    /// Shows a server's refusal; any other failure means the connection is gone.
    fn fail(&mut self, e: ClientError) {
        match e {
            ClientError::Server { .. } => self.screen.error(&e),
            other => self.lost(other),
        }
    }

    /// Runs one request, noting when, so that pings go out only on an idle line.
    pub(super) fn call<T>(
        &mut self,
        request: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let Link::Up { client, last_sent } = &mut self.link else {
            return Err(ClientError::Closed { reason: None });
        };
        *last_sent = Instant::now();
        request(client)
    }

    /// The current room; without one, says how to get one.
    fn current(&mut self) -> Option<String> {
        if self.room.is_none() {
            self.screen
                .notice("no current room: /join ROOM or /create ROOM first");
        }
        self.room.clone()
    }

    fn say(&mut self, text: &str) -> Result<(), ClientError> {
        let Some(room) = self.current() else {
            return Ok(());
        };
        self.call(|c| c.send(&room, text)).map(drop)
    }

    fn join(&mut self, room: String) -> Result<(), ClientError> {
        let joined = self.call(|c| c.join(&room))?;
        let topic = match joined.topic.as_str() {
            "" => String::new(),
            topic => format!(" ({topic})"),
        };
        self.screen.notice(format!(
            "now in {room}{topic}; members: {}",
            joined.members.join(", ")
        ));
        self.room = Some(room.clone());
        self.seen = joined.seq;
        // Up to the join's seq: later messages arrive as events.
        let query = HistoryQuery {
            before: Some(joined.seq.saturating_add(1)),
            limit: Some(JOIN_HISTORY),
            ..HistoryQuery::default()
        };
        let recent = self.call(|c| c.history(&room, query))?;
        self.print_messages(&recent);
        Ok(())
    }

    fn leave(&mut self) -> Result<(), ClientError> {
        let Some(room) = self.current() else {
            return Ok(());
        };
        self.call(|c| c.leave(&room))?;
        self.room = None;
        self.screen
            .notice(format!("left {room}; no current room now"));
        Ok(())
    }

    fn rooms(&mut self) -> Result<(), ClientError> {
        let rooms = self.call(Client::rooms)?;
        if rooms.is_empty() {
            self.screen.notice("no rooms yet: /create ROOM makes one");
        }
        for info in rooms {
            let topic = match info.topic.as_str() {
                "" => String::new(),
                topic => format!(": {topic}"),
            };
            let line = format!("  {} ({} members){topic}", info.room, info.members);
            self.screen.line(line);
        }
        Ok(())
    }

    fn who(&mut self) -> Result<(), ClientError> {
        let Some(room) = self.current() else {
            return Ok(());
        };
        let members = self.call(|c| c.members(&room))?;
        self.screen
            .notice(format!("in {room}: {}", members.join(", ")));
        Ok(())
    }

    fn history(&mut self, count: u64) -> Result<(), ClientError> {
        let Some(room) = self.current() else {
            return Ok(());
        };
        let query = HistoryQuery {
            limit: Some(count),
            ..HistoryQuery::default()
        };
        let messages = self.call(|c| c.history(&room, query))?;
        if messages.is_empty() {
            self.screen.notice(format!("no messages in {room} yet"));
        }
        self.print_messages(&messages);
        Ok(())
    }

    fn create(&mut self, room: String, topic: Option<&str>) -> Result<(), ClientError> {
        self.call(|c| c.create(&room, topic))?;
        self.screen
            .notice(format!("created {room}; it is your current room"));
        self.room = Some(room);
        self.seen = 0;
        Ok(())
    }

    fn print_messages(&mut self, messages: &[Message]) {
        for message in messages {
            let line = format_message(message, &self.zone);
            self.screen.line(line);
        }
    }

    /// Notes a lost connection and schedules the first reconnect.
    fn lost(&mut self, cause: ClientError) {
        self.screen
            .notice(format!("connection lost ({cause}); reconnecting"));
        self.link = Link::Down {
            retry_at: Instant::now() + FIRST_RETRY,
            delay: FIRST_RETRY,
        };
    }

    /// One reconnect attempt: a new connection resumes the session; the current room
    /// stays current (membership belongs to the user) and its missed messages are
    /// shown.
    fn reconnect(&mut self) -> Result<(), TerminalError> {
        let Link::Down { delay, .. } = self.link else {
            return Ok(());
        };
        let resumed = connect(&self.addrs, self.tls.as_ref()).and_then(|mut client| {
            client.resume(&self.session)?;
            Ok(client)
        });
        match resumed {
            Ok(client) => {
                self.link = Link::Up {
                    client,
                    last_sent: Instant::now(),
                };
                self.screen.notice("reconnected");
                if let Err(e) = self.catch_up() {
                    self.fail(e);
                }
                Ok(())
            }
            Err(e) if e.code() == Some(&ErrorCode::AuthFailed) => {
                Err(TerminalError::SessionExpired)
            }
            Err(e) => {
                let delay = (delay * 2).min(LAST_RETRY);
                self.screen.notice(format!(
                    "cannot reconnect ({}); trying again in {delay:?}",
                    Described(&e)
                ));
                self.link = Link::Down {
                    retry_at: Instant::now() + delay,
                    delay,
                };
                Ok(())
            }
        }
    }

    /// Shows the current room's messages that came while the connection was down.
    fn catch_up(&mut self) -> Result<(), ClientError> {
        let Some(room) = self.room.clone() else {
            return Ok(());
        };
        let query = HistoryQuery {
            after: Some(self.seen),
            limit: Some(CATCH_UP),
            ..HistoryQuery::default()
        };
        let missed = self.call(|c| c.history(&room, query))?;
        let more = missed.len() as u64 >= CATCH_UP;
        for message in missed {
            self.show(Event::Message(message));
        }
        if more {
            self.screen.notice(format!(
                "more messages came in {room} while disconnected than are shown here"
            ));
        }
        Ok(())
    }

    /// Says goodbye to the server, if connected.
    fn goodbye(&mut self) {
        // The user is leaving either way: a failed `quit` changes nothing for them.
        let _ = self.call(Client::quit);
    }
}
