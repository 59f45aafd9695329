//! `parlor::Client` against a real in-process server (every op, its answers and some
//! error codes, events), against scripted fake servers (framing and timeouts that a
//! real server will not produce on demand), and the two client examples as processes.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use common::example;
use parlor::client::{Event, HistoryQuery, MAX_LINE, Message, RoomInfo, Sent, Unread};
use parlor::{Client, ClientError, Config, ErrorCode, Mode, Server, Storage};
use serde_json::{Value, json};

mod common;

/// Long enough for a loaded CI machine; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(10);
/// How long to listen to be confident that no event is coming.
const QUIET: Duration = Duration::from_millis(200);

fn config(mode: Mode) -> Config {
    let mut config = Config::default();
    config.addr = "127.0.0.1:0".parse().expect("valid address");
    config.storage = Storage::InMemory;
    config.bcrypt_cost = 4;
    config.mode = mode;
    config
}

/// Starts a server; it runs until the returned guard is dropped.
fn start(mode: Mode) -> (impl Sized, SocketAddr) {
    start_with(config(mode))
}

fn start_with(config: Config) -> (impl Sized, SocketAddr) {
    let server = Server::bind(config).expect("server binds");
    let addr = server.local_addr();
    (server.spawn(), addr)
}

/// A connection logged in as a new user `name`.
fn user(addr: SocketAddr, name: &str) -> Client {
    let mut client = Client::connect(addr).expect("connect");
    client.signup(name, "password123").expect("signup");
    client.login(name, "password123").expect("login");
    client
}

/// Ada and bob, where ada created `lobby` and bob joined it; ada's `joined` event
/// for bob is read, so neither has an event pending.
fn ada_and_bob_in_lobby(addr: SocketAddr) -> (Client, Client) {
    let mut ada = user(addr, "ada");
    let mut bob = user(addr, "bob");
    ada.create("lobby", None).unwrap();
    bob.join("lobby").unwrap();
    assert!(matches!(next(&mut ada), Event::Joined { .. }));
    (ada, bob)
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(result: Result<T, ClientError>, want: ErrorCode) {
    match result {
        Err(ClientError::Server { code, .. }) if code == want => {}
        other => panic!("expected server error {want}, got {other:?}"),
    }
}

#[track_caller]
fn next(client: &mut Client) -> Event {
    match client.next_event(WAIT) {
        Ok(Some(event)) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[track_caller]
fn assert_quiet(client: &mut Client) {
    match client.next_event(QUIET) {
        Ok(None) => {}
        other => panic!("expected no event, got {other:?}"),
    }
}

#[test]
fn ops_allowed_before_login() {
    let (_server, addr) = start(Mode::Chat);
    let mut client = Client::connect(addr).unwrap();
    client.ping().unwrap();
    let data = json!({"nested": [1, "two", null, {"x": 3.5}], "unicode": "héllo ✓"});
    assert_eq!(client.echo(data.clone()).unwrap(), data);
    assert_eq!(client.echo(Value::Null).unwrap(), Value::Null);
    assert_eq!(client.rooms().unwrap(), Vec::<RoomInfo>::new());

    assert_code(client.whoami(), ErrorCode::NotAuthenticated);
    assert_code(client.create("lobby", None), ErrorCode::NotAuthenticated);
    assert_code(
        client.request("no_such_op", json!({})),
        ErrorCode::UnknownOp,
    );
    // The connection survives errors.
    client.ping().unwrap();
}

#[test]
fn generic_request_returns_the_whole_response() {
    let (_server, addr) = start(Mode::Chat);
    let mut client = Client::connect(addr).unwrap();
    let response = client.request("echo", json!({"data": 7})).unwrap();
    assert_eq!(response["ok"], json!(true));
    assert_eq!(response["data"], json!(7));
    assert!(response["id"].is_u64(), "{response}");
    assert!(matches!(
        client.request("ping", json!([1])),
        Err(ClientError::Protocol(_))
    ));
}

#[test]
fn accounts_and_sessions() {
    let (_server, addr) = start(Mode::Chat);
    let mut ada = Client::connect(addr).unwrap();
    ada.signup("ada", "correct horse").unwrap();
    assert_code(ada.signup("ada", "another one"), ErrorCode::UserExists);
    assert_code(ada.signup("no spaces", "password123"), ErrorCode::BadName);
    assert_code(ada.signup("bob", "short"), ErrorCode::WeakPassword);
    assert_code(ada.login("ada", "wrong password"), ErrorCode::AuthFailed);
    assert_code(ada.login("nobody", "password123"), ErrorCode::AuthFailed);

    let session = ada.login("ada", "correct horse").unwrap();
    let who = ada.whoami().unwrap();
    assert_eq!((who.user.as_str(), who.rooms.len()), ("ada", 0));
    assert_eq!(who.unread, Unread::default(), "no rooms, no conversations");

    let mut again = Client::connect(addr).unwrap();
    assert_eq!(again.resume(&session).unwrap(), "ada");
    assert_eq!(again.whoami().unwrap().user, "ada");

    ada.logout().unwrap();
    assert_code(ada.whoami(), ErrorCode::NotAuthenticated);
    let mut late = Client::connect(addr).unwrap();
    assert_code(late.resume(&session), ErrorCode::AuthFailed);
    // Revoking the token does not log out connections that already resumed it.
    assert_eq!(again.whoami().unwrap().user, "ada");
}

#[test]
fn rooms_and_membership() {
    let (_server, addr) = start(Mode::Chat);
    let mut ada = user(addr, "ada");
    let mut bob = user(addr, "bob");

    ada.create("lobby", Some("say hello")).unwrap();
    ada.create("quiet", None).unwrap();
    assert_code(bob.create("lobby", None), ErrorCode::RoomExists);
    assert_code(bob.create("no spaces", None), ErrorCode::BadName);
    assert_eq!(
        bob.rooms().unwrap(),
        [
            RoomInfo {
                room: "lobby".into(),
                topic: "say hello".into(),
                members: 1
            },
            RoomInfo {
                room: "quiet".into(),
                topic: String::new(),
                members: 1
            },
        ]
    );

    let joined = bob.join("lobby").unwrap();
    assert_eq!(
        (joined.room.as_str(), joined.topic.as_str(), joined.seq),
        ("lobby", "say hello", 0)
    );
    assert_eq!(joined.members, ["ada", "bob"]);
    assert_eq!(joined.presence["ada"].status, "online");
    assert_eq!(
        next(&mut ada),
        Event::Joined {
            room: "lobby".into(),
            user: "bob".into()
        }
    );
    // Joining again changes nothing and tells nobody.
    assert_eq!(bob.join("lobby").unwrap().members, ["ada", "bob"]);
    assert_quiet(&mut ada);

    assert_eq!(bob.members("lobby").unwrap(), ["ada", "bob"]);
    assert_eq!(bob.members("quiet").unwrap(), ["ada"]);
    assert_eq!(
        ada.whoami().unwrap().rooms,
        ["lobby".to_owned(), "quiet".to_owned()]
    );
    assert_eq!(bob.whoami().unwrap().rooms, ["lobby"]);

    assert_code(bob.join("nowhere"), ErrorCode::NoSuchRoom);
    assert_code(bob.members("nowhere"), ErrorCode::NoSuchRoom);
    assert_code(bob.leave("nowhere"), ErrorCode::NoSuchRoom);
    assert_code(bob.leave("quiet"), ErrorCode::NotMember);

    bob.leave("lobby").unwrap();
    assert_eq!(
        next(&mut ada),
        Event::Left {
            room: "lobby".into(),
            user: "bob".into()
        }
    );
    assert_eq!(ada.members("lobby").unwrap(), ["ada"]);
    assert_quiet(&mut bob);
}

#[test]
fn messages_events_and_history() {
    let (_server, addr) = start(Mode::Chat);
    let (mut ada, mut bob) = ada_and_bob_in_lobby(addr);

    let first = ada.send("lobby", "one").unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(
        next(&mut bob),
        Event::Message(Message {
            room: "lobby".into(),
            from: "ada".into(),
            text: "one".into(),
            seq: 1,
            ts: first.ts,
            reply_to: None,
            changes: Default::default(),
        })
    );
    // The sending connection gets no copy of its own message.
    assert_quiet(&mut ada);

    let mut sent: Vec<Sent> = vec![first];
    for text in ["two", "three", "four", "five"] {
        sent.push(bob.send("lobby", text).unwrap());
    }
    let seqs: Vec<u64> = sent.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(sent.windows(2).all(|w| w[0].ts <= w[1].ts));
    for (s, text) in sent[1..].iter().zip(["two", "three", "four", "five"]) {
        match next(&mut ada) {
            Event::Message(m) => assert_eq!((m.seq, m.ts, m.text.as_str()), (s.seq, s.ts, text)),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    let seqs_of = |messages: Vec<Message>| messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let all = ada.history("lobby", HistoryQuery::default()).unwrap();
    assert_eq!(seqs_of(all.clone()), [1, 2, 3, 4, 5]);
    assert_eq!((all[0].from.as_str(), all[0].text.as_str()), ("ada", "one"));
    assert_eq!(all[4].ts, sent[4].ts);
    let newest = HistoryQuery {
        limit: Some(2),
        ..HistoryQuery::default()
    };
    assert_eq!(seqs_of(ada.history("lobby", newest).unwrap()), [4, 5]);
    let before = HistoryQuery {
        before: Some(3),
        ..HistoryQuery::default()
    };
    assert_eq!(seqs_of(ada.history("lobby", before).unwrap()), [1, 2]);
    let after = HistoryQuery {
        after: Some(2),
        limit: Some(2),
        ..HistoryQuery::default()
    };
    assert_eq!(seqs_of(ada.history("lobby", after).unwrap()), [3, 4]);
    let between = HistoryQuery {
        after: Some(1),
        before: Some(5),
        limit: None,
    };
    assert_eq!(seqs_of(ada.history("lobby", between).unwrap()), [2, 3, 4]);
    let zero = HistoryQuery {
        limit: Some(0),
        ..HistoryQuery::default()
    };
    assert_code(ada.history("lobby", zero), ErrorCode::BadRequest);

    let mut carol = user(addr, "carol");
    assert_code(carol.send("lobby", "hi"), ErrorCode::NotMember);
    assert_code(
        carol.history("lobby", HistoryQuery::default()),
        ErrorCode::NotMember,
    );
    assert_code(carol.send("nowhere", "hi"), ErrorCode::NoSuchRoom);
    assert_code(ada.send("lobby", &"x".repeat(16385)), ErrorCode::TooLong);
    assert_code(ada.send("lobby", ""), ErrorCode::BadRequest);
    assert_eq!(carol.join("lobby").unwrap().seq, 5);
}

#[test]
fn event_arriving_while_a_response_is_awaited_is_kept() {
    let (_server, addr) = start(Mode::Chat);
    let (mut ada, mut bob) = ada_and_bob_in_lobby(addr);

    // Bob does requests while ada's messages land on his connection; they must all
    // come out of next_event afterwards, in order.
    for i in 0..20 {
        ada.send("lobby", &format!("m{i}")).unwrap();
        bob.ping().unwrap();
    }
    bob.whoami().unwrap();
    for i in 0..20 {
        match next(&mut bob) {
            Event::Message(m) => assert_eq!(m.text, format!("m{i}")),
            other => panic!("expected message m{i}, got {other:?}"),
        }
    }
    assert_quiet(&mut bob);
}

#[test]
fn direct_messages_live_and_offline() {
    let (_server, addr) = start(Mode::Chat);
    let mut ada = user(addr, "ada");
    let mut bob = user(addr, "bob");
    let ts = ada.dm("bob", "psst").unwrap();
    assert_eq!(
        next(&mut bob),
        Event::Dm {
            from: "ada".into(),
            text: "psst".into(),
            ts
        }
    );
    assert_quiet(&mut ada);
    assert_code(ada.dm("nobody", "hello?"), ErrorCode::NoSuchUser);

    let mut carol = Client::connect(addr).unwrap();
    carol.signup("carol", "password123").unwrap();
    let first = ada.dm("carol", "while you were out").unwrap();
    let second = bob.dm("carol", "me too").unwrap();
    carol.login("carol", "password123").unwrap();
    assert_eq!(
        next(&mut carol),
        Event::Dm {
            from: "ada".into(),
            text: "while you were out".into(),
            ts: first
        }
    );
    assert_eq!(
        next(&mut carol),
        Event::Dm {
            from: "bob".into(),
            text: "me too".into(),
            ts: second
        }
    );
}

#[test]
fn quit_closes_the_connection() {
    let (_server, addr) = start(Mode::Chat);
    let mut client = Client::connect(addr).unwrap();
    client.quit().unwrap();
    assert!(
        matches!(
            client.next_event(WAIT),
            Err(ClientError::Closed { reason: None })
        ),
        "the connection should be closed after quit"
    );
    assert!(matches!(
        client.ping(),
        Err(ClientError::Closed { .. } | ClientError::Io(_))
    ));
}

#[test]
fn shutdown_sends_closing_then_closes() {
    let server = Server::bind(config(Mode::Chat)).unwrap();
    let addr = server.local_addr();
    let handle = server.spawn();
    let mut client = user(addr, "ada");
    handle.shutdown();
    assert_eq!(
        next(&mut client),
        Event::Closing {
            reason: "shutdown".into()
        }
    );
    match client.next_event(WAIT) {
        Err(ClientError::Closed { reason }) => assert_eq!(reason.as_deref(), Some("shutdown")),
        other => panic!("expected the connection to close, got {other:?}"),
    }
    handle.join().unwrap();
}

/// A fake server: accepts one connection on a free port and runs `script` on it.
fn fake_server(
    script: impl FnOnce(BufReader<TcpStream>, TcpStream) + Send + 'static,
) -> (Client, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        script(reader, stream);
    });
    (Client::connect(addr).unwrap(), server)
}

/// Reads one request line and returns its id.
fn read_id(reader: &mut BufReader<TcpStream>) -> u64 {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let request: Value = serde_json::from_str(&line).unwrap();
    request["id"].as_u64().unwrap()
}

fn send_line(stream: &mut TcpStream, text: &str) {
    stream.write_all(text.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
}

fn dm_event(text: &str) -> String {
    json!({"event": "dm", "from": "x", "text": text, "ts": 1}).to_string()
}

fn dm(text: &str) -> Event {
    Event::Dm {
        from: "x".into(),
        text: text.into(),
        ts: 1,
    }
}

#[test]
fn events_before_a_response_are_queued_in_order() {
    let (mut client, server) = fake_server(|mut reader, mut stream| {
        let id = read_id(&mut reader);
        send_line(&mut stream, &dm_event("first"));
        send_line(&mut stream, "");
        send_line(&mut stream, &format!("{}\r", dm_event("second")));
        send_line(
            &mut stream,
            &json!({"id": id, "ok": true, "pong": true}).to_string(),
        );
        thread::sleep(QUIET);
        send_line(&mut stream, &dm_event("third"));
    });
    client.ping().unwrap();
    assert_eq!(
        client.next_event(Duration::ZERO).unwrap(),
        Some(dm("first"))
    );
    assert_eq!(
        client.next_event(Duration::ZERO).unwrap(),
        Some(dm("second"))
    );
    assert_eq!(client.next_event(Duration::ZERO).unwrap(), None);
    assert_eq!(client.next_event(WAIT).unwrap(), Some(dm("third")));
    server.join().unwrap();
    assert!(matches!(
        client.next_event(WAIT),
        Err(ClientError::Closed { reason: None })
    ));
}

#[test]
fn a_line_split_across_a_timeout_loses_nothing() {
    let (mut client, server) = fake_server(|_, mut stream| {
        let line = format!("{}\n", dm_event("split"));
        let (head, tail) = line.split_at(line.len() / 2);
        stream.write_all(head.as_bytes()).unwrap();
        thread::sleep(QUIET * 2);
        stream.write_all(tail.as_bytes()).unwrap();
        thread::sleep(QUIET);
    });
    assert_eq!(client.next_event(QUIET / 4).unwrap(), None);
    assert_eq!(client.next_event(WAIT).unwrap(), Some(dm("split")));
    server.join().unwrap();
}

#[test]
fn a_late_response_is_skipped_by_the_next_request() {
    let (mut client, server) = fake_server(|mut reader, mut stream| {
        let late = read_id(&mut reader);
        let next = read_id(&mut reader);
        // A response with no id (as for frame_too_large) is matched by position.
        send_line(
            &mut stream,
            &json!({"id": late, "ok": true, "pong": true}).to_string(),
        );
        send_line(
            &mut stream,
            &json!({"ok": false, "error": "frame_too_large", "message": "too big"}).to_string(),
        );
        let id = read_id(&mut reader);
        assert!(id > next);
        send_line(
            &mut stream,
            &json!({"id": id, "ok": true, "data": 5}).to_string(),
        );
    });
    client.set_timeout(QUIET / 2);
    assert!(matches!(client.ping(), Err(ClientError::Timeout)));
    client.set_timeout(WAIT);
    match client.ping() {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(
                (code, message.as_str()),
                (ErrorCode::FrameTooLarge, "too big")
            );
        }
        other => panic!("expected frame_too_large, got {other:?}"),
    }
    assert_eq!(client.echo(json!(5)).unwrap(), json!(5));
    server.join().unwrap();
}

#[test]
fn pipelined_requests_answer_in_order() {
    let (mut client, server) = fake_server(|mut reader, mut stream| {
        let ids = [read_id(&mut reader), read_id(&mut reader)];
        for (id, n) in ids.into_iter().zip([1, 2]) {
            send_line(&mut stream, &dm_event("between"));
            send_line(
                &mut stream,
                &json!({"id": id, "ok": true, "data": n}).to_string(),
            );
        }
    });
    let first = client.send_request("echo", json!({"data": 1})).unwrap();
    let second = client.send_request("echo", json!({"data": 2})).unwrap();
    assert!(second > first);
    assert_eq!(client.recv_response().unwrap()["data"], json!(1));
    // The event read on the way is not lost, and reading it does not eat a response.
    assert_eq!(client.next_event(WAIT).unwrap(), Some(dm("between")));
    assert_eq!(client.next_event(WAIT).unwrap(), Some(dm("between")));
    assert_eq!(client.recv_response().unwrap()["data"], json!(2));
    server.join().unwrap();
}

#[test]
fn a_full_server_turns_a_client_away_with_the_reason() {
    let mut config = config(Mode::Chat);
    config.max_conns = 1;
    let (_server, addr) = start_with(config);
    let mut first = Client::connect(addr).unwrap();
    first.ping().unwrap();

    let mut second = Client::connect(addr).unwrap();
    let refused = second.ping().unwrap_err();
    match &refused {
        ClientError::Refused { reason } => assert_eq!(reason, "server_full"),
        other => panic!("expected Refused, got {other:?}"),
    }
    let said = refused.to_string();
    assert!(said.starts_with("the server is full: "), "{said}");
    // The one connection allowed is untouched.
    first.ping().unwrap();
}

#[test]
fn a_refusal_read_after_a_failed_write_still_says_why() {
    let (mut client, server) = fake_server(|_, mut stream| {
        send_line(&mut stream, r#"{"event":"closing","reason":"server_full"}"#);
    });
    server.join().unwrap();
    // The first write reaches a closed socket, which answers with a reset; a later
    // one fails. Whichever fails, the `closing` that came first gives the reason.
    let deadline = std::time::Instant::now() + WAIT;
    let failed = loop {
        match client.send_request("ping", Value::Null) {
            Ok(_) if std::time::Instant::now() < deadline => thread::sleep(QUIET),
            Ok(_) => panic!("writes to a closed connection kept succeeding"),
            Err(e) => break e,
        }
    };
    match failed {
        ClientError::Refused { reason } => assert_eq!(reason, "server_full"),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn closing_reason_is_kept_and_unknown_events_pass_through() {
    let (mut client, server) = fake_server(|mut reader, mut stream| {
        read_id(&mut reader);
        send_line(&mut stream, r#"{"event":"future","x":1}"#);
        send_line(
            &mut stream,
            r#"{"event":"closing","reason":"idle_timeout"}"#,
        );
    });
    match client.ping() {
        Err(ClientError::Closed { reason }) => assert_eq!(reason.as_deref(), Some("idle_timeout")),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert_eq!(
        client.next_event(WAIT).unwrap(),
        Some(Event::Other(json!({"event": "future", "x": 1})))
    );
    assert_eq!(
        client.next_event(WAIT).unwrap(),
        Some(Event::Closing {
            reason: "idle_timeout".into()
        })
    );
    assert!(matches!(
        client.next_event(WAIT),
        Err(ClientError::Closed { reason: Some(_) })
    ));
    server.join().unwrap();
}

#[test]
fn bad_frames_are_protocol_errors() {
    let (mut client, server) = fake_server(|_, mut stream| {
        send_line(&mut stream, "this is not json");
        send_line(&mut stream, r#"{"event":"message","room":"r"}"#);
        send_line(&mut stream, "[1,2]");
        send_line(&mut stream, r#"{"neither":true}"#);
        let huge = vec![b'x'; MAX_LINE + 1];
        // The client may stop reading (and close) part way: that is its right.
        let _ = stream.write_all(&huge);
    });
    for _ in 0..5 {
        assert!(
            matches!(client.next_event(WAIT), Err(ClientError::Protocol(_))),
            "expected a protocol error"
        );
    }
    drop(client);
    server.join().unwrap();
}

fn run(name: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(example(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    eprintln!(
        "{name} {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn echo_client_example() {
    let (_server, addr) = start(Mode::Echo);
    let addr = addr.to_string();
    let out = run(
        "echo_client",
        &["--addr", &addr, "hello", "two words", "ünïcode"],
        b"",
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, b"hello\ntwo words\n\xc3\xbcn\xc3\xafcode\n");

    let stdin = b"from stdin\r\nbytes \xff as is\n\nno newline";
    let out = run("echo_client", &["--addr", &addr], stdin);
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        b"from stdin\r\nbytes \xff as is\n\nno newline\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 lines echoed ok"));

    // A chat server answers with JSON, not an echo.
    let (_chat, chat_addr) = start(Mode::Chat);
    let out = run(
        "echo_client",
        &["--addr", &chat_addr.to_string(), "hello"],
        b"",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mismatch on line 1"));
}

/// Runs multi_client against `addr` in `mode` with `args`, checks that it succeeded,
/// and returns what it printed on stdout.
#[track_caller]
fn multi_client(addr: SocketAddr, mode: &str, args: &[&str]) -> String {
    let addr = addr.to_string();
    let all = [&["--addr", &addr, "--mode", mode], args].concat();
    let out = run("multi_client", &all, b"");
    assert!(out.status.success(), "multi_client {all:?}: {}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn multi_client_example_echo_mode() {
    let (_server, addr) = start(Mode::Echo);
    let args = [
        "--conns",
        "4",
        "--messages",
        "300",
        "--size",
        "1000",
        "--in-flight",
        "8",
        "--max-secs",
        "60",
    ];
    let stdout = multi_client(addr, "echo", &args);
    assert!(stdout.contains("received=1200 bytes=1200000 "), "{stdout}");
    assert!(
        stdout.contains("multi_client: mode=echo conns=4 messages=1200 ok"),
        "{stdout}"
    );
}

#[test]
fn multi_client_example_chat_mode() {
    let (_server, addr) = start(Mode::Chat);
    let args = [
        "--conns",
        "6",
        "--rooms",
        "2",
        "--messages",
        "30",
        "--size",
        "100",
        "--in-flight",
        "4",
        "--max-secs",
        "60",
    ];
    // Two rooms of three: every message reaches the two other members.
    let stdout = multi_client(addr, "chat", &args);
    assert!(
        stdout.contains("multi_client: mode=chat conns=6 deliveries=360 ok"),
        "{stdout}"
    );

    // A rerun against the same server must not collide with the first run's names.
    multi_client(addr, "chat", &args);
}

#[test]
fn multi_client_example_fanout_mode() {
    // The publisher sends as fast as its window allows; the per-connection frame-rate
    // limit is off so that this tests the fan-out, not how big the limit's burst is.
    let mut config = config(Mode::Chat);
    config.max_frame_rate = 0;
    let (_server, addr) = start_with(config);
    let args = [
        "--conns",
        "20",
        "--messages",
        "200",
        "--size",
        "128",
        "--in-flight",
        "16",
        "--max-secs",
        "30",
    ];
    let stdout = multi_client(addr, "fanout", &args);
    // One publisher, 20 subscribers: each of the 200 messages is delivered 20 times.
    assert!(
        stdout.contains("sent=200 received=4000 bytes=512000 "),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("multi_client: mode=fanout conns=20 deliveries=4000 ok"),
        "{stdout}"
    );
}

#[test]
fn multi_client_refuses_non_loopback_and_fails_without_a_server() {
    let out = run("multi_client", &["--addr", "192.0.2.1:7878"], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));

    // Nothing listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run(
        "multi_client",
        &["--addr", &port.to_string(), "--max-secs", "10"],
        b"",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("multi_client: FAILED"));
}
