//! What an operator relies on: limits (frame rate, connections per address, rooms,
//! members), the metrics endpoint, and logs that never show a secret.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Sends `lines` from another thread (the server stops reading while the client is
/// throttled, so a write can block until the answers are read here).
fn send_in_background(client: &Line, lines: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut writer = client.stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        writer
            .write_all(&lines)
            .expect("the server took every line");
    })
}

/// Reads `n` frames, each before its deadline.
fn read_frames(client: &mut Line, n: usize, each: Duration) -> Vec<serde_json::Value> {
    (0..n)
        .map(
            |i| match client.try_read_frame(std::time::Instant::now() + each) {
                Ok(frame) => frame.value,
                Err(end) => panic!("frame {i} of {n}: {end:?}"),
            },
        )
        .collect()
}

#[test]
fn a_member_pipelining_past_the_rate_is_throttled_and_loses_nothing() {
    const N: usize = 8000;
    let (_server, addr) = start(|c| c.max_frame_rate = 2000);
    let mut ada = user(addr, "ada");
    ada.create("r");
    let lines: Vec<u8> = (0..N)
        .flat_map(|i| {
            line_of(&json!({ "id": i, "op": "send", "room": "r", "text": format!("m{i}") }))
        })
        .collect();
    let writer = send_in_background(&ada, lines);
    let answers = read_frames(&mut ada, N, Duration::from_secs(10));
    writer.join().unwrap();
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["id"], i, "{answer}");
        assert_eq!(answer["ok"], true, "{answer}");
    }
    // History pages (500 at most) from the oldest: every message is there, in order.
    let mut after = 0;
    let mut seen = 0;
    for _ in 0..=N / 500 {
        let page =
            ada.request(json!({ "op": "history", "room": "r", "after": after, "limit": 500 }));
        let messages = page["messages"].as_array().expect("messages").clone();
        for m in &messages {
            assert_eq!(m["text"], format!("m{seen}"), "{m}");
            seen += 1;
            after = m["seq"].as_u64().unwrap();
        }
        if messages.is_empty() {
            break;
        }
    }
    assert_eq!(seen, N);
}

#[test]
fn oversized_and_blank_lines_count_toward_the_rate() {
    const RATE: usize = 100;
    let (_server, addr) = start(|c| {
        c.max_frame_rate = RATE as u32;
        c.max_frame = 1024;
        c.max_text = 512;
    });
    let mut client = Line::connect(addr);
    // Blank lines take from the budget silently: a whole burst of them first.
    let mut lines = b"\n".repeat(2 * RATE);
    let oversized = [vec![b'x'; 2000], b"\n".to_vec()].concat();
    for _ in 0..400 {
        lines.extend_from_slice(&oversized);
    }
    let started = std::time::Instant::now();
    let writer = send_in_background(&client, lines);
    // However fast the server is, at RATE a second it cannot have answered 400 in
    // the first half second (nor 300: the burst went to the blank lines).
    let mut early = 0;
    let half = started + Duration::from_millis(500);
    while let Ok(frame) = client.try_read_frame(half) {
        assert_eq!(frame.value["error"], "frame_too_large", "{:?}", frame.value);
        early += 1;
    }
    assert!(
        early < 150,
        "{early} oversized lines answered in the first 500 ms"
    );
    let rest = read_frames(&mut client, 400 - early, Duration::from_secs(10));
    assert!(
        rest.iter().all(|a| a["error"] == "frame_too_large"),
        "{rest:?}"
    );
    writer.join().unwrap();
    client.ping();
}

#[test]
fn the_idle_timeout_waits_while_a_client_is_throttled() {
    let (_server, addr) = start(|c| {
        c.max_frame_rate = 5;
        c.idle_timeout = Duration::from_secs(1);
    });
    let mut client = Line::connect(addr);
    // 10 pass at once; the other 20 take 4 s at 5 a second, longer than the idle
    // timeout, during which the client sends nothing new.
    let burst: Vec<u8> = (0..30)
        .flat_map(|i| line_of(&json!({ "id": i, "op": "ping" })))
        .collect();
    client.send_raw(&burst);
    let answers = read_frames(&mut client, 30, Duration::from_secs(10));
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["id"], i, "{answer}");
        assert_eq!(answer["pong"], true, "{answer}");
    }
    // Once it is all answered, the ordinary idle timeout applies again.
    assert_eq!(client.recv()["reason"], "idle_timeout");
}

#[test]
fn connections_over_the_per_address_limit_get_server_full() {
    let (_server, addr) = start(|c| {
        c.max_conns_per_ip = 2;
        c.limit_loopback = true;
    });
    let mut first = Line::connect(addr);
    let mut second = Line::connect(addr);
    first.ping();
    second.ping();
    let mut third = Line::connect(addr);
    assert_eq!(
        third.recv(),
        json!({ "event": "closing", "reason": "server_full" })
    );
    third.expect_closed();
    // A freed place can be taken again (once the server has seen the close).
    drop(first);
    let pinged = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        ping_once(addr)
    });
    assert!(pinged, "the freed place was never given back");
}

#[test]
fn loopback_is_not_limited_per_address_by_default() {
    let (_server, addr) = start(|c| c.max_conns_per_ip = 1);
    let mut conns: Vec<Line> = (0..3).map(|_| Line::connect(addr)).collect();
    for c in &mut conns {
        c.ping();
    }
}

#[test]
fn rooms_and_members_are_capped() {
    let (_server, addr) = start(|c| {
        c.max_rooms = 2;
        c.max_room_members = 2;
    });
    let mut ada = user(addr, "ada");
    ada.create("a");
    ada.create("b");
    let answer = ada.request(json!({ "op": "create", "room": "c" }));
    assert_eq!(answer["error"], "too_many_rooms", "{answer}");
    let mut bob = user(addr, "bob");
    bob.join("a");
    let mut cid = user(addr, "cid");
    let answer = cid.request(json!({ "op": "join", "room": "a" }));
    assert_eq!(answer["error"], "room_full", "{answer}");
    // A member joining again is not turned away by the cap.
    assert_eq!(
        bob.request(json!({ "op": "join", "room": "a" }))["ok"],
        true
    );
}

/// Connects, pings, and says whether a pong came back (not `closing`).
fn ping_once(addr: std::net::SocketAddr) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"{\"op\":\"ping\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.contains("pong")
}

/// Sends one HTTP request to `addr` and returns the whole response.
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
}

#[test]
fn metrics_are_served_in_prometheus_text_format() {
    let mut config = test_config();
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = parlor::Server::bind(config).unwrap();
    let (addr, metrics) = (
        server.local_addr(),
        server.metrics_addr().expect("a metrics address"),
    );
    let _handle = server.spawn();
    let mut ada = user(addr, "ada");
    let mut bob = user(addr, "bob");
    ada.create("r");
    bob.join("r");
    ada.say("r", "hello");
    let _ = bob.expect_event("message");
    let refused = ada.request(json!({ "op": "join", "room": "nope" }));
    assert_eq!(refused["error"], "no_such_room");

    let response = http_get(metrics, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("# TYPE parlor_connections_open gauge"),
        "{response}"
    );
    assert!(
        response.contains("\nparlor_connections_open 2\n"),
        "{response}"
    );
    assert!(
        response.contains("\nparlor_messages_total 1\n"),
        "{response}"
    );
    assert!(
        response.contains("\nparlor_deliveries_total 1\n"),
        "{response}"
    );
    assert!(
        response.contains("parlor_logins_total{result=\"ok\"} 2\n"),
        "{response}"
    );
    assert!(
        response.contains("parlor_errors_total{code=\"no_such_room\"} 1\n"),
        "{response}"
    );
    assert!(
        response.contains("parlor_op_seconds_count{op=\"send\"} 1\n"),
        "{response}"
    );
    assert!(http_get(metrics, "/").starts_with("HTTP/1.1 404"));
}

#[test]
fn the_metrics_endpoint_caps_and_times_out_its_sockets() {
    use std::io::Read;
    let mut config = test_config();
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = parlor::Server::bind(config).unwrap();
    let (addr, metrics) = (server.local_addr(), server.metrics_addr().unwrap());
    let _handle = server.spawn();
    // Ten sockets that never send a request: a few are served (and dropped at their
    // deadline, 2 s), a few wait their turn, the rest are told 503 at once.
    let idle: Vec<std::net::TcpStream> = (0..10)
        .map(|_| std::net::TcpStream::connect(metrics).unwrap())
        .collect();
    let mut busy = 0;
    for (i, mut stream) in idle.into_iter().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut got = String::new();
        match stream.read_to_string(&mut got) {
            Ok(_) if got.starts_with("HTTP/1.1 503") => busy += 1,
            Ok(_) | Err(_) if got.is_empty() => {}
            other => panic!("idle socket {i}: {other:?}, {got:?}"),
        }
    }
    assert!((4..10).contains(&busy), "{busy} of 10 told 503");
    // Meanwhile chat was served, and the endpoint still answers.
    assert!(ping_once(addr));
    assert!(http_get(metrics, "/metrics").starts_with("HTTP/1.1 200 OK"));
    let mut post = std::net::TcpStream::connect(metrics).unwrap();
    post.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut post, b"POST /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = post.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
}

#[test]
fn logs_never_show_a_password_or_a_session_token() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = common::serve_command()
        .env("RUST_LOG", "trace")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start parlor");
    let mut stderr = child.stderr.take().unwrap();
    // The start-up line carries the address; read byte by byte up to its newline.
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while !first.ends_with(b"\n") && stderr.read(&mut byte).unwrap_or(0) == 1 {
        first.push(byte[0]);
    }
    let first = String::from_utf8_lossy(&first).into_owned();
    let addr: std::net::SocketAddr = first
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    let secret = "hunter2-very-secret";
    let mut client = Line::connect(addr);
    client.request(json!({ "op": "signup", "user": "ada", "password": secret }));
    let login = client.request(json!({ "op": "login", "user": "ada", "password": secret }));
    let token = login["session"].as_str().expect("a session").to_owned();
    client.request(json!({ "op": "login", "user": "ada", "password": "wrong-password" }));
    client.request(json!({ "op": "resume", "session": token }));
    client.request(json!({ "op": "quit" }));
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let mut log = first;
    stderr.read_to_string(&mut log).expect("read the log");
    let _ = child.wait();
    assert!(log.contains("logged in as ada"), "{log}");
    for secret in [secret, "wrong-password", token.as_str()] {
        assert!(!log.contains(secret), "the log shows {secret}: {log}");
    }
}
