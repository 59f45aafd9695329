//! Read markers and unread counts, typing and presence (issue 17 items 5-7,
//! PROTOCOL-2 sections 2, 3 and 5), over the real transport.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn unread(line: &mut Line) -> Value {
    let r = line.request(json!({"op": "unread"}));
    assert_ok(&r);
    r["unread"].clone()
}

#[test]
fn two_connections_of_one_user_clear_unread_together() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    ada.create("lobby");
    let mut bob = user2(addr, "bob");
    bob.join("lobby");
    let mut bob2 = second2(addr, "bob");
    for text in ["one", "two", "three"] {
        ada.say("lobby", text);
    }
    bob.say("lobby", "mine");
    let u = unread(&mut bob);
    assert_eq!(u["rooms"]["lobby"], json!({"marker": 0, "count": 3}), "{u}");
    let r = bob.request(json!({"op": "mark_read", "room": "lobby", "seq": 2}));
    assert_eq!(r["marker"], 2, "{r}");
    let read = bob2.expect_event("read");
    assert_eq!(read, json!({"event": "read", "room": "lobby", "seq": 2}));
    let u = unread(&mut bob2);
    assert_eq!(u["rooms"]["lobby"], json!({"marker": 2, "count": 1}), "{u}");
    // Backwards changes nothing and tells nobody.
    let r = bob2.request(json!({"op": "mark_read", "room": "lobby", "seq": 1}));
    assert_eq!(r["marker"], 2, "{r}");
    // Past the last seq: to the last seq.
    let r = bob2.request(json!({"op": "mark_read", "room": "lobby", "seq": 99}));
    assert_eq!(r["marker"], 4, "{r}");
    let read = bob.expect_event("read");
    assert_eq!(read["seq"], 4, "the backward mark sent nothing: {read}");
    let who = bob.request(json!({"op": "whoami"}));
    assert_eq!(who["unread"]["rooms"]["lobby"]["count"], 0, "{who}");
    bob2.clear_pending();
    bob2.expect_silence(Duration::from_millis(100));
}

#[test]
fn unread_counts_leave_out_ones_own_messages_and_dms() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    let mut bob = user2(addr, "bob");
    ada.create("lobby");
    ada.say("lobby", "before bob");
    bob.join("lobby");
    ada.say("lobby", "after");
    bob.say("lobby", "bob's own");
    assert_ok(&bob.request(json!({"op": "dm", "to": "ada", "text": "hi"})));
    assert_ok(&ada.request(json!({"op": "dm", "to": "bob", "text": "a"})));
    assert_ok(&ada.request(json!({"op": "dm", "to": "bob", "text": "b"})));
    let u = unread(&mut bob);
    assert_eq!(
        u["rooms"]["lobby"],
        json!({"marker": 1, "count": 1}),
        "joining reads what came before: {u}"
    );
    assert_eq!(u["conversations"]["ada"], json!({"marker": 0, "count": 2}));
    let u = unread(&mut ada);
    assert_eq!(u["conversations"]["bob"]["count"], 1, "{u}");
    assert_eq!(u["rooms"]["lobby"]["count"], 1, "bob's message only: {u}");
    let r = bob.request(json!({"op": "mark_read", "with": "ada", "seq": 2}));
    assert_eq!(r["marker"], 2, "{r}");
    let c = bob.request(json!({"op": "conversations"}));
    assert_eq!(c["conversations"][0]["unread"], 1, "{c}");
    // Refusals.
    let r = bob.request(json!({"op": "mark_read", "room": "nowhere", "seq": 1}));
    assert_err(&r, "no_such_room");
    ada.create("other");
    let r = bob.request(json!({"op": "mark_read", "room": "other", "seq": 1}));
    assert_err(&r, "not_member");
    let r = bob.request(json!({"op": "mark_read", "with": "nobody", "seq": 1}));
    assert_err(&r, "no_such_user");
    let r = bob.request(json!({"op": "mark_read", "room": "lobby", "with": "ada", "seq": 1}));
    assert_err(&r, "bad_request");
    let r = bob.request(json!({"op": "mark_read", "room": "lobby"}));
    assert_err(&r, "bad_request");
}

#[test]
fn markers_survive_a_restart() {
    let dir = DataDir::new("markers-restart");
    let (handle, addr) = start(on_disk(&dir));
    let mut ada = user2(addr, "ada");
    let mut bob = user2(addr, "bob");
    ada.create("lobby");
    bob.join("lobby");
    for text in ["1", "2", "3"] {
        ada.say("lobby", text);
    }
    bob.say("lobby", "4");
    ada.say("lobby", "5");
    assert_ok(&ada.request(json!({"op": "dm", "to": "bob", "text": "a"})));
    assert_ok(&ada.request(json!({"op": "dm", "to": "bob", "text": "b"})));
    assert_ok(&bob.request(json!({"op": "mark_read", "room": "lobby", "seq": 2})));
    assert_ok(&bob.request(json!({"op": "mark_read", "with": "ada", "seq": 1})));
    let before = unread(&mut bob);
    drop((ada, bob));
    stop(handle);
    let (_handle, addr) = start(on_disk(&dir));
    let mut bob = Line::named(addr, "bob");
    bob.hello();
    bob.login("bob");
    let after = unread(&mut bob);
    assert_eq!(before, after);
    assert_eq!(after["rooms"]["lobby"], json!({"marker": 2, "count": 2}));
    assert_eq!(
        after["conversations"]["ada"],
        json!({"marker": 1, "count": 1})
    );
}

#[test]
fn typing_reaches_others_not_oneself_and_expires() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    ada.create("lobby");
    let mut ada2 = second2(addr, "ada");
    let mut bob = user2(addr, "bob");
    bob.join("lobby");
    ada.clear_pending();
    ada2.clear_pending();
    assert_ok(&ada.request(json!({"op": "typing", "room": "lobby", "active": true})));
    let t = bob.expect_event("typing");
    assert_eq!(
        t,
        json!({"event": "typing", "room": "lobby", "user": "ada", "active": true})
    );
    // A renewal within the second is not relayed.
    assert_ok(&ada.request(json!({"op": "typing", "room": "lobby", "active": true})));
    // In a DM: `with` names the typer.
    assert_ok(&ada.request(json!({"op": "typing", "with": "bob", "active": true})));
    let t = bob.expect_event("typing");
    assert_eq!(
        t,
        json!({"event": "typing", "with": "ada", "user": "ada", "active": true})
    );
    // Nobody renews: both end within the TTL (6 s) and a little.
    let mut ended = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ended.len() < 2 && std::time::Instant::now() < deadline {
        let t = bob.expect_event("typing");
        assert_eq!(t["active"], false, "{t}");
        ended.push(t);
    }
    assert_eq!(ended.len(), 2, "{ended:?}");
    ada2.ping();
    assert!(
        ada2.take_events("typing").is_empty(),
        "never to one's own connections"
    );
    // Stopping is relayed at once; refusals.
    assert_ok(&bob.request(json!({"op": "typing", "room": "lobby", "active": true})));
    assert_eq!(ada.expect_event("typing")["active"], true);
    assert_ok(&bob.request(json!({"op": "typing", "room": "lobby", "active": false})));
    assert_eq!(ada.expect_event("typing")["active"], false);
    let r = bob.request(json!({"op": "typing", "room": "nowhere", "active": true}));
    assert_err(&r, "no_such_room");
    let r = bob.request(json!({"op": "typing", "with": "nobody", "active": true}));
    assert_err(&r, "no_such_user");
    let r = bob.request(json!({"op": "typing", "room": "lobby"}));
    assert_err(&r, "bad_request");
}

#[test]
fn presence_goes_online_away_and_offline_without_flapping() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    ada.create("lobby");
    let mut bob = user2(addr, "bob");
    bob.join("lobby");
    let m = ada.request(json!({"op": "members", "room": "lobby"}));
    assert_eq!(m["presence"]["bob"], json!({"status": "online"}), "{m}");
    let r = bob.request(json!({"op": "away", "message": "lunch"}));
    assert_ok(&r);
    let p = ada.expect_event("presence");
    assert_eq!(
        p,
        json!({"event": "presence", "user": "bob", "status": "away", "message": "lunch"})
    );
    let m = ada.request(json!({"op": "members", "room": "lobby"}));
    assert_eq!(m["presence"]["bob"]["status"], "away", "{m}");
    assert_ok(&bob.request(json!({"op": "back"})));
    assert_eq!(ada.expect_event("presence")["status"], "online");
    // Gone and back within the grace: no event at all.
    drop(bob);
    std::thread::sleep(Duration::from_millis(300));
    let mut bob = Line::named(addr, "bob");
    bob.hello();
    bob.login("bob");
    ada.clear_pending();
    // Past the grace (5 s): an `offline` would have come by now.
    std::thread::sleep(Duration::from_secs(6));
    ada.ping();
    let flaps = ada.take_events("presence");
    assert!(flaps.is_empty(), "no flapping: {flaps:?}");
    // Gone for good: offline after the grace (about 5 s).
    drop(bob);
    let p = ada.expect_event("presence");
    assert_eq!(
        p,
        json!({"event": "presence", "user": "bob", "status": "offline"})
    );
    // Coming back: online.
    let _bob = second2(addr, "bob");
    let p = ada.expect_event("presence");
    assert_eq!(p["status"], "online", "{p}");
}

#[test]
fn the_client_marks_reads_and_decodes_the_new_events() {
    use parlor::client::Target;
    use parlor::{Client, Event};
    let (_server, addr) = start_chat();
    let connect = |name: &str, signup: bool| {
        let mut c = Client::connect(addr).unwrap();
        c.hello(2).unwrap();
        if signup {
            c.signup(name, PASSWORD).unwrap();
        }
        c.login(name, PASSWORD).unwrap();
        c
    };
    let mut ada = connect("ada", true);
    ada.create("lobby", None).unwrap();
    let mut bob = connect("bob", true);
    let joined = bob.join("lobby").unwrap();
    assert_eq!(joined.presence["ada"].status, "online");
    let mut bob2 = connect("bob", false);
    ada.send("lobby", "hi").unwrap();
    ada.send("lobby", "there").unwrap();
    assert_eq!(bob.unread().unwrap().rooms["lobby"].count, 2);
    assert_eq!(bob.mark_read(Target::Room("lobby"), 5).unwrap(), 2);
    assert_eq!(bob.whoami().unwrap().unread.rooms["lobby"].count, 0);
    let wait = Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Some(event) = bob2.next_event(wait).unwrap() {
        let done = matches!(event, Event::Read { .. });
        seen.push(event);
        if done || seen.len() > 10 {
            break;
        }
    }
    assert!(
        seen.contains(&Event::Read {
            room: Some("lobby".into()),
            with: None,
            seq: 2
        }),
        "{seen:?}"
    );
    ada.typing(Target::With("bob"), true).unwrap();
    bob.away(None).unwrap();
    let mut typing = None;
    let mut presence = None;
    for _ in 0..10 {
        match ada.next_event(wait).unwrap() {
            Some(e @ Event::Presence { .. }) => presence = Some(e),
            Some(_) => {}
            None => break,
        }
        if presence.is_some() {
            break;
        }
    }
    for _ in 0..10 {
        match bob.next_event(wait).unwrap() {
            Some(e @ Event::Typing { .. }) => typing = Some(e),
            Some(_) => {}
            None => break,
        }
        if typing.is_some() {
            break;
        }
    }
    assert_eq!(
        typing,
        Some(Event::Typing {
            room: None,
            with: Some("ada".into()),
            user: "ada".into(),
            active: true
        })
    );
    assert_eq!(
        presence,
        Some(Event::Presence {
            user: "bob".into(),
            status: "away".into(),
            message: None
        })
    );
    bob.back().unwrap();
    assert_eq!(ada.presence("lobby").unwrap()["bob"].status, "online");
}
