//! Every chat op, error code and event rule of PROTOCOL.md, over raw JSON lines.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SHORT: Duration = Duration::from_millis(300);

/// The heavy tests (many threads, or saturated hashing) take this so they do not
/// run at the same time and distort each other's timing.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|n| n.as_str().expect("a name").to_owned())
        .collect()
}

// ---------------------------------------------------------------- accounts

#[test]
fn signup_login_whoami_fields() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let r = c.request(json!({"id": 1, "op": "signup", "user": "ada", "password": PASSWORD}));
    assert_eq!(r, json!({"id": 1, "ok": true, "user": "ada"}));
    // signup does not log the connection in.
    assert_err(&c.request(json!({"op": "whoami"})), "not_authenticated");
    let r = c.request(json!({"id": 2, "op": "login", "user": "ada", "password": PASSWORD}));
    assert_ok(&r);
    assert_eq!(r["id"], 2);
    assert_eq!(r["user"], "ada");
    let session = r["session"].as_str().expect("session is a string");
    assert!(!session.is_empty());
    let r = c.request(json!({"op": "whoami"}));
    assert_eq!(r["rooms"], json!([]));
    assert_eq!(r["user"], "ada");
    // A second login gives another working token.
    let mut d = Line::connect(addr);
    let s2 = d.login("ada");
    assert_ne!(s2, session, "two logins got the same session token");
    c.expect_silence(SHORT);
}

#[test]
fn signup_name_rules() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let long = "n".repeat(33);
    for bad in [
        "",
        long.as_str(),
        "a b",
        "\u{e4}",
        "a/b",
        "a:b",
        "a@b",
        "tab\t",
        "x\n",
    ] {
        let r = c.request(json!({"op": "signup", "user": bad, "password": PASSWORD}));
        assert_err(&r, "bad_name");
    }
    let max = "m".repeat(32);
    for good in [max.as_str(), "A-Z_a.z-09", "Ada", "ada", "_", ".", "-"] {
        c.signup(good);
    }
    // Names are case-sensitive: Ada and ada are two users.
    let mut d = Line::connect(addr);
    d.login("Ada");
    assert_eq!(d.request(json!({"op": "whoami"}))["user"], "Ada");
    // Wrong types are bad_request.
    for req in [
        json!({"op": "signup", "user": 5, "password": PASSWORD}),
        json!({"op": "signup", "user": "x", "password": 12345678}),
        json!({"op": "signup", "user": "x"}),
        json!({"op": "signup", "password": PASSWORD}),
        json!({"op": "signup", "user": null, "password": PASSWORD}),
    ] {
        assert_err(&c.request(req), "bad_request");
    }
}

#[test]
fn signup_password_rules_count_bytes() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let cases = [
        ("p7", "1234567".to_owned(), false),
        ("p0", String::new(), false),
        ("p8", "12345678".to_owned(), true),
        ("p72", "x".repeat(72), true),
        ("p73", "x".repeat(73), false),
        // 4 characters, 8 bytes: long enough.
        ("u8", "\u{e9}".repeat(4), true),
        // 37 characters, 74 bytes: too long.
        ("u74", "\u{e9}".repeat(37), false),
        // 8 characters, 9 bytes.
        ("u9", "abcdefg\u{e9}".to_owned(), true),
    ];
    for (user, password, ok) in &cases {
        let r = c.request(json!({"op": "signup", "user": user, "password": password}));
        if *ok {
            assert_ok(&r);
        } else {
            assert_err(&r, "weak_password");
        }
    }
    // The accepted passwords work for login, whole (a 72-byte one is not cut short).
    for (user, password, ok) in &cases {
        if *ok {
            let r = c.request(json!({"op": "login", "user": user, "password": password}));
            assert_ok(&r);
        }
    }
    let r = c.request(json!({"op": "login", "user": "p72", "password": "x".repeat(71)}));
    assert_err(&r, "auth_failed");
}

#[test]
fn signup_existing_user() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    c.signup("ada");
    let r = c.request(json!({"op": "signup", "user": "ada", "password": "another pass"}));
    assert_err(&r, "user_exists");
    // The original password still works.
    c.login("ada");
}

#[test]
fn login_failures_look_identical() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    c.signup("ada");
    let wrong =
        c.request(json!({"id": 1, "op": "login", "user": "ada", "password": "wrong password"}));
    let unknown =
        c.request(json!({"id": 1, "op": "login", "user": "nobody", "password": PASSWORD}));
    assert_err(&wrong, "auth_failed");
    assert_eq!(
        wrong, unknown,
        "unknown user and wrong password must look the same"
    );
    // A malformed name or an over-long password is just a failed login here.
    for (user, password) in [
        ("bad name", PASSWORD.to_owned()),
        ("", PASSWORD.to_owned()),
        ("ada", "x".repeat(100)),
        ("ada", "short".to_owned()),
    ] {
        let r = c.request(json!({"id": 1, "op": "login", "user": user, "password": password}));
        assert_eq!(r, wrong, "login {user:?}");
    }
    assert_err(
        &c.request(json!({"op": "login", "user": "ada"})),
        "bad_request",
    );
    assert_err(
        &c.request(json!({"op": "login", "user": ["ada"], "password": PASSWORD})),
        "bad_request",
    );
    // Still not logged in.
    assert_err(&c.request(json!({"op": "whoami"})), "not_authenticated");
}

#[test]
fn failed_logins_are_rate_limited_per_name() {
    let (_server, addr) = start_chat();
    let mut c = Line::connect(addr);
    let mut d = Line::connect(addr);
    for u in ["eve", "fay", "gus"] {
        c.signup(u);
    }
    let bad = |user: &str| json!({"op": "login", "user": user, "password": "not the password"});
    let good = |user: &str| json!({"op": "login", "user": user, "password": PASSWORD});
    // Five failures in a row, from two connections: the name counts, not the connection.
    for i in 0..5 {
        let conn = if i < 3 { &mut c } else { &mut d };
        assert_err(&conn.request(bad("eve")), "auth_failed");
    }
    assert_err(&c.request(bad("eve")), "rate_limited");
    assert_err(&d.request(good("eve")), "rate_limited");
    assert_err(&c.request(good("eve")), "rate_limited");
    // Other names are unaffected.
    assert_ok(&c.request(good("fay")));
    // The same for a name that does not exist.
    for _ in 0..5 {
        assert_err(&d.request(bad("ghost")), "auth_failed");
    }
    assert_err(&d.request(bad("ghost")), "rate_limited");
    // A success resets the count; signup and resume attempts do not count.
    for _ in 0..4 {
        assert_err(&c.request(bad("gus")), "auth_failed");
    }
    for _ in 0..3 {
        let r = c.request(json!({"op": "signup", "user": "gus", "password": "whatever1"}));
        assert_err(&r, "user_exists");
        assert_err(
            &c.request(json!({"op": "resume", "session": "nope"})),
            "auth_failed",
        );
    }
    assert_ok(&c.request(good("gus")));
    for _ in 0..4 {
        assert_err(&c.request(bad("gus")), "auth_failed");
    }
    assert_ok(&c.request(good("gus")));
    // eve is still limited.
    assert_err(&d.request(good("eve")), "rate_limited");
}

#[test]
fn resume_on_a_new_connection() {
    let (_server, addr) = start_chat();
    let mut a = Line::connect(addr);
    let session = a.signup_login("ada");
    let mut b = Line::connect(addr);
    let r = b.request(json!({"id": "r", "op": "resume", "session": session}));
    assert_eq!(r, json!({"id": "r", "ok": true, "user": "ada"}));
    assert_eq!(b.request(json!({"op": "whoami"}))["user"], "ada");
    // Bad tokens.
    let mut c = Line::connect(addr);
    assert_err(
        &c.request(json!({"op": "resume", "session": "nope"})),
        "auth_failed",
    );
    assert_err(
        &c.request(json!({"op": "resume", "session": ""})),
        "auth_failed",
    );
    assert_err(
        &c.request(json!({"op": "resume", "session": 5})),
        "bad_request",
    );
    assert_err(&c.request(json!({"op": "resume"})), "bad_request");
    assert_err(&c.request(json!({"op": "whoami"})), "not_authenticated");
    // Disconnect and quit revoke nothing.
    drop(a);
    let r = b.request(json!({"op": "quit"}));
    assert_ok(&r);
    b.expect_closed();
    let mut d = Line::connect(addr);
    assert_eq!(
        d.request(json!({"op": "resume", "session": session}))["user"],
        "ada"
    );
}

#[test]
fn logout_revokes_the_session_everywhere_but_keeps_resumed_connections() {
    let (_server, addr) = start_chat();
    let mut a = Line::connect(addr);
    let session = a.signup_login("ada");
    let mut b = Line::connect(addr);
    assert_ok(&b.request(json!({"op": "resume", "session": session})));
    let mut other = second(addr, "ada");
    let r = a.request(json!({"id": 3, "op": "logout"}));
    assert_eq!(r, json!({"id": 3, "ok": true}));
    assert_err(&a.request(json!({"op": "whoami"})), "not_authenticated");
    assert_err(&a.request(json!({"op": "logout"})), "not_authenticated");
    // The token is dead for new resumes...
    let mut c = Line::connect(addr);
    assert_err(
        &c.request(json!({"op": "resume", "session": session})),
        "auth_failed",
    );
    assert_err(
        &a.request(json!({"op": "resume", "session": session})),
        "auth_failed",
    );
    // ...but connections that already resumed it, and other logins, carry on.
    assert_eq!(b.request(json!({"op": "whoami"}))["user"], "ada");
    assert_eq!(other.request(json!({"op": "whoami"}))["user"], "ada");
    // And a fresh login works on the logged-out connection.
    a.login("ada");
}

#[test]
fn login_and_resume_switch_the_connection_to_the_new_user() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    a.create("lobby");
    let mut bob = user(addr, "bob");
    let bob_session = bob.login("bob");
    let mut carol = user(addr, "carol");
    carol.join("lobby");
    a.expect_event("joined");
    // Connection `a` switches to bob, who is not in the lobby.
    a.login("bob");
    let who = a.request(json!({"op": "whoami"}));
    assert_eq!((&who["user"], &who["rooms"]), (&json!("bob"), &json!([])));
    carol.say("lobby", "only for members");
    a.expect_silence(SHORT);
    assert_err(
        &a.request(json!({"op": "send", "room": "lobby", "text": "x"})),
        "not_member",
    );
    // Back to ada through resume of ... a fresh ada session.
    let mut tmp = Line::connect(addr);
    let ada_session = tmp.login("ada");
    let r = a.request(json!({"op": "resume", "session": ada_session}));
    assert_eq!(r["user"], "ada");
    carol.say("lobby", "again");
    assert_eq!(a.expect_event("message")["text"], "again");
    let r = a.request(json!({"op": "resume", "session": bob_session}));
    assert_eq!(r["user"], "bob");
}

// ---------------------------------------------------------------- rooms

#[test]
fn create_rooms_and_list() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    let r = a.request(json!({"id": 1, "op": "create", "room": "lobby", "topic": "say hello"}));
    assert_eq!(r, json!({"id": 1, "ok": true, "room": "lobby"}));
    a.create("Zeta");
    a.create("a.b-c_9");
    let r = a.request(json!({"op": "create", "room": "t256", "topic": "t".repeat(256)}));
    assert_ok(&r);
    let r = a.request(json!({"op": "create", "room": "t257", "topic": "t".repeat(257)}));
    assert_err(&r, "too_long");
    let r = a.request(json!({"op": "create", "room": "lobby"}));
    assert_err(&r, "room_exists");
    let r = a.request(json!({"op": "create", "room": "lobby", "topic": "other"}));
    assert_err(&r, "room_exists");
    let long = "r".repeat(65);
    for bad in ["", long.as_str(), "a b", "#lobby", "\u{e9}t\u{e9}", "x/y"] {
        assert_err(&a.request(json!({"op": "create", "room": bad})), "bad_name");
    }
    a.create(&"r".repeat(64));
    for req in [
        json!({"op": "create"}),
        json!({"op": "create", "room": 1}),
        json!({"op": "create", "room": "x", "topic": 5}),
    ] {
        assert_err(&a.request(req), "bad_request");
    }
    // Room names are case-sensitive.
    a.create("LOBBY");
    let r = a.request(json!({"op": "rooms"}));
    assert_ok(&r);
    let rooms = r["rooms"].as_array().unwrap();
    let got: Vec<&str> = rooms.iter().map(|r| r["room"].as_str().unwrap()).collect();
    let mut want = vec!["lobby", "Zeta", "a.b-c_9", "t256", "LOBBY"];
    let r64 = "r".repeat(64);
    want.push(&r64);
    want.sort();
    assert_eq!(got, want, "rooms sorted by byte order");
    for room in rooms {
        assert_eq!(room["members"], 1, "{room}");
        let topic = match room["room"].as_str().unwrap() {
            "lobby" => "say hello".to_owned(),
            "t256" => "t".repeat(256),
            _ => String::new(),
        };
        assert_eq!(room["topic"], topic, "{room}");
    }
    // The creator is a member.
    let r = a.request(json!({"op": "whoami"}));
    assert_eq!(names(&r["rooms"]), want);
}

#[test]
fn join_fields_and_errors() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    a.request(json!({"op": "create", "room": "lobby", "topic": "say hello"}));
    a.say("lobby", "one");
    a.say("lobby", "two");
    let mut z = user(addr, "zed");
    let mut b = user(addr, "bob");
    let r = b.request(json!({"id": 5, "op": "join", "room": "lobby"}));
    assert_eq!(
        r,
        json!({"id": 5, "ok": true, "room": "lobby", "topic": "say hello",
               "members": ["ada", "bob"], "roles": {"ada": "owner"}, "seq": 2,
               "presence": {"ada": {"status": "online"}, "bob": {"status": "online"}}})
    );
    let r = z.join("lobby");
    assert_eq!(r["members"], json!(["ada", "bob", "zed"]));
    // A new room with no messages has seq 0 and topic "".
    a.create("empty");
    let r = b.join("empty");
    assert_eq!(r["seq"], 0);
    assert_eq!(r["topic"], "");
    assert_eq!(r["members"], json!(["ada", "bob"]));
    // Errors.
    assert_err(
        &b.request(json!({"op": "join", "room": "nope"})),
        "no_such_room",
    );
    assert_err(
        &b.request(json!({"op": "join", "room": "bad name"})),
        "no_such_room",
    );
    assert_err(
        &b.request(json!({"op": "join", "room": "Lobby"})),
        "no_such_room",
    );
    assert_err(&b.request(json!({"op": "join"})), "bad_request");
    assert_err(&b.request(json!({"op": "join", "room": 3})), "bad_request");
}

#[test]
fn second_join_is_ok_without_duplicates_or_events() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    a.create("lobby");
    let mut b = user(addr, "bob");
    b.join("lobby");
    let ev = a.expect_event("joined");
    assert_eq!(
        ev,
        json!({"event": "joined", "room": "lobby", "user": "bob"})
    );
    let r = b.join("lobby");
    assert_eq!(r["members"], json!(["ada", "bob"]));
    // The creator joining its own room is a second join too.
    let r = a.join("lobby");
    assert_eq!(r["members"], json!(["ada", "bob"]));
    a.expect_silence(SHORT);
    b.expect_silence(SHORT);
    let r = a.request(json!({"op": "rooms"}));
    assert_eq!(
        r["rooms"],
        json!([{"room": "lobby", "topic": "", "members": 2}])
    );
}

#[test]
fn joined_and_left_go_to_other_members_only() {
    let (_server, addr) = start_chat();
    let mut a1 = user(addr, "ada");
    let mut a2 = second(addr, "ada");
    a1.create("lobby");
    let mut b1 = user(addr, "bob");
    let mut b2 = second(addr, "bob");
    let mut c = user(addr, "carol"); // not a member
    let mut anon = Line::connect(addr); // not logged in
    b1.join("lobby");
    let want = json!({"event": "joined", "room": "lobby", "user": "bob"});
    assert_eq!(a1.expect_event("joined"), want);
    assert_eq!(a2.expect_event("joined"), want);
    b1.expect_silence(SHORT);
    b2.expect_silence(SHORT);
    c.expect_silence(Duration::ZERO);
    anon.expect_silence(Duration::ZERO);

    let r = b2.request(json!({"id": 1, "op": "leave", "room": "lobby"}));
    assert_eq!(r, json!({"id": 1, "ok": true, "room": "lobby"}));
    let want = json!({"event": "left", "room": "lobby", "user": "bob"});
    assert_eq!(a1.expect_event("left"), want);
    assert_eq!(a2.expect_event("left"), want);
    b1.expect_silence(SHORT);
    b2.expect_silence(Duration::ZERO);
    c.expect_silence(Duration::ZERO);
    anon.expect_silence(Duration::ZERO);
    // bob no longer gets messages.
    a1.say("lobby", "after bob left");
    a2.expect_event("message");
    b1.expect_silence(SHORT);
    b2.expect_silence(Duration::ZERO);
}

#[test]
fn leave_errors_and_empty_rooms_live_on() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    let mut b = user(addr, "bob");
    a.create("lobby");
    assert_err(
        &b.request(json!({"op": "leave", "room": "lobby"})),
        "not_member",
    );
    assert_err(
        &b.request(json!({"op": "leave", "room": "nope"})),
        "no_such_room",
    );
    assert_err(
        &b.request(json!({"op": "leave", "room": "bad name"})),
        "no_such_room",
    );
    assert_err(&b.request(json!({"op": "leave"})), "bad_request");
    let r = a.request(json!({"op": "leave", "room": "lobby"}));
    assert_eq!(r, json!({"ok": true, "room": "lobby"}));
    assert_err(
        &a.request(json!({"op": "leave", "room": "lobby"})),
        "not_member",
    );
    let r = b.request(json!({"op": "rooms"}));
    assert_eq!(
        r["rooms"],
        json!([{"room": "lobby", "topic": "", "members": 0}])
    );
    let r = b.request(json!({"op": "members", "room": "lobby"}));
    assert_eq!(
        r,
        json!({"ok": true, "room": "lobby", "members": [], "roles": {}, "presence": {}})
    );
    assert_eq!(b.join("lobby")["members"], json!(["bob"]));
    assert_eq!(a.request(json!({"op": "whoami"}))["rooms"], json!([]));
}

#[test]
fn members_works_for_non_members() {
    let (_server, addr) = start_chat();
    let mut z = user(addr, "zed");
    z.create("lobby");
    let mut a = user(addr, "ada");
    a.join("lobby");
    let mut b = user(addr, "Bob");
    b.join("lobby");
    let mut c = user(addr, "carol");
    let r = c.request(json!({"id": 2, "op": "members", "room": "lobby"}));
    assert_eq!(
        r,
        json!({"id": 2, "ok": true, "room": "lobby", "members": ["Bob", "ada", "zed"],
               "roles": {"zed": "owner"}, "presence": r["presence"]})
    );
    assert_err(
        &c.request(json!({"op": "members", "room": "nope"})),
        "no_such_room",
    );
    assert_err(
        &c.request(json!({"op": "members", "room": "bad name"})),
        "no_such_room",
    );
    assert_err(&c.request(json!({"op": "members"})), "bad_request");
}

#[test]
fn membership_survives_logout_and_reconnect() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    a.create("a-room");
    a.create("B-room");
    let mut b = user(addr, "bob");
    b.create("c");
    a.join("c");
    assert_ok(&a.request(json!({"op": "logout"})));
    drop(a);
    let mut a = user_again(addr, "ada");
    let r = a.request(json!({"op": "whoami"}));
    assert_eq!(r["rooms"], json!(["B-room", "a-room", "c"]));
    // And messages reach the new connection.
    b.say("c", "welcome back");
    assert_eq!(a.expect_event("message")["text"], "welcome back");
    let r = b.request(json!({"op": "members", "room": "c"}));
    assert_eq!(r["members"], json!(["ada", "bob"]));
}

fn user_again(addr: std::net::SocketAddr, name: &str) -> Line {
    let mut c = Line::named(addr, name);
    c.login(name);
    c
}

// ---------------------------------------------------------------- messages

#[test]
fn message_reaches_every_member_connection_but_the_sending_one() {
    let (_server, addr) = start_chat();
    let mut a1 = user(addr, "ada");
    let mut a2 = second(addr, "ada");
    let mut a_out = second(addr, "ada");
    assert_ok(&a_out.request(json!({"op": "logout"})));
    a1.create("lobby");
    let mut b1 = user(addr, "bob");
    let mut b2 = second(addr, "bob");
    b1.join("lobby");
    a1.expect_event("joined");
    a2.expect_event("joined");
    let mut c = user(addr, "carol");
    let mut anon = Line::connect(addr);

    let ack = a1.request(json!({"id": 9, "op": "send", "room": "lobby", "text": "hi \u{1F600}"}));
    assert_ok(&ack);
    assert_eq!(ack["id"], 9);
    assert_eq!(ack["seq"], 1);
    let ts = ack["ts"].as_u64().expect("ts is an integer");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        ts.abs_diff(now_ms) < 60_000,
        "ts {ts} is not ms since the epoch"
    );
    let want = json!({"event": "message", "room": "lobby", "from": "ada",
                      "text": "hi \u{1F600}", "seq": 1, "ts": ts});
    assert_eq!(a2.expect_event("message"), want);
    assert_eq!(b1.expect_event("message"), want);
    assert_eq!(b2.expect_event("message"), want);
    a1.expect_silence(SHORT);
    a_out.expect_silence(Duration::ZERO);
    c.expect_silence(Duration::ZERO);
    anon.expect_silence(Duration::ZERO);
    a2.expect_silence(Duration::ZERO);
    b1.expect_silence(Duration::ZERO);
    b2.expect_silence(Duration::ZERO);

    // From the other side, to the sender's second connection too.
    let ack = b2.say("lobby", "back");
    assert_eq!(ack["seq"], 2);
    for conn in [&mut a1, &mut a2, &mut b1] {
        let ev = conn.expect_event("message");
        assert_eq!(ev["from"], "bob");
        assert_eq!(ev["seq"], 2);
        assert_eq!(ev["ts"], ack["ts"]);
    }
    b2.expect_silence(SHORT);
}

#[test]
fn seq_starts_at_one_and_counts_per_room() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    a.create("one");
    a.create("two");
    let mut last_ts = 0;
    for i in 1..=5u64 {
        let r = a.say("one", &format!("one {i}"));
        assert_eq!(r["seq"], i);
        let ts = r["ts"].as_u64().unwrap();
        assert!(ts >= last_ts, "ts went back in a room");
        last_ts = ts;
        if i % 2 == 0 {
            assert_eq!(a.say("two", "two")["seq"], i / 2);
        }
    }
    let mut b = user(addr, "bob");
    assert_eq!(b.join("one")["seq"], 5);
    assert_eq!(b.join("two")["seq"], 2);
    assert_eq!(b.say("two", "x")["seq"], 3);
}

#[test]
fn send_errors() {
    let (_server, addr) = start(|c| c.max_text = 100);
    let mut a = user(addr, "ada");
    a.create("lobby");
    let mut b = user(addr, "bob");
    assert_err(
        &b.request(json!({"op": "send", "room": "lobby", "text": "x"})),
        "not_member",
    );
    assert_err(
        &b.request(json!({"op": "send", "room": "nope", "text": "x"})),
        "no_such_room",
    );
    assert_err(
        &b.request(json!({"op": "send", "room": "bad name", "text": "x"})),
        "no_such_room",
    );
    // Length is in bytes: 50 two-byte characters are exactly 100 bytes.
    a.say("lobby", &"\u{e9}".repeat(50));
    a.say("lobby", &"x".repeat(100));
    let r = a.request(json!({"op": "send", "room": "lobby", "text": "x".repeat(101)}));
    assert_err(&r, "too_long");
    let r = a.request(
        json!({"op": "send", "room": "lobby", "text": format!("{}\u{e9}", "x".repeat(99))}),
    );
    assert_err(&r, "too_long");
    for req in [
        json!({"op": "send", "room": "lobby", "text": ""}),
        json!({"op": "send", "room": "lobby"}),
        json!({"op": "send", "text": "x"}),
        json!({"op": "send", "room": "lobby", "text": 5}),
        json!({"op": "send", "room": "lobby", "text": ["x"]}),
        json!({"op": "send", "room": 1, "text": "x"}),
    ] {
        assert_err(&a.request(req), "bad_request");
    }
    // None of the failures used a seq.
    assert_eq!(a.say("lobby", "ok")["seq"], 3);
}

// ---------------------------------------------------------------- direct messages

#[test]
fn dm_reaches_every_recipient_connection_only() {
    let (_server, addr) = start_chat();
    let mut a1 = user(addr, "ada");
    let mut a2 = second(addr, "ada");
    let mut b1 = user(addr, "bob");
    let mut b2 = second(addr, "bob");
    let mut c = user(addr, "carol");

    let ack = a1.request(json!({"id": "d", "op": "dm", "to": "bob", "text": "psst"}));
    assert_ok(&ack);
    assert_eq!(ack["id"], "d");
    let ts = ack["ts"].as_u64().expect("dm ack has ts");
    let want = json!({"event": "dm", "from": "ada", "text": "psst", "ts": ts});
    assert_eq!(b1.expect_event("dm"), want);
    assert_eq!(b2.expect_event("dm"), want);
    a1.expect_silence(SHORT);
    a2.expect_silence(Duration::ZERO);
    c.expect_silence(Duration::ZERO);

    // To oneself: the other connections get it, the sending one does not.
    let ack = a1.request(json!({"op": "dm", "to": "ada", "text": "note to self"}));
    assert_ok(&ack);
    let want = json!({"event": "dm", "from": "ada", "text": "note to self", "ts": ack["ts"]});
    assert_eq!(a2.expect_event("dm"), want);
    a1.expect_silence(SHORT);
    b1.expect_silence(Duration::ZERO);
    b2.expect_silence(Duration::ZERO);
}

#[test]
fn dm_errors() {
    let (_server, addr) = start(|c| c.max_text = 10);
    let mut a = user(addr, "ada");
    let mut b = user(addr, "bob");
    assert_err(
        &a.request(json!({"op": "dm", "to": "nobody", "text": "x"})),
        "no_such_user",
    );
    assert_err(
        &a.request(json!({"op": "dm", "to": "bad name", "text": "x"})),
        "no_such_user",
    );
    assert_err(
        &a.request(json!({"op": "dm", "to": "Bob", "text": "x"})),
        "no_such_user",
    );
    assert_err(
        &a.request(json!({"op": "dm", "to": "bob", "text": "x".repeat(11)})),
        "too_long",
    );
    assert_err(
        &a.request(json!({"op": "dm", "to": "bob", "text": ""})),
        "bad_request",
    );
    assert_err(&a.request(json!({"op": "dm", "to": "bob"})), "bad_request");
    assert_err(&a.request(json!({"op": "dm", "text": "x"})), "bad_request");
    assert_err(
        &a.request(json!({"op": "dm", "to": 1, "text": "x"})),
        "bad_request",
    );
    let ack = a.request(json!({"op": "dm", "to": "bob", "text": "x".repeat(10)}));
    assert_ok(&ack);
    assert_eq!(b.expect_event("dm")["text"], "x".repeat(10));
    b.expect_silence(SHORT);
}

#[test]
fn offline_dm_is_delivered_right_after_the_next_login() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    let mut b = Line::named(addr, "bob");
    b.signup("bob");
    let t1 = a.request(json!({"op": "dm", "to": "bob", "text": "first"}))["ts"].clone();
    let t2 = a.request(json!({"op": "dm", "to": "bob", "text": "second"}))["ts"].clone();
    assert!(t1.is_u64() && t2.is_u64());
    // Delivered right after the login's ok, in order.
    let r = b.request(json!({"id": 1, "op": "login", "user": "bob", "password": PASSWORD}));
    assert_ok(&r);
    assert!(
        b.pending_values().is_empty(),
        "frames before the login ok: {:?}",
        b.pending_values()
    );
    assert_eq!(
        b.recv(),
        json!({"event": "dm", "from": "ada", "text": "first", "ts": t1})
    );
    assert_eq!(
        b.recv(),
        json!({"event": "dm", "from": "ada", "text": "second", "ts": t2})
    );
    b.expect_silence(SHORT);
    // Then forgotten: another login gets nothing.
    let mut b2 = second(addr, "bob");
    b2.expect_silence(SHORT);
    // With a logged-in connection of bob online, a dm is not kept.
    a.request(json!({"op": "dm", "to": "bob", "text": "live"}));
    assert_eq!(b.expect_event("dm")["text"], "live");
    assert_eq!(b2.expect_event("dm")["text"], "live");
    let mut b3 = second(addr, "bob");
    b3.expect_silence(SHORT);
}

#[test]
fn offline_dm_is_delivered_after_resume() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    let mut b = Line::named(addr, "bob");
    b.signup("bob");
    // Two sessions: logging out revokes only the second.
    let kept = b.login("bob");
    b.login("bob");
    assert_ok(&b.request(json!({"op": "logout"})));
    // Now bob has no logged-in connection.
    let ack = a.request(json!({"op": "dm", "to": "bob", "text": "while away"}));
    assert_ok(&ack);
    let mut b2 = Line::named(addr, "bob#2");
    let r = b2.request(json!({"op": "resume", "session": kept}));
    assert_eq!(r, json!({"ok": true, "user": "bob"}));
    assert_eq!(
        b2.recv(),
        json!({"event": "dm", "from": "ada", "text": "while away", "ts": ack["ts"]})
    );
    b2.expect_silence(SHORT);
    b.expect_silence(Duration::ZERO);
}

#[test]
fn offline_dms_keep_the_newest_thousand() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    let mut b = Line::named(addr, "bob");
    b.signup("bob");
    let total = 1005;
    for i in 0..total {
        let r = a.request(json!({"op": "dm", "to": "bob", "text": format!("d{i}")}));
        assert_ok(&r);
    }
    b.login("bob");
    for i in (total - 1000)..total {
        let ev = b.recv();
        assert_eq!(ev["event"], "dm", "{ev}");
        assert_eq!(ev["text"], format!("d{i}"), "the oldest are dropped first");
    }
    b.expect_silence(SHORT);
}

// ---------------------------------------------------------------- history

fn history(c: &mut Line, args: Value) -> Vec<Value> {
    let mut req = json!({"op": "history", "room": "h"});
    for (k, v) in args.as_object().unwrap() {
        req[k] = v.clone();
    }
    let r = c.request(req.clone());
    assert_ok(&r);
    r["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{req}: no messages array: {r}"))
        .clone()
}

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn history_paging_semantics() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    a.create("h");
    let mut b = user(addr, "bob");
    b.join("h");
    let mut acks = vec![Value::Null];
    for i in 1..=55 {
        let c = if i % 2 == 0 { &mut a } else { &mut b };
        acks.push(c.say("h", &format!("m{i}")));
    }
    let all = history(&mut a, json!({"limit": 500}));
    assert_eq!(seqs(&all), (1..=55).collect::<Vec<_>>());
    for (i, m) in all.iter().enumerate() {
        let seq = i + 1;
        let from = if seq % 2 == 0 { "ada" } else { "bob" };
        assert_eq!(
            *m,
            json!({"event": "message", "room": "h", "from": from, "text": format!("m{seq}"),
                   "seq": seq, "ts": acks[seq]["ts"]}),
        );
    }
    let r = |c: &mut Line, args: Value| seqs(&history(c, args));
    // Default: the newest 50.
    assert_eq!(r(&mut a, json!({})), (6..=55).collect::<Vec<_>>());
    assert_eq!(r(&mut a, json!({"limit": 3})), vec![53, 54, 55]);
    assert_eq!(r(&mut a, json!({"before": 5, "limit": 2})), vec![3, 4]);
    assert_eq!(r(&mut a, json!({"before": 5})), vec![1, 2, 3, 4]);
    assert_eq!(r(&mut a, json!({"before": 1})), Vec::<u64>::new());
    assert_eq!(r(&mut a, json!({"before": 0})), Vec::<u64>::new());
    assert_eq!(r(&mut a, json!({"before": 1000, "limit": 2})), vec![54, 55]);
    assert_eq!(r(&mut a, json!({"after": 5, "limit": 2})), vec![6, 7]);
    assert_eq!(r(&mut a, json!({"after": 0, "limit": 3})), vec![1, 2, 3]);
    assert_eq!(r(&mut a, json!({"after": 5})), (6..=55).collect::<Vec<_>>());
    assert_eq!(r(&mut a, json!({"after": 53})), vec![54, 55]);
    assert_eq!(r(&mut a, json!({"after": 55})), Vec::<u64>::new());
    assert_eq!(r(&mut a, json!({"after": 2, "before": 6})), vec![3, 4, 5]);
    assert_eq!(
        r(&mut a, json!({"after": 2, "before": 9, "limit": 2})),
        vec![3, 4]
    );
    assert_eq!(
        r(&mut a, json!({"after": 5, "before": 6})),
        Vec::<u64>::new()
    );
    assert_eq!(
        r(&mut a, json!({"after": 9, "before": 3})),
        Vec::<u64>::new()
    );
    assert_eq!(r(&mut a, json!({"limit": 1})), vec![55]);
    // A room without messages.
    a.create("quiet");
    let q = a.request(json!({"op": "history", "room": "quiet"}));
    assert_eq!(q, json!({"ok": true, "messages": []}));
}

#[test]
fn history_errors() {
    let (_server, addr) = start_chat();
    let mut a = user(addr, "ada");
    a.create("h");
    a.say("h", "x");
    for args in [
        json!({"limit": 0}),
        json!({"limit": 501}),
        json!({"limit": -1}),
        json!({"limit": "5"}),
        json!({"limit": 1.5}),
        json!({"before": -1}),
        json!({"after": -1}),
        json!({"before": "3"}),
    ] {
        let mut req = json!({"op": "history", "room": "h"});
        for (k, v) in args.as_object().unwrap() {
            req[k] = v.clone();
        }
        assert_err(&a.request(req), "bad_request");
    }
    assert_eq!(history(&mut a, json!({"limit": 500})).len(), 1);
    assert_err(&a.request(json!({"op": "history"})), "bad_request");
    assert_err(
        &a.request(json!({"op": "history", "room": "nope"})),
        "no_such_room",
    );
    let mut b = user(addr, "bob");
    assert_err(
        &b.request(json!({"op": "history", "room": "h"})),
        "not_member",
    );
    // Shape comes before existence.
    assert_err(
        &b.request(json!({"op": "history", "room": "nope", "limit": 0})),
        "bad_request",
    );
}

#[test]
fn history_keeps_the_newest_with_a_small_history_len() {
    let (_server, addr) = start(|c| c.history_len = 5);
    let mut a = user(addr, "ada");
    a.create("h");
    let acks: Vec<Value> = (1..=12).map(|i| a.say("h", &format!("m{i}"))).collect();
    let newest = history(&mut a, json!({"limit": 5}));
    assert_eq!(seqs(&newest), vec![8, 9, 10, 11, 12]);
    for m in &newest {
        let seq = m["seq"].as_u64().unwrap() as usize;
        assert_eq!(m["text"], format!("m{seq}"));
        assert_eq!(m["ts"], acks[seq - 1]["ts"]);
        assert_eq!(m["event"], "message");
    }
    assert_eq!(
        seqs(&history(&mut a, json!({"before": 12, "limit": 3}))),
        vec![9, 10, 11]
    );
    assert_eq!(
        seqs(&history(&mut a, json!({"after": 9}))),
        vec![10, 11, 12]
    );
    // Asking for more returns a contiguous run that ends with the newest (the server
    // may have kept older ones too; with --in-memory it keeps them all).
    let more = seqs(&history(&mut a, json!({})));
    assert!(more.len() >= 5, "{more:?}");
    assert_eq!(*more.last().unwrap(), 12);
    assert!(more.windows(2).all(|w| w[1] == w[0] + 1), "{more:?}");
    assert_eq!(a.say("h", "m13")["seq"], 13);
}

#[test]
fn history_response_is_capped_at_one_mib() {
    let (_server, addr) = start(|c| c.max_text = 16_000);
    let mut a = user(addr, "ada");
    a.create("h");
    for i in 0..70 {
        let mut text = format!("{i:02}");
        text.push_str(&"z".repeat(15_998));
        a.say("h", &text);
    }
    let newest = seqs(&history(&mut a, json!({"limit": 500})));
    assert!(
        !newest.is_empty() && newest.len() < 70,
        "{} messages in one response",
        newest.len()
    );
    assert!(
        newest.len() >= 60,
        "stopped far too early: {}",
        newest.len()
    );
    assert_eq!(
        *newest.last().unwrap(),
        70,
        "without after, the newest are kept"
    );
    assert!(newest.windows(2).all(|w| w[1] == w[0] + 1));
    let oldest = seqs(&history(&mut a, json!({"after": 0, "limit": 500})));
    assert!(oldest.len() < 70 && oldest.len() >= 60, "{}", oldest.len());
    assert_eq!(oldest[0], 1, "with after, the oldest are kept");
    assert!(oldest.windows(2).all(|w| w[1] == w[0] + 1));
    // Paging on from the cursor reaches the rest.
    let rest = seqs(&history(
        &mut a,
        json!({"after": *oldest.last().unwrap(), "limit": 500}),
    ));
    assert_eq!(*rest.last().unwrap(), 70);
    assert_eq!(rest[0], oldest.last().unwrap() + 1);
}

// ---------------------------------------------------------------- fault precedence

#[test]
fn fault_precedence() {
    let (_server, addr) = start(|c| c.max_text = 10);
    let mut anon = Line::connect(addr);
    // bad_request before not_authenticated.
    for req in [
        json!({"op": "send", "room": "lobby"}),
        json!({"op": "send", "room": "lobby", "text": 5}),
        json!({"op": "join"}),
        json!({"op": "dm", "to": 5, "text": "x"}),
        json!({"op": "create", "room": "x", "topic": 1}),
    ] {
        assert_err(&anon.request(req), "bad_request");
    }
    // not_authenticated before name and length rules.
    for req in [
        json!({"op": "create", "room": "bad name"}),
        json!({"op": "create", "room": "ok", "topic": "t".repeat(300)}),
        json!({"op": "send", "room": "lobby", "text": "x".repeat(11)}),
        json!({"op": "dm", "to": "bad name", "text": "x".repeat(11)}),
        json!({"op": "join", "room": "nope"}),
    ] {
        assert_err(&anon.request(req), "not_authenticated");
    }
    let mut a = user(addr, "ada");
    a.create("lobby");
    let mut b = user(addr, "bob");
    // Name and length rules before existence and membership.
    assert_err(
        &b.request(json!({"op": "send", "room": "nope", "text": "x".repeat(11)})),
        "too_long",
    );
    assert_err(
        &b.request(json!({"op": "send", "room": "lobby", "text": "x".repeat(11)})),
        "too_long",
    );
    assert_err(
        &b.request(json!({"op": "dm", "to": "nobody", "text": "x".repeat(11)})),
        "too_long",
    );
    assert_err(
        &b.request(json!({"op": "create", "room": "lobby", "topic": "t".repeat(257)})),
        "too_long",
    );
    assert_err(
        &b.request(json!({"op": "signup", "user": "ada", "password": "short"})),
        "weak_password",
    );
    assert_err(
        &b.request(json!({"op": "signup", "user": "ada", "password": "x".repeat(73)})),
        "weak_password",
    );
    // Shape before everything, also when logged in.
    assert_err(
        &b.request(json!({"op": "send", "room": "nope", "text": ""})),
        "bad_request",
    );
    assert_err(
        &b.request(json!({"op": "create", "room": "bad name", "topic": false})),
        "bad_request",
    );
}

// ---------------------------------------------------------------- load

#[test]
fn two_hundred_clients_in_ten_rooms() {
    const ROOMS: usize = 10;
    const PER_ROOM: usize = 20;
    const MSGS: usize = 20;
    let _heavy = heavy();
    let started = Instant::now();
    let (_server, addr) = start(|c| {
        c.workers = 4;
        c.hash_threads = 2;
        // 400 hashes from one address at once: let them all wait, however loaded the
        // machine (this test is about traffic, not shedding).
        c.max_hash_wait = Duration::from_secs(60);
    });
    let mut admin = user(addr, "admin");
    for r in 0..ROOMS {
        admin.create(&format!("room{r}"));
    }
    let barrier = Arc::new(TimedBarrier::new(ROOMS * PER_ROOM));
    let threads: Vec<_> = (0..ROOMS * PER_ROOM)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let room = format!("room{}", i % ROOMS);
                let name = format!("u{i}");
                let mut c = Line::named(addr, &name);
                c.signup_login(&name);
                c.join(&room);
                barrier.wait(Duration::from_secs(40));
                let mut own = Vec::new();
                for k in 0..MSGS {
                    let r = c.request(
                        json!({"op": "send", "room": room, "text": format!("{name}:{k}")}),
                    );
                    assert_ok(&r);
                    own.push(r["seq"].as_u64().unwrap());
                }
                let want = (PER_ROOM - 1) * MSGS;
                let deadline = Instant::now() + Duration::from_secs(40);
                let mut got: Vec<Value> = c.take_events("message");
                c.take_events("joined");
                while got.len() < want {
                    assert!(
                        Instant::now() < deadline,
                        "{name}: {} of {want} messages",
                        got.len()
                    );
                    let v = c.recv();
                    if v["event"] == "message" {
                        got.push(v);
                    } else {
                        assert_eq!(v["event"], "joined", "{name}: unexpected {v}");
                        c.take_events("joined");
                    }
                }
                c.expect_silence(Duration::from_millis(100));
                (room, name, own, got)
            })
        })
        .collect();
    let mut rooms_seen: std::collections::HashMap<String, usize> = Default::default();
    for t in threads {
        let (room, name, own, got) = t.join().expect("a client failed");
        assert!(
            own.windows(2).all(|w| w[0] < w[1]),
            "{name}: own acks out of order"
        );
        let mut seen = BTreeSet::new();
        let mut last = 0;
        let mut per_sender: std::collections::HashMap<String, usize> = Default::default();
        for m in &got {
            assert_eq!(m["room"], room.as_str(), "{name}: {m}");
            let seq = m["seq"].as_u64().unwrap();
            assert!(seq > last, "{name}: seq {seq} after {last}");
            last = seq;
            assert!(seen.insert(seq));
            let from = m["from"].as_str().unwrap();
            assert_ne!(from, name, "{name} received its own message");
            // Each sender's messages arrive in the order they were sent.
            let k = per_sender.entry(from.to_owned()).or_default();
            assert_eq!(m["text"], format!("{from}:{k}"), "{name}: {m}");
            *k += 1;
        }
        for s in &own {
            assert!(seen.insert(*s), "{name}: own seq {s} also received");
        }
        let total = (PER_ROOM * MSGS) as u64;
        assert_eq!(seen, (1..=total).collect::<BTreeSet<_>>(), "{name}: gaps");
        *rooms_seen.entry(room).or_default() += 1;
    }
    assert_eq!(rooms_seen.len(), ROOMS);
    admin.ping();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn saturated_password_hashing_never_stalls_other_clients() {
    let _heavy = heavy();
    let (_server, addr) = start(|c| {
        c.bcrypt_cost = 12;
        c.hash_threads = 1;
        // Each hash takes some 100-300 ms: the third in line would wait too long.
        c.max_hash_wait = Duration::from_millis(300);
    });
    let mut a = user(addr, "ada");
    a.create("lobby");
    // Fire logins of unknown users: each hashes a dummy at cost 12.
    let mut ghosts: Vec<Line> = (0..8)
        .map(|i| {
            let mut g = Line::named(addr, &format!("ghost{i}"));
            g.send_json(json!({"op": "login", "user": format!("ghost{i}"), "password": PASSWORD}));
            g
        })
        .collect();
    let mut busy_signup = Line::connect(addr);
    busy_signup.send_json(json!({"op": "signup", "user": "late", "password": PASSWORD}));
    for i in 0..5 {
        let t = Instant::now();
        a.ping();
        let r = a.request(json!({"op": "send", "room": "lobby", "text": format!("m{i}")}));
        assert_ok(&r);
        let r = a.request(json!({"op": "rooms"}));
        assert_ok(&r);
        let r = a.request(json!({"op": "history", "room": "lobby"}));
        assert_ok(&r);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "ping/send/rooms/history took {:?} while hashing was saturated",
            t.elapsed()
        );
    }
    // Collect what the logins got so far: `server_busy` is answered at once; the
    // accepted ones may still be hashing.
    let mut busy = 0;
    for g in ghosts.iter_mut().chain(std::iter::once(&mut busy_signup)) {
        match g.try_read_frame(Instant::now() + Duration::from_millis(200)) {
            Ok(f) => {
                let code = f.value["error"].as_str().unwrap_or("");
                assert!(
                    code == "server_busy" || code == "auth_failed" || f.value["ok"] == true,
                    "unexpected answer while saturated: {}",
                    f.value
                );
                if code == "server_busy" {
                    assert_err(&f.value, "server_busy");
                    assert!(
                        f.value["retry_after"].as_u64().is_some_and(|ms| ms > 0),
                        "server_busy without retry_after: {}",
                        f.value
                    );
                    busy += 1;
                }
            }
            Err(End::Timeout) => {}
            Err(e) => panic!("{}: {e:?}", g.name),
        }
    }
    assert!(
        busy >= 1,
        "no login was answered server_busy with a wait of 300 ms allowed"
    );
}

/// The whole suite again, with each server storing to a data directory.
#[test]
fn the_chat_suite_passes_with_a_store() {
    rerun_with_store("the_chat_suite_passes_with_a_store");
}
