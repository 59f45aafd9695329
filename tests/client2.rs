//! `parlor::Client` speaking protocol 2 to a real in-process server: `hello`, and the
//! typed methods and events of the ops the server has (roles, topics, moderation,
//! invite-only rooms, room deletion; nonces, replies, DM history and blocking where
//! `hello` names them).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{PASSWORD, TIMEOUT, start_chat};
use parlor::client::{CreateOptions, Event, Role, SendOptions, fresh_nonce};
use parlor::{Client, ClientError, ErrorCode};

/// A protocol-2 connection logged in as `name`, signing the user up first if `new`.
fn user2(addr: SocketAddr, name: &str, new: bool) -> Client {
    let mut client = Client::connect(addr).expect("connect");
    assert_eq!(client.hello(2).expect("hello").protocol, 2);
    if new {
        client.signup(name, PASSWORD).expect("signup");
    }
    client.login(name, PASSWORD).expect("login");
    client
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(result: Result<T, ClientError>, want: ErrorCode) {
    match result {
        Err(ClientError::Server { code, .. }) if code == want => {}
        other => panic!("expected server error {want}, got {other:?}"),
    }
}

/// The next event that is not a `joined` or `left` (those come and go around the
/// actions a test is about), within [`TIMEOUT`].
#[track_caller]
fn next_news(client: &mut Client) -> Event {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event(left) {
            Ok(Some(Event::Joined { .. } | Event::Left { .. })) => {}
            Ok(Some(event)) => return event,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

#[test]
fn the_client_speaks_protocol_1_until_hello_says_2() {
    let (_server, addr) = start_chat();
    let mut client = Client::connect(addr).expect("connect");
    assert_eq!(client.protocol(), 1);
    let hello = client.hello(7).expect("hello");
    assert_eq!(hello.server, "parlor");
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(hello.protocol, 2, "the lower of the two");
    assert_eq!(client.protocol(), 2);
    assert!(hello.has("roles"), "{hello:?}");
    assert_eq!(hello.limits.history_max, 500);
    assert!(hello.limits.max_frame > hello.limits.max_text, "{hello:?}");
    assert_code(client.hello(0), ErrorCode::BadRequest);
    assert_eq!(client.hello(1).expect("hello").protocol, 1);
    assert_eq!(client.protocol(), 1, "a later hello sets it again");
}

#[test]
fn owners_and_ops_run_a_room_and_members_hear_it_in_typed_events() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada", true);
    let mut bob = user2(addr, "bob", true);
    ada.create("lobby", None).expect("create");
    bob.join("lobby").expect("join");

    assert_code(bob.set_topic("lobby", "mine now"), ErrorCode::Forbidden);
    ada.set_topic("lobby", "cats").expect("set_topic");
    assert_eq!(
        next_news(&mut bob),
        Event::Topic {
            room: "lobby".into(),
            topic: "cats".into(),
            by: "ada".into()
        }
    );
    ada.set_role("lobby", "bob", Role::Op).expect("set_role");
    assert_eq!(
        next_news(&mut bob),
        Event::Role {
            room: "lobby".into(),
            user: "bob".into(),
            role: Role::Op,
            by: "ada".into()
        }
    );
    assert_code(bob.kick("lobby", "ada", None), ErrorCode::Forbidden);

    ada.kick("lobby", "bob", Some("calm down")).expect("kick");
    assert_eq!(
        next_news(&mut bob),
        Event::Kicked {
            room: "lobby".into(),
            user: "bob".into(),
            by: "ada".into(),
            reason: Some("calm down".into()),
            banned: false
        }
    );
    assert_code(bob.set_topic("lobby", "back"), ErrorCode::NotMember);

    ada.ban("lobby", "bob", Some("spam")).expect("ban");
    let bans = ada.bans("lobby").expect("bans");
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!((bans[0].user.as_str(), bans[0].by.as_str()), ("bob", "ada"));
    assert_eq!(bans[0].reason.as_deref(), Some("spam"));
    assert_code(bob.join("lobby"), ErrorCode::Banned);
    ada.unban("lobby", "bob").expect("unban");
    assert!(ada.bans("lobby").expect("bans").is_empty());
    bob.join("lobby").expect("join after the unban");

    ada.delete_room("lobby").expect("delete_room");
    assert_eq!(
        next_news(&mut bob),
        Event::RoomDeleted {
            room: "lobby".into(),
            by: "ada".into()
        }
    );
    assert_code(bob.join("lobby"), ErrorCode::NoSuchRoom);
}

#[test]
fn invite_only_rooms_let_in_whom_they_invite() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada", true);
    let mut carol = user2(addr, "carol", true);
    let private = CreateOptions {
        topic: Some("us only".into()),
        invite_only: true,
    };
    ada.create_with("den", &private).expect("create_with");
    assert_code(carol.join("den"), ErrorCode::NotInvited);
    assert!(
        carol
            .rooms()
            .expect("rooms")
            .iter()
            .all(|r| r.room != "den"),
        "an invite-only room is listed only to its members"
    );
    ada.invite("den", "carol").expect("invite");
    assert_eq!(
        next_news(&mut carol),
        Event::Invited {
            room: "den".into(),
            by: "ada".into()
        }
    );
    let joined = carol.join("den").expect("join with an invitation");
    assert_eq!(joined.topic, "us only");

    ada.set_room("den", false).expect("set_room");
    let mut dave = user2(addr, "dave", true);
    dave.join("den").expect("an open room again");
    assert_code(carol.set_room("den", true), ErrorCode::Forbidden);
    // Nothing else is pending for carol: the invitation came once.
    assert!(matches!(
        carol.next_event(Duration::from_millis(200)),
        Ok(Some(Event::Joined { .. })) | Ok(None)
    ));
}

#[test]
fn a_retried_nonce_posts_once_and_dms_have_history() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada", true);
    let mut ada_phone = user2(addr, "ada", false);
    let mut bob = user2(addr, "bob", true);
    ada.create("lobby", None).expect("create");
    bob.join("lobby").expect("join");
    let once = once_more();
    let first = ada.send_with("lobby", "hi", &once).expect("send");
    let hello = ada.hello(2).expect("hello");
    if !(hello.has("idempotency") && hello.has("dm_history")) {
        // A server without them ignores the nonce: the send itself still works.
        assert_eq!(first.seq, 1);
        return;
    }
    let again = ada.send_with("lobby", "hi", &once).expect("the retry");
    assert_eq!(first, again, "the retry gets the first answer");
    match next_news(&mut bob) {
        Event::Message(m) => assert_eq!((m.seq, m.text.as_str()), (first.seq, "hi")),
        other => panic!("{other:?}"),
    }
    let reply = SendOptions {
        nonce: None,
        reply_to: Some(first.seq),
    };
    bob.send_with("lobby", "hello", &reply).expect("reply");
    assert!(matches!(next_news(&mut ada), Event::Message(m) if m.reply_to == Some(first.seq)));
    assert!(
        bob.next_event(Duration::from_millis(200))
            .expect("listens")
            .is_none(),
        "no second message"
    );

    let sent = ada.dm_with("bob", "psst", &once_more()).expect("dm");
    let seq = sent.seq.expect("a server with dm_history numbers DMs");
    for (who, client) in [("bob", &mut bob), ("ada's phone", &mut ada_phone)] {
        // The phone is in lobby too: its messages come first.
        let dm = loop {
            match next_news(client) {
                Event::DirectMessage(dm) => break dm,
                Event::Message(_) => {}
                other => panic!("{who}: {other:?}"),
            }
        };
        assert_eq!(
            (dm.from.as_str(), dm.to.as_str(), dm.seq),
            ("ada", "bob", seq),
            "{who}"
        );
    }
    let history = bob
        .dm_history("ada", Default::default())
        .expect("dm_history");
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].with.as_str(), history[0].text.as_str()),
        ("ada", "psst")
    );
    let conversations = bob.conversations().expect("conversations");
    assert_eq!(conversations[0].with, "ada");
    assert_eq!(conversations[0].seq, seq);
    bob.block("ada").expect("block");
    assert_eq!(bob.blocks().expect("blocks"), ["ada"]);
    bob.unblock("ada").expect("unblock");
    assert!(bob.blocks().expect("blocks").is_empty());
}

fn once_more() -> SendOptions {
    SendOptions {
        nonce: Some(fresh_nonce()),
        reply_to: None,
    }
}
