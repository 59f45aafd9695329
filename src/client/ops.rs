//! One typed method per op of the protocol, over [`Client::request`]: the ops of
//! protocol 1, `hello`, and protocol 2's messages (nonces, replies, DM history).
//! Room moderation is in `rooms.rs`, account management and blocking in `accounts.rs`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::client::{
    Client, ClientError, Conversation, DirectMessage, DmSent, Hello, HistoryQuery, Joined, Message,
    RoomInfo, SendOptions, Sent, Whoami,
};

impl Client {
    /// Says `hello`: asks to speak `protocol` (the highest version the caller
    /// handles; the server answers the lower of that and its own) and learns what the
    /// server is and offers. Until this is called, the connection speaks protocol 1.
    ///
    /// From the answer on, events come as [`Hello::protocol`] shows them: with 2, a
    /// `dm` comes as [`Event::DirectMessage`](crate::Event::DirectMessage) and the
    /// protocol-2 event kinds ([`Event::Role`](crate::Event::Role),
    /// [`Event::Kicked`](crate::Event::Kicked)...) arrive. Allowed before login.
    /// `protocol` 0 is `bad_request`; a server from before protocol 2 answers
    /// `unknown_op`.
    pub fn hello(&mut self, protocol: u64) -> Result<Hello, ClientError> {
        let response = self.request("hello", json!({ "protocol": protocol }))?;
        let hello: Hello = decode(response, "hello")?;
        self.protocol = hello.protocol;
        Ok(hello)
    }

    /// The protocol version this connection speaks: 1 until [`Client::hello`].
    pub fn protocol(&self) -> u64 {
        self.protocol
    }

    /// Checks that the server is alive (and keeps an idle connection open).
    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.request("ping", Value::Null).map(drop)
    }

    /// Has the server send `data` back, unchanged.
    pub fn echo(&mut self, data: Value) -> Result<Value, ClientError> {
        let response = self.request("echo", json!({ "data": data }))?;
        field(response, "echo", "data")
    }

    /// Creates an account. It does not log this connection in.
    pub fn signup(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        self.request("signup", json!({ "user": user, "password": password }))
            .map(drop)
    }

    /// Logs this connection in; returns a session token for [`Client::resume`].
    pub fn login(&mut self, user: &str, password: &str) -> Result<String, ClientError> {
        let response = self.request("login", json!({ "user": user, "password": password }))?;
        field(response, "login", "session")
    }

    /// Logs this connection in with a session token from [`Client::login`]; returns
    /// the user name.
    pub fn resume(&mut self, session: &str) -> Result<String, ClientError> {
        let response = self.request("resume", json!({ "session": session }))?;
        field(response, "resume", "user")
    }

    /// Logs this connection out and revokes its session token.
    pub fn logout(&mut self) -> Result<(), ClientError> {
        self.request("logout", Value::Null).map(drop)
    }

    /// Who this connection is logged in as, and that user's rooms.
    pub fn whoami(&mut self) -> Result<Whoami, ClientError> {
        let response = self.request("whoami", Value::Null)?;
        decode(response, "whoami")
    }

    /// Creates a room, with this user as its first member (and, in protocol 2, its
    /// owner). [`Client::create_with`] makes an invite-only room.
    pub fn create(&mut self, room: &str, topic: Option<&str>) -> Result<(), ClientError> {
        let mut fields = json!({ "room": room });
        if let Some(topic) = topic {
            fields["topic"] = Value::from(topic);
        }
        self.request("create", fields).map(drop)
    }

    /// Joins a room (a no-op if already a member).
    pub fn join(&mut self, room: &str) -> Result<Joined, ClientError> {
        let response = self.request("join", json!({ "room": room }))?;
        decode(response, "join")
    }

    /// Leaves a room.
    pub fn leave(&mut self, room: &str) -> Result<(), ClientError> {
        self.request("leave", json!({ "room": room })).map(drop)
    }

    /// Lists every room, sorted by name (asking page after page when there are more
    /// than the server gives at once).
    pub fn rooms(&mut self) -> Result<Vec<RoomInfo>, ClientError> {
        self.all_pages("rooms", json!({}), "rooms")
    }

    /// Asks for every page of a list op (PROTOCOL-2 section 4): `op` with `fields`,
    /// then again with `after` set to each answer's `next`, gathering the `key` arrays.
    pub(super) fn all_pages<T: DeserializeOwned>(
        &mut self,
        op: &str,
        fields: Value,
        key: &str,
    ) -> Result<Vec<T>, ClientError> {
        let mut items = Vec::new();
        let mut fields = fields;
        loop {
            let mut response = self.request(op, fields.clone())?;
            let next = response.get_mut("next").map(Value::take);
            items.extend(field::<Vec<T>>(response, op, key)?);
            match next {
                None | Some(Value::Null) => return Ok(items),
                Some(next @ Value::String(_)) => fields["after"] = next,
                Some(other) => {
                    return Err(ClientError::Protocol(format!(
                        "malformed `next` in `{op}` response: {other}"
                    )));
                }
            }
        }
    }

    /// Lists a room's members.
    pub fn members(&mut self, room: &str) -> Result<Vec<String>, ClientError> {
        let response = self.request("members", json!({ "room": room }))?;
        field(response, "members", "members")
    }

    /// Sends a message to a room; every other connection of its members gets it as
    /// an event.
    pub fn send(&mut self, room: &str, text: &str) -> Result<Sent, ClientError> {
        let response = self.request("send", json!({ "room": room, "text": text }))?;
        decode(response, "send")
    }

    /// Sends a message to a room with a nonce or as a reply (protocol 2; see
    /// [`SendOptions`]). Errors as [`Client::send`], plus `bad_request` for a nonce
    /// used up by another op, room or recipient and `no_such_message` for a
    /// `reply_to` that names no message of the room.
    pub fn send_with(
        &mut self,
        room: &str,
        text: &str,
        options: &SendOptions,
    ) -> Result<Sent, ClientError> {
        let mut fields = encode(options, "send options")?;
        fields["room"] = Value::from(room);
        fields["text"] = Value::from(text);
        let response = self.request("send", fields)?;
        decode(response, "send")
    }

    /// Sends a direct message to a user; returns its `ts`.
    pub fn dm(&mut self, to: &str, text: &str) -> Result<u64, ClientError> {
        let response = self.request("dm", json!({ "to": to, "text": text }))?;
        field(response, "dm", "ts")
    }

    /// Sends a direct message with a nonce or as a reply (protocol 2; see
    /// [`SendOptions`]); returns its seq in the conversation and its `ts`. Errors as
    /// [`Client::send_with`], with `no_such_user` for an unknown recipient.
    pub fn dm_with(
        &mut self,
        to: &str,
        text: &str,
        options: &SendOptions,
    ) -> Result<DmSent, ClientError> {
        let mut fields = encode(options, "dm options")?;
        fields["to"] = Value::from(to);
        fields["text"] = Value::from(text);
        let response = self.request("dm", fields)?;
        decode(response, "dm")
    }

    /// Reads stored messages of a room, oldest first.
    pub fn history(
        &mut self,
        room: &str,
        query: HistoryQuery,
    ) -> Result<Vec<Message>, ClientError> {
        let mut fields = encode(&query, "history query")?;
        fields["room"] = Value::from(room);
        let response = self.request("history", fields)?;
        field(response, "history", "messages")
    }

    /// Reads the stored DMs between this user and `with`, oldest first, paged as
    /// [`Client::history`] pages a room (protocol 2, feature `dm_history`). DMs
    /// from a user this one blocks are left out. `no_such_user` for an unknown user.
    pub fn dm_history(
        &mut self,
        with: &str,
        query: HistoryQuery,
    ) -> Result<Vec<DirectMessage>, ClientError> {
        let mut fields = encode(&query, "dm_history query")?;
        fields["with"] = Value::from(with);
        let response = self.request("dm_history", fields)?;
        let mut messages: Vec<DirectMessage> = field(response, "dm_history", "messages")?;
        for message in messages.iter_mut().filter(|m| m.with.is_empty()) {
            message.with = with.to_owned();
        }
        Ok(messages)
    }

    /// Lists this user's DM conversations, newest first (protocol 2, feature
    /// `dm_history`), asking page after page when there are more than the server
    /// gives at once.
    pub fn conversations(&mut self) -> Result<Vec<Conversation>, ClientError> {
        self.all_pages("conversations", json!({}), "conversations")
    }

    /// Says goodbye; the server answers, then closes the connection.
    pub fn quit(&mut self) -> Result<(), ClientError> {
        self.request("quit", Value::Null).map(drop)
    }
}

/// Encodes a request's optional fields (`what` names them in the error) as a JSON
/// object that the caller adds the required fields to.
pub(super) fn encode(fields: &impl Serialize, what: &str) -> Result<Value, ClientError> {
    serde_json::to_value(fields)
        .map_err(|e| ClientError::Protocol(format!("cannot encode {what}: {e}")))
}

/// Decodes a whole `ok` response of `op` into its typed answer.
pub(super) fn decode<T: DeserializeOwned>(response: Value, op: &str) -> Result<T, ClientError> {
    T::deserialize(&response)
        .map_err(|e| ClientError::Protocol(format!("malformed `{op}` response ({e}): {response}")))
}

/// Decodes one field of an `ok` response of `op`.
pub(super) fn field<T: DeserializeOwned>(
    response: Value,
    op: &str,
    name: &str,
) -> Result<T, ClientError> {
    let Some(value) = response.get(name) else {
        return Err(ClientError::Protocol(format!(
            "`{op}` response without `{name}`: {response}"
        )));
    };
    T::deserialize(value).map_err(|e| {
        ClientError::Protocol(format!(
            "malformed `{name}` in `{op}` response ({e}): {response}"
        ))
    })
}
