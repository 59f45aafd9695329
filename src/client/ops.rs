//! One typed method per op of the protocol, over [`Client::request`].

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::client::{Client, ClientError, HistoryQuery, Joined, Message, RoomInfo, Sent, Whoami};

impl Client {
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

    /// Creates a room, with this user as its first member.
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
        let mut rooms = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let fields = after.map_or(Value::Null, |after| json!({ "after": after }));
            let mut response = self.request("rooms", fields)?;
            let next = response.get_mut("next").map(Value::take);
            rooms.extend(field::<Vec<RoomInfo>>(response, "rooms", "rooms")?);
            match next {
                None | Some(Value::Null) => return Ok(rooms),
                Some(Value::String(next)) => after = Some(next),
                Some(other) => {
                    return Err(ClientError::Protocol(format!(
                        "malformed `next` in `rooms` response: {other}"
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

    /// Sends a direct message to a user; returns its `ts`.
    pub fn dm(&mut self, to: &str, text: &str) -> Result<u64, ClientError> {
        let response = self.request("dm", json!({ "to": to, "text": text }))?;
        field(response, "dm", "ts")
    }

    /// Reads stored messages of a room, oldest first.
    pub fn history(
        &mut self,
        room: &str,
        query: HistoryQuery,
    ) -> Result<Vec<Message>, ClientError> {
        let mut fields = serde_json::to_value(query)
            .map_err(|e| ClientError::Protocol(format!("cannot encode history query: {e}")))?;
        fields["room"] = Value::from(room);
        let response = self.request("history", fields)?;
        field(response, "history", "messages")
    }

    /// Says goodbye; the server answers, then closes the connection.
    pub fn quit(&mut self) -> Result<(), ClientError> {
        self.request("quit", Value::Null).map(drop)
    }
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
