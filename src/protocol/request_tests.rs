//! Unit tests of `request`: envelopes, fields and ids.

use super::*;
use crate::protocol::json::Reply;

/// Parses a frame as the built-in dispatch table would.
fn parse(frame: &[u8]) -> Result<(Option<&RawValue>, Request<'_>), Fault<'_>> {
    let head = parse_head(frame)?;
    match OpKind::ALL.iter().find(|(name, _)| *name == head.op) {
        Some(&(_, kind)) => parse_request(&head, kind).map(|r| (head.id, r)),
        None => Err(unknown_op(&head)),
    }
}

fn code(frame: &str) -> ErrorCode {
    parse(frame.as_bytes())
        .err()
        .map(|f| f.code)
        .expect("a fault")
}

#[test]
fn general_errors() {
    assert_eq!(code("[1]"), ErrorCode::BadJson);
    assert_eq!(code("{\"op\":"), ErrorCode::BadJson);
    assert_eq!(code("{}"), ErrorCode::BadRequest);
    assert_eq!(code("{\"op\":5}"), ErrorCode::BadRequest);
    assert_eq!(code("{\"op\":\"nope\"}"), ErrorCode::UnknownOp);
    assert_eq!(
        code("{\"op\":\"send\",\"room\":\"a\"}"),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code("{\"op\":\"send\",\"room\":\"a\",\"text\":\"\"}"),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code("{\"op\":\"history\",\"room\":\"a\",\"limit\":0}"),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code("{\"op\":\"history\",\"room\":\"a\",\"before\":-1}"),
        ErrorCode::BadRequest
    );
    assert_eq!(code("{\"id\":true,\"op\":\"ping\"}"), ErrorCode::BadRequest);
    assert!(
        parse(b"{\"id\":true,\"op\":\"ping\"}")
            .unwrap_err()
            .id
            .is_none()
    );
}

#[test]
fn id_comes_back_verbatim() {
    let (id, req) = parse(br#"{"id": 1.50 ,"op":"ping","extra":[1]}"#).unwrap();
    assert!(matches!(req, Request::Ping));
    let reply = Reply::ok(id).field("pong", &true).finish();
    assert_eq!(&reply[..], b"{\"id\":1.50,\"ok\":true,\"pong\":true}\n");
}
