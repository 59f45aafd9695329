//! Protocol 2's `accounts` feature: `change_password` and `delete_account`, their
//! refusals, what they do to the user's other connections, sessions and rooms, and
//! that it all holds across a restart (PROTOCOL-2 sections 3 and 5, issue 16 item 7).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "battery staple";

fn change_password(line: &mut Line, old: &str, new: &str) -> Value {
    line.request(json!({"op": "change_password", "old_password": old, "new_password": new}))
}

#[test]
fn hello_names_the_accounts_feature() {
    let (_server, addr) = start_chat();
    assert_features(&Line::connect(addr).hello(), &["accounts"]);
}

#[test]
fn a_wrong_old_password_or_a_weak_new_one_changes_nothing_and_wrong_ones_count() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    let weak = change_password(&mut ada, PASSWORD, "short");
    assert_err(&weak, "weak_password");
    let long = "x".repeat(73);
    assert_err(&change_password(&mut ada, PASSWORD, &long), "weak_password");
    let missing = ada.request(json!({"op": "change_password", "old_password": PASSWORD}));
    assert_err(&missing, "bad_request");
    let anonymous = Line::connect(addr).request(
        json!({"op": "change_password", "old_password": PASSWORD, "new_password": NEW_PASSWORD}),
    );
    assert_err(&anonymous, "not_authenticated");
    let wrong = change_password(&mut ada, "not the password", NEW_PASSWORD);
    assert_err(&wrong, "auth_failed");
    let mut other = Line::connect(addr);
    assert_ok(&login_with(&mut other, "ada", PASSWORD));
    assert_err(&login_with(&mut other, "ada", NEW_PASSWORD), "auth_failed");
    // The successful login reset the count; the failed one and four more wrong
    // checks use the name's failed-login limit up, for logins too.
    for _ in 0..4 {
        let wrong = change_password(&mut ada, "not the password", NEW_PASSWORD);
        assert_err(&wrong, "auth_failed");
    }
    let limited = change_password(&mut ada, PASSWORD, NEW_PASSWORD);
    assert_err(&limited, "rate_limited");
    assert!(
        limited["retry_after"].as_u64().is_some_and(|ms| ms > 0),
        "{limited}"
    );
    let login = login_with(&mut Line::connect(addr), "ada", PASSWORD);
    assert_err(&login, "rate_limited");
    assert!(login["retry_after"].is_u64(), "{login}");
    let deleting = ada.request(json!({"op": "delete_account", "password": PASSWORD}));
    assert_err(&deleting, "rate_limited");
    assert_ok(&ada.request(json!({"op": "whoami"})));
}

#[test]
fn a_password_change_closes_the_other_connections_and_revokes_their_sessions() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    let mut ada_v1 = Line::named(addr, "ada-v1");
    let other_token = ada_v1.login("ada");
    let mut ada_v2 = second2(addr, "ada");
    let mut bob = user2(addr, "bob");
    let mine = ada.request(json!({"op": "login", "user": "ada", "password": PASSWORD}));
    let my_token = mine["session"].as_str().unwrap().to_owned();
    assert_ok(&change_password(&mut ada, PASSWORD, NEW_PASSWORD));
    assert_eq!(closing_reason(&mut ada_v1), "password_changed");
    assert_eq!(closing_reason(&mut ada_v2), "password_changed");
    // Another user's connection is untouched.
    bob.ping();
    // The caller stays logged in, and its session still resumes.
    let me = ada.request(json!({"op": "whoami"}));
    assert_eq!(me["user"], "ada", "{me}");
    let mut again = Line::connect(addr);
    let resumed = again.request(json!({"op": "resume", "session": my_token}));
    assert_ok(&resumed);
    let revoked = Line::connect(addr).request(json!({"op": "resume", "session": other_token}));
    assert_err(&revoked, "auth_failed");
    let mut fresh = Line::connect(addr);
    assert_err(&login_with(&mut fresh, "ada", PASSWORD), "auth_failed");
    assert_ok(&login_with(&mut fresh, "ada", NEW_PASSWORD));
    // The new password is the one to give from now on.
    assert_err(
        &change_password(&mut ada, PASSWORD, "third password"),
        "auth_failed",
    );
}

#[test]
fn a_deleted_account_leaves_its_rooms_hands_ownership_on_and_its_name_is_retired() {
    let (_server, addr) = start_chat();
    let mut ada = user2(addr, "ada");
    let mut ada_v1 = second(addr, "ada");
    ada.create("lobby");
    ada.create("solo");
    ada.say("lobby", "remember me");
    let mut bob = user2(addr, "bob");
    bob.join("lobby");
    let mut carol = user(addr, "carol");
    carol.join("lobby");
    ada.take_events("joined");
    ada_v1.take_events("joined");
    bob.take_events("joined");
    let wrong = ada.request(json!({"op": "delete_account", "password": "not the password"}));
    assert_err(&wrong, "auth_failed");
    assert_err(&ada.request(json!({"op": "delete_account"})), "bad_request");
    assert_ok(&ada.request(json!({"op": "delete_account", "password": PASSWORD})));
    assert_eq!(closing_reason(&mut ada), "account_deleted");
    assert_eq!(closing_reason(&mut ada_v1), "account_deleted");
    let left = bob.expect_event("left");
    assert_eq!(
        (&left["room"], &left["user"]),
        (&json!("lobby"), &json!("ada"))
    );
    let role = bob.expect_event("role");
    assert_eq!(role["user"], "bob", "the longest-standing member: {role}");
    assert_eq!(role["role"], "owner");
    assert_eq!(role["by"], "ada");
    // Protocol 1 gets `left`, and no `role`.
    assert_eq!(carol.expect_event("left")["user"], "ada");
    carol.expect_silence(Duration::from_millis(200));
    let members = bob.request(json!({"op": "members", "room": "lobby"}));
    assert_eq!(members["members"], json!(["bob", "carol"]));
    assert_eq!(members["roles"], json!({"bob": "owner"}));
    let solo = bob.request(json!({"op": "members", "room": "solo"}));
    assert_eq!(solo["members"], json!([]), "an empty room stays: {solo}");
    assert_eq!(solo["roles"], json!({}));
    let history = bob.request(json!({"op": "history", "room": "lobby"}));
    assert_eq!(history["messages"][0]["from"], "ada", "{history}");
    assert_eq!(history["messages"][0]["text"], "remember me");
    let dm = bob.request(json!({"op": "dm", "to": "ada", "text": "hello?"}));
    assert_err(&dm, "no_such_user");
    let mut fresh = Line::connect(addr);
    assert_err(&login_with(&mut fresh, "ada", PASSWORD), "auth_failed");
    let signup = fresh.request(json!({"op": "signup", "user": "ada", "password": PASSWORD}));
    assert_err(&signup, "user_exists");
}

#[test]
fn a_deletion_revokes_every_session_of_the_user_and_no_other() {
    let (_server, addr) = start_chat();
    let mut ada = user(addr, "ada");
    let ada_token = ada.login("ada");
    let mut idle = Line::named(addr, "bob-idle");
    let idle_token = idle.signup_login("bob");
    drop(idle);
    let mut bob = second(addr, "bob");
    assert_ok(&bob.request(json!({"op": "delete_account", "password": PASSWORD})));
    assert_eq!(closing_reason(&mut bob), "account_deleted");
    let resumed = Line::connect(addr).request(json!({"op": "resume", "session": idle_token}));
    assert_err(&resumed, "auth_failed");
    let ada_again = Line::connect(addr).request(json!({"op": "resume", "session": ada_token}));
    assert_ok(&ada_again);
    ada.ping();
}

#[test]
fn password_changes_and_deletions_survive_a_restart() {
    let dir = DataDir::new("accounts2-restart");
    let (handle, addr) = start(on_disk(&dir));
    let mut ada = user2(addr, "ada");
    let mut ada_other = Line::named(addr, "ada-other");
    let revoked = ada_other.login("ada");
    let kept = ada.login("ada");
    ada.create("lobby");
    ada.say("lobby", "from ada");
    let mut bob = user2(addr, "bob");
    bob.join("lobby");
    assert_ok(&change_password(&mut bob, PASSWORD, NEW_PASSWORD));
    assert_ok(&change_password(&mut ada, PASSWORD, NEW_PASSWORD));
    assert_eq!(closing_reason(&mut ada_other), "password_changed");
    let mut carol = user2(addr, "carol");
    assert_ok(&carol.request(json!({"op": "delete_account", "password": PASSWORD})));
    assert_ok(&ada.request(json!({"op": "delete_account", "password": NEW_PASSWORD})));
    stop(handle);
    assert_eq!(dir.count("SELECT count(*) FROM retired_names"), 2);
    assert_eq!(
        dir.count("SELECT count(*) FROM users WHERE name = 'ada'"),
        0
    );
    assert_eq!(
        dir.count("SELECT count(*) FROM sessions WHERE user = 'ada'"),
        0
    );

    let (handle, addr) = start(on_disk(&dir));
    let mut fresh = Line::connect(addr);
    assert_err(&login_with(&mut fresh, "bob", PASSWORD), "auth_failed");
    assert_ok(&login_with(&mut fresh, "bob", NEW_PASSWORD));
    for token in [revoked, kept] {
        let r = Line::connect(addr).request(json!({"op": "resume", "session": token}));
        assert_err(&r, "auth_failed");
    }
    for name in ["ada", "carol"] {
        let r = fresh.request(json!({"op": "signup", "user": name, "password": PASSWORD}));
        assert_err(&r, "user_exists");
    }
    let members = fresh.request(json!({"op": "members", "room": "lobby"}));
    assert_eq!(members["members"], json!(["bob"]));
    assert_eq!(members["roles"], json!({"bob": "owner"}));
    let history = fresh.request(json!({"op": "history", "room": "lobby"}));
    assert_eq!(history["messages"][0]["from"], "ada", "{history}");
    stop(handle);
}

#[test]
fn a_deletion_that_fails_to_commit_is_taken_back() {
    let dir = DataDir::new("accounts2-failed");
    let (handle, addr) = start(on_disk(&dir));
    let mut ada = user(addr, "ada");
    ada.create("lobby");
    let mut bob = user(addr, "bob");
    bob.join("lobby");
    stop(handle);
    dir.sql(
        "CREATE TRIGGER no_retire BEFORE INSERT ON retired_names
         BEGIN SELECT RAISE(ABORT, 'injected'); END;",
    );
    let (handle, addr) = start(on_disk(&dir));
    let mut ada = second(addr, "ada");
    ada.send_json(json!({"id": 1, "op": "delete_account", "password": PASSWORD}));
    let frames = ada.read_until_closed(Duration::from_secs(10));
    assert!(
        frames.iter().all(|f| f.get("ok").is_none()),
        "a deletion that was not stored is not acknowledged: {frames:?}"
    );
    let mut again = second(addr, "ada");
    let members = again.request(json!({"op": "members", "room": "lobby"}));
    assert_eq!(members["members"], json!(["ada", "bob"]));
    assert_eq!(members["roles"], json!({"ada": "owner"}));
    let me = again.request(json!({"op": "whoami"}));
    assert_eq!(me["rooms"], json!(["lobby"]));
    stop(handle);
}

#[test]
fn a_busy_hashing_pool_answers_server_busy_with_retry_after_and_counts_nothing() {
    let (_server, addr) = start(|c| {
        c.bcrypt_cost = 12;
        c.hash_threads = 1;
        c.max_hash_wait = Duration::from_millis(300);
    });
    let mut ada = user2(addr, "ada");
    // Logins of unknown names fill the one hashing thread's queue.
    let mut ghosts: Vec<Line> = (0..40)
        .map(|i| {
            let mut g = Line::named(addr, &format!("ghost{i}"));
            g.send_json(json!({"op": "login", "user": format!("ghost{i}"), "password": PASSWORD}));
            g
        })
        .collect();
    // The pool is full once one of them is refused: ada's requests come right
    // behind, while the accepted ones are still hashing (each takes hundreds of ms).
    let mut answered = vec![false; ghosts.len()];
    let deadline = Instant::now() + Duration::from_secs(10);
    'full: while Instant::now() < deadline {
        for (g, seen) in ghosts.iter_mut().zip(answered.iter_mut()) {
            if *seen {
                continue;
            }
            if let Ok(f) = g.try_read_frame(Instant::now() + Duration::from_millis(5)) {
                *seen = true;
                if f.value["error"] == "server_busy" {
                    break 'full;
                }
            }
        }
    }
    let busy = change_password(&mut ada, PASSWORD, NEW_PASSWORD);
    assert_err(&busy, "server_busy");
    assert!(
        busy["retry_after"].as_u64().is_some_and(|ms| ms > 0),
        "{busy}"
    );
    let busy = ada.request(json!({"op": "delete_account", "password": PASSWORD}));
    assert_err(&busy, "server_busy");
    assert!(busy["retry_after"].is_u64(), "{busy}");
    for (g, _) in ghosts.iter_mut().zip(&answered).filter(|(_, seen)| !**seen) {
        let r = g.recv();
        assert!(
            r["error"] == "auth_failed" || r["error"] == "server_busy",
            "{r}"
        );
    }
    // Neither refusal counted as a failed check: five wrong ones still get through.
    for _ in 0..5 {
        assert_err(
            &change_password(&mut ada, "wrong password", NEW_PASSWORD),
            "auth_failed",
        );
    }
    assert_err(
        &change_password(&mut ada, PASSWORD, NEW_PASSWORD),
        "rate_limited",
    );
}

/// The whole suite again, with each server storing to a data directory.
#[test]
fn the_accounts_suite_passes_with_a_store() {
    rerun_with_store("the_accounts_suite_passes_with_a_store");
}
