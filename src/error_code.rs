//! The error codes of the wire protocol, shared by the server and the client.
//!
//! The list below is the only one: the enum, its wire names both ways, and the names
//! the metrics count by ([`ErrorCode::KNOWN`]) all come from it.

use std::fmt;

/// Declares [`ErrorCode`] from one list of `Variant = "wire_name"`, so a new code is
/// written once.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal,)*) => {
        /// An error code that a response with `"ok":false` carries in its `error` field.
        ///
        /// The server only ever sends the codes listed in PROTOCOL.md; a client that meets
        /// a code it does not know (a newer server) keeps it as [`ErrorCode::Other`]. New
        /// codes are added as the protocol grows: match with a wildcard arm.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this build does not know, kept verbatim.
            Other(String),
        }

        impl ErrorCode {
            /// The wire name of every code this build knows, in declaration order.
            pub const KNOWN: &'static [&'static str] = &[$($wire,)*];

            /// The code as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                    ErrorCode::Other(code) => code,
                }
            }

            /// Parses a wire code; unknown codes become [`ErrorCode::Other`].
            pub fn parse(code: &str) -> ErrorCode {
                match code {
                    $($wire => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other.to_owned()),
                }
            }
        }
    };
}

error_codes! {
    /// The frame is not a JSON object (or not UTF-8).
    BadJson = "bad_json",
    /// A field is missing or has the wrong type.
    BadRequest = "bad_request",
    /// `op` names no operation.
    UnknownOp = "unknown_op",
    /// The frame was longer than `max_frame`.
    FrameTooLarge = "frame_too_large",
    /// The op needs a logged-in connection.
    NotAuthenticated = "not_authenticated",
    /// The server is shedding load (password hashing is saturated); retry later.
    ServerBusy = "server_busy",
    /// Too many frames or failed logins; slow down.
    RateLimited = "rate_limited",
    /// A bug or fault inside the server.
    Internal = "internal",
    /// The operator's limit on the number of rooms is reached.
    TooManyRooms = "too_many_rooms",
    /// The operator's limit on members per room is reached.
    RoomFull = "room_full",
    /// A user or room name being created breaks the naming rules.
    BadName = "bad_name",
    /// A password being created is shorter than 8 or longer than 72 bytes.
    WeakPassword = "weak_password",
    /// `signup` for a name that is taken.
    UserExists = "user_exists",
    /// Unknown user, wrong password, or unknown/expired/revoked session.
    AuthFailed = "auth_failed",
    /// `create` for a name that is taken.
    RoomExists = "room_exists",
    /// The room does not exist.
    NoSuchRoom = "no_such_room",
    /// The user is not a member of the room.
    NotMember = "not_member",
    /// A text or topic is over its length limit.
    TooLong = "too_long",
    /// The recipient of a `dm` (or another op's target user) does not exist.
    NoSuchUser = "no_such_user",
    /// The caller's room role, or missing operator rights, do not allow the op
    /// (also `signup` on a server with `--signup closed`).
    Forbidden = "forbidden",
    /// The caller is banned: from the room (`join`) or from the server (`login`).
    Banned = "banned",
    /// `join` of an invite-only room without an invitation.
    NotInvited = "not_invited",
    /// No message has that seq (or it is deleted, where that matters).
    NoSuchMessage = "no_such_message",
    /// The room or conversation is encrypted and the request carries plain `text`.
    EncryptionRequired = "encryption_required",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips() {
        for &name in ErrorCode::KNOWN {
            let code = ErrorCode::parse(name);
            assert!(!matches!(code, ErrorCode::Other(_)), "{name}");
            assert_eq!(code.as_str(), name);
        }
        assert_eq!(ErrorCode::parse("bad_json"), ErrorCode::BadJson);
        assert_eq!(
            ErrorCode::parse("from_the_future"),
            ErrorCode::Other("from_the_future".to_owned())
        );
    }
}
