//! The error codes of the wire protocol, shared by the server and the client.

use std::fmt;

/// An error code that a response with `"ok":false` carries in its `error` field.
///
/// The server only ever sends the codes listed in PROTOCOL.md; a client that meets a
/// code it does not know (a newer server) keeps it as [`ErrorCode::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame is not a JSON object (or not UTF-8).
    BadJson,
    /// A field is missing or has the wrong type.
    BadRequest,
    /// `op` names no operation.
    UnknownOp,
    /// The frame was longer than `max_frame`.
    FrameTooLarge,
    /// The op needs a logged-in connection.
    NotAuthenticated,
    /// The server is shedding load (password hashing is saturated); retry later.
    ServerBusy,
    /// Too many frames or failed logins; slow down.
    RateLimited,
    /// A bug or fault inside the server.
    Internal,
    /// The operator's limit on the number of rooms is reached.
    TooManyRooms,
    /// The operator's limit on members per room is reached.
    RoomFull,
    /// A user or room name being created breaks the naming rules.
    BadName,
    /// A password being created is shorter than 8 or longer than 72 bytes.
    WeakPassword,
    /// `signup` for a name that is taken.
    UserExists,
    /// Unknown user, wrong password, or unknown/expired/revoked session.
    AuthFailed,
    /// `create` for a name that is taken.
    RoomExists,
    /// The room does not exist.
    NoSuchRoom,
    /// The user is not a member of the room.
    NotMember,
    /// A text or topic is over its length limit.
    TooLong,
    /// The recipient of a `dm` does not exist.
    NoSuchUser,
    /// A code this build does not know, kept verbatim.
    Other(String),
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::BadName => "bad_name",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::UserExists => "user_exists",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::NoSuchRoom => "no_such_room",
            ErrorCode::NotMember => "not_member",
            ErrorCode::TooLong => "too_long",
            ErrorCode::NoSuchUser => "no_such_user",
            ErrorCode::Other(code) => code,
        }
    }

    /// Parses a wire code; unknown codes become [`ErrorCode::Other`].
    pub fn parse(code: &str) -> ErrorCode {
        match code {
            "bad_json" => ErrorCode::BadJson,
            "bad_request" => ErrorCode::BadRequest,
            "unknown_op" => ErrorCode::UnknownOp,
            "frame_too_large" => ErrorCode::FrameTooLarge,
            "not_authenticated" => ErrorCode::NotAuthenticated,
            "server_busy" => ErrorCode::ServerBusy,
            "rate_limited" => ErrorCode::RateLimited,
            "internal" => ErrorCode::Internal,
            "too_many_rooms" => ErrorCode::TooManyRooms,
            "room_full" => ErrorCode::RoomFull,
            "bad_name" => ErrorCode::BadName,
            "weak_password" => ErrorCode::WeakPassword,
            "user_exists" => ErrorCode::UserExists,
            "auth_failed" => ErrorCode::AuthFailed,
            "room_exists" => ErrorCode::RoomExists,
            "no_such_room" => ErrorCode::NoSuchRoom,
            "not_member" => ErrorCode::NotMember,
            "too_long" => ErrorCode::TooLong,
            "no_such_user" => ErrorCode::NoSuchUser,
            other => ErrorCode::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
