//! Transport, framing, echo mode and limits, checked against PROTOCOL.md over raw
//! sockets.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use parlor::Mode;
use serde_json::json;

const SHORT: Duration = Duration::from_millis(300);

/// The next frame is `closing` with `reason`, and then the server closes.
#[track_caller]
fn expect_closing(c: &mut Line, reason: &str) {
    assert_eq!(c.recv(), json!({"event": "closing", "reason": reason}));
    c.expect_closed();
}

// ---------------------------------------------------------------- echo mode

#[test]
fn echo_one_mib_of_binary_is_byte_exact() {
    let (_server, addr) = start_echo();
    let mut data = XorShift::new(1).bytes(1 << 20);
    // Make sure the awkward bytes are there: NUL, newlines, invalid UTF-8.
    data[0] = 0;
    data[1] = b'\n';
    data[2] = 0xff;
    data[3] = 0xc3; // a UTF-8 lead byte followed by a non-continuation byte
    data[4] = b'(';
    data[(1 << 20) - 1] = 0;
    let mut stream = tcp(addr);
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let w = thread::spawn(move || {
        for chunk in sent.chunks(7919) {
            writer.write_all(chunk).expect("write to echo server");
        }
    });
    let back = read_exact_until(
        &mut stream,
        data.len(),
        Instant::now() + Duration::from_secs(30),
    );
    w.join().unwrap();
    if let Some(i) = back.iter().zip(&data).position(|(a, b)| a != b) {
        panic!("echoed data differs first at byte {i}");
    }
    // Nothing extra comes back; after our half-close the server closes.
    stream.shutdown(Shutdown::Write).unwrap();
    let (rest, ended) = read_to_end_until(&mut stream, Instant::now() + TIMEOUT);
    assert!(
        ended,
        "echo server did not close after the client's half-close"
    );
    assert!(rest.is_empty(), "echo sent {} extra bytes", rest.len());
}

#[test]
fn echo_hundred_concurrent_connections_each_get_their_own_stream() {
    let (_server, addr) = start_echo();
    let barrier = Arc::new(TimedBarrier::new(100));
    let threads: Vec<_> = (0..100u64)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut stream = tcp(addr);
                let mut rng = XorShift::new(1000 + i);
                // All 100 are open at once before anyone writes.
                barrier.wait(Duration::from_secs(30));
                let deadline = Instant::now() + Duration::from_secs(30);
                for round in 0..4 {
                    let chunk = rng.bytes(16 * 1024);
                    stream.write_all(&chunk).unwrap();
                    let back = read_exact_until(&mut stream, chunk.len(), deadline);
                    assert!(back == chunk, "connection {i}: round {round} differs");
                }
                stream.shutdown(Shutdown::Write).unwrap();
                let (rest, ended) = read_to_end_until(&mut stream, deadline);
                assert!(ended && rest.is_empty(), "connection {i}: bad end");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("an echo connection failed");
    }
}

#[test]
fn echo_half_close_returns_everything_then_eof() {
    let (_server, addr) = start_echo();
    let data = XorShift::new(7).bytes(100_000);
    let mut stream = tcp(addr);
    stream.write_all(&data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let (back, ended) = read_to_end_until(&mut stream, Instant::now() + TIMEOUT);
    assert!(ended, "no EOF after half-close ({} bytes back)", back.len());
    assert_eq!(back.len(), data.len(), "echoed length");
    assert!(back == data, "echoed bytes differ");
}

#[test]
fn echo_idle_connection_is_closed_with_nothing_sent() {
    let (_server, addr) = start(|c| {
        c.mode = Mode::Echo;
        c.idle_timeout = Duration::from_secs(1);
    });
    // Completely silent client.
    let mut quiet = tcp(addr);
    // A client that echoes a little, then goes quiet.
    let mut talker = tcp(addr);
    let start = Instant::now();
    talker.write_all(b"abc\n").unwrap();
    let back = read_exact_until(&mut talker, 4, Instant::now() + TIMEOUT);
    assert_eq!(back, b"abc\n");

    let (bytes, ended) = read_to_end_until(&mut quiet, Instant::now() + TIMEOUT);
    assert!(ended, "idle echo connection was not closed");
    assert!(
        bytes.is_empty(),
        "idle echo connection got bytes: {bytes:?}"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "closed after only {:?}",
        start.elapsed()
    );
    let (bytes, ended) = read_to_end_until(&mut talker, Instant::now() + TIMEOUT);
    assert!(ended, "idle echo connection was not closed");
    assert!(
        bytes.is_empty(),
        "idle echo connection got extra bytes: {bytes:?}"
    );
}

#[test]
fn echo_over_max_conns_is_closed_with_nothing_sent() {
    let (_server, addr) = start(|c| {
        c.mode = Mode::Echo;
        c.max_conns = 2;
    });
    let mut a = tcp(addr);
    let mut b = tcp(addr);
    for s in [&mut a, &mut b] {
        s.write_all(b"hi").unwrap();
        assert_eq!(read_exact_until(s, 2, Instant::now() + TIMEOUT), b"hi");
    }
    let mut c = tcp(addr);
    let _ = c.write_all(b"x");
    let (bytes, ended) = read_to_end_until(&mut c, Instant::now() + TIMEOUT);
    assert!(ended, "connection over max_conns was not closed");
    assert!(bytes.is_empty(), "connection over max_conns got {bytes:?}");
    a.write_all(b"still").unwrap();
    assert_eq!(
        read_exact_until(&mut a, 5, Instant::now() + TIMEOUT),
        b"still"
    );
}

// ---------------------------------------------------------------- framing

#[test]
fn frame_fed_one_byte_at_a_time() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let frame = "{\"id\":\"slow\",\"op\":\"echo\",\"data\":\"h\u{e9}llo \u{1F600}\"}\n";
    for b in frame.as_bytes() {
        c.send_raw(&[*b]);
        c.stream.flush().unwrap();
    }
    let r = c.recv();
    assert_eq!(
        r,
        json!({"id": "slow", "ok": true, "data": "h\u{e9}llo \u{1F600}"})
    );
    c.expect_silence(SHORT);
}

#[test]
fn two_frames_in_one_write() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    c.send_raw(b"{\"id\":1,\"op\":\"ping\"}\n{\"id\":2,\"op\":\"echo\",\"data\":[1,2]}\n");
    assert_eq!(c.recv(), json!({"id": 1, "ok": true, "pong": true}));
    assert_eq!(c.recv(), json!({"id": 2, "ok": true, "data": [1, 2]}));
    c.expect_silence(SHORT);
}

#[test]
fn crlf_line_endings_are_accepted() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    c.send_raw(b"{\"id\":1,\"op\":\"ping\"}\r\n{\"id\":2,\"op\":\"echo\",\"data\":\"x\"}\r\n");
    assert_eq!(c.recv(), json!({"id": 1, "ok": true, "pong": true}));
    assert_eq!(c.recv(), json!({"id": 2, "ok": true, "data": "x"}));
    c.expect_silence(SHORT);
}

#[test]
fn blank_and_whitespace_only_lines_are_ignored() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    c.send_raw(b"\n\r\n   \n\t \r\n \t\t\n");
    c.expect_silence(SHORT);
    c.send_raw(b"\n\n{\"id\":1,\"op\":\"ping\"}\n\n  \n{\"id\":2,\"op\":\"ping\"}\n");
    assert_eq!(c.recv(), json!({"id": 1, "ok": true, "pong": true}));
    assert_eq!(c.recv(), json!({"id": 2, "ok": true, "pong": true}));
    c.expect_silence(SHORT);
}

#[test]
fn ten_mib_line_is_discarded_and_answered_once() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    c.send_raw(b"{\"id\":1,\"op\":\"echo\",\"data\":\"");
    let block = vec![b'a'; 64 * 1024];
    for _ in 0..160 {
        c.send_raw(&block);
    }
    // No answer before the newline arrives.
    c.expect_silence(SHORT);
    c.send_raw(b"\"}\n");
    let f = c.recv_frame();
    assert_err(&f.value, "frame_too_large");
    assert_eq!(
        raw_field(&f.raw, "id"),
        None,
        "no id can be echoed: {}",
        f.value
    );
    // Exactly one answer, and the connection carries on.
    c.send_raw(b"{\"id\":2,\"op\":\"ping\"}\n");
    assert_eq!(c.recv(), json!({"id": 2, "ok": true, "pong": true}));
    // And once more, to see that memory was not kept from the first one.
    for _ in 0..160 {
        c.send_raw(&block);
    }
    c.send_raw(b"\n{\"id\":3,\"op\":\"ping\"}\n");
    assert_err(&c.recv(), "frame_too_large");
    assert_eq!(c.recv(), json!({"id": 3, "ok": true, "pong": true}));
    c.expect_silence(SHORT);
}

/// An `echo` frame of exactly `len` bytes, line ending included.
fn echo_frame(len: usize, ending: &[u8]) -> Vec<u8> {
    let head = b"{\"op\":\"echo\",\"data\":\"";
    let tail = b"\"}";
    let pad = len - head.len() - tail.len() - ending.len();
    let mut f = head.to_vec();
    f.extend(std::iter::repeat_n(b'x', pad));
    f.extend_from_slice(tail);
    f.extend_from_slice(ending);
    assert_eq!(f.len(), len);
    f
}

#[test]
fn max_frame_boundary_counts_the_newline_and_the_cr() {
    let (_server, addr) = start(|c| {
        c.max_frame = 1024;
        c.max_text = 512;
    });
    let mut c = Line::connect(addr);
    for (len, ending, fits) in [
        (1024, &b"\n"[..], true),
        (1025, &b"\n"[..], false),
        (1024, &b"\r\n"[..], true),
        (1025, &b"\r\n"[..], false),
        (1023, &b"\n"[..], true),
    ] {
        let r = c.request_raw(&echo_frame(len, ending));
        if fits {
            assert_ok(&r);
            let overhead = br#"{"op":"echo","data":""}"#.len();
            assert_eq!(
                r["data"].as_str().map(str::len),
                Some(len - overhead - ending.len()),
                "{len} bytes with {ending:?}"
            );
        } else {
            assert_err(&r, "frame_too_large");
        }
        c.ping();
    }
}

#[test]
fn bad_json_is_answered_and_connection_stays_usable() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let cases: [&[u8]; 9] = [
        b"{\"op\":\"ping\",\"x\":\"\xff\xfe\"}\n",
        b"\xc3\x28\n",
        b"[1]\n",
        b"\"x\"\n",
        b"3\n",
        b"null\n",
        b"{\"op\":\n",
        b"nope\n",
        b"{\"op\":\"ping\"}}\n",
    ];
    for case in cases {
        assert_err_without_id(&mut c, case, "bad_json");
    }
}

/// Sends `frame`, checks that it is answered with error `code` and no `id` (the server
/// found none it could echo), then that the connection still works.
#[track_caller]
fn assert_err_without_id(c: &mut Line, frame: &[u8], code: &str) {
    let f = c.request_frame_raw(frame);
    assert_err(&f.value, code);
    assert_eq!(
        raw_field(&f.raw, "id"),
        None,
        "{:?}: {}",
        String::from_utf8_lossy(frame),
        f.value
    );
    c.ping();
}

#[test]
fn bad_request_and_unknown_op() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    for case in [
        &b"{}\n"[..],
        b"{\"op\":5}\n",
        b"{\"op\":null}\n",
        b"{\"op\":[\"ping\"]}\n",
        b"{\"id\":4}\n",
    ] {
        let r = c.request_raw(case);
        assert_err(&r, "bad_request");
        c.ping();
    }
    let r = c.request(json!({"id": 9, "op": "nope"}));
    assert_err(&r, "unknown_op");
    assert_eq!(r["id"], 9);
    let r = c.request(json!({"op": ""}));
    assert_err(&r, "unknown_op");
    c.ping();
}

#[test]
fn id_is_echoed_byte_for_byte() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    for id in [
        "1",
        "1.50",
        "-0",
        "1e3",
        "1E+03",
        "12345678901234567890123456789",
        "0.1000000000000000000000001",
        r#""a\u0041""#,
        r#""\"q\"\\n""#,
        r#""é""#,
        r#""""#,
        r#""\ud83d\ude00""#,
    ] {
        let req = format!("{{\"id\":{id},\"op\":\"ping\"}}\n");
        let f = c.request_frame_raw(req.as_bytes());
        assert_ok(&f.value);
        assert_eq!(
            raw_field(&f.raw, "id").as_deref(),
            Some(id),
            "response line {:?}",
            String::from_utf8_lossy(&f.raw)
        );
    }
    // Errors echo the id too.
    let f = c.request_frame_raw(b"{\"id\" : 2.50 , \"op\":\"nope\"}\n");
    assert_err(&f.value, "unknown_op");
    assert_eq!(raw_field(&f.raw, "id").as_deref(), Some("2.50"));
    // A string id of 60 bytes is fine.
    let id = format!("\"{}\"", "i".repeat(60));
    let f = c.request_frame_raw(format!("{{\"id\":{id},\"op\":\"ping\"}}\n").as_bytes());
    assert_ok(&f.value);
    assert_eq!(raw_field(&f.raw, "id"), Some(id));
}

#[test]
fn id_of_wrong_type_or_too_long_is_bad_request_without_id() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let long_string = format!("\"{}\"", "s".repeat(65));
    let long_number = "9".repeat(65);
    for id in [
        "[1]",
        "true",
        "false",
        "{}",
        "{\"a\":1}",
        long_string.as_str(),
        long_number.as_str(),
    ] {
        let req = format!("{{\"id\":{id},\"op\":\"ping\"}}\n");
        assert_err_without_id(&mut c, req.as_bytes(), "bad_request");
    }
}

/// PROTOCOL.md: "If present it must be a JSON number or string"; `null` is present
/// and neither.
#[test]
fn id_null_is_bad_request_without_id() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    assert_err_without_id(&mut c, b"{\"id\":null,\"op\":\"ping\"}\n", "bad_request");
}

#[test]
fn request_without_id_gets_response_without_id() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let f = c.request_frame_raw(b"{\"op\":\"ping\"}\n");
    assert_eq!(f.value, json!({"ok": true, "pong": true}));
    assert_eq!(raw_field(&f.raw, "id"), None);
    let f = c.request_frame_raw(b"{\"op\":\"nope\"}\n");
    assert_err(&f.value, "unknown_op");
    assert_eq!(raw_field(&f.raw, "id"), None);
}

#[test]
fn pipelined_responses_come_in_request_order() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let mut batch = Vec::new();
    for i in 0..300 {
        let req = match i % 3 {
            0 => json!({"id": i, "op": "ping"}),
            1 => json!({"id": i, "op": "echo", "data": {"n": i, "pad": "p".repeat(i)}}),
            _ => json!({"id": i, "op": "nope"}),
        };
        batch.extend(line_of(&req));
    }
    c.send_raw(&batch);
    for i in 0..300 {
        let r = c.recv();
        assert_eq!(r["id"], i, "response {i} out of order: {r}");
        match i % 3 {
            0 => assert_eq!(r["pong"], true, "{r}"),
            1 => assert_eq!(r["data"]["n"], i, "{r}"),
            _ => assert_err(&r, "unknown_op"),
        }
    }
    c.expect_silence(SHORT);
}

#[test]
fn echo_and_ping_ops() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let data = json!({"a": [1, 2.5, null, true, "x\u{0}y"], "b": {"c": "\u{1F600}"}});
    let r = c.request(json!({"id": 1, "op": "echo", "data": data}));
    assert_eq!(r, json!({"id": 1, "ok": true, "data": data}));
    let r = c.request(json!({"op": "echo"}));
    assert_eq!(r, json!({"ok": true, "data": null}));
    assert!(r.get("data").is_some(), "\"data\":null must be present");
    let r = c.request(json!({"op": "echo", "data": "plain"}));
    assert_eq!(r, json!({"ok": true, "data": "plain"}));
    let r = c.request(json!({"op": "ping"}));
    assert_eq!(r, json!({"ok": true, "pong": true}));
    // Unknown extra fields are ignored.
    let r = c.request(json!({"op": "ping", "extra": [1, 2], "v": 2}));
    assert_eq!(r, json!({"ok": true, "pong": true}));
}

#[test]
fn quit_answers_closes_and_drops_later_frames() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    c.send_raw(
        b"{\"id\":1,\"op\":\"quit\"}\n{\"id\":2,\"op\":\"ping\"}\n{\"id\":3,\"op\":\"echo\"}\n",
    );
    let r = c.recv();
    assert_ok(&r);
    assert_eq!(r["id"], 1);
    c.expect_closed();
    // The server is still fine.
    let mut d = Line::connect(addr);
    d.ping();
}

#[test]
fn disconnect_mid_frame_leaves_server_healthy() {
    let (_server, addr) = start_chat();
    let mut watcher = Line::connect(addr);
    watcher.signup_login("watcher");
    for i in 0..20 {
        let mut c = Line::connect(addr);
        c.send_raw(b"{\"id\":1,\"op\":\"ping\"}\n{\"op\":\"signup\",\"user\":\"mid");
        if i % 2 == 0 {
            assert_eq!(c.recv()["id"], 1);
        }
        drop(c);
    }
    watcher.ping();
    let mut fresh = Line::connect(addr);
    // The dropped partial signup never happened.
    fresh.signup("mid");
    watcher.expect_silence(SHORT);
}

// ---------------------------------------------------------------- slow consumers

#[test]
fn slow_consumer_in_a_room_is_cut_off_and_nobody_else_slows_down() {
    const N: usize = 240;
    let (_server, addr) = start(|c| {
        c.max_outbound = 64 * 1024;
        c.max_text = 60_000;
    });
    let mut sender = user(addr, "sender");
    sender.create("busy");
    let mut slow = user(addr, "slow");
    slow.join("busy");
    let mut good = user(addr, "good");
    good.join("busy");
    sender.expect_event("joined");
    sender.expect_event("joined");
    slow.expect_event("joined");

    let text = "m".repeat(50_000);
    // `good` reads everything, concurrently.
    let reader = thread::spawn(move || {
        let mut seqs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seqs.len() < N {
            assert!(
                Instant::now() < deadline,
                "good reader: only {} messages",
                seqs.len()
            );
            let v = good.recv();
            if v["event"] == "message" {
                assert_eq!(v["text"].as_str().map(str::len), Some(50_000));
                seqs.push(v["seq"].as_u64().unwrap());
            }
        }
        good.ping();
        seqs
    });
    let mut slowest = Duration::ZERO;
    for i in 0..N {
        let t = Instant::now();
        let r = sender.request(json!({"op": "send", "room": "busy", "text": text}));
        slowest = slowest.max(t.elapsed());
        assert_ok(&r);
        assert_eq!(r["seq"], i + 1);
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a send took {slowest:?} while another member was not reading"
    );
    let seqs = reader.join().expect("the reading member failed");
    assert_eq!(
        seqs,
        (1..=N as u64).collect::<Vec<_>>(),
        "reading member lost messages"
    );

    // The member that never read was cut off.
    let frames = slow.read_until_closed(Duration::from_secs(20));
    let messages = frames.iter().filter(|f| f["event"] == "message").count();
    assert!(
        messages < N,
        "slow consumer got all {N} messages and was never cut off"
    );
    for (i, f) in frames.iter().enumerate() {
        if f["event"] == "closing" {
            assert_eq!(f["reason"], "slow_consumer", "{f}");
            assert_eq!(i, frames.len() - 1, "frames after closing");
        } else {
            assert_eq!(f["event"], "message", "unexpected frame {f}");
        }
    }
    sender.ping();
}

#[test]
fn pipelining_client_that_never_reads_is_cut_off() {
    let (_server, addr) = start(|c| c.max_outbound = 64 * 1024);
    let mut other = Line::connect(addr);
    let hog = tcp(addr);
    let mut hog_reader = hog.try_clone().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let writer = thread::spawn(move || {
        let mut hog = hog;
        hog.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let frame = line_of(&json!({"op": "echo", "data": "e".repeat(30_000)}));
        let mut written = 0usize;
        let result = loop {
            if written > 50 << 20 {
                break Ok(written);
            }
            match hog.write_all(&frame) {
                Ok(()) => written += frame.len(),
                Err(e) => break Err((written, e)),
            }
        };
        done2.store(true, Ordering::SeqCst);
        result
    });
    // Meanwhile the other connection is answered promptly.
    let mut pings = 0;
    while !done.load(Ordering::SeqCst) && pings < 2000 {
        let t = Instant::now();
        other.ping();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "ping took {:?}",
            t.elapsed()
        );
        pings += 1;
        thread::sleep(Duration::from_millis(20));
    }
    match writer.join().unwrap() {
        Ok(written) => panic!("server kept reading {written} bytes from a client that never reads"),
        Err((written, e)) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "server stopped reading the non-reader after {written} bytes but did not close it: {e}"
        ),
    }
    let (_bytes, ended) = read_to_end_until(&mut hog_reader, Instant::now() + TIMEOUT);
    assert!(ended, "the non-reader's connection was not closed");
    other.ping();
}

// ---------------------------------------------------------------- idle timeout

#[test]
fn idle_chat_connection_gets_closing_then_eof() {
    let (_server, addr) = start(|c| c.idle_timeout = Duration::from_secs(1));
    let mut c = Line::connect(addr);
    let t = Instant::now();
    c.ping();
    let ev = c.expect_event("closing");
    assert_eq!(ev, json!({"event": "closing", "reason": "idle_timeout"}));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "closed after {:?}",
        t.elapsed()
    );
    c.expect_closed();
}

#[test]
fn pinging_connection_outlives_the_idle_timeout() {
    let (_server, addr) = start(|c| c.idle_timeout = Duration::from_secs(1));
    let mut c = Line::connect(addr);
    let t = Instant::now();
    for _ in 0..10 {
        c.ping();
        // Pacing, not synchronisation: the point is to spend time below the timeout.
        thread::sleep(Duration::from_millis(300));
    }
    assert!(t.elapsed() > Duration::from_secs(2));
    c.ping();
    // Then it stops pinging and is closed.
    assert_eq!(c.expect_event("closing")["reason"], "idle_timeout");
    c.expect_closed();
}

#[test]
fn only_bytes_from_the_client_reset_the_idle_timer() {
    let (_server, addr) = start(|c| c.idle_timeout = Duration::from_secs(1));
    let mut listener = user(addr, "listener");
    listener.create("r");
    let mut talker = user(addr, "talker");
    talker.join("r");
    let t = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    // The talker keeps the room busy; the listener only receives.
    let talking = thread::spawn(move || {
        for i in 0..50 {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            talker.say("r", &format!("m{i}"));
            thread::sleep(Duration::from_millis(100));
        }
        talker.ping();
    });
    let closing = listener.expect_event("closing");
    stop.store(true, Ordering::SeqCst);
    assert_eq!(closing["reason"], "idle_timeout");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "closed only after {:?}",
        t.elapsed()
    );
    let before = listener.take_events("message").len();
    assert!(before > 0, "the listener received no messages while idle");
    listener.clear_pending();
    listener.expect_closed();
    talking.join().expect("the talker failed");
}

// ---------------------------------------------------------------- connection limits

#[test]
fn connections_over_max_conns_get_server_full() {
    let (_server, addr) = start(|c| c.max_conns = 3);
    let mut conns: Vec<Line> = (0..3).map(|_| Line::connect(addr)).collect();
    for c in &mut conns {
        c.ping();
    }
    let mut fourth = Line::connect(addr);
    expect_closing(&mut fourth, "server_full");
    for c in &mut conns {
        c.ping();
    }
    // A freed slot can be used again (the server notices the close asynchronously).
    drop(conns.pop());
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = Line::connect(addr);
        c.send_raw(b"{\"op\":\"ping\"}\n");
        let v = c.recv();
        if v["ok"] == true {
            break;
        }
        assert_eq!(v["reason"], "server_full", "{v}");
        assert!(Instant::now() < deadline, "slot never freed");
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- shutdown

#[test]
fn graceful_shutdown_through_the_handle() {
    let (server, addr) = start_chat();
    let mut a = Line::connect(addr);
    a.ping();
    let mut b = user(addr, "bob");
    b.ping();
    server.shutdown();
    for c in [&mut a, &mut b] {
        expect_closing(c, "shutdown");
    }
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        tx.send(server.join().map_err(|e| e.to_string())).unwrap();
    });
    let joined = rx
        .recv_timeout(TIMEOUT)
        .expect("ServerHandle::join did not return");
    assert_eq!(joined, Ok(()), "the server stopped with an error");
}

#[test]
fn dropping_the_handle_stops_the_server() {
    let (server, addr) = start_chat();
    let mut a = Line::connect(addr);
    a.ping();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        drop(server);
        tx.send(()).unwrap();
    });
    expect_closing(&mut a, "shutdown");
    rx.recv_timeout(TIMEOUT)
        .expect("dropping ServerHandle did not return");
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct Reaper(Child);

impl Reaper {
    /// The child's exit status; `what` is the failure if it is still running 5 s on.
    #[track_caller]
    fn exit_within_5s(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{what}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_binary(extra: &[&str]) -> (Reaper, SocketAddr) {
    let mut child = common::serve_command()
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parlor binary");
    let stderr = child.stderr.take().unwrap();
    let reaper = Reaper(child);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        let mut sent = false;
        // Keep draining stderr so the server never blocks on it.
        while let Some(Ok(line)) = lines.next() {
            if !sent && let Some(i) = line.find("listening on ") {
                let rest = &line[i + "listening on ".len()..];
                let addr = rest.split(' ').next().unwrap_or("").to_owned();
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(TIMEOUT)
        .expect("the binary never logged `listening on <addr> `");
    let addr: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("bad address {addr:?} in the start-up line: {e}"));
    assert_ne!(addr.port(), 0);
    (reaper, addr)
}

#[test]
fn sigterm_shuts_the_binary_down_gracefully() {
    let (mut child, addr) = spawn_binary(&[]);
    let mut a = Line::connect(addr);
    a.ping();
    let mut b = user(addr, "ada");
    b.ping();
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    for c in [&mut a, &mut b] {
        expect_closing(c, "shutdown");
    }
    let status = child.exit_within_5s("the binary did not exit within 5 s of SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
}

#[test]
fn binary_echo_mode() {
    let (_child, addr) = spawn_binary(&["--echo"]);
    let mut s = tcp(addr);
    let data = XorShift::new(99).bytes(10_000);
    s.write_all(&data).unwrap();
    assert!(read_exact_until(&mut s, data.len(), Instant::now() + TIMEOUT) == data);
}

#[test]
fn binary_honours_its_limit_flags() {
    let (_child, addr) = spawn_binary(&[
        "--max-frame",
        "1024",
        "--max-text",
        "512",
        "--idle-timeout",
        "1",
        "--max-conns",
        "2",
        "--workers",
        "1",
        "--max-outbound",
        "65536",
    ]);
    let mut a = Line::connect(addr);
    assert_ok(&a.request_raw(&echo_frame(1024, b"\n")));
    assert_err(&a.request_raw(&echo_frame(1025, b"\n")), "frame_too_large");
    let mut b = Line::connect(addr);
    b.ping();
    let mut c = Line::connect(addr);
    expect_closing(&mut c, "server_full");
    // Idle for a second: closed.
    expect_closing(&mut a, "idle_timeout");
}

#[test]
fn binary_version_and_conflicting_storage_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .expect("run parlor --version");
    assert!(out.status.success(), "parlor --version: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")),
        "--version printed {text:?}"
    );
    let dir = std::env::temp_dir().join(format!("parlor-conflict-{}", std::process::id()));
    let mut child = Reaper(
        Command::new(env!("CARGO_BIN_EXE_parlor"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--in-memory",
                "--data-dir",
            ])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run parlor serve"),
    );
    let status = child.exit_within_5s("--in-memory with --data-dir did not fail");
    assert!(
        !status.success(),
        "--in-memory with --data-dir must be an error"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_client_on_the_chat_port_is_closed_at_once() {
    let (_server, addr) = start_chat();
    let mut s = tcp(addr);
    // The start of a TLS ClientHello record.
    s.write_all(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ])
    .unwrap();
    let (_bytes, ended) = read_to_end_until(&mut s, Instant::now() + Duration::from_secs(5));
    assert!(
        ended,
        "a TLS handshake on the plain chat port was not closed"
    );
    let mut c = Line::connect(addr);
    c.ping();
}

// ---------------------------------------------------------------- before login

#[test]
fn chat_ops_before_login_are_not_authenticated() {
    let (_server, addr) = start_chat();
    let mut owner = user(addr, "owner");
    owner.create("lobby");
    let mut c = Line::connect(addr);
    for req in [
        json!({"op": "send", "room": "lobby", "text": "hi"}),
        json!({"op": "join", "room": "lobby"}),
        json!({"op": "whoami"}),
        json!({"op": "logout"}),
        json!({"op": "create", "room": "new"}),
        json!({"op": "leave", "room": "lobby"}),
        json!({"op": "members", "room": "lobby"}),
        json!({"op": "dm", "to": "owner", "text": "hi"}),
        json!({"op": "history", "room": "lobby"}),
    ] {
        let r = c.request(req.clone());
        assert_err(&r, "not_authenticated");
    }
    // An unknown op is unknown_op, also before login.
    assert_err(&c.request(json!({"op": "nope"})), "unknown_op");
    assert_err(&c.request(json!({"op": "Ping"})), "unknown_op");
    // The ops allowed before login work.
    c.ping();
    let r = c.request(json!({"op": "echo", "data": 1}));
    assert_eq!(r["data"], 1);
    let r = c.request(json!({"op": "rooms"}));
    assert_ok(&r);
    assert_eq!(
        r["rooms"],
        json!([{"room": "lobby", "topic": "", "members": 1}])
    );
    let r = c.request(json!({"op": "quit"}));
    assert_ok(&r);
    c.expect_closed();
    owner.expect_silence(SHORT);
}

/// The whole suite again, with each server storing to a data directory.
#[test]
fn the_core_suite_passes_with_a_store() {
    rerun_with_store("the_core_suite_passes_with_a_store");
}
