//! The fields of the server operators' ops (`admin_*`, issue 23): parsed here, apart
//! from `request`, which hands them over as `Request::Admin`.

use std::borrow::Cow;

use serde::Deserialize;

use crate::error_code::ErrorCode;
use crate::protocol::envelope::{Fault, Head, Page, fields, page};

/// The operators' ops, by the name a request gives in `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminOp {
    Kill,
    Ban,
    Unban,
    Connections,
    Announce,
    SetPassword,
    Signup,
    Reload,
}

/// An operator's request, checked for shape and types.
#[derive(Debug)]
pub(crate) enum AdminRequest<'a> {
    /// Close every connection of `user` (`closing` `killed`).
    Kill {
        user: Cow<'a, str>,
        reason: Option<Cow<'a, str>>,
    },
    /// Ban `user` from the server for `duration` seconds (`None`: until unbanned).
    Ban {
        user: Cow<'a, str>,
        reason: Option<Cow<'a, str>>,
        duration: Option<u64>,
    },
    Unban {
        user: Cow<'a, str>,
    },
    /// One page of the open connections.
    Connections {
        page: Page<'a>,
    },
    /// An `announcement` event to every logged-in protocol-2 connection.
    Announce {
        text: Cow<'a, str>,
    },
    SetPassword {
        user: Cow<'a, str>,
        password: Cow<'a, str>,
    },
    Signup {
        user: Cow<'a, str>,
        password: Cow<'a, str>,
    },
    Reload,
}

#[derive(Deserialize)]
struct UserFields<'a> {
    #[serde(borrow)]
    user: Cow<'a, str>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(default)]
    duration: Option<u64>,
}

#[derive(Deserialize)]
struct TextField<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Credentials<'a> {
    #[serde(borrow)]
    user: Cow<'a, str>,
    #[serde(borrow)]
    password: Cow<'a, str>,
}

/// Reads the fields of operator op `op` from the frame.
pub(crate) fn parse<'a>(head: &Head<'a>, op: AdminOp) -> Result<AdminRequest<'a>, Fault<'a>> {
    let request = match op {
        AdminOp::Kill | AdminOp::Ban | AdminOp::Unban => {
            let UserFields {
                user,
                reason,
                duration,
            } = fields(head)?;
            match op {
                AdminOp::Kill => AdminRequest::Kill { user, reason },
                AdminOp::Ban if duration == Some(0) => {
                    return Err(Fault {
                        id: head.id,
                        code: ErrorCode::BadRequest,
                        message: "`duration` is a number of seconds of at least 1".into(),
                    });
                }
                AdminOp::Ban => AdminRequest::Ban {
                    user,
                    reason,
                    duration,
                },
                _ => AdminRequest::Unban { user },
            }
        }
        AdminOp::Connections => AdminRequest::Connections { page: page(head)? },
        AdminOp::Announce => {
            let TextField { text } = fields(head)?;
            if text.is_empty() {
                return Err(Fault {
                    id: head.id,
                    code: ErrorCode::BadRequest,
                    message: "`text` must not be empty".into(),
                });
            }
            AdminRequest::Announce { text }
        }
        AdminOp::SetPassword | AdminOp::Signup => {
            let Credentials { user, password } = fields(head)?;
            if op == AdminOp::Signup {
                AdminRequest::Signup { user, password }
            } else {
                AdminRequest::SetPassword { user, password }
            }
        }
        AdminOp::Reload => AdminRequest::Reload,
    };
    Ok(request)
}
