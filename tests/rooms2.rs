//! Protocol 2's rooms people can run: roles, topics, kicks, bans, invite-only rooms,
//! room deletion, and server operators acting as owner (PROTOCOL-2 sections 1-5, 7).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(200);

fn req(c: &mut Line, value: Value) -> Value {
    c.request(value)
}

/// ada owns `lobby`; bob and cy are members (all protocol 2).
fn lobby(addr: std::net::SocketAddr) -> (Line, Line, Line) {
    let mut ada = user2(addr, "ada");
    ada.create("lobby");
    let mut bob = user2(addr, "bob");
    bob.join("lobby");
    let mut cy = user2(addr, "cy");
    cy.join("lobby");
    assert_eq!(ada.expect_event("joined")["user"], "bob");
    assert_eq!(ada.expect_event("joined")["user"], "cy");
    assert_eq!(bob.expect_event("joined")["user"], "cy");
    for c in [&mut ada, &mut bob, &mut cy] {
        c.clear_pending();
    }
    (ada, bob, cy)
}

#[test]
fn the_owner_makes_ops_and_hands_ownership_over() {
    let (_server, addr) = start_chat();
    let (mut ada, mut bob, mut cy) = lobby(addr);
    let r = req(
        &mut bob,
        json!({"op": "set_role", "room": "lobby", "user": "cy", "role": "op"}),
    );
    assert_err(&r, "forbidden");
    let r = req(
        &mut ada,
        json!({"op": "set_role", "room": "lobby", "user": "nobody", "role": "op"}),
    );
    assert_err(&r, "no_such_user");
    let _dan = user2(addr, "dan");
    let r = req(
        &mut ada,
        json!({"op": "set_role", "room": "lobby", "user": "dan", "role": "op"}),
    );
    assert_err(&r, "not_member");
    assert_eq!(r["user"], "dan", "not_member names the target: {r}");
    let r = req(
        &mut ada,
        json!({"op": "set_role", "room": "lobby", "user": "bob", "role": "king"}),
    );
    assert_err(&r, "bad_request");
    assert_ok(&req(
        &mut ada,
        json!({"op": "set_role", "room": "lobby", "user": "bob", "role": "op"}),
    ));
    let ev = cy.expect_event("role");
    assert_eq!(
        ev,
        json!({"event": "role", "room": "lobby", "user": "bob", "role": "op", "by": "ada"})
    );
    assert_eq!(bob.expect_event("role")["role"], "op");
    ada.expect_silence(QUIET);
    assert_ok(&req(
        &mut ada,
        json!({"op": "set_role", "room": "lobby", "user": "cy", "role": "owner"}),
    ));
    let roles: Vec<Value> = [bob.expect_event("role"), bob.expect_event("role")].into();
    assert!(
        roles.contains(
            &json!({"event": "role", "room": "lobby", "user": "cy", "role": "owner", "by": "ada"})
        ),
        "{roles:?}"
    );
    assert!(
        roles.contains(
            &json!({"event": "role", "room": "lobby", "user": "ada", "role": "op", "by": "ada"})
        ),
        "{roles:?}"
    );
    let r = req(&mut bob, json!({"op": "members", "room": "lobby"}));
    assert_eq!(
        r["roles"],
        json!({"ada": "op", "bob": "op", "cy": "owner"}),
        "{r}"
    );
    let r = req(
        &mut ada,
        json!({"op": "set_role", "room": "lobby", "user": "bob", "role": "member"}),
    );
    assert_err(&r, "forbidden");
}

#[test]
fn ops_set_the_topic_and_members_cannot() {
    let (_server, addr) = start_chat();
    let (mut ada, mut bob, mut cy) = lobby(addr);
    let mut ada_too = second2(addr, "ada");
    let mut cy_v1 = second(addr, "cy");
    let r = req(
        &mut bob,
        json!({"op": "set_topic", "room": "lobby", "topic": "mine"}),
    );
    assert_err(&r, "forbidden");
    let long = "x".repeat(257);
    let r = req(
        &mut ada,
        json!({"op": "set_topic", "room": "lobby", "topic": long}),
    );
    assert_err(&r, "too_long");
    assert_ok(&req(
        &mut ada,
        json!({"op": "set_role", "room": "lobby", "user": "bob", "role": "op"}),
    ));
    let r = req(
        &mut bob,
        json!({"op": "set_topic", "room": "lobby", "topic": "news"}),
    );
    assert_ok(&r);
    let ev = cy.expect_event("topic");
    assert_eq!(
        ev,
        json!({"event": "topic", "room": "lobby", "topic": "news", "by": "bob"})
    );
    assert_eq!(ada_too.expect_event("topic")["topic"], "news");
    assert_eq!(ada.expect_event("topic")["by"], "bob");
    cy_v1.expect_silence(QUIET);
    let r = req(&mut cy, json!({"op": "join", "room": "lobby"}));
    assert_eq!(r["topic"], "news", "{r}");
}

#[test]
fn kicks_follow_rank_and_the_kicked_hear_no_more() {
    let (_server, addr) = start_chat();
    let (mut ada, mut bob, mut cy) = lobby(addr);
    let mut dan = user2(addr, "dan");
    dan.join("lobby");
    let mut cy_v1 = second(addr, "cy");
    let mut ada_v1 = second(addr, "ada");
    for (u, role) in [("bob", "op"), ("dan", "op")] {
        assert_ok(&req(
            &mut ada,
            json!({"op": "set_role", "room": "lobby", "user": u, "role": role}),
        ));
    }
    let r = req(
        &mut bob,
        json!({"op": "kick", "room": "lobby", "user": "ada"}),
    );
    assert_err(&r, "forbidden");
    let r = req(
        &mut bob,
        json!({"op": "kick", "room": "lobby", "user": "dan"}),
    );
    assert_err(&r, "forbidden");
    let r = req(
        &mut cy,
        json!({"op": "kick", "room": "lobby", "user": "bob"}),
    );
    assert_err(&r, "forbidden");
    let r = req(
        &mut bob,
        json!({"op": "kick", "room": "lobby", "user": "ghost"}),
    );
    assert_err(&r, "no_such_user");
    for c in [&mut ada, &mut bob, &mut cy, &mut dan] {
        c.clear_pending();
    }
    let r = req(
        &mut bob,
        json!({"op": "kick", "room": "lobby", "user": "cy", "reason": "spam"}),
    );
    assert_ok(&r);
    let kicked = json!({"event": "kicked", "room": "lobby", "user": "cy", "by": "bob", "reason": "spam", "banned": false});
    assert_eq!(ada.expect_event("kicked"), kicked);
    assert_eq!(cy.expect_event("kicked"), kicked);
    assert_eq!(
        cy_v1.expect_event("left"),
        json!({"event": "left", "room": "lobby", "user": "cy"})
    );
    assert_eq!(ada_v1.expect_event("left")["user"], "cy");
    ada.say("lobby", "after");
    assert_eq!(dan.expect_event("message")["text"], "after");
    cy.expect_silence(QUIET);
    cy_v1.expect_silence(QUIET);
    let r = req(
        &mut cy,
        json!({"op": "send", "room": "lobby", "text": "hi"}),
    );
    assert_err(&r, "not_member");
    let r = req(
        &mut ada,
        json!({"op": "kick", "room": "lobby", "user": "cy"}),
    );
    assert_err(&r, "not_member");
    assert_eq!(r["user"], "cy");
    let r = cy.join("lobby");
    assert_eq!(
        r["roles"].get("cy"),
        None,
        "a kicked member comes back plain: {r}"
    );
}

#[test]
fn a_banned_user_cannot_join_until_unbanned() {
    let (_server, addr) = start_chat();
    let (mut ada, mut bob, mut cy) = lobby(addr);
    let mut eve = user2(addr, "eve");
    let r = req(
        &mut bob,
        json!({"op": "ban", "room": "lobby", "user": "eve"}),
    );
    assert_err(&r, "forbidden");
    let r = req(&mut bob, json!({"op": "bans", "room": "lobby"}));
    assert_err(&r, "forbidden");
    assert_ok(&req(
        &mut ada,
        json!({"op": "ban", "room": "lobby", "user": "eve", "reason": "trolling"}),
    ));
    let r = req(&mut eve, json!({"op": "join", "room": "lobby"}));
    assert_err(&r, "banned");
    assert_eq!(r["scope"], "room");
    assert_eq!(r["reason"], "trolling");
    assert_ok(&req(
        &mut ada,
        json!({"op": "ban", "room": "lobby", "user": "cy"}),
    ));
    let kicked = cy.expect_event("kicked");
    assert_eq!(kicked["reason"], Value::Null);
    assert_eq!(kicked["banned"], true, "a ban says so: {kicked}");
    assert_eq!(bob.expect_event("kicked")["user"], "cy");
    let r = req(&mut cy, json!({"op": "join", "room": "lobby"}));
    assert_err(&r, "banned");
    assert_eq!(r["reason"], Value::Null);
    let r = req(&mut ada, json!({"op": "bans", "room": "lobby", "limit": 1}));
    assert_ok(&r);
    let bans = r["bans"].as_array().expect("bans");
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0]["user"], "cy");
    assert_eq!(bans[0]["by"], "ada");
    assert!(bans[0]["ts"].is_u64());
    assert_eq!(r["next"], "cy");
    let r = req(
        &mut ada,
        json!({"op": "bans", "room": "lobby", "after": "cy"}),
    );
    assert_eq!(
        r["bans"],
        json!([{"user": "eve", "by": "ada", "reason": "trolling", "ts": r["bans"][0]["ts"]}])
    );
    assert!(r.get("next").is_none(), "{r}");
    assert_ok(&req(
        &mut ada,
        json!({"op": "unban", "room": "lobby", "user": "eve"}),
    ));
    eve.join("lobby");
    let r = req(
        &mut ada,
        json!({"op": "ban", "room": "lobby", "user": "nobody"}),
    );
    assert_err(&r, "no_such_user");
}

#[test]
fn invite_only_rooms_let_in_the_invited_once() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    assert_ok(&req(
        &mut ada,
        json!({"op": "create", "room": "den", "invite_only": true}),
    ));
    let mut bob = user2(addr, "bob");
    let mut bob_v1 = second(addr, "bob");
    let r = req(&mut bob, json!({"op": "rooms"}));
    assert_eq!(r["rooms"], json!([]), "hidden from non-members: {r}");
    let r = req(&mut ada, json!({"op": "rooms"}));
    assert_eq!(r["rooms"][0]["room"], "den", "{r}");
    assert_err(
        &req(&mut bob, json!({"op": "members", "room": "den"})),
        "not_member",
    );
    assert_err(
        &req(&mut bob, json!({"op": "history", "room": "den"})),
        "not_member",
    );
    assert_err(
        &req(&mut bob, json!({"op": "join", "room": "den"})),
        "not_invited",
    );
    assert_ok(&req(
        &mut ada,
        json!({"op": "invite", "room": "den", "user": "bob"}),
    ));
    assert_eq!(
        bob.expect_event("invited"),
        json!({"event": "invited", "room": "den", "by": "ada"})
    );
    bob_v1.expect_silence(QUIET);
    bob.join("den");
    assert_ok(&req(&mut bob, json!({"op": "leave", "room": "den"})));
    assert_err(
        &req(&mut bob, json!({"op": "join", "room": "den"})),
        "not_invited",
    );
    // Kept for a user with no protocol-2 connection, handed over once.
    let mut cy = user2(addr, "cy");
    assert_ok(&req(&mut cy, json!({"op": "quit"})));
    cy.expect_closed();
    assert_ok(&req(
        &mut ada,
        json!({"op": "invite", "room": "den", "user": "cy"}),
    ));
    let mut cy = second2(addr, "cy");
    assert_eq!(cy.expect_event("invited")["room"], "den");
    let mut cy_again = second2(addr, "cy");
    cy_again.expect_silence(QUIET);
    assert_ok(&req(
        &mut ada,
        json!({"op": "set_room", "room": "den", "invite_only": false}),
    ));
    bob.join("den");
    assert_eq!(
        req(&mut cy, json!({"op": "rooms"}))["rooms"][0]["room"],
        "den"
    );
    let r = req(
        &mut bob,
        json!({"op": "set_room", "room": "den", "invite_only": true}),
    );
    assert_err(&r, "forbidden");
}

#[test]
fn deleting_a_room_tells_its_members_and_frees_the_name() {
    let (_server, addr) = start(|c| c.operators = vec!["root".into()]);
    let (mut ada, mut bob, mut cy) = lobby(addr);
    let mut cy_v1 = second(addr, "cy");
    ada.say("lobby", "one");
    ada.say("lobby", "two");
    bob.clear_pending();
    cy.clear_pending();
    assert_err(
        &req(&mut bob, json!({"op": "delete_room", "room": "lobby"})),
        "forbidden",
    );
    assert_ok(&req(
        &mut ada,
        json!({"op": "delete_room", "room": "lobby"}),
    ));
    assert_eq!(
        bob.expect_event("room_deleted"),
        json!({"event": "room_deleted", "room": "lobby", "by": "ada"})
    );
    assert_eq!(cy.expect_event("room_deleted")["by"], "ada");
    assert_eq!(
        cy_v1.expect_event("left"),
        json!({"event": "left", "room": "lobby", "user": "cy"})
    );
    assert_err(
        &req(&mut bob, json!({"op": "join", "room": "lobby"})),
        "no_such_room",
    );
    bob.create("lobby");
    let r = bob.say("lobby", "again");
    assert_eq!(r["seq"], 3, "seqs go on after the deleted room's: {r}");
    let r = req(&mut bob, json!({"op": "history", "room": "lobby"}));
    assert_eq!(r["messages"].as_array().map(Vec::len), Some(1), "{r}");
    let mut root = user2(addr, "root");
    assert_ok(&req(
        &mut root,
        json!({"op": "set_topic", "room": "lobby", "topic": "ops"}),
    ));
    assert_ok(&req(
        &mut root,
        json!({"op": "kick", "room": "lobby", "user": "bob"}),
    ));
    let r = req(&mut bob, json!({"op": "rooms"}));
    assert_eq!(r["rooms"][0]["members"], 0, "{r}");
    assert_ok(&req(
        &mut root,
        json!({"op": "delete_room", "room": "lobby"}),
    ));
    assert_err(
        &req(&mut root, json!({"op": "delete_room", "room": "lobby"})),
        "no_such_room",
    );
}

#[test]
fn roles_bans_invitations_and_deletions_survive_a_restart() {
    let dir = DataDir::new("rooms2-restart");
    {
        let (server, addr) = start(on_disk(&dir));
        let (mut ada, _bob, _cy) = lobby(addr);
        let _eve = user2(addr, "eve");
        let mut dan = user2(addr, "dan");
        assert_ok(&req(&mut dan, json!({"op": "quit"})));
        dan.expect_closed();
        assert_ok(&req(
            &mut ada,
            json!({"op": "set_role", "room": "lobby", "user": "bob", "role": "op"}),
        ));
        assert_ok(&req(
            &mut ada,
            json!({"op": "set_topic", "room": "lobby", "topic": "kept"}),
        ));
        assert_ok(&req(
            &mut ada,
            json!({"op": "ban", "room": "lobby", "user": "eve", "reason": "r"}),
        ));
        assert_ok(&req(
            &mut ada,
            json!({"op": "kick", "room": "lobby", "user": "cy"}),
        ));
        assert_ok(&req(
            &mut ada,
            json!({"op": "create", "room": "den", "invite_only": true}),
        ));
        assert_ok(&req(
            &mut ada,
            json!({"op": "invite", "room": "den", "user": "dan"}),
        ));
        assert_ok(&req(&mut ada, json!({"op": "create", "room": "gone"})));
        ada.say("gone", "x");
        assert_ok(&req(&mut ada, json!({"op": "delete_room", "room": "gone"})));
        stop(server);
    }
    let (_server, addr) = start(on_disk(&dir));
    let mut bob = second2(addr, "bob");
    let r = req(&mut bob, json!({"op": "members", "room": "lobby"}));
    assert_eq!(r["roles"], json!({"ada": "owner", "bob": "op"}), "{r}");
    assert_eq!(r["members"], json!(["ada", "bob"]), "{r}");
    let r = req(&mut bob, json!({"op": "bans", "room": "lobby"}));
    assert_eq!(r["bans"][0]["user"], "eve", "{r}");
    assert_eq!(r["bans"][0]["reason"], "r", "{r}");
    let mut eve = second2(addr, "eve");
    assert_err(
        &req(&mut eve, json!({"op": "join", "room": "lobby"})),
        "banned",
    );
    assert_eq!(
        req(&mut eve, json!({"op": "rooms"}))["rooms"],
        json!([{"room": "lobby", "topic": "kept", "members": 2}])
    );
    assert_err(
        &req(&mut eve, json!({"op": "join", "room": "den"})),
        "not_invited",
    );
    let mut dan = second2(addr, "dan");
    assert_eq!(
        dan.expect_event("invited"),
        json!({"event": "invited", "room": "den", "by": "ada"})
    );
    dan.join("den");
    let mut ada = second2(addr, "ada");
    assert_ok(&req(&mut ada, json!({"op": "create", "room": "gone"})));
    assert_eq!(ada.say("gone", "y")["seq"], 2);
}

/// The answers among `frames` (events excluded).
fn answers(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter(|f| f.get("ok").is_some()).collect()
}

#[test]
fn a_ban_or_deletion_whose_commit_fails_is_taken_back() {
    let dir = DataDir::new("rooms2-undo");
    let (handle, addr) = start(on_disk(&dir));
    drop(lobby(addr));
    stop(handle);
    dir.sql(
        "CREATE TRIGGER no_ban BEFORE INSERT ON bans
         BEGIN SELECT RAISE(ABORT, 'injected'); END;
         CREATE TRIGGER no_delete BEFORE DELETE ON rooms
         BEGIN SELECT RAISE(ABORT, 'injected'); END;",
    );
    let (handle, addr) = start(on_disk(&dir));
    let mut bob = second2(addr, "bob");
    for (n, op) in [
        json!({"id": 1, "op": "ban", "room": "lobby", "user": "bob"}),
        json!({"id": 2, "op": "delete_room", "room": "lobby"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut doomed = second2(addr, "ada");
        doomed.send_json(op);
        let frames = doomed.read_until_closed(Duration::from_secs(10));
        assert!(answers(&frames).is_empty(), "request {n}: {frames:?}");
    }
    bob.expect_silence(QUIET);
    let mut ada = second2(addr, "ada");
    let r = req(&mut ada, json!({"op": "members", "room": "lobby"}));
    assert_eq!(r["members"], json!(["ada", "bob", "cy"]), "{r}");
    assert_eq!(r["roles"], json!({"ada": "owner"}), "{r}");
    let r = req(&mut ada, json!({"op": "bans", "room": "lobby"}));
    assert_eq!(r["bans"], json!([]), "{r}");
    bob.say("lobby", "still here");
    stop(handle);
}

#[test]
fn nobody_kicks_or_bans_themselves_and_a_blocked_inviter_is_ignored() {
    let (_server, addr) = start(|c| c.operators = vec!["root".into()]);
    let (mut ada, mut bob, _cy) = lobby(addr);
    for op in ["kick", "ban"] {
        let r = req(&mut ada, json!({"op": op, "room": "lobby", "user": "ada"}));
        assert_err(&r, "forbidden");
    }
    assert_eq!(
        req(&mut bob, json!({"op": "members", "room": "lobby"}))["roles"],
        json!({"ada": "owner"}),
        "the owner is still the owner"
    );
    // dan blocks ada: her invitation is answered ok but never reaches him.
    let mut dan = user2(addr, "dan");
    assert_ok(&req(&mut dan, json!({"op": "block", "user": "ada"})));
    assert_ok(&req(
        &mut ada,
        json!({"op": "set_room", "room": "lobby", "invite_only": true}),
    ));
    assert_ok(&req(
        &mut ada,
        json!({"op": "invite", "room": "lobby", "user": "dan"}),
    ));
    dan.expect_silence(QUIET);
    assert_err(
        &req(&mut dan, json!({"op": "join", "room": "lobby"})),
        "not_invited",
    );
    // A server operator reads the history of a room it is not in.
    assert_ok(&req(
        &mut bob,
        json!({"op": "send", "room": "lobby", "text": "hi"}),
    ));
    let mut root = user2(addr, "root");
    let r = req(&mut root, json!({"op": "history", "room": "lobby"}));
    assert_ok(&r);
    assert_eq!(r["messages"][0]["text"], "hi", "{r}");
}
