//! Protocol 2's account ops: changing the password, deleting the account, and
//! blocking other users (issue 16, PROTOCOL-2 sections 3 and 7).

use serde_json::{Value, json};

use crate::client::ops::field;
use crate::client::{Client, ClientError};

impl Client {
    /// Changes this user's password (the new one follows `signup`'s rule, 8-72 bytes:
    /// `weak_password` otherwise). A wrong `old_password` is `auth_failed`, counted as a
    /// failed login. This connection stays logged in and its session token stays
    /// good; every other session of the user is revoked and the user's other
    /// connections get `closing` (`password_changed`). May answer `server_busy`.
    pub fn change_password(
        &mut self,
        old_password: &str,
        new_password: &str,
    ) -> Result<(), ClientError> {
        let fields = json!({ "old_password": old_password, "new_password": new_password });
        self.request("change_password", fields).map(drop)
    }

    /// Deletes this user's account for good (`auth_failed` on a wrong password):
    /// sessions, memberships, roles, invitations and kept DMs go; rooms it owned pass
    /// on; messages it sent stay in history under its name, which cannot be signed up
    /// again. Every connection of the user, this one included, then gets `closing`
    /// (`account_deleted`).
    pub fn delete_account(&mut self, password: &str) -> Result<(), ClientError> {
        self.request("delete_account", json!({ "password": password }))
            .map(drop)
    }

    /// Blocks a user (`no_such_user` if unknown): their DMs and invitations to this
    /// user are dropped without telling them.
    pub fn block(&mut self, user: &str) -> Result<(), ClientError> {
        self.request("block", json!({ "user": user })).map(drop)
    }

    /// Unblocks a user.
    pub fn unblock(&mut self, user: &str) -> Result<(), ClientError> {
        self.request("unblock", json!({ "user": user })).map(drop)
    }

    /// The users this user blocks, sorted.
    pub fn blocks(&mut self) -> Result<Vec<String>, ClientError> {
        let response = self.request("blocks", Value::Null)?;
        field(response, "blocks", "blocks")
    }
}
