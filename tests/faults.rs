//! Limits that must not refuse honest clients, and defences that must hold against
//! hostile ones (issue 14): password-hash shedding and its fairness, `retry_after`,
//! the failed-login limiter, login timing, size-limit defaults, `id` lengths, `rooms`
//! paging, and list answers that fit the outbound limit. Real servers on port 0, real
//! sockets.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use parlor::{Server, Storage};
use serde_json::{Value, json};

/// A TCP connection to `to` from the loopback address `local` (127.0.0.2 and so on:
/// another client address on this machine).
fn connect_from(local: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        panic!("tests listen on IPv4 loopback, not {to}")
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let (from, to) = (sockaddr(local, 0), sockaddr(*to.ip(), to.port()));
    // SAFETY: a fresh socket, bound and connected with valid sockaddr_in values, then
    // owned by the TcpStream alone.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let bound = libc::bind(fd, (&raw const from).cast(), len);
        assert_eq!(
            bound,
            0,
            "bind {local}: {}",
            std::io::Error::last_os_error()
        );
        let connected = libc::connect(fd, (&raw const to).cast(), len);
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

fn login(user: &str, password: &str) -> Value {
    json!({"op": "login", "user": user, "password": password})
}

fn retry_after(answer: &Value) -> u64 {
    answer["retry_after"]
        .as_u64()
        .filter(|&ms| ms > 0)
        .unwrap_or_else(|| panic!("no positive integer retry_after in {answer}"))
}

// ---------------------------------------------------------------- item 6

#[test]
fn two_hundred_cheap_signups_at_once_are_all_served() {
    let (_server, addr) = start(|c| {
        c.hash_threads = 1;
        // Well above what 200 cheap hashes take even on a loaded machine; a limit by
        // count (64 queued) refused most of them.
        c.max_hash_wait = Duration::from_secs(10);
    });
    let mut clients: Vec<Line> = (0..200)
        .map(|i| {
            let mut c = Line::named(addr, &format!("u{i}"));
            c.send_json(json!({"op": "signup", "user": format!("u{i}"), "password": PASSWORD}));
            c
        })
        .collect();
    for c in &mut clients {
        let answer = c.recv();
        assert_ok(&answer);
    }
}

#[test]
fn one_busy_address_does_not_keep_another_waiting() {
    let (_server, addr) = start(|c| {
        c.bcrypt_cost = 10;
        c.hash_threads = 1;
        c.max_hash_wait = Duration::from_secs(3);
    });
    // 128 logins of unknown names from 127.0.0.1: each hashes at cost 10 (50 ms or
    // more), so some 60 at most fit in the wait allowed.
    let mut flood: Vec<Line> = (0..128)
        .map(|i| {
            let mut c = Line::named(addr, &format!("flood{i}"));
            c.send_json(login(&format!("ghost{i}"), PASSWORD));
            c
        })
        .collect();
    // Those that would wait too long are refused at once, with a time to come back.
    let mut answered: Vec<Option<Value>> = vec![None; flood.len()];
    let deadline = Instant::now() + TIMEOUT;
    while !answered
        .iter()
        .flatten()
        .any(|a| a["error"] == "server_busy")
    {
        assert!(
            Instant::now() < deadline,
            "nobody was refused: {answered:?}"
        );
        for (c, answer) in flood.iter_mut().zip(&mut answered) {
            if answer.is_none() {
                *answer = c.try_read_frame(Instant::now()).ok().map(|f| f.value);
            }
        }
    }
    for busy in answered
        .iter()
        .flatten()
        .filter(|a| a["error"] == "server_busy")
    {
        assert!(
            retry_after(busy) >= 3000,
            "retry_after below the wait: {busy}"
        );
    }
    // Another address is served next, not after the queue of the first.
    let mut polite = Line::from_stream(connect_from(Ipv4Addr::new(127, 0, 0, 2), addr), "polite");
    let answer = polite.request(json!({"op": "signup", "user": "polite", "password": PASSWORD}));
    assert_ok(&answer);
    let waiting: Vec<usize> = (0..flood.len())
        .filter(|&i| answered[i].is_none())
        .filter(|&i| matches!(flood[i].try_read_frame(Instant::now()), Err(End::Timeout)))
        .collect();
    assert!(
        waiting.len() >= 3,
        "the other address was served after the flood ({} still waiting)",
        waiting.len()
    );
    // Every accepted login is answered in the end.
    for i in waiting {
        let answer = flood[i].recv();
        assert_err(&answer, "auth_failed");
    }
}

// ---------------------------------------------------------------- items 9, 10

#[test]
fn simultaneous_wrong_logins_check_at_most_five() {
    let (_server, addr) = start(|c| {
        c.bcrypt_cost = 8;
        // This test is about the limiter: no `server_busy` on a loaded machine.
        c.max_hash_wait = Duration::from_secs(60);
    });
    let mut eve = Line::connect(addr);
    eve.signup("eve");
    let mut tries: Vec<Line> = (0..20)
        .map(|i| {
            let mut c = Line::named(addr, &format!("try{i}"));
            c.send_json(login("eve", "not the password"));
            c
        })
        .collect();
    let answers: Vec<Value> = tries.iter_mut().map(Line::recv).collect();
    let checked = answers
        .iter()
        .filter(|a| a["error"] == "auth_failed")
        .count();
    assert_eq!(checked, 5, "{answers:?}");
    for limited in answers.iter().filter(|a| a["error"] != "auth_failed") {
        assert_err(limited, "rate_limited");
        assert!(retry_after(limited) <= 60_000, "{limited}");
    }
    // The right password waits for the window too.
    assert_err(&eve.request(login("eve", PASSWORD)), "rate_limited");
}

#[test]
fn names_no_account_can_have_are_not_kept_by_the_login_limiter() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    // A name of 60,000 bytes would cost the limiter 60,000 bytes per entry: not kept,
    // and answered like any wrong login.
    let huge = "x".repeat(60_000);
    let spaced = "not a name";
    for _ in 0..7 {
        assert_err(&c.request(login(&huge, PASSWORD)), "auth_failed");
        assert_err(&c.request(login(spaced, PASSWORD)), "auth_failed");
    }
    // A name that could exist is limited, whether it does or not.
    for _ in 0..5 {
        assert_err(&c.request(login("ghost", PASSWORD)), "auth_failed");
    }
    let limited = c.request(login("ghost", PASSWORD));
    assert_err(&limited, "rate_limited");
    retry_after(&limited);
}

// ---------------------------------------------------------------- item 11

struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("parlor-faults-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_in(dir: &TempDir, cost: u32) -> (parlor::ServerHandle, SocketAddr) {
    start(|c| {
        c.storage = Storage::Dir(dir.0.clone());
        c.bcrypt_cost = cost;
    })
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Medians of wrong-password logins for `known` names and as many unknown ones,
/// interleaved so that a change of machine load touches both alike.
fn failed_login_medians(addr: SocketAddr, known: &[String]) -> (Duration, Duration) {
    let mut c = Line::connect(addr);
    let mut timed = |name: &str| {
        let started = Instant::now();
        assert_err(&c.request(login(name, "not the password")), "auth_failed");
        started.elapsed()
    };
    let (mut existing, mut unknown) = (Vec::new(), Vec::new());
    for (i, name) in known.iter().enumerate() {
        existing.push(timed(name));
        unknown.push(timed(&format!("nobody{i}")));
    }
    (median(existing), median(unknown))
}

#[track_caller]
fn assert_alike(existing: Duration, unknown: Duration) {
    let ratio = existing.as_secs_f64() / unknown.as_secs_f64().max(1e-6);
    assert!(
        (1.0 / 3.0..3.0).contains(&ratio),
        "a failed login for an existing name takes {existing:?}, for an unknown one {unknown:?}"
    );
}

#[test]
fn failed_login_time_does_not_tell_which_names_exist_after_a_cost_change() {
    let names: Vec<String> = (0..9).map(|i| format!("user{i}")).collect();
    for (made_at, served_at) in [(8, 4), (4, 8)] {
        let dir = TempDir::new(&format!("timing-{made_at}-{served_at}"));
        {
            let (_server, addr) = start_in(&dir, made_at);
            let mut c = Line::connect(addr);
            for name in &names {
                c.signup(name);
            }
        }
        let (_server, addr) = start_in(&dir, served_at);
        let (existing, unknown) = failed_login_medians(addr, &names);
        assert_alike(existing, unknown);
    }
}

#[test]
fn a_login_rehashes_the_password_at_the_current_cost() {
    let dir = TempDir::new("rehash");
    {
        let (_server, addr) = start_in(&dir, 6);
        let mut c = Line::connect(addr);
        c.signup("ada");
        c.signup("bob");
    }
    {
        let (_server, addr) = start_in(&dir, 4);
        let mut c = Line::connect(addr);
        assert_ok(&c.request(login("ada", PASSWORD)));
    }
    let db = rusqlite::Connection::open(dir.0.join("parlor.db")).unwrap();
    let hash = |name: &str| -> String {
        db.query_row("SELECT hash FROM users WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert!(hash("ada").starts_with("$2b$04$"), "ada: {}", hash("ada"));
    assert!(hash("bob").starts_with("$2b$06$"), "bob: {}", hash("bob"));
    drop(db);
    // The new hash checks the same password.
    let (_server, addr) = start_in(&dir, 4);
    let mut c = Line::connect(addr);
    assert_ok(&c.request(login("ada", PASSWORD)));
    assert_err(&c.request(login("ada", "not the password")), "auth_failed");
}

// ---------------------------------------------------------------- item 7

#[test]
fn a_limit_left_at_its_default_follows_the_one_set() {
    // Through the embedding API: only max_frame is set.
    let server = Server::builder()
        .addr("127.0.0.1:0")
        .in_memory()
        .configure(|c| c.max_frame = 1024)
        .build()
        .expect("--max-frame 1024 alone starts");
    assert_eq!(server.config().max_text, 256);
    let addr = server.local_addr();
    let _handle = server.spawn();
    let mut c = Line::connect(addr);
    let session = c.signup_login("ada");
    assert!(!session.is_empty());
    c.create("r");
    assert_ok(&c.request(json!({"op": "send", "room": "r", "text": "t".repeat(256)})));
    let r = c.request(json!({"op": "send", "room": "r", "text": "t".repeat(257)}));
    assert_err(&r, "too_long");
    // Two set limits that conflict still fail.
    let both = Server::builder()
        .addr("127.0.0.1:0")
        .in_memory()
        .configure(|c| {
            c.max_frame = 1024;
            c.max_text = 2000;
        })
        .build();
    assert!(both.is_err(), "max_text 2000 with max_frame 1024 must fail");
}

#[test]
fn the_binary_starts_with_max_frame_alone_and_says_what_followed() {
    let mut child = serve_command()
        .args(["--max-frame", "1024"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parlor binary");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    let listening = loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(wait) else {
            let _ = child.kill();
            panic!("the binary never said it listens: {seen:#?}");
        };
        if let Some(i) = line.find("listening on ") {
            break line[i + "listening on ".len()..]
                .split(' ')
                .next()
                .unwrap()
                .to_owned();
        }
        seen.push(line);
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter()
            .any(|l| l.contains("--max-text follows --max-frame: 256")),
        "no start-up line says --max-text follows: {seen:#?}"
    );
    assert!(listening.parse::<SocketAddr>().is_ok(), "{listening}");
    // Two explicit flags that conflict: an error that names both.
    let out = serve_command()
        .args(["--max-frame", "1024", "--max-text", "16384"])
        .stdin(Stdio::null())
        .output()
        .expect("run the parlor binary");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("--max-text 16384 must be below --max-frame 1024"),
        "{text}"
    );
}

// ---------------------------------------------------------------- item 8

#[test]
fn an_id_is_measured_by_its_own_bytes() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let accepted = [
        format!("\"{}\"", "x".repeat(64)),
        format!("\"{}\"", "é".repeat(32)),
        format!("\"{}\"", "\\u00e9".repeat(32)),
        format!("\"{}\"", "\\\"".repeat(64)),
        "9".repeat(64),
    ];
    for id in &accepted {
        let f = c.request_frame_raw(format!("{{\"id\":{id},\"op\":\"ping\"}}\n").as_bytes());
        assert_ok(&f.value);
        assert_eq!(
            raw_field(&f.raw, "id").as_ref(),
            Some(id),
            "comes back byte for byte"
        );
    }
    let refused = [
        format!("\"{}\"", "x".repeat(65)),
        format!("\"{}é\"", "x".repeat(63)),
        "9".repeat(65),
    ];
    for id in &refused {
        let v = c.request_raw(format!("{{\"id\":{id},\"op\":\"ping\"}}\n").as_bytes());
        assert_err(&v, "bad_request");
        assert!(v.get("id").is_none(), "{v}");
    }
}

// ---------------------------------------------------------------- item 14

#[test]
fn rooms_come_in_pages() {
    let (_server, addr) = start(|c| c.max_rooms_per_user = 0);
    let mut c = user(addr, "ada");
    // 1001 rooms, pipelined.
    let names: Vec<String> = (0..1001).map(|i| format!("r{i:04}")).collect();
    for name in &names {
        c.send_json(json!({"op": "create", "room": name}));
    }
    for _ in &names {
        assert_ok(&c.recv());
    }
    let page = |c: &mut Line, request: Value| {
        let r = c.request(request);
        assert_ok(&r);
        let rooms: Vec<String> = r["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["room"].as_str().unwrap().to_owned())
            .collect();
        (rooms, r.get("next").cloned())
    };
    let (first, next) = page(&mut c, json!({"op": "rooms"}));
    assert_eq!(first, names[..1000]);
    let next = next.expect("`next` when more remain");
    let (rest, none) = page(&mut c, json!({"op": "rooms", "after": next}));
    assert_eq!(rest, names[1000..]);
    assert_eq!(none, None);
    // Small pages, each taking up where the last left off.
    let (mut all, mut after): (Vec<String>, Option<Value>) = (Vec::new(), None);
    for _ in 0..20 {
        let mut request = json!({"op": "rooms", "limit": 60});
        if let Some(after) = &after {
            request["after"] = after.clone();
        }
        let (rooms, next) = page(&mut c, request);
        assert!(rooms.len() <= 60);
        all.extend(rooms);
        after = next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(all, names);
    // parlor::Client's `rooms` still lists them all, page after page.
    let mut client = parlor::Client::connect(addr).unwrap();
    let listed: Vec<String> = client
        .rooms()
        .unwrap()
        .into_iter()
        .map(|r| r.room)
        .collect();
    assert_eq!(listed, names);
    for bad in [json!(0), json!(1001), json!("ten")] {
        assert_err(
            &c.request(json!({"op": "rooms", "limit": bad})),
            "bad_request",
        );
    }
}

/// The answer to `request`, which must be one: an ok, not a `closing` that cuts the
/// asker off.
fn answered(c: &mut Line, request: Value) -> Frame {
    c.send_json(request);
    let frame = c.recv_frame();
    assert_eq!(frame.value["ok"], true, "{}", frame.value);
    frame
}

#[test]
fn a_rooms_page_fits_the_outbound_limit_of_whoever_asks() {
    const MAX_OUTBOUND: usize = 100_000;
    let (_server, addr) = start(|c| {
        c.max_outbound = MAX_OUTBOUND;
        c.max_rooms_per_user = 0;
    });
    let mut ada = user(addr, "ada");
    // 400 rooms with 256-byte topics: about 120 KB of entries, above the limit.
    let names: Vec<String> = (0..400).map(|i| format!("room{i:03}")).collect();
    for name in &names {
        ada.send_json(json!({"op": "create", "room": name, "topic": "t".repeat(256)}));
        assert_ok(&ada.recv());
    }
    // Asked before any login, page after page, each taking up where the last ended.
    let mut anyone = Line::connect(addr);
    let (mut listed, mut request) = (Vec::new(), json!({"op": "rooms"}));
    for _ in 0..names.len() {
        let page = answered(&mut anyone, request.clone());
        assert!(
            page.raw.len() < MAX_OUTBOUND / 2,
            "a page of {} bytes leaves no room in the outbound queue",
            page.raw.len()
        );
        let rooms = page.value["rooms"].as_array().unwrap();
        assert!(!rooms.is_empty(), "a page with nothing makes no progress");
        listed.extend(rooms.iter().map(|r| r["room"].as_str().unwrap().to_owned()));
        match page.value.get("next") {
            Some(next) => request = json!({"op": "rooms", "after": next}),
            None => break,
        }
    }
    assert_eq!(listed, names, "every room, once, in name order");
    let client = parlor::Client::connect(addr).unwrap().rooms().unwrap();
    assert_eq!(client.len(), names.len());
}

#[test]
fn history_of_large_messages_fits_the_outbound_limit() {
    let (_server, addr) = start(|c| c.max_outbound = HISTORY_OUTBOUND);
    history_comes_in_pages_that_fit(addr);
    // With a data directory, and memory keeping only the newest few: the older
    // pages come from the store.
    let dir = TempDir::new("large-history");
    let (_server, addr) = start(|c| {
        c.max_outbound = HISTORY_OUTBOUND;
        c.storage = Storage::Dir(dir.0.clone());
        c.history_len = 4;
    });
    history_comes_in_pages_that_fit(addr);
}

const HISTORY_OUTBOUND: usize = 100_000;

/// 20 messages of 16,000 bytes (about 320 KB, above `HISTORY_OUTBOUND`) read back
/// newest first from the end, then oldest first from the start: each way, pages that
/// fit the limit and together hold every message once.
fn history_comes_in_pages_that_fit(addr: SocketAddr) {
    const MAX_OUTBOUND: usize = HISTORY_OUTBOUND;
    let mut ada = user(addr, "ada");
    ada.create("big");
    let texts: Vec<String> = (0..20).map(|i| format!("{i:02}").repeat(8000)).collect();
    for text in &texts {
        ada.say("big", text);
    }
    let texts_of = |page: &Value| -> Vec<String> {
        let messages = page["messages"].as_array().unwrap();
        assert!(
            !messages.is_empty(),
            "a page with nothing makes no progress"
        );
        messages
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut reader = user(addr, "bob");
    reader.join("big");
    let (mut backwards, mut before): (Vec<String>, Option<u64>) = (Vec::new(), None);
    for _ in 0..texts.len() {
        let mut request = json!({"op": "history", "room": "big", "limit": 500});
        if let Some(before) = before {
            request["before"] = json!(before);
        }
        let page = answered(&mut reader, request);
        assert!(
            page.raw.len() < MAX_OUTBOUND / 2,
            "{} bytes",
            page.raw.len()
        );
        let first = page.value["messages"][0]["seq"].as_u64().unwrap();
        let mut older = texts_of(&page.value);
        older.append(&mut backwards);
        backwards = older;
        if first == 1 {
            break;
        }
        before = Some(first);
    }
    assert_eq!(backwards, texts);
    let (mut forwards, mut after) = (Vec::new(), 0);
    for _ in 0..texts.len() {
        let request = json!({"op": "history", "room": "big", "after": after, "limit": 500});
        let page = answered(&mut reader, request);
        assert!(
            page.raw.len() < MAX_OUTBOUND / 2,
            "{} bytes",
            page.raw.len()
        );
        forwards.extend(texts_of(&page.value));
        after = page.value["messages"].as_array().unwrap().last().unwrap()["seq"]
            .as_u64()
            .unwrap();
        if after == texts.len() as u64 {
            break;
        }
    }
    assert_eq!(forwards, texts);
}

#[test]
fn rooms_created_per_user_are_capped() {
    let (_server, addr) = start(|c| c.max_rooms_per_user = 3);
    let mut ada = user(addr, "ada");
    for i in 0..3 {
        ada.create(&format!("a{i}"));
    }
    let r = ada.request(json!({"op": "create", "room": "a3"}));
    assert_err(&r, "too_many_rooms");
    let mut bob = user(addr, "bob");
    bob.create("b0");
    assert_ok(&ada.request(json!({"op": "join", "room": "b0"})));
}
