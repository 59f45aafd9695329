//! Your own ops and hooks, for a server embedded as a library: see
//! [`crate::ServerBuilder::command`] and the `on_*` hooks.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::chat::effects::{Effect, Keep};
use crate::chat::room::{Frames, RoomEvent};
use crate::chat::{Chat, Peer};
use crate::error_code::ErrorCode;
use crate::protocol::json as protocol;

/// An error a command or a hook answers with: a code (a built-in one, or one of your
/// own, such as `"moderated"`) and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct CommandError {
    /// Sent as the response's `error`.
    pub code: ErrorCode,
    /// Sent as the response's `message`.
    pub message: String,
}

impl CommandError {
    /// An error with `code` (any string; the built-in names map to their
    /// [`ErrorCode`]) and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> CommandError {
        CommandError {
            code: ErrorCode::parse(code),
            message: message.into(),
        }
    }
}

/// What a command handler sees of its caller and can do with the server. Frames it
/// sends are delivered in order with the caller's other answers.
pub struct Context<'a> {
    pub(crate) chat: &'a Chat,
    pub(crate) conn: &'a Peer,
    pub(crate) user: Option<&'a str>,
    pub(crate) effects: Vec<Effect>,
}

impl Context<'_> {
    /// The caller's user name, or `None` before it logs in.
    pub fn user(&self) -> Option<&str> {
        self.user
    }

    /// The caller's address.
    pub fn peer(&self) -> SocketAddr {
        self.conn.peer
    }

    /// Sends `{"event":<event>, ...fields}` to every connection of every member of
    /// `room` except the caller's connection, like a room message. `fields` must
    /// serialise to a JSON object.
    ///
    /// As with `send`, the caller must be a member of the room. Errors, in this
    /// order: `no_such_room`, `not_authenticated` (the caller has not logged in),
    /// `not_member`, `internal` (`fields` is not an object); a command can return
    /// them as they are.
    pub fn send_to_room(
        &mut self,
        room: &str,
        event: &str,
        fields: &impl Serialize,
    ) -> Result<(), CommandError> {
        let name = room;
        let room = self.chat.room_named(name).ok_or_else(|| {
            CommandError::new("no_such_room", format!("no room is named `{name}`"))
        })?;
        let Some(user) = self.user else {
            return Err(CommandError::new(
                "not_authenticated",
                "log in first (`login` or `resume`)",
            ));
        };
        if !room.state.lock().is_member(user) {
            return Err(CommandError::new(
                "not_member",
                format!("join `{name}` before sending to it"),
            ));
        }
        let frame = protocol::custom_event(event, fields)
            .map_err(|why| CommandError::new("internal", why))?;
        let event = RoomEvent::Broadcast {
            frames: Frames::both(frame),
            skip_conn: self.conn.key,
            v1_skip_user: None,
            also: None,
        };
        self.effects.push(Effect::Room(room, event));
        Ok(())
    }

    /// Sends `{"event":<event>, ...fields}` to every connection of `user` (except the
    /// caller's own), if any is online; nothing is kept for later.
    pub fn send_to_user(
        &mut self,
        user: &str,
        event: &str,
        fields: &impl Serialize,
    ) -> Result<(), CommandError> {
        let frame = protocol::custom_event(event, fields)
            .map_err(|why| CommandError::new("internal", why))?;
        let to = self.chat.user_named(user).ok_or_else(|| {
            CommandError::new("no_such_user", format!("no user is named `{user}`"))
        })?;
        self.effects.push(Effect::Dm {
            to,
            frames: Frames::both(frame),
            skip_conn: self.conn.key,
            keep: Keep::Never,
        });
        Ok(())
    }
}

/// A room message about to be sent, as a hook sees it.
#[derive(Debug, Clone, Copy)]
pub struct RoomMessage<'a> {
    /// The room.
    pub room: &'a str,
    /// The sender's user name.
    pub from: &'a str,
    /// The text.
    pub text: &'a str,
}

/// A registered command: reads the frame (its whole JSON text) and answers.
pub(crate) type Handler =
    dyn Fn(&str, &mut Context<'_>) -> Result<serde_json::Value, CommandError> + Send + Sync;

type ConnectionHook = dyn Fn(SocketAddr) + Send + Sync;
type CloseHook = dyn Fn(SocketAddr, Option<&str>) + Send + Sync;
type LoginHook = dyn Fn(&str, SocketAddr) + Send + Sync;
type MessageHook = dyn Fn(&RoomMessage<'_>) -> Result<(), CommandError> + Send + Sync;

/// What `admin_reload` calls: re-reads the configuration and applies it, reporting
/// what changed (`Ok`) or why nothing did (`Err`), in words for the operator.
pub(crate) type ReloadHook = dyn Fn() -> Result<String, String> + Send + Sync;

/// The embedder's callbacks. Each runs on a worker thread except `opened`, which runs
/// on the poller thread when the connection is accepted: keep them quick.
#[derive(Default, Clone)]
pub(crate) struct Hooks {
    pub(crate) opened: Option<Arc<ConnectionHook>>,
    pub(crate) closed: Option<Arc<CloseHook>>,
    pub(crate) logged_in: Option<Arc<LoginHook>>,
    pub(crate) message: Option<Arc<MessageHook>>,
    /// `admin_reload`; without it the op answers that reloading is not available.
    pub(crate) reload: Option<Arc<ReloadHook>>,
}

/// The embedder's additions to chat mode: commands by name, and hooks.
#[derive(Default, Clone)]
pub(crate) struct Extensions {
    pub(crate) commands: Vec<(String, Arc<Handler>)>,
    pub(crate) hooks: Hooks,
}
