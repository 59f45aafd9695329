//! Protocol 2's messages and conversations: idempotent `send` and `dm` (nonces),
//! DM conversations with seqs, history and multi-device delivery, replies, and
//! blocking (issue 16 items 2 and 9, issue 17 items 1 and 2, PROTOCOL-2 sections 2,
//! 6 and 7).

mod common;

use std::time::Duration;

use common::*;
use parlor::Storage;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(200);

fn seqs(answer: &Value, field: &str) -> Vec<u64> {
    answer[field]
        .as_array()
        .unwrap_or_else(|| panic!("no `{field}` in {answer}"))
        .iter()
        .map(|m| m["seq"].as_u64().expect("a seq"))
        .collect()
}

fn dm(line: &mut Line, to: &str, text: &str) -> Value {
    let r = line.request(json!({"op": "dm", "to": to, "text": text}));
    assert_ok(&r);
    r
}

#[test]
fn a_retried_nonce_gets_the_first_answer_and_sends_no_second_event() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    ada.create("lobby");
    let mut bob = user2(addr, "bob");
    bob.join("lobby");
    ada.expect_event("joined");
    let send = json!({"op": "send", "room": "lobby", "text": "once", "nonce": "n-1"});
    let first = ada.request(send.clone());
    assert_ok(&first);
    let mut again = send.clone();
    again["id"] = json!(7);
    let second = ada.request(again);
    assert_ok(&second);
    assert_eq!(second["id"], 7);
    assert_eq!(
        (second["seq"].clone(), second["ts"].clone()),
        (first["seq"].clone(), first["ts"].clone())
    );
    assert_eq!(bob.expect_event("message")["text"], "once");
    bob.expect_silence(QUIET);
    let history = bob.request(json!({"op": "history", "room": "lobby"}));
    assert_eq!(
        seqs(&history, "messages"),
        vec![first["seq"].as_u64().unwrap()]
    );
    // The same for a DM, and across connections of the user.
    let mut ada2 = second2(addr, "ada");
    let dm1 = ada.request(json!({"op": "dm", "to": "bob", "text": "hi", "nonce": "n-2"}));
    assert_ok(&dm1);
    let dm2 = ada2.request(json!({"op": "dm", "to": "bob", "text": "hi", "nonce": "n-2"}));
    assert_eq!(
        (dm2["seq"].clone(), dm2["ts"].clone()),
        (dm1["seq"].clone(), dm1["ts"].clone())
    );
    assert_eq!(bob.expect_event("dm")["seq"], dm1["seq"]);
    bob.expect_silence(QUIET);
}

#[test]
fn a_nonce_used_for_another_room_or_op_is_a_bad_request_and_only_success_uses_one() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    ada.create("a");
    ada.create("b");
    user2(addr, "bob");
    assert_ok(&ada.request(json!({"op": "send", "room": "a", "text": "x", "nonce": "k"})));
    for reuse in [
        json!({"op": "send", "room": "b", "text": "x", "nonce": "k"}),
        json!({"op": "dm", "to": "bob", "text": "x", "nonce": "k"}),
        json!({"op": "send", "room": "a", "text": "x", "nonce": ""}),
        json!({"op": "send", "room": "a", "text": "x", "nonce": "n".repeat(65)}),
        json!({"op": "send", "room": "a", "text": "x", "nonce": 5}),
    ] {
        assert_err(&ada.request(reuse), "bad_request");
    }
    assert_err(
        &ada.request(json!({"op": "send", "room": "nope", "text": "x", "nonce": "m"})),
        "no_such_room",
    );
    let r = ada.request(json!({"op": "send", "room": "b", "text": "x", "nonce": "m"}));
    assert_ok(&r);
    assert_eq!(r["seq"], 1, "the failed request did not use `m` up: {r}");
    // Nonces are per user: bob's `k` is his own.
    let mut bob = second2(addr, "bob");
    assert_ok(&bob.request(json!({"op": "dm", "to": "ada", "text": "x", "nonce": "k"})));
}

#[test]
fn a_retried_nonce_after_a_restart_gets_the_first_answer() {
    let dir = DataDir::new("nonce-restart");
    let (handle, addr) = start(on_disk(&dir));
    let mut ada = user2(addr, "ada");
    ada.create("lobby");
    let send = json!({"op": "send", "room": "lobby", "text": "once", "nonce": "retry-me"});
    let first = ada.request(send.clone());
    assert_ok(&first);
    let dm1 = ada.request(json!({"op": "dm", "to": "ada", "text": "me", "nonce": "dm-n"}));
    assert_ok(&dm1);
    drop(ada);
    stop(handle);
    let (_handle, addr) = start(on_disk(&dir));
    let mut ada = Line::named(addr, "ada");
    ada.hello();
    ada.login("ada");
    let again = ada.request(send);
    assert_eq!(
        (again["seq"].clone(), again["ts"].clone()),
        (first["seq"].clone(), first["ts"].clone())
    );
    let dm2 = ada.request(json!({"op": "dm", "to": "ada", "text": "me", "nonce": "dm-n"}));
    assert_eq!(
        (dm2["seq"].clone(), dm2["ts"].clone()),
        (dm1["seq"].clone(), dm1["ts"].clone())
    );
    let history = ada.request(json!({"op": "history", "room": "lobby"}));
    assert_eq!(seqs(&history, "messages"), vec![1]);
    let dms = ada.request(json!({"op": "dm_history", "with": "ada"}));
    assert_eq!(seqs(&dms, "messages"), vec![1]);
}

#[test]
fn dms_have_seqs_and_reach_every_device_of_both_users_but_the_sender() {
    let (_server, addr) = start_chat();
    let mut a1 = user2(addr, "ada");
    let mut a2 = second2(addr, "ada");
    let mut b1 = user2(addr, "bob");
    let mut b_v1 = second(addr, "bob");
    let r = dm(&mut a1, "bob", "hi");
    assert_eq!(r["seq"], 1);
    let ts = r["ts"].clone();
    let want = json!({"event": "dm", "from": "ada", "to": "bob", "with": "ada", "seq": 1, "ts": ts, "text": "hi"});
    assert_eq!(b1.expect_event("dm"), want);
    assert_eq!(
        b_v1.expect_event("dm"),
        json!({"event": "dm", "from": "ada", "text": "hi", "ts": ts})
    );
    let mine = a2.expect_event("dm");
    assert_eq!(
        (
            mine["with"].clone(),
            mine["seq"].clone(),
            mine["text"].clone()
        ),
        (json!("bob"), json!(1), json!("hi"))
    );
    a1.expect_silence(QUIET);
    let r = dm(&mut b1, "ada", "hello");
    assert_eq!(r["seq"], 2, "one seq per conversation");
    assert_eq!(a1.expect_event("dm")["seq"], 2);
    assert_eq!(a2.expect_event("dm")["with"], "bob");
    b1.expect_silence(QUIET);
    // v1 never showed one's own DMs on one's other connections: unchanged.
    b_v1.expect_silence(QUIET);
    // A note to oneself: the other devices, never the sending one.
    let r = dm(&mut a1, "ada", "note");
    assert_eq!(r["seq"], 1);
    let note = a2.expect_event("dm");
    assert_eq!(
        (note["with"].clone(), note["to"].clone()),
        (json!("ada"), json!("ada"))
    );
    a1.expect_silence(QUIET);
    assert_err(
        &a1.request(json!({"op": "dm", "to": "nobody", "text": "x"})),
        "no_such_user",
    );
}

#[test]
fn a_dm_kept_for_an_offline_user_comes_with_its_seq_after_login() {
    let (_server, addr) = start_chat();
    Line::named(addr, "bob").signup("bob");
    let mut ada = user2(addr, "ada");
    dm(&mut ada, "bob", "while you were out");
    let mut bob = Line::named(addr, "bob");
    bob.hello();
    bob.login("bob");
    let kept = bob.expect_event("dm");
    assert_eq!(
        (kept["seq"].clone(), kept["with"].clone()),
        (json!(1), json!("ada"))
    );
    bob.expect_silence(QUIET);
}

#[test]
fn dm_history_pages_as_history_does_from_memory_and_from_the_store() {
    let dir = DataDir::new("dm-history");
    for disk in [false, true] {
        let (_server, addr) = start(|c| {
            if disk {
                c.storage = Storage::Dir(dir.path().to_owned());
                c.history_len = 2;
            } else {
                c.storage = Storage::InMemory;
            }
        });
        let mut ada = user2(addr, "ada");
        let mut bob = user2(addr, "bob");
        for i in 1..=5 {
            dm(
                if i % 2 == 0 { &mut bob } else { &mut ada },
                if i % 2 == 0 { "ada" } else { "bob" },
                &format!("m{i}"),
            );
        }
        let page = |q: Value| {
            let mut q = q;
            q["op"] = json!("dm_history");
            q["with"] = json!("ada");
            bob.request(q)
        };
        let mut bob_page = page;
        assert_eq!(seqs(&bob_page(json!({"limit": 2})), "messages"), vec![4, 5]);
        assert_eq!(
            seqs(&bob_page(json!({"limit": 2, "before": 4})), "messages"),
            vec![2, 3]
        );
        assert_eq!(
            seqs(&bob_page(json!({"limit": 2, "after": 1})), "messages"),
            vec![2, 3]
        );
        assert_eq!(
            seqs(&bob_page(json!({"after": 5})), "messages"),
            Vec::<u64>::new()
        );
        let all = bob_page(json!({}));
        assert_eq!(seqs(&all, "messages"), vec![1, 2, 3, 4, 5]);
        assert_eq!(all["messages"][0]["with"], "ada");
        assert_eq!(all["messages"][1]["from"], "bob");
        assert_err(&bob_page(json!({"limit": 501})), "bad_request");
        assert_err(
            &ada.request(json!({"op": "dm_history", "with": "nobody"})),
            "no_such_user",
        );
    }
}

#[test]
fn conversations_come_newest_first_with_unread_counts_and_pages() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    let mut bob = user2(addr, "bob");
    let mut cat = user2(addr, "cat");
    dm(&mut ada, "bob", "1");
    dm(&mut ada, "cat", "2");
    std::thread::sleep(Duration::from_millis(5));
    dm(&mut bob, "ada", "3");
    dm(&mut bob, "ada", "4");
    let list = ada.request(json!({"op": "conversations"}));
    assert_ok(&list);
    let convs = list["conversations"].as_array().unwrap();
    let names: Vec<&str> = convs.iter().map(|c| c["with"].as_str().unwrap()).collect();
    assert_eq!(names, ["bob", "cat"], "{list}");
    assert_eq!(
        (convs[0]["seq"].clone(), convs[0]["unread"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(convs[1]["unread"], 0, "one's own messages are not unread");
    assert!(list.get("next").is_none());
    let c = cat.request(json!({"op": "conversations"}));
    assert_eq!(
        c["conversations"],
        json!([{"with": "ada", "seq": 1, "ts": c["conversations"][0]["ts"], "unread": 1}])
    );
    let first = ada.request(json!({"op": "conversations", "limit": 1}));
    assert_eq!(first["conversations"][0]["with"], "bob");
    let next = first["next"].clone();
    assert!(next.is_string(), "{first}");
    let rest = ada.request(json!({"op": "conversations", "limit": 1, "after": next}));
    assert_eq!(rest["conversations"][0]["with"], "cat");
    assert!(rest.get("next").is_none(), "{rest}");
    assert_err(
        &ada.request(json!({"op": "conversations", "after": "garbage"})),
        "bad_request",
    );
}

#[test]
fn replies_name_a_message_that_exists_and_events_and_history_carry_them() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    ada.create("lobby");
    let mut bob = user2(addr, "bob");
    bob.join("lobby");
    ada.expect_event("joined");
    for bad in [0, 1] {
        let r = ada.request(json!({"op": "send", "room": "lobby", "text": "x", "reply_to": bad}));
        assert_err(&r, "no_such_message");
    }
    ada.say("lobby", "question");
    bob.expect_event("message");
    let r = bob.request(json!({"op": "send", "room": "lobby", "text": "answer", "reply_to": 1}));
    assert_ok(&r);
    assert_eq!(ada.expect_event("message")["reply_to"], 1);
    let history = ada.request(json!({"op": "history", "room": "lobby"}));
    assert_eq!(history["messages"][1]["reply_to"], 1);
    assert!(history["messages"][0].get("reply_to").is_none());
    assert_err(
        &ada.request(json!({"op": "dm", "to": "bob", "text": "x", "reply_to": 1})),
        "no_such_message",
    );
    dm(&mut ada, "bob", "dm question");
    bob.expect_event("dm");
    assert_ok(&bob.request(json!({"op": "dm", "to": "ada", "text": "dm answer", "reply_to": 1})));
    assert_eq!(ada.expect_event("dm")["reply_to"], 1);
    let dms = ada.request(json!({"op": "dm_history", "with": "bob"}));
    assert_eq!(dms["messages"][1]["reply_to"], 1);
}

#[test]
fn a_blocked_users_dms_are_dropped_while_the_sender_gets_ok() {
    let dir = DataDir::new("blocks");
    let (handle, addr) = start(on_disk(&dir));
    let mut ada = user2(addr, "ada");
    let mut ada2 = second2(addr, "ada");
    let mut bob = user2(addr, "bob");
    dm(&mut ada, "bob", "before");
    bob.expect_event("dm");
    ada2.expect_event("dm");
    assert_ok(&bob.request(json!({"op": "block", "user": "ada"})));
    assert_err(
        &bob.request(json!({"op": "block", "user": "nobody"})),
        "no_such_user",
    );
    assert_eq!(
        bob.request(json!({"op": "blocks"}))["blocks"],
        json!(["ada"])
    );
    let r = dm(&mut ada, "bob", "hidden");
    assert_eq!(r["seq"], 2, "the blocked DM takes the next seq");
    assert_eq!(
        ada2.expect_event("dm")["text"],
        "hidden",
        "the sender's devices see it"
    );
    bob.expect_silence(QUIET);
    assert_eq!(
        seqs(
            &bob.request(json!({"op": "dm_history", "with": "ada"})),
            "messages"
        ),
        vec![1]
    );
    assert_eq!(
        seqs(
            &ada.request(json!({"op": "dm_history", "with": "bob"})),
            "messages"
        ),
        vec![1, 2]
    );
    let convs = bob.request(json!({"op": "conversations"}));
    assert_eq!(
        (
            convs["conversations"][0]["seq"].clone(),
            convs["conversations"][0]["unread"].clone()
        ),
        (json!(1), json!(1))
    );
    drop((ada, ada2, bob));
    stop(handle);
    let (_handle, addr) = start(on_disk(&dir));
    let mut bob = Line::named(addr, "bob");
    bob.hello();
    bob.login("bob");
    assert_eq!(
        bob.request(json!({"op": "blocks"}))["blocks"],
        json!(["ada"]),
        "stored"
    );
    assert_eq!(
        seqs(
            &bob.request(json!({"op": "dm_history", "with": "ada"})),
            "messages"
        ),
        vec![1]
    );
    let mut ada = Line::named(addr, "ada");
    ada.hello();
    ada.login("ada");
    dm(&mut ada, "bob", "still hidden");
    bob.expect_silence(QUIET);
    assert_ok(&bob.request(json!({"op": "unblock", "user": "ada"})));
    assert_eq!(bob.request(json!({"op": "blocks"}))["blocks"], json!([]));
    let r = dm(&mut ada, "bob", "seen");
    assert_eq!(r["seq"], 4);
    assert_eq!(bob.expect_event("dm")["seq"], 4);
}

/// A commit that takes a while (about half a second of CPU) for a message whose text
/// is `slow`, so that a repeat can arrive before the first is stored.
const SLOW_TRIGGER: &str = "CREATE TRIGGER slow BEFORE INSERT ON messages WHEN NEW.text = 'slow'
     BEGIN SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c
     WHERE x < 3000000) SELECT x FROM c); END;";

#[test]
fn a_repeat_arriving_before_the_first_is_stored_waits_for_its_answer() {
    let dir = DataDir::new("nonce-wait");
    let (handle, addr) = start(on_disk(&dir));
    let mut ada = user2(addr, "ada");
    ada.create("lobby");
    user2(addr, "bob").join("lobby");
    drop(ada);
    stop(handle);
    dir.sql(SLOW_TRIGGER);
    let (_handle, addr) = start(on_disk(&dir));
    let mut ada = Line::named(addr, "ada");
    ada.hello();
    ada.login("ada");
    let mut ada2 = second2(addr, "ada");
    let mut bob = Line::named(addr, "bob");
    bob.hello();
    bob.login("bob");
    let send = json!({"op": "send", "room": "lobby", "text": "slow", "nonce": "w"});
    ada.send_json(send.clone());
    // Most likely the first is still being stored: the repeat's answer waits for it
    // (whichever comes first, both get one answer and one message goes out).
    std::thread::sleep(Duration::from_millis(100));
    let repeat = ada2.request(send);
    let first = ada.recv();
    assert_ok(&first);
    assert_eq!(
        (repeat["seq"].clone(), repeat["ts"].clone()),
        (first["seq"].clone(), first["ts"].clone())
    );
    assert_eq!(bob.expect_event("message")["seq"], first["seq"]);
    bob.expect_silence(QUIET);
    let history = ada.request(json!({"op": "history", "room": "lobby"}));
    assert_eq!(seqs(&history, "messages"), vec![1]);
}
