//! A request frame to a typed [`Request`]: the envelope (`id`, `op`), then the op's
//! fields, checked for shape and types (not for names, lengths or existence: that is
//! the chat layer's). Encoding answers and events is `json`'s.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error_code::ErrorCode;
use crate::protocol::admin::{self, AdminOp, AdminRequest};
use crate::protocol::edits::{self, ChangeOp, MessageRef};
pub(crate) use crate::protocol::envelope::{
    Fault, Head, Page, fields, page, parse_head, unknown_op,
};
use crate::protocol::envelope::{fault, limit};

mod presence;

pub(crate) use presence::Place;

/// Most messages one `history` may ask for (told in `hello`'s `limits`), and the
/// default.
pub(crate) const HISTORY_MAX_LIMIT: u64 = 500;
const HISTORY_DEFAULT_LIMIT: u64 = 50;
/// Longest `nonce`, in bytes (PROTOCOL-2 section 6).
const MAX_NONCE: usize = 64;

/// A request frame, parsed and checked for shape and types.
#[derive(Debug)]
pub(crate) enum Request<'a> {
    /// `protocol`: the highest version the client speaks (`None`: it named none).
    Hello {
        protocol: Option<u64>,
    },
    Ping,
    Echo {
        data: Option<&'a RawValue>,
    },
    Signup {
        user: Cow<'a, str>,
        password: Cow<'a, str>,
    },
    Login {
        user: Cow<'a, str>,
        password: Cow<'a, str>,
    },
    Resume {
        session: Cow<'a, str>,
    },
    Logout,
    Whoami,
    Create {
        room: Cow<'a, str>,
        topic: Option<Cow<'a, str>>,
        /// Only invited users may join (default false).
        invite_only: bool,
    },
    Join {
        room: Cow<'a, str>,
    },
    Leave {
        room: Cow<'a, str>,
    },
    Rooms {
        page: Page<'a>,
    },
    Members {
        room: Cow<'a, str>,
    },
    Send {
        room: Cow<'a, str>,
        message: Message<'a>,
    },
    Dm {
        to: Cow<'a, str>,
        message: Message<'a>,
    },
    History {
        room: Cow<'a, str>,
        query: HistoryQuery,
    },
    Quit,
    /// `role`: `owner`, `op` or `member` (checked by the chat layer).
    SetRole {
        room: Cow<'a, str>,
        user: Cow<'a, str>,
        role: Cow<'a, str>,
    },
    SetTopic {
        room: Cow<'a, str>,
        topic: Cow<'a, str>,
    },
    Kick {
        target: Target<'a>,
        reason: Option<Cow<'a, str>>,
    },
    Ban {
        target: Target<'a>,
        reason: Option<Cow<'a, str>>,
    },
    Unban {
        target: Target<'a>,
    },
    Bans {
        room: Cow<'a, str>,
        page: Page<'a>,
    },
    SetRoom {
        room: Cow<'a, str>,
        invite_only: bool,
    },
    Invite {
        target: Target<'a>,
    },
    DeleteRoom {
        room: Cow<'a, str>,
    },
    ChangePassword {
        old_password: Cow<'a, str>,
        new_password: Cow<'a, str>,
    },
    DeleteAccount {
        password: Cow<'a, str>,
    },
    /// `edit {room|with, seq, text}`.
    Edit {
        target: MessageRef<'a>,
        text: Cow<'a, str>,
    },
    /// `delete {room|with, seq}`.
    Delete {
        target: MessageRef<'a>,
    },
    /// `react` (`on`) or `unreact` `{room|with, seq, emoji}`.
    React {
        target: MessageRef<'a>,
        emoji: Cow<'a, str>,
        on: bool,
    },
    DmHistory {
        with: Cow<'a, str>,
        query: HistoryQuery,
    },
    Conversations {
        page: Page<'a>,
    },
    /// `block` (`on`) or `unblock`.
    Block {
        user: Cow<'a, str>,
        on: bool,
    },
    Blocks,
    /// A server operator's op (`admin_*`).
    Admin(AdminRequest<'a>),
    MarkRead {
        place: Place<'a>,
        seq: u64,
    },
    Unread,
    Typing {
        place: Place<'a>,
        active: bool,
    },
    Away {
        message: Option<Cow<'a, str>>,
    },
    Back,
}

/// A room and a user in it that a moderation op names.
#[derive(Debug, Deserialize)]
pub(crate) struct Target<'a> {
    #[serde(borrow)]
    pub(crate) room: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) user: Cow<'a, str>,
}

/// What `send` and `dm` carry besides their target.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    /// Not empty.
    pub(crate) text: Cow<'a, str>,
    /// 1-64 bytes: a repeat with it gets the first answer (PROTOCOL-2 section 6).
    pub(crate) nonce: Option<Cow<'a, str>>,
    /// The seq of the message answered.
    pub(crate) reply_to: Option<u64>,
}

impl Request<'_> {
    /// Whether the op may run before login.
    pub(crate) fn allowed_anonymously(&self) -> bool {
        matches!(
            self,
            Request::Hello { .. }
                | Request::Ping
                | Request::Echo { .. }
                | Request::Signup { .. }
                | Request::Login { .. }
                | Request::Resume { .. }
                | Request::Rooms { .. }
                | Request::Quit
        )
    }
}

/// Which messages a `history` request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryQuery {
    /// Only messages with a smaller seq.
    pub(crate) before: Option<u64>,
    /// Only messages with a greater seq; the oldest ones first are taken.
    pub(crate) after: Option<u64>,
    /// How many at most (1..=500).
    pub(crate) limit: usize,
}

#[derive(Deserialize)]
struct Credentials<'a> {
    #[serde(borrow)]
    user: Cow<'a, str>,
    #[serde(borrow)]
    password: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ChangePasswordFields<'a> {
    #[serde(borrow)]
    old_password: Cow<'a, str>,
    #[serde(borrow)]
    new_password: Cow<'a, str>,
}

#[derive(Deserialize)]
struct PasswordField<'a> {
    #[serde(borrow)]
    password: Cow<'a, str>,
}

#[derive(Deserialize)]
struct HelloFields {
    /// Absent: none named; `null` is no integer and refused (PROTOCOL-2 section 1).
    #[serde(default, deserialize_with = "some_u64")]
    protocol: Option<u64>,
}

#[derive(Deserialize)]
struct SessionField<'a> {
    #[serde(borrow)]
    session: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RoomField<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
}

#[derive(Deserialize)]
struct CreateFields<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    #[serde(default)]
    invite_only: bool,
}

#[derive(Deserialize)]
struct SetRoleFields<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow)]
    user: Cow<'a, str>,
    #[serde(borrow)]
    role: Cow<'a, str>,
}

#[derive(Deserialize)]
struct TopicFields<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow)]
    topic: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ReasonFields<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow)]
    user: Cow<'a, str>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct SetRoomFields<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    invite_only: bool,
}

/// The fields of `send` (`room`) and `dm` (`to`); serde's `flatten` would buffer
/// the hot path's every frame, hence both targets here.
#[derive(Deserialize)]
struct MessageFields<'a> {
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Cow<'a, str>,
    #[serde(borrow, default)]
    nonce: Option<Cow<'a, str>>,
    #[serde(default)]
    reply_to: Option<u64>,
}

#[derive(Deserialize)]
struct UserField<'a> {
    #[serde(borrow)]
    user: Cow<'a, str>,
}

#[derive(Deserialize)]
struct EchoFields<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct HistoryFields<'a> {
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    with: Option<Cow<'a, str>>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

/// A field that, when present, must be an unsigned integer (not `null`).
fn some_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(d).map(Some)
}

/// The built-in operations, by the name a request gives in `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Hello,
    Ping,
    Echo,
    Signup,
    Login,
    Resume,
    Logout,
    Whoami,
    Create,
    Join,
    Leave,
    Rooms,
    Members,
    Send,
    Dm,
    History,
    Quit,
    SetRole,
    SetTopic,
    Kick,
    Ban,
    Unban,
    Bans,
    SetRoom,
    Invite,
    DeleteRoom,
    ChangePassword,
    DeleteAccount,
    DmHistory,
    Conversations,
    Block,
    Unblock,
    Blocks,
    Admin(AdminOp),
    Edit,
    Delete,
    React,
    Unreact,
    MarkRead,
    Unread,
    Typing,
    Away,
    Back,
}

impl OpKind {
    /// Every built-in op and its wire name: the first entries of the dispatch table.
    pub(crate) const ALL: [(&'static str, OpKind); 50] = [
        ("hello", OpKind::Hello),
        ("ping", OpKind::Ping),
        ("echo", OpKind::Echo),
        ("signup", OpKind::Signup),
        ("login", OpKind::Login),
        ("resume", OpKind::Resume),
        ("logout", OpKind::Logout),
        ("whoami", OpKind::Whoami),
        ("create", OpKind::Create),
        ("join", OpKind::Join),
        ("leave", OpKind::Leave),
        ("rooms", OpKind::Rooms),
        ("members", OpKind::Members),
        ("send", OpKind::Send),
        ("dm", OpKind::Dm),
        ("history", OpKind::History),
        ("quit", OpKind::Quit),
        ("set_role", OpKind::SetRole),
        ("set_topic", OpKind::SetTopic),
        ("kick", OpKind::Kick),
        ("ban", OpKind::Ban),
        ("unban", OpKind::Unban),
        ("bans", OpKind::Bans),
        ("set_room", OpKind::SetRoom),
        ("invite", OpKind::Invite),
        ("delete_room", OpKind::DeleteRoom),
        ("change_password", OpKind::ChangePassword),
        ("delete_account", OpKind::DeleteAccount),
        ("dm_history", OpKind::DmHistory),
        ("conversations", OpKind::Conversations),
        ("block", OpKind::Block),
        ("unblock", OpKind::Unblock),
        ("blocks", OpKind::Blocks),
        ("admin_kill", OpKind::Admin(AdminOp::Kill)),
        ("admin_ban", OpKind::Admin(AdminOp::Ban)),
        ("admin_unban", OpKind::Admin(AdminOp::Unban)),
        ("admin_connections", OpKind::Admin(AdminOp::Connections)),
        ("admin_announce", OpKind::Admin(AdminOp::Announce)),
        ("admin_set_password", OpKind::Admin(AdminOp::SetPassword)),
        ("admin_signup", OpKind::Admin(AdminOp::Signup)),
        ("admin_reload", OpKind::Admin(AdminOp::Reload)),
        ("edit", OpKind::Edit),
        ("delete", OpKind::Delete),
        ("react", OpKind::React),
        ("unreact", OpKind::Unreact),
        ("mark_read", OpKind::MarkRead),
        ("unread", OpKind::Unread),
        ("typing", OpKind::Typing),
        ("away", OpKind::Away),
        ("back", OpKind::Back),
    ];
}

/// Reads the fields of built-in op `kind` from the frame.
pub(crate) fn parse_request<'a>(head: &Head<'a>, kind: OpKind) -> Result<Request<'a>, Fault<'a>> {
    let request = match kind {
        OpKind::Hello => {
            let HelloFields { protocol } = fields(head)?;
            if protocol == Some(0) {
                return Err(fault(
                    head.id,
                    ErrorCode::BadRequest,
                    "`protocol` must be an integer of at least 1",
                ));
            }
            Request::Hello { protocol }
        }
        OpKind::Ping => Request::Ping,
        OpKind::Logout => Request::Logout,
        OpKind::Whoami => Request::Whoami,
        OpKind::Quit => Request::Quit,
        OpKind::Echo => Request::Echo {
            data: fields::<EchoFields<'_>>(head)?.data,
        },
        OpKind::Signup | OpKind::Login => {
            let Credentials { user, password } = fields(head)?;
            if kind == OpKind::Signup {
                Request::Signup { user, password }
            } else {
                Request::Login { user, password }
            }
        }
        OpKind::Resume => Request::Resume {
            session: fields::<SessionField<'_>>(head)?.session,
        },
        OpKind::Create => {
            let CreateFields {
                room,
                topic,
                invite_only,
            } = fields(head)?;
            Request::Create {
                room,
                topic,
                invite_only,
            }
        }
        OpKind::Join | OpKind::Leave | OpKind::Members => {
            let RoomField { room } = fields(head)?;
            match kind {
                OpKind::Join => Request::Join { room },
                OpKind::Leave => Request::Leave { room },
                _ => Request::Members { room },
            }
        }
        OpKind::Rooms => Request::Rooms { page: page(head)? },
        OpKind::Send | OpKind::Dm => message(head, kind)?,
        OpKind::History | OpKind::DmHistory => history(head, kind)?,
        _ => protocol2(head, kind)?,
    };
    Ok(request)
}

/// The fields of the ops protocol 2 added.
fn protocol2<'a>(head: &Head<'a>, kind: OpKind) -> Result<Request<'a>, Fault<'a>> {
    let request = match kind {
        OpKind::SetRole => {
            let SetRoleFields { room, user, role } = fields(head)?;
            Request::SetRole { room, user, role }
        }
        OpKind::SetTopic => {
            let TopicFields { room, topic } = fields(head)?;
            Request::SetTopic { room, topic }
        }
        OpKind::Kick | OpKind::Ban => {
            let ReasonFields { room, user, reason } = fields(head)?;
            let target = Target { room, user };
            if kind == OpKind::Kick {
                Request::Kick { target, reason }
            } else {
                Request::Ban { target, reason }
            }
        }
        OpKind::Unban => Request::Unban {
            target: fields(head)?,
        },
        OpKind::Invite => Request::Invite {
            target: fields(head)?,
        },
        OpKind::Bans => Request::Bans {
            room: fields::<RoomField<'_>>(head)?.room,
            page: page(head)?,
        },
        OpKind::SetRoom => {
            let SetRoomFields { room, invite_only } = fields(head)?;
            Request::SetRoom { room, invite_only }
        }
        OpKind::DeleteRoom => Request::DeleteRoom {
            room: fields::<RoomField<'_>>(head)?.room,
        },
        OpKind::ChangePassword => {
            let ChangePasswordFields {
                old_password,
                new_password,
            } = fields(head)?;
            Request::ChangePassword {
                old_password,
                new_password,
            }
        }
        OpKind::DeleteAccount => Request::DeleteAccount {
            password: fields::<PasswordField<'_>>(head)?.password,
        },
        OpKind::Conversations => Request::Conversations { page: page(head)? },
        OpKind::Block | OpKind::Unblock => Request::Block {
            user: fields::<UserField<'_>>(head)?.user,
            on: kind == OpKind::Block,
        },
        OpKind::Blocks => Request::Blocks,
        OpKind::Admin(op) => Request::Admin(admin::parse(head, op)?),
        OpKind::Edit => change(head, ChangeOp::Edit)?,
        OpKind::Delete => change(head, ChangeOp::Delete)?,
        OpKind::React => change(head, ChangeOp::React)?,
        OpKind::Unreact => change(head, ChangeOp::Unreact)?,
        OpKind::MarkRead | OpKind::Unread | OpKind::Typing | OpKind::Away | OpKind::Back => {
            presence::parse(head, kind)?
        }
        // `parse_request` reads the protocol-1 ops itself.
        _ => return Err(unknown_op(head)),
    };
    Ok(request)
}

/// `edit`, `delete`, `react` or `unreact` (see `edits::parse`).
fn change<'a>(head: &Head<'a>, op: ChangeOp) -> Result<Request<'a>, Fault<'a>> {
    let f = edits::parse(head.text, op).map_err(|e| {
        fault(
            head.id,
            ErrorCode::BadRequest,
            format!("bad `{}` request: {e}", head.op),
        )
    })?;
    let target = f.target;
    Ok(match op {
        ChangeOp::Edit => Request::Edit {
            target,
            text: f.text,
        },
        ChangeOp::Delete => Request::Delete { target },
        ChangeOp::React | ChangeOp::Unreact => Request::React {
            target,
            emoji: f.emoji,
            on: op == ChangeOp::React,
        },
    })
}

/// `history {room}` or `dm_history {with}`, paged alike.
fn history<'a>(head: &Head<'a>, kind: OpKind) -> Result<Request<'a>, Fault<'a>> {
    let f: HistoryFields<'_> = fields(head)?;
    let limit = limit(head.id, f.limit, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)?;
    let query = HistoryQuery {
        before: f.before,
        after: f.after,
        limit,
    };
    let missing = |field| missing(head, field);
    Ok(match kind {
        OpKind::DmHistory => Request::DmHistory {
            with: f.with.ok_or_else(|| missing("with"))?,
            query,
        },
        _ => Request::History {
            room: f.room.ok_or_else(|| missing("room"))?,
            query,
        },
    })
}

/// The `bad_request` for a frame without a field its op needs.
fn missing<'a>(head: &Head<'a>, field: &str) -> Fault<'a> {
    fault(
        head.id,
        ErrorCode::BadRequest,
        format!("bad `{}` request: missing field `{field}`", head.op),
    )
}

/// `send {room}` or `dm {to}`: the text must not be empty, a nonce 1-64 bytes.
fn message<'a>(head: &Head<'a>, kind: OpKind) -> Result<Request<'a>, Fault<'a>> {
    let f: MessageFields<'_> = fields(head)?;
    let id = head.id;
    let missing = |field| missing(head, field);
    let target = match kind {
        OpKind::Dm => f.to.ok_or_else(|| missing("to"))?,
        _ => f.room.ok_or_else(|| missing("room"))?,
    };
    non_empty(id, &f.text)?;
    if let Some(nonce) = &f.nonce
        && !(1..=MAX_NONCE).contains(&nonce.len())
    {
        return Err(fault(
            id,
            ErrorCode::BadRequest,
            format!("`nonce` must be 1 to {MAX_NONCE} bytes"),
        ));
    }
    let message = Message {
        text: f.text,
        nonce: f.nonce,
        reply_to: f.reply_to,
    };
    Ok(match kind {
        OpKind::Dm => Request::Dm {
            to: target,
            message,
        },
        _ => Request::Send {
            room: target,
            message,
        },
    })
}

fn non_empty<'a>(id: Option<&'a RawValue>, text: &str) -> Result<(), Fault<'a>> {
    if text.is_empty() {
        Err(fault(id, ErrorCode::BadRequest, "`text` must not be empty"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
