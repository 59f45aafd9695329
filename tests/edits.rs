//! Protocol 2's edits, deletes and reactions on room messages and DMs (issue 17 items
//! 3 and 4, PROTOCOL-2 sections 1, 2, 5 and 6): who may do what, who hears of it,
//! what protocol-1 connections see, and that `history`/`dm_history` show it from
//! memory and from the store, across a restart.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(200);

/// `ada` (owner), `bob` (protocol 2) and `cy` (protocol 1) in `lobby`, every
/// `joined` consumed.
fn lobby(addr: std::net::SocketAddr) -> (Line, Line, Line) {
    let mut ada = user2(addr, "ada");
    ada.create("lobby");
    let mut bob = user2(addr, "bob");
    bob.join("lobby");
    let mut cy = user(addr, "cy");
    cy.join("lobby");
    ada.expect_event("joined");
    ada.expect_event("joined");
    bob.expect_event("joined");
    (ada, bob, cy)
}

fn messages(line: &mut Line, request: Value) -> Vec<Value> {
    let r = line.request(request);
    assert_ok(&r);
    r["messages"].as_array().expect("messages").clone()
}

fn history(line: &mut Line, room: &str) -> Vec<Value> {
    messages(line, json!({"op": "history", "room": room}))
}

fn by_seq(list: &[Value], seq: u64) -> Value {
    list.iter()
        .find(|m| m["seq"] == seq)
        .unwrap_or_else(|| panic!("no message {seq} in {list:?}"))
        .clone()
}

#[test]
fn only_the_author_edits_and_protocol_2_members_hear_of_it() {
    let (_server, addr) = start_chat();
    let (mut ada, mut bob, mut cy) = lobby(addr);
    assert_features(&ada.hello(), &["edits", "reactions"]);
    let seq = ada.say("lobby", "helo")["seq"].as_u64().unwrap();
    bob.expect_event("message");
    cy.expect_event("message");
    let edit = |text: &str| json!({"op": "edit", "room": "lobby", "seq": seq, "text": text});
    assert_err(&bob.request(edit("mine now")), "forbidden");
    assert_err(
        &ada.request(json!({"op": "edit", "room": "lobby", "seq": 99, "text": "x"})),
        "no_such_message",
    );
    assert_err(
        &ada.request(json!({"op": "edit", "room": "nowhere", "seq": 1, "text": "x"})),
        "no_such_room",
    );
    assert_err(
        &ada.request(json!({"op": "edit", "room": "lobby", "seq": seq, "text": ""})),
        "bad_request",
    );
    assert_err(
        &ada.request(
            json!({"op": "edit", "room": "lobby", "with": "bob", "seq": seq, "text": "x"}),
        ),
        "bad_request",
    );
    // Membership comes before the message: an outsider learns nothing of seqs.
    let mut eve = user2(addr, "eve");
    assert_err(
        &eve.request(json!({"op": "edit", "room": "lobby", "seq": 99, "text": "x"})),
        "not_member",
    );
    assert_ok(&ada.request(edit("hello")));
    let edited = bob.expect_event("edited");
    assert_eq!(
        (
            &edited["room"],
            &edited["seq"],
            &edited["text"],
            &edited["by"]
        ),
        (&json!("lobby"), &json!(seq), &json!("hello"), &json!("ada")),
        "{edited}"
    );
    assert!(edited["edited_ts"].is_u64(), "{edited}");
    cy.expect_silence(QUIET);
    ada.expect_silence(QUIET);
    let shown = by_seq(&history(&mut bob, "lobby"), seq);
    assert_eq!(shown["text"], "hello", "{shown}");
    assert_eq!(shown["edited_ts"], edited["edited_ts"], "{shown}");
    // Protocol 1 reads the current text too.
    assert_eq!(by_seq(&history(&mut cy, "lobby"), seq)["text"], "hello");
}

#[test]
fn the_author_or_an_op_deletes_and_protocol_1_reads_deleted() {
    let (_server, addr) = start_chat();
    let (mut ada, mut bob, mut cy) = lobby(addr);
    let first = bob.say("lobby", "oops")["seq"].as_u64().unwrap();
    let second = bob.say("lobby", "again")["seq"].as_u64().unwrap();
    for line in [&mut ada, &mut cy] {
        line.expect_event("message");
        line.expect_event("message");
    }
    let delete = |seq: u64| json!({"op": "delete", "room": "lobby", "seq": seq});
    assert_err(&cy.request(delete(first)), "forbidden");
    assert_ok(&ada.request(delete(first)));
    let deleted = bob.expect_event("deleted");
    assert_eq!(
        deleted,
        json!({"event": "deleted", "room": "lobby", "seq": first, "by": "ada"})
    );
    cy.expect_silence(QUIET);
    // An op may too, and the author always.
    assert_ok(&ada.request(json!({"op": "set_role", "room": "lobby", "user": "cy", "role": "op"})));
    bob.expect_event("role");
    assert_ok(&cy.request(delete(second)));
    assert_eq!(bob.expect_event("deleted")["by"], "cy");
    ada.expect_event("deleted");
    let third = bob.say("lobby", "fine")["seq"].as_u64().unwrap();
    assert_ok(&bob.request(delete(third)));
    assert_eq!(ada.expect_event("deleted")["by"], "bob");
    // A deleted message takes no edit and no reaction; deleting again is a no-op.
    assert_err(
        &bob.request(json!({"op": "edit", "room": "lobby", "seq": first, "text": "x"})),
        "no_such_message",
    );
    assert_err(
        &ada.request(json!({"op": "react", "room": "lobby", "seq": first, "emoji": "x"})),
        "no_such_message",
    );
    assert_ok(&ada.request(delete(first)));
    bob.expect_silence(QUIET);
    let stub = by_seq(&history(&mut ada, "lobby"), first);
    assert_eq!(
        stub,
        json!({"event": "message", "room": "lobby", "seq": first, "from": "bob",
               "ts": stub["ts"], "deleted": true})
    );
    let v1 = history(&mut cy, "lobby");
    assert_eq!(by_seq(&v1, first)["text"], "[deleted]");
    assert_eq!(v1.len(), 3, "seqs stay whole for protocol 1: {v1:?}");
}

#[test]
fn reactions_are_one_per_user_per_emoji_and_history_lists_them() {
    let (_server, addr) = start_chat();
    let (mut ada, mut bob, mut cy) = lobby(addr);
    let seq = ada.say("lobby", "vote")["seq"].as_u64().unwrap();
    bob.expect_event("message");
    cy.expect_event("message");
    let react =
        |op: &str, emoji: &str| json!({"op": op, "room": "lobby", "seq": seq, "emoji": emoji});
    assert_ok(&bob.request(react("react", "👍")));
    let event = ada.expect_event("reaction");
    assert_eq!(
        event,
        json!({"event": "reaction", "room": "lobby", "seq": seq, "emoji": "👍",
               "user": "bob", "added": true})
    );
    assert_ok(&bob.request(react("react", "👍")));
    assert_ok(&ada.request(react("react", "👍")));
    assert_ok(&ada.request(react("react", "🎉")));
    assert_eq!(bob.expect_event("reaction")["user"], "ada");
    bob.expect_event("reaction");
    ada.expect_silence(QUIET);
    cy.expect_silence(QUIET);
    let shown = by_seq(&history(&mut cy, "lobby"), seq);
    assert_eq!(
        shown["reactions"],
        json!({"👍": ["ada", "bob"], "🎉": ["ada"]}),
        "{shown}"
    );
    assert_ok(&ada.request(react("unreact", "🎉")));
    assert_eq!(bob.expect_event("reaction")["added"], false);
    assert_ok(&ada.request(react("unreact", "🎉")));
    bob.expect_silence(QUIET);
    let shown = by_seq(&history(&mut bob, "lobby"), seq);
    assert_eq!(shown["reactions"], json!({"👍": ["ada", "bob"]}), "{shown}");
    assert_err(&ada.request(react("react", "")), "bad_request");
    assert_err(&ada.request(react("react", &"x".repeat(65))), "bad_request");
    assert_ok(&ada.request(react("react", &"x".repeat(64))));
    assert_err(
        &ada.request(json!({"op": "unreact", "room": "lobby", "seq": 42, "emoji": "x"})),
        "no_such_message",
    );
}

#[test]
fn dm_changes_reach_the_other_party_and_ones_other_devices() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    let mut bob = user2(addr, "bob");
    let mut ada2 = second2(addr, "ada");
    let mut bob1 = second(addr, "bob");
    let r = ada.request(json!({"op": "dm", "to": "bob", "text": "hi"}));
    assert_ok(&r);
    let seq = r["seq"].as_u64().unwrap();
    bob.expect_event("dm");
    ada2.expect_event("dm");
    bob1.expect_event("dm");
    assert_err(
        &bob.request(json!({"op": "edit", "with": "ada", "seq": seq, "text": "x"})),
        "forbidden",
    );
    assert_err(
        &bob.request(json!({"op": "delete", "with": "ada", "seq": seq})),
        "forbidden",
    );
    assert_err(
        &bob.request(json!({"op": "edit", "with": "nobody", "seq": seq, "text": "x"})),
        "no_such_user",
    );
    assert_ok(&ada.request(json!({"op": "edit", "with": "bob", "seq": seq, "text": "hi!"})));
    let to_bob = bob.expect_event("edited");
    assert_eq!(
        (&to_bob["with"], &to_bob["text"]),
        (&json!("ada"), &json!("hi!"))
    );
    assert_eq!(ada2.expect_event("edited")["with"], "bob");
    assert_ok(&bob.request(json!({"op": "react", "with": "ada", "seq": seq, "emoji": "❤"})));
    let reaction = ada.expect_event("reaction");
    assert_eq!(
        (&reaction["with"], &reaction["user"]),
        (&json!("bob"), &json!("bob"))
    );
    ada2.expect_event("reaction");
    let shown = by_seq(
        &messages(&mut ada, json!({"op": "dm_history", "with": "bob"})),
        seq,
    );
    assert_eq!(
        (&shown["text"], &shown["reactions"]),
        (&json!("hi!"), &json!({"❤": ["bob"]}))
    );
    assert_ok(&ada.request(json!({"op": "delete", "with": "bob", "seq": seq})));
    assert_eq!(bob.expect_event("deleted")["with"], "ada");
    ada2.expect_event("deleted");
    // Protocol 1 hears of none of it, and reads the stub as "[deleted]".
    bob1.expect_silence(QUIET);
    ada.expect_silence(QUIET);
    let stub = by_seq(
        &messages(&mut bob, json!({"op": "dm_history", "with": "ada"})),
        seq,
    );
    assert_eq!(stub["deleted"], true, "{stub}");
    assert!(
        stub.get("text").is_none() && stub.get("reactions").is_none(),
        "{stub}"
    );
    let v1 = by_seq(
        &messages(&mut bob1, json!({"op": "dm_history", "with": "ada"})),
        seq,
    );
    assert_eq!(v1["text"], "[deleted]", "{v1}");
}

#[test]
fn changes_survive_a_restart_and_show_from_memory_and_the_store_alike() {
    let dir = DataDir::new("edits-restart");
    let small = |c: &mut parlor::Config| {
        on_disk(&dir)(c);
        c.history_len = 2;
    };
    let expect = |ada: &mut Line, cy: &mut Line| {
        let all = messages(ada, json!({"op": "history", "room": "lobby", "limit": 10}));
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[0]["text"], "one, edited", "{all:?}");
        assert!(all[0]["edited_ts"].is_u64(), "{all:?}");
        assert_eq!(
            all[0]["reactions"],
            json!({"ok": ["ada", "bob"]}),
            "{all:?}"
        );
        assert_eq!(all[1]["deleted"], true, "{all:?}");
        assert!(all[1].get("text").is_none(), "{all:?}");
        assert_eq!(all[3]["text"], "four, edited", "{all:?}");
        assert_eq!(all[3]["reactions"], json!({"ok": ["bob"]}), "{all:?}");
        let v1 = messages(cy, json!({"op": "history", "room": "lobby", "limit": 10}));
        assert_eq!(v1[1]["text"], "[deleted]", "{v1:?}");
        let dms = messages(ada, json!({"op": "dm_history", "with": "bob"}));
        assert_eq!(dms[0]["text"], "psst, edited", "{dms:?}");
        assert_eq!(dms[0]["reactions"], json!({"ok": ["bob"]}), "{dms:?}");
        assert_eq!(dms[1]["deleted"], true, "{dms:?}");
    };
    {
        let (server, addr) = start(small);
        let (mut ada, mut bob, mut cy) = lobby(addr);
        for text in ["one", "two", "three", "four"] {
            ada.say("lobby", text);
        }
        // Seqs 1 and 2 are older than memory holds: these go by the store.
        for request in [
            json!({"op": "edit", "room": "lobby", "seq": 1, "text": "one, edited"}),
            json!({"op": "react", "room": "lobby", "seq": 1, "emoji": "ok"}),
            json!({"op": "delete", "room": "lobby", "seq": 2}),
            json!({"op": "edit", "room": "lobby", "seq": 4, "text": "four, edited"}),
        ] {
            assert_ok(&ada.request(request));
        }
        assert_ok(&bob.request(json!({"op": "react", "room": "lobby", "seq": 1, "emoji": "ok"})));
        assert_ok(&bob.request(json!({"op": "react", "room": "lobby", "seq": 4, "emoji": "ok"})));
        // A second reaction to a message the store holds is still a no-op.
        assert_ok(&bob.request(json!({"op": "react", "room": "lobby", "seq": 1, "emoji": "ok"})));
        for text in ["psst", "gone"] {
            assert_ok(&ada.request(json!({"op": "dm", "to": "bob", "text": text})));
        }
        assert_ok(
            &ada.request(json!({"op": "edit", "with": "bob", "seq": 1, "text": "psst, edited"})),
        );
        assert_ok(&ada.request(json!({"op": "delete", "with": "bob", "seq": 2})));
        assert_ok(&bob.request(json!({"op": "react", "with": "ada", "seq": 1, "emoji": "ok"})));
        expect(&mut ada, &mut cy);
        stop(server);
    }
    let (_server, addr) = start(small);
    let mut ada = second2(addr, "ada");
    let mut cy = second(addr, "cy");
    expect(&mut ada, &mut cy);
    assert_err(
        &ada.request(json!({"op": "edit", "room": "lobby", "seq": 2, "text": "back"})),
        "no_such_message",
    );
}

#[test]
fn the_client_edits_deletes_and_reacts_with_typed_events_and_history() {
    use parlor::client::{Event, HistoryQuery, Place};
    let (_server, addr) = start_chat();
    let connect = |name: &str| {
        let mut client = parlor::Client::connect(addr).expect("connect");
        client.hello(2).expect("hello");
        client.signup(name, PASSWORD).expect("signup");
        client.login(name, PASSWORD).expect("login");
        client
    };
    let mut ada = connect("ada");
    let mut bob = connect("bob");
    ada.create("lobby", None).unwrap();
    bob.join("lobby").unwrap();
    let seq = ada.send("lobby", "helo").unwrap().seq;
    let news = |client: &mut parlor::Client| loop {
        match client.next_event(TIMEOUT).expect("an event") {
            Some(Event::Joined { .. } | Event::Message(_) | Event::DirectMessage(_)) => {}
            Some(event) => return event,
            None => panic!("no event"),
        }
    };
    ada.edit(Place::Room("lobby"), seq, "hello").unwrap();
    match news(&mut bob) {
        Event::Edited {
            room,
            seq: s,
            text,
            by,
            ..
        } => {
            assert_eq!(
                (room.as_deref(), s, text.as_str(), by.as_str()),
                (Some("lobby"), seq, "hello", "ada")
            );
        }
        other => panic!("expected edited, got {other:?}"),
    }
    bob.react(Place::Room("lobby"), seq, "+1").unwrap();
    assert!(matches!(
        news(&mut ada),
        Event::Reaction { added: true, .. }
    ));
    let shown = &bob.history("lobby", HistoryQuery::default()).unwrap()[0];
    assert_eq!(shown.text, "hello");
    assert!(shown.changes.edited_ts.is_some());
    assert_eq!(shown.changes.reactions["+1"], vec!["bob".to_owned()]);
    let err = bob.edit(Place::Room("lobby"), seq, "mine").unwrap_err();
    assert_eq!(err.code(), Some(&parlor::ErrorCode::Forbidden), "{err:?}");
    let dm = ada
        .dm_with("bob", "psst", &Default::default())
        .unwrap()
        .seq
        .expect("a seq");
    ada.delete(Place::With("bob"), dm).unwrap();
    match news(&mut bob) {
        Event::Deleted {
            with, seq: s, by, ..
        } => {
            assert_eq!((with.as_deref(), s, by.as_str()), (Some("ada"), dm, "ada"));
        }
        other => panic!("expected deleted, got {other:?}"),
    }
    let stub = &bob.dm_history("ada", HistoryQuery::default()).unwrap()[0];
    assert!(stub.changes.deleted && stub.text.is_empty(), "{stub:?}");
}

/// The `parlor` binary serving `dir`, and its address once it listens.
#[cfg(feature = "cli")]
fn serve_dir(dir: &DataDir) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--bcrypt-cost",
            "4",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parlor binary");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Drained to the end, so the server never blocks on it.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("listening on ") {
                let addr = line[i + "listening on ".len()..]
                    .split(' ')
                    .next()
                    .map(str::to_owned);
                let _ = tx.send(addr.unwrap_or_default());
            }
        }
    });
    let addr = rx.recv_timeout(TIMEOUT).expect("the binary listens");
    (child, addr.parse().expect("an address"))
}

#[cfg(feature = "cli")]
#[test]
fn acknowledged_changes_survive_kill_9() {
    let dir = DataDir::new("edits-kill");
    let (mut child, addr) = serve_dir(&dir);
    let (mut ada, mut bob, _cy) = lobby(addr);
    ada.say("lobby", "draft");
    ada.say("lobby", "oops");
    assert_ok(&ada.request(json!({"op": "edit", "room": "lobby", "seq": 1, "text": "final"})));
    assert_ok(&ada.request(json!({"op": "delete", "room": "lobby", "seq": 2})));
    assert_ok(&bob.request(json!({"op": "react", "room": "lobby", "seq": 1, "emoji": "ok"})));
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    let (mut child, addr) = serve_dir(&dir);
    let mut ada = second2(addr, "ada");
    let all = history(&mut ada, "lobby");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(all[0]["text"], "final", "{all:?}");
    assert_eq!(all[0]["reactions"], json!({"ok": ["bob"]}), "{all:?}");
    assert_eq!(all[1]["deleted"], true, "{all:?}");
}
