//! Edits, deletes and reactions (protocol 2, features `edits` and `reactions`): a
//! message of a room or of a DM conversation, named by its [`Place`] and seq.

use serde_json::{Value, json};

use crate::client::{Client, ClientError, Place};

impl Client {
    /// Replaces the text of this user's own message `seq` (`forbidden` for someone
    /// else's; `no_such_message` for an unknown or deleted one). Other protocol-2
    /// connections get [`Event::Edited`](crate::Event::Edited).
    pub fn edit(&mut self, place: Place<'_>, seq: u64, text: &str) -> Result<(), ClientError> {
        self.change("edit", place, seq, json!({ "text": text }))
    }

    /// Deletes message `seq`: one's own, or in a room where this user is an op or
    /// owner (or a server operator) anyone's; else `forbidden`. Deleting a deleted
    /// message is `Ok`.
    pub fn delete(&mut self, place: Place<'_>, seq: u64) -> Result<(), ClientError> {
        self.change("delete", place, seq, json!({}))
    }

    /// Reacts to message `seq` with `emoji` (1-64 bytes); reacting twice is `Ok`
    /// and tells nobody. `no_such_message` for a deleted message.
    pub fn react(&mut self, place: Place<'_>, seq: u64, emoji: &str) -> Result<(), ClientError> {
        self.change("react", place, seq, json!({ "emoji": emoji }))
    }

    /// Takes back this user's `emoji` reaction to message `seq` (`Ok` if there was
    /// none).
    pub fn unreact(&mut self, place: Place<'_>, seq: u64, emoji: &str) -> Result<(), ClientError> {
        self.change("unreact", place, seq, json!({ "emoji": emoji }))
    }

    fn change(
        &mut self,
        op: &str,
        place: Place<'_>,
        seq: u64,
        mut fields: Value,
    ) -> Result<(), ClientError> {
        match place {
            Place::Room(room) => fields["room"] = Value::from(room),
            Place::With(user) => fields["with"] = Value::from(user),
        }
        fields["seq"] = Value::from(seq);
        self.request(op, fields).map(drop)
    }
}
