//! One typed method per server operator's op (`admin_*`, feature `admin`): each
//! answers `forbidden` ([`ClientError::Server`]) to an account that is no operator.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::ops::field;
use crate::client::{Client, ClientError};

/// One open connection, as `admin_connections` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConnectionInfo {
    /// The user it is logged in as (`None` before login).
    pub user: Option<String>,
    /// The client's address, `IP:port`.
    pub peer: String,
    /// Which listener it came in on: `tcp` or `tls` (later also `ws`, `wss`, `irc`,
    /// `ircs`).
    pub listener: String,
    /// The server node it is on (`local` until there is a cluster).
    pub node: String,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub since: u64,
    /// Bytes received from the client so far.
    pub bytes_in: u64,
    /// Bytes sent to the client so far.
    pub bytes_out: u64,
}

impl Client {
    /// Closes every connection of `user` (`closing` `killed`); returns how many.
    pub fn admin_kill(&mut self, user: &str, reason: Option<&str>) -> Result<u64, ClientError> {
        let response = self.request("admin_kill", json!({ "user": user, "reason": reason }))?;
        field(response, "admin_kill", "closed")
    }

    /// Bans `user` from the server for `duration` seconds (`None`: until
    /// [`Client::admin_unban`]): its sessions are revoked and its connections closed.
    /// Returns when the ban ends (ms since the Unix epoch), if it does.
    pub fn admin_ban(
        &mut self,
        user: &str,
        duration: Option<u64>,
        reason: Option<&str>,
    ) -> Result<Option<u64>, ClientError> {
        let fields = json!({ "user": user, "duration": duration, "reason": reason });
        let response = self.request("admin_ban", fields)?;
        field(response, "admin_ban", "until")
    }

    /// Lifts `user`'s ban.
    pub fn admin_unban(&mut self, user: &str) -> Result<(), ClientError> {
        self.request("admin_unban", json!({ "user": user }))
            .map(drop)
    }

    /// Every open connection of the server (asking page after page).
    pub fn admin_connections(&mut self) -> Result<Vec<ConnectionInfo>, ClientError> {
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let fields = after.map_or(Value::Null, |after| json!({ "after": after }));
            let mut response = self.request("admin_connections", fields)?;
            let next = response.get_mut("next").map(Value::take);
            rows.extend(field::<Vec<ConnectionInfo>>(
                response,
                "admin_connections",
                "connections",
            )?);
            match next {
                None | Some(Value::Null) => return Ok(rows),
                Some(Value::String(next)) => after = Some(next),
                Some(other) => {
                    return Err(ClientError::Protocol(format!(
                        "malformed `next` in `admin_connections` response: {other}"
                    )));
                }
            }
        }
    }

    /// Sends an `announcement` event to every other logged-in protocol-2 connection;
    /// returns how many got it.
    pub fn admin_announce(&mut self, text: &str) -> Result<u64, ClientError> {
        let response = self.request("admin_announce", json!({ "text": text }))?;
        field(response, "admin_announce", "delivered")
    }

    /// Sets `user`'s password (its sessions are revoked, its connections closed).
    pub fn admin_set_password(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let fields = json!({ "user": user, "password": password });
        self.request("admin_set_password", fields).map(drop)
    }

    /// Makes an account (also when the server's signup is closed).
    pub fn admin_signup(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let fields = json!({ "user": user, "password": password });
        self.request("admin_signup", fields).map(drop)
    }

    /// Has the server re-read its configuration file; returns what it reports.
    pub fn admin_reload(&mut self) -> Result<String, ClientError> {
        let response = self.request("admin_reload", Value::Null)?;
        field(response, "admin_reload", "report")
    }
}
