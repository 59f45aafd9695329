//! The logged-in chat: the main loop between the keyboard and the connection, the
//! commands, and reconnecting.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::ErrorCode;
use crate::client::{
    Client, ClientError, Event, HistoryQuery, Message, SendOptions, Target as ReadTarget,
    TlsOptions, fresh_nonce,
};
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
        /// Boxed: a `Client` holds its buffers inline and is far larger than `Down`.
        client: Box<Client>,
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

/// A message on its way: kept until the server answers, so that after a lost
/// connection it goes again with the same nonce and the server does not post it twice.
pub(super) struct Outgoing {
    to: Target,
    text: String,
    nonce: String,
    /// The seq it answers (`/reply`).
    pub(super) reply_to: Option<u64>,
}

/// Where an [`Outgoing`] message goes.
pub(super) enum Target {
    Room(String),
    User(String),
}

impl Outgoing {
    pub(super) fn new(to: Target, text: String) -> Outgoing {
        Outgoing {
            to,
            text,
            nonce: fresh_nonce(),
            reply_to: None,
        }
    }
}

/// Whether to go on after a typed line.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Quit,
}

/// The logged-in chat: connection, current room, keyboard and screen.
pub(super) struct Chat {
    pub(super) addrs: Vec<SocketAddr>,
    /// How to speak TLS, with the server name filled in; `None` for plain TCP.
    pub(super) tls: Option<TlsOptions>,
    pub(super) session: String,
    /// The user logged in.
    pub(super) me: String,
    /// Whether the server keeps nonces (`hello` names `idempotency`): only then is a
    /// send whose answer was lost sent again.
    pub(super) idempotent: bool,
    /// The message sent whose answer was lost with the connection, if any.
    pub(super) pending: Option<Outgoing>,
    pub(super) link: Link,
    /// The current room, where plain lines go unless a conversation is open.
    pub(super) room: Option<String>,
    /// The open DM conversation (`/dm USER`), where plain lines go; `/join` and
    /// `/create` close it.
    pub(super) with: Option<String>,
    /// The highest seq of the current room shown so far: a message at or below it is
    /// not shown again (history and live events overlap around a join or reconnect).
    pub(super) seen: u64,
    pub(super) keyboard: Keyboard,
    pub(super) screen: Screen,
    pub(super) zone: TimeZone,
    /// The next typed line is a password (`/admin set-password`, `/admin signup`).
    pub(super) password_for: Option<PasswordFor>,
    /// When each (user, room or partner) typing indicator was last shown.
    pub(super) typing_shown: std::collections::HashMap<(String, String), Instant>,
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
        match (&self.with, &self.room) {
            (Some(with), _) => format!("[dm {with}]> "),
            (None, Some(room)) => format!("[{room}]> "),
            (None, None) => "> ".to_owned(),
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
            self.mark_read(ReadTarget::Room(&message.room), message.seq);
        }
        if !self.worth_showing(&event) {
            return;
        }
        let line = format_event(&event, Timestamp::now(), &self.zone);
        self.screen.line(line);
        let gone = match &event {
            Event::Kicked { room, user, .. } if *user == self.me => Some(room),
            Event::RoomDeleted { room, .. } => Some(room),
            _ => None,
        };
        if gone.is_some() && gone == self.room.as_ref() {
            self.room = None;
            self.screen
                .notice("you are no longer in that room; no current room now");
        }
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
            Command::Say(text) => self.say(text),
            Command::Join(room) => self.join(room),
            Command::Leave => self.leave(),
            Command::Rooms => self.rooms(),
            Command::Who => self.who(),
            Command::Dm { to, text } => self.post(Outgoing::new(Target::User(to), text)),
            Command::History(count) => self.history(count.unwrap_or(DEFAULT_HISTORY)),
            Command::OpenDm(user) => self.open_dm(user),
            Command::Reply { seq, text } => self.reply(seq, text),
            Command::Edit { .. } | Command::Delete(_) | Command::React { .. } => {
                self.change(command)
            }
            Command::Create { room, topic } => self.create(room, topic.as_deref()),
            Command::Admin(admin) => self.admin(admin),
            Command::Password => self.change_password(),
            Command::DeleteAccount => match self.delete_account() {
                Ok(flow) => return flow,
                Err(e) => Err(e),
            },
            Command::Away(message) => self.away(message),
            Command::Back => self.away_back(),
            Command::Block(user) => self.block(&user, true),
            Command::Unblock(user) => self.block(&user, false),
            room_command => self.moderate(room_command),
        };
        if let Err(e) = done {
            self.fail(e);
        }
        Flow::Continue
    }

    /// Shows a server's refusal; any other failure means the connection is gone.
    pub(super) fn fail(&mut self, e: ClientError) {
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
    pub(super) fn current(&mut self) -> Option<String> {
        if self.room.is_none() {
            self.screen
                .notice("no current room: /join ROOM or /create ROOM first");
        }
        self.room.clone()
    }

    fn say(&mut self, text: String) -> Result<(), ClientError> {
        let Some(to) = self.place() else {
            return Ok(());
        };
        self.post(Outgoing::new(to, text))
    }

    /// Where typed lines go: the open conversation, else the current room; without
    /// either, says how to get one.
    pub(super) fn place(&mut self) -> Option<Target> {
        match &self.with {
            Some(with) => Some(Target::User(with.clone())),
            None => self.current().map(Target::Room),
        }
    }

    /// Sends a message with its nonce. If the connection fails before the answer, the
    /// message is kept for [`Chat::resend`]; an answer, even a refusal, ends it.
    pub(super) fn post(&mut self, outgoing: Outgoing) -> Result<(), ClientError> {
        let options = SendOptions {
            nonce: Some(outgoing.nonce.clone()),
            reply_to: outgoing.reply_to,
        };
        let text = &outgoing.text;
        let result = match &outgoing.to {
            Target::Room(room) => self.call(|c| c.send_with(room, text, &options)).map(drop),
            Target::User(to) => self.call(|c| c.dm_with(to, text, &options)).map(drop),
        };
        if let Err(e) = &result
            && !matches!(e, ClientError::Server { .. })
        {
            self.pending = Some(outgoing);
        }
        result
    }

    /// After a reconnect, sends again the message whose answer was lost, with the same
    /// nonce: a server that got it the first time answers as then and posts nothing.
    /// A server that keeps no nonces might post it twice, so it is not retried there.
    fn resend(&mut self) -> Result<(), ClientError> {
        let Some(outgoing) = self.pending.take() else {
            return Ok(());
        };
        if !self.idempotent {
            self.screen.notice(format!(
                "\"{}\" may not have been sent: this server cannot tell a retry from a new \
                 message, so check before sending it again",
                outgoing.text
            ));
            return Ok(());
        }
        self.screen
            .notice(format!("sending again: {}", outgoing.text));
        self.post(outgoing)
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
        self.with = None;
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
        let unread = self.unread_counts();
        if rooms.is_empty() {
            self.screen.notice("no rooms yet: /create ROOM makes one");
        }
        for info in rooms {
            let topic = match info.topic.as_str() {
                "" => String::new(),
                topic => format!(": {topic}"),
            };
            let unread = self.unread_words(unread.as_ref(), &info.room);
            let line = format!("  {} ({} members{unread}){topic}", info.room, info.members);
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
        let query = HistoryQuery {
            limit: Some(count),
            ..HistoryQuery::default()
        };
        if let Some(with) = self.with.clone() {
            return self.dm_history(&with, query);
        }
        let Some(room) = self.current() else {
            return Ok(());
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
        self.with = None;
        self.seen = 0;
        Ok(())
    }

    fn print_messages(&mut self, messages: &[Message]) {
        for message in messages {
            let line = format_message(message, &self.zone);
            self.screen.line(line);
        }
        if let Some(last) = messages.last() {
            self.mark_read(ReadTarget::Room(&last.room), last.seq);
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
        let resumed = connect(&self.addrs, self.tls.as_ref()).and_then(|(mut client, idem)| {
            client.resume(&self.session)?;
            Ok((client, idem))
        });
        match resumed {
            Ok((client, idempotent)) => {
                self.link = Link::Up {
                    client: Box::new(client),
                    last_sent: Instant::now(),
                };
                self.idempotent = idempotent;
                self.screen.notice("reconnected");
                if let Err(e) = self.resend().and_then(|()| self.catch_up()) {
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
