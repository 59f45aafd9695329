//! Protocol 2's `hello`, who gets which event by protocol version, and the roles
//! every room has from its creation (PROTOCOL-2 sections 1-3, 7).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn hello_names_the_server_its_version_and_limits() {
    let (_server, addr) = start(|c| {
        c.max_text = 1000;
        c.max_frame = 8192;
        c.idle_timeout = Duration::from_secs(90);
        c.max_frame_rate = 50;
    });
    let mut c = Line::connect(addr);
    let r = c.request(json!({"op": "hello"}));
    assert_ok(&r);
    assert_eq!(r["server"], "parlor");
    assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["protocol"], 1, "no protocol named: 1");
    assert_features(&r, &["roles"]);
    let limits = &r["limits"];
    assert_eq!(limits["max_frame"], 8192);
    assert_eq!(limits["max_text"], 1000);
    assert_eq!(limits["history_max"], 500);
    assert_eq!(limits["idle_timeout"], 90);
    assert_eq!(limits["max_frame_rate"], 50);
    assert_eq!(
        limits["max_enc"],
        2 * 1000 + 4096,
        "the smaller of the two rules"
    );
    let r = c.request(json!({"op": "hello", "protocol": 7}));
    assert_eq!(r["protocol"], 2, "the lower of the two: {r}");
    let r = c.request(json!({"op": "hello", "protocol": 1}));
    assert_eq!(r["protocol"], 1, "a later hello sets it again: {r}");
    for bad in [json!(0), json!(-1), json!(1.5), json!("2"), json!(null)] {
        let r = c.request(json!({"op": "hello", "protocol": bad}));
        assert_err(&r, "bad_request");
    }
}

#[test]
fn joined_and_left_reach_the_actors_other_protocol_2_connections_only() {
    let (_server, addr) = start_chat();
    let mut ada = user(addr, "ada");
    ada.create("lobby");
    let mut bob = user2(addr, "bob");
    let mut bob_v2 = second2(addr, "bob");
    let mut bob_v1 = second(addr, "bob");
    bob.join("lobby");
    let ev = ada.expect_event("joined");
    assert_eq!(ev["user"], "bob");
    assert_eq!(bob_v2.expect_event("joined")["user"], "bob");
    bob_v1.expect_silence(Duration::from_millis(200));
    assert_ok(&bob.request(json!({"op": "leave", "room": "lobby"})));
    assert_eq!(ada.expect_event("left")["user"], "bob");
    assert_eq!(bob_v2.expect_event("left")["user"], "bob");
    // v1 never told the leaver's other connections: unchanged.
    bob_v1.expect_silence(Duration::from_millis(200));
}

#[test]
fn the_creator_owns_the_room_and_ownership_passes_on_when_the_owner_leaves() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    ada.create("lobby");
    let mut bob = user2(addr, "bob");
    let mut cy = user2(addr, "cy");
    bob.join("lobby");
    std::thread::sleep(Duration::from_millis(5));
    let r = cy.join("lobby");
    assert_eq!(
        r["roles"],
        json!({"ada": "owner"}),
        "join answers roles: {r}"
    );
    let r = bob.request(json!({"op": "members", "room": "lobby"}));
    assert_eq!(r["roles"], json!({"ada": "owner"}));
    bob.clear_pending();
    cy.clear_pending();
    assert_ok(&ada.request(json!({"op": "leave", "room": "lobby"})));
    assert_eq!(bob.expect_event("left")["user"], "ada");
    let ev = bob.expect_event("role");
    assert_eq!(
        ev,
        json!({"event": "role", "room": "lobby", "user": "bob", "role": "owner", "by": "ada"})
    );
    let r = cy.request(json!({"op": "members", "room": "lobby"}));
    assert_eq!(
        r["roles"],
        json!({"bob": "owner"}),
        "the longest-standing member: {r}"
    );
}

#[test]
fn roles_survive_a_restart() {
    let dir = DataDir::new("hello-roles");
    {
        let (server, addr) = start(on_disk(&dir));
        let mut ada = user2(addr, "ada");
        ada.create("lobby");
        let mut bob = user2(addr, "bob");
        bob.join("lobby");
        assert_ok(&ada.request(json!({"op": "leave", "room": "lobby"})));
        stop(server);
    }
    let (_server, addr) = start(on_disk(&dir));
    let mut bob = Line::connect(addr);
    bob.login("bob");
    let r = bob.request(json!({"op": "members", "room": "lobby"}));
    assert_eq!(r["roles"], json!({"bob": "owner"}), "{r}");
}
