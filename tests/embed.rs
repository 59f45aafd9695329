//! The embedding API: your own commands and hooks on a real server over TCP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parlor::{Client, CommandError, Context, ErrorCode, Event, Server, ServerBuilder, ServerError};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

fn builder() -> ServerBuilder {
    Server::builder()
        .addr("127.0.0.1:0")
        .in_memory()
        .configure(|c| c.bcrypt_cost = 4)
}

fn user(addr: std::net::SocketAddr, name: &str) -> Client {
    let mut client = Client::connect(addr).expect("connect");
    client.signup(name, "correct horse").expect("signup");
    client.login(name, "correct horse").expect("login");
    client
}

fn announce(req: Value, cx: &mut Context<'_>) -> Result<Value, CommandError> {
    let room = req["room"]
        .as_str()
        .ok_or(CommandError::new("bad_request", "no room"))?;
    let user = cx.user().unwrap_or("nobody").to_owned();
    cx.send_to_room(room, "announced", &json!({ "room": room, "by": user }))?;
    Ok(json!({ "announced": true }))
}

#[test]
fn a_custom_command_answers_its_caller() {
    let server = builder()
        .command("add", |req: Value, cx: &mut Context<'_>| {
            let sum = req["a"].as_i64().unwrap_or(0) + req["b"].as_i64().unwrap_or(0);
            Ok(json!({ "sum": sum, "caller": cx.user() }))
        })
        .build()
        .expect("build");
    let addr = server.local_addr();
    let _handle = server.spawn();
    let mut anonymous = Client::connect(addr).unwrap();
    let answer = anonymous
        .request("add", json!({ "a": 2, "b": 40 }))
        .unwrap();
    assert_eq!(answer["sum"], 42);
    assert_eq!(answer["caller"], Value::Null);
    let mut ada = user(addr, "ada");
    assert_eq!(
        ada.request("add", json!({ "a": 1, "b": 1 })).unwrap()["caller"],
        "ada"
    );
    // A typed command refuses a request that does not fit its type.
    let server = builder()
        .command("typed", |req: TypedReq, _: &mut Context<'_>| {
            Ok(json!({ "n": req.n }))
        })
        .build()
        .unwrap();
    let addr = server.local_addr();
    let _handle = server.spawn();
    let mut client = Client::connect(addr).unwrap();
    assert_eq!(client.request("typed", json!({ "n": 3 })).unwrap()["n"], 3);
    let err = client
        .request("typed", json!({ "n": "three" }))
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::BadRequest));
}

#[derive(serde::Deserialize)]
struct TypedReq {
    n: u32,
}

#[test]
fn a_custom_command_reaches_a_room_like_a_message() {
    let server = builder().command("announce", announce).build().unwrap();
    let addr = server.local_addr();
    let _handle = server.spawn();
    let mut ada = user(addr, "ada");
    let mut ada_phone = Client::connect(addr).unwrap();
    ada_phone.login("ada", "correct horse").unwrap();
    let mut bob = user(addr, "bob");
    let mut eve = user(addr, "eve");
    ada.create("lobby", None).unwrap();
    bob.join("lobby").unwrap();
    assert!(matches!(
        ada.next_event(WAIT).unwrap(),
        Some(Event::Joined { .. })
    ));
    assert!(matches!(
        ada_phone.next_event(WAIT).unwrap(),
        Some(Event::Joined { .. })
    ));

    let answer = ada.request("announce", json!({ "room": "lobby" })).unwrap();
    assert_eq!(answer["announced"], true);
    for member in [&mut bob, &mut ada_phone] {
        match member.next_event(WAIT).unwrap() {
            Some(Event::Other(event)) => {
                assert_eq!(
                    event,
                    json!({ "event": "announced", "room": "lobby", "by": "ada" })
                );
            }
            other => panic!("expected the announcement, got {other:?}"),
        }
    }
    // Like a message: not to the sending connection, not to non-members.
    assert!(ada.next_event(QUIET).unwrap().is_none());
    assert!(eve.next_event(QUIET).unwrap().is_none());
    let err = ada
        .request("announce", json!({ "room": "nowhere" }))
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::NoSuchRoom));
}

#[test]
fn a_name_taken_by_a_built_in_op_or_another_command_fails_the_build() {
    let ok = |_: Value, _: &mut Context<'_>| Ok(Value::Null);
    for name in ["send", "login", "ping"] {
        let built = builder().command(name, ok).build();
        assert!(
            matches!(built, Err(ServerError::CommandClash(ref n)) if n == name),
            "{name}"
        );
    }
    let twice = builder().command("roll", ok).command("roll", ok).build();
    assert!(matches!(twice, Err(ServerError::CommandClash(_))));
    let message = builder()
        .command("send", ok)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("`send`"), "{message}");
}

#[test]
fn a_hook_that_rejects_a_message_stops_it_reaching_anyone() {
    let server = builder()
        .on_message(|m| {
            if m.text.contains("spam") {
                Err(CommandError::new("moderated", "no spam here"))
            } else {
                Ok(())
            }
        })
        .build()
        .unwrap();
    let addr = server.local_addr();
    let _handle = server.spawn();
    let mut ada = user(addr, "ada");
    let mut bob = user(addr, "bob");
    ada.create("lobby", None).unwrap();
    bob.join("lobby").unwrap();
    let _joined = ada.next_event(WAIT).unwrap();

    let err = bob.send("lobby", "buy spam now").unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::Other("moderated".into())));
    assert!(err.to_string().contains("no spam here"), "{err}");
    assert!(
        ada.next_event(QUIET).unwrap().is_none(),
        "the refused message arrived"
    );
    assert!(ada.history("lobby", Default::default()).unwrap().is_empty());

    let sent = bob.send("lobby", "hello").unwrap();
    assert_eq!(sent.seq, 1, "a refused message takes no seq");
    match ada.next_event(WAIT).unwrap() {
        Some(Event::Message(m)) => assert_eq!(m.text, "hello"),
        other => panic!("expected the message, got {other:?}"),
    }
}

#[test]
fn a_panicking_command_answers_internal_to_its_caller_only() {
    let server = builder()
        .command(
            "boom",
            |_: Value, cx: &mut Context<'_>| -> Result<Value, CommandError> {
                // What it meant to send is dropped with it.
                cx.send_to_room("lobby", "half", &json!({}))?;
                panic!("a bug in the embedder's command")
            },
        )
        .build()
        .unwrap();
    let addr = server.local_addr();
    let _handle = server.spawn();
    let mut ada = user(addr, "ada");
    let mut bob = user(addr, "bob");
    ada.create("lobby", None).unwrap();
    bob.join("lobby").unwrap();
    let _joined = ada.next_event(WAIT).unwrap();

    let err = bob.request("boom", json!({})).unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::Internal));
    // The caller's connection and everyone else carry on.
    bob.ping().unwrap();
    assert!(ada.next_event(QUIET).unwrap().is_none());
    ada.send("lobby", "still here").unwrap();
    match bob.next_event(WAIT).unwrap() {
        Some(Event::Message(m)) => assert_eq!(m.text, "still here"),
        other => panic!("expected the message, got {other:?}"),
    }
}

#[test]
fn hooks_see_connections_and_logins() {
    let opened = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let logins = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (o, c, l) = (opened.clone(), closed.clone(), logins.clone());
    let server = builder()
        .on_open(move |_| {
            o.fetch_add(1, Ordering::SeqCst);
        })
        .on_close(move |_, user| {
            assert_eq!(user, Some("ada"));
            c.fetch_add(1, Ordering::SeqCst);
        })
        .on_login(move |user, _| l.lock().push(user.to_owned()))
        .build()
        .unwrap();
    let addr = server.local_addr();
    let handle = server.spawn();
    let mut ada = user(addr, "ada");
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    assert_eq!(*logins.lock(), ["ada"]);
    ada.quit().unwrap();
    drop(handle);
    assert_eq!(closed.load(Ordering::SeqCst), 1);
}

/// A panic payload whose drop panics again: the second panic escapes any
/// `catch_unwind` that drops the payload it caught.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("and again while the first panic's payload is dropped");
    }
}

#[test]
fn a_panic_while_closing_still_frees_the_connection() {
    use std::io::{BufRead, BufReader, Read, Write};
    let server = builder()
        .configure(|c| c.max_conns = 1)
        .on_close(|_, _| std::panic::panic_any(PanicsWhenDropped))
        .build()
        .unwrap();
    let addr = server.local_addr();
    let _handle = server.spawn();
    // A connection that got its pong, or None if it was refused (`server_full`).
    let pinged = || {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        (&stream).write_all(b"{\"op\":\"ping\"}\n").unwrap();
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        reader.read_line(&mut line).unwrap();
        line.contains("pong").then_some(stream)
    };
    for round in 0..3 {
        // The one place is free again each time: the last close gave it back.
        let stream = (0..50)
            .find_map(|_| {
                let stream = pinged();
                if stream.is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                stream
            })
            .unwrap_or_else(|| panic!("round {round}: the place was never given back"));
        (&stream).write_all(b"{\"op\":\"quit\"}\n").unwrap();
        let mut rest = Vec::new();
        (&stream)
            .read_to_end(&mut rest)
            .expect("the socket sees EOF");
        assert!(
            String::from_utf8_lossy(&rest).contains("\"ok\":true"),
            "{}",
            String::from_utf8_lossy(&rest)
        );
    }
}

#[test]
fn a_command_answer_is_valid_json_whatever_its_keys() {
    let server = builder()
        .command("keys", |_: Value, _: &mut Context<'_>| {
            Ok(json!({ "a\"b": 1, "line\nbreak": "x", "back\\slash": [true], "\u{1}": null }))
        })
        .build()
        .unwrap();
    let addr = server.local_addr();
    let _handle = server.spawn();
    let mut client = Client::connect(addr).unwrap();
    let answer = client.request("keys", json!({})).unwrap();
    assert_eq!(answer["a\"b"], 1);
    assert_eq!(answer["line\nbreak"], "x");
    assert_eq!(answer["back\\slash"], json!([true]));
    assert!(answer.get("\u{1}").is_some(), "{answer}");
    // The connection carries on.
    client.ping().unwrap();
}

#[test]
fn a_command_posts_only_to_a_room_its_caller_is_a_member_of() {
    let server = builder().command("announce", announce).build().unwrap();
    let addr = server.local_addr();
    let _handle = server.spawn();
    let mut ada = user(addr, "ada");
    let mut eve = user(addr, "eve");
    ada.create("lobby", None).unwrap();
    let err = eve
        .request("announce", json!({ "room": "lobby" }))
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::NotMember));
    let mut anonymous = Client::connect(addr).unwrap();
    let err = anonymous
        .request("announce", json!({ "room": "lobby" }))
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::NotAuthenticated));
    assert!(
        ada.next_event(QUIET).unwrap().is_none(),
        "a non-member posted"
    );
    // Once a member, it may.
    eve.join("lobby").unwrap();
    assert!(matches!(
        ada.next_event(WAIT).unwrap(),
        Some(Event::Joined { .. })
    ));
    eve.request("announce", json!({ "room": "lobby" })).unwrap();
    assert!(matches!(
        ada.next_event(WAIT).unwrap(),
        Some(Event::Other(_))
    ));
}
