//! Server operators (issue 23 item 3, feature `admin`): every `admin_*` op, its
//! refusal for non-operators, account bans (right vs wrong password, expiry, a
//! restart), and the offline `parlor admin set-password`.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use parlor::Config;
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "battery staple";

fn operators(c: &mut Config) {
    c.operators = vec!["root".into()];
}

#[test]
fn hello_names_the_admin_feature() {
    let (_server, addr) = start_chat();
    assert_features(&Line::connect(addr).hello(), &["admin"]);
}

#[test]
fn every_admin_op_is_forbidden_to_a_non_operator() {
    let (_server, addr) = start(operators);
    let _root = user2(addr, "root");
    let mut ada = user2(addr, "ada");
    let requests = [
        json!({"op": "admin_kill", "user": "root"}),
        json!({"op": "admin_ban", "user": "root"}),
        json!({"op": "admin_unban", "user": "root"}),
        json!({"op": "admin_connections"}),
        json!({"op": "admin_announce", "text": "hi"}),
        json!({"op": "admin_set_password", "user": "root", "password": NEW_PASSWORD}),
        json!({"op": "admin_signup", "user": "eve", "password": NEW_PASSWORD}),
        json!({"op": "admin_reload"}),
    ];
    for request in &requests {
        assert_err(&ada.request(request.clone()), "forbidden");
        let anonymous = Line::connect(addr).request(request.clone());
        assert_err(&anonymous, "not_authenticated");
    }
    // Nothing happened: root still logs in with the old password, eve does not exist.
    assert_ok(&login_with(&mut Line::connect(addr), "root", PASSWORD));
    let eve = login_with(&mut Line::connect(addr), "eve", NEW_PASSWORD);
    assert_err(&eve, "auth_failed");
}

#[test]
fn admin_kill_closes_every_connection_of_the_user_with_killed() {
    let (_server, addr) = start(operators);
    let mut root = user2(addr, "root");
    let mut ada = user2(addr, "ada");
    let mut ada2 = second2(addr, "ada");
    let mut bob = user2(addr, "bob");
    let r = root.request(json!({"op": "admin_kill", "user": "ada", "reason": "spam"}));
    assert_ok(&r);
    assert_eq!(r["closed"], 2, "{r}");
    assert_eq!(closing_reason(&mut ada), "killed");
    assert_eq!(closing_reason(&mut ada2), "killed");
    bob.ping();
    // A kill is no ban: ada logs in again.
    assert_ok(&login_with(&mut Line::connect(addr), "ada", PASSWORD));
    let nobody = root.request(json!({"op": "admin_kill", "user": "nobody"}));
    assert_err(&nobody, "no_such_user");
}

#[test]
fn a_ban_revokes_closes_and_refuses_only_the_right_password_with_banned() {
    let (_server, addr) = start(operators);
    let mut root = user2(addr, "root");
    let mut ada = Line::named(addr, "ada");
    ada.hello();
    let session = ada.signup_login("ada");
    let r = root.request(json!({"op": "admin_ban", "user": "ada", "reason": "spam"}));
    assert_ok(&r);
    assert!(r["until"].is_null(), "{r}");
    assert_eq!(closing_reason(&mut ada), "banned");
    let mut again = Line::connect(addr);
    let resumed = again.request(json!({"op": "resume", "session": session}));
    assert_err(&resumed, "auth_failed");
    let right = login_with(&mut again, "ada", PASSWORD);
    assert_err(&right, "banned");
    assert_eq!(right["scope"], "account", "{right}");
    assert_eq!(right["reason"], "spam", "{right}");
    assert!(right["until"].is_null(), "{right}");
    let wrong = login_with(&mut again, "ada", "not the password");
    assert_err(&wrong, "auth_failed");
    assert!(wrong.get("scope").is_none(), "{wrong}");
    assert_ok(&root.request(json!({"op": "admin_unban", "user": "ada"})));
    assert_ok(&login_with(&mut again, "ada", PASSWORD));
    let nobody = root.request(json!({"op": "admin_ban", "user": "nobody"}));
    assert_err(&nobody, "no_such_user");
    let zero = root.request(json!({"op": "admin_ban", "user": "ada", "duration": 0}));
    assert_err(&zero, "bad_request");
}

#[test]
fn a_ban_with_a_duration_ends_by_itself() {
    let (_server, addr) = start(operators);
    let mut root = user2(addr, "root");
    Line::connect(addr).signup("ada");
    let before = common_now_ms();
    let r = root.request(json!({"op": "admin_ban", "user": "ada", "duration": 1}));
    assert_ok(&r);
    let until = r["until"].as_u64().expect("until in ms");
    assert!(until >= before + 1000, "{r}");
    let mut ada = Line::connect(addr);
    let refused = login_with(&mut ada, "ada", PASSWORD);
    assert_err(&refused, "banned");
    assert_eq!(refused["until"], until, "{refused}");
    // Bounded: the ban is one second long; wait for its end on the wall clock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while common_now_ms() <= until && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_ok(&login_with(&mut ada, "ada", PASSWORD));
}

fn common_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

#[test]
fn a_ban_survives_a_restart_and_an_unban_too() {
    let dir = DataDir::new("admin-ban-restart");
    let (handle, addr) = start(|c| {
        on_disk(&dir)(c);
        operators(c);
    });
    let mut root = user2(addr, "root");
    Line::connect(addr).signup("ada");
    Line::connect(addr).signup("bob");
    let r = root.request(json!({"op": "admin_ban", "user": "ada", "reason": "spam"}));
    assert_ok(&r);
    let r = root.request(json!({"op": "admin_ban", "user": "bob", "duration": 3600}));
    assert_ok(&r);
    let bob_until = r["until"].as_u64().expect("until");
    stop(handle);
    let (handle, addr) = start(|c| {
        on_disk(&dir)(c);
        operators(c);
    });
    let ada = login_with(&mut Line::connect(addr), "ada", PASSWORD);
    assert_err(&ada, "banned");
    assert_eq!(ada["reason"], "spam", "{ada}");
    let bob = login_with(&mut Line::connect(addr), "bob", PASSWORD);
    assert_err(&bob, "banned");
    assert_eq!(bob["until"], bob_until, "{bob}");
    let mut root = second2(addr, "root");
    assert_ok(&root.request(json!({"op": "admin_unban", "user": "ada"})));
    stop(handle);
    let (_handle, addr) = start(|c| {
        on_disk(&dir)(c);
        operators(c);
    });
    assert_ok(&login_with(&mut Line::connect(addr), "ada", PASSWORD));
    assert_err(
        &login_with(&mut Line::connect(addr), "bob", PASSWORD),
        "banned",
    );
}

#[test]
fn admin_connections_lists_users_peers_and_bytes_in_pages() {
    let (_server, addr) = start(operators);
    let mut root = user2(addr, "root");
    let mut ada = user2(addr, "ada");
    ada.ping();
    let mut anonymous = Line::connect(addr);
    anonymous.ping();
    let r = root.request(json!({"op": "admin_connections"}));
    assert_ok(&r);
    let rows = r["connections"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{r}");
    assert!(r.get("next").is_none(), "{r}");
    let users: Vec<&Value> = rows.iter().map(|row| &row["user"]).collect();
    assert!(
        users.contains(&&json!("root")) && users.contains(&&json!("ada")),
        "{r}"
    );
    assert!(users.contains(&&Value::Null), "{r}");
    for row in rows {
        assert_eq!(row["listener"], "tcp", "{row}");
        assert_eq!(row["node"], "local", "{row}");
        assert!(
            row["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:"))
        );
        assert!(
            row["since"].as_u64().is_some_and(|s| s > 1_600_000_000_000),
            "{row}"
        );
        assert!(row["bytes_in"].as_u64().is_some_and(|b| b > 0), "{row}");
        assert!(row["bytes_out"].as_u64().is_some_and(|b| b > 0), "{row}");
    }
    let first = root.request(json!({"op": "admin_connections", "limit": 2}));
    assert_eq!(
        first["connections"].as_array().map(Vec::len),
        Some(2),
        "{first}"
    );
    let next = first["next"].as_str().expect("next").to_owned();
    let rest = root.request(json!({"op": "admin_connections", "limit": 2, "after": next}));
    assert_eq!(
        rest["connections"].as_array().map(Vec::len),
        Some(1),
        "{rest}"
    );
    assert!(rest.get("next").is_none(), "{rest}");
    let bad = root.request(json!({"op": "admin_connections", "after": "x"}));
    assert_err(&bad, "bad_request");
}

#[test]
fn an_announcement_reaches_every_logged_in_protocol_2_connection() {
    let (_server, addr) = start(|c| {
        operators(c);
        c.max_text = 100;
    });
    let mut root = user2(addr, "root");
    let mut ada = user2(addr, "ada");
    let mut old = user(addr, "bob");
    let mut anonymous = Line::connect(addr);
    anonymous.hello();
    let r = root.request(json!({"op": "admin_announce", "text": "restart at noon"}));
    assert_ok(&r);
    assert_eq!(r["delivered"], 1, "{r}");
    let event = ada.expect_event("announcement");
    assert_eq!(event["text"], "restart at noon", "{event}");
    assert_eq!(event["by"], "root", "{event}");
    assert!(event["ts"].is_u64(), "{event}");
    old.expect_silence(Duration::from_millis(200));
    anonymous.expect_silence(Duration::from_millis(200));
    let long = root.request(json!({"op": "admin_announce", "text": "x".repeat(101)}));
    assert_err(&long, "too_long");
    let empty = root.request(json!({"op": "admin_announce", "text": ""}));
    assert_err(&empty, "bad_request");
}

#[test]
fn admin_set_password_revokes_and_closes_with_password_changed() {
    let (_server, addr) = start(operators);
    let mut root = user2(addr, "root");
    let mut ada = Line::named(addr, "ada");
    ada.hello();
    let session = ada.signup_login("ada");
    let weak =
        root.request(json!({"op": "admin_set_password", "user": "ada", "password": "short"}));
    assert_err(&weak, "weak_password");
    let r =
        root.request(json!({"op": "admin_set_password", "user": "ada", "password": NEW_PASSWORD}));
    assert_ok(&r);
    assert_eq!(closing_reason(&mut ada), "password_changed");
    let mut again = Line::connect(addr);
    assert_err(
        &again.request(json!({"op": "resume", "session": session})),
        "auth_failed",
    );
    assert_err(&login_with(&mut again, "ada", PASSWORD), "auth_failed");
    assert_ok(&login_with(&mut again, "ada", NEW_PASSWORD));
    let nobody = root
        .request(json!({"op": "admin_set_password", "user": "nobody", "password": NEW_PASSWORD}));
    assert_err(&nobody, "no_such_user");
    // The operator itself stays logged in.
    root.ping();
}

#[test]
fn admin_signup_makes_an_account() {
    let (_server, addr) = start(operators);
    let mut root = user2(addr, "root");
    let r = root.request(json!({"op": "admin_signup", "user": "eve", "password": NEW_PASSWORD}));
    assert_ok(&r);
    assert_eq!(r["user"], "eve", "{r}");
    assert_ok(&login_with(&mut Line::connect(addr), "eve", NEW_PASSWORD));
    let taken =
        root.request(json!({"op": "admin_signup", "user": "eve", "password": NEW_PASSWORD}));
    assert_err(&taken, "user_exists");
    let weak = root.request(json!({"op": "admin_signup", "user": "zed", "password": "short"}));
    assert_err(&weak, "weak_password");
}

#[test]
fn admin_reload_without_a_hook_says_so() {
    let (_server, addr) = start(operators);
    let mut root = user2(addr, "root");
    let r = root.request(json!({"op": "admin_reload"}));
    assert_err(&r, "internal");
    let message = r["message"].as_str().unwrap_or_default();
    assert!(message.contains("without --config"), "{r}");
}

#[test]
fn admin_reload_answers_what_the_hook_reports() {
    let server = parlor::Server::builder()
        .addr("127.0.0.1:0")
        .in_memory()
        .configure(|c| {
            c.bcrypt_cost = 4;
            c.operators = vec!["root".into()];
        })
        .on_reload(|| Ok("max-text: 16384 -> 100".to_owned()))
        .build()
        .expect("server binds");
    let addr = server.local_addr();
    let _handle = server.spawn();
    let mut root = user2(addr, "root");
    let r = root.request(json!({"op": "admin_reload"}));
    assert_ok(&r);
    assert_eq!(r["report"], "max-text: 16384 -> 100", "{r}");
}

#[test]
fn the_offline_set_password_works_on_a_stopped_server_only() {
    let dir = DataDir::new("admin-offline");
    let (handle, addr) = start(on_disk(&dir));
    let mut ada = Line::named(addr, "ada");
    let session = ada.signup_login("ada");
    drop(ada);
    // While the server runs, the data directory is locked.
    let refused = set_password_cli(&dir, "ada", NEW_PASSWORD);
    assert!(!refused.status.success(), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("in use"), "{said}");
    stop(handle);
    let done = set_password_cli(&dir, "ada", NEW_PASSWORD);
    assert!(done.status.success(), "{done:?}");
    let nobody = set_password_cli(&dir, "nobody", NEW_PASSWORD);
    assert!(!nobody.status.success(), "{nobody:?}");
    let weak = set_password_cli(&dir, "ada", "short");
    assert!(!weak.status.success(), "{weak:?}");
    let (_handle, addr) = start(on_disk(&dir));
    let mut again = Line::connect(addr);
    assert_err(
        &again.request(json!({"op": "resume", "session": session})),
        "auth_failed",
    );
    assert_err(&login_with(&mut again, "ada", PASSWORD), "auth_failed");
    assert_ok(&login_with(&mut again, "ada", NEW_PASSWORD));
}

/// `parlor admin set-password`, the password on stdin (not a terminal).
fn set_password_cli(dir: &DataDir, user: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["admin", "set-password", "--bcrypt-cost", "4", "--data-dir"])
        .arg(dir.path())
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run parlor");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{password}").expect("write the password");
    drop(stdin);
    child.wait_with_output().expect("parlor ends")
}

#[test]
fn the_client_has_a_method_per_admin_op() {
    let (_server, addr) = start(operators);
    let _root = user2(addr, "root");
    let mut client = parlor::Client::connect(addr).expect("connect");
    client.login("root", PASSWORD).expect("login");
    client
        .admin_signup("ada", NEW_PASSWORD)
        .expect("admin_signup");
    let mut ada = Line::named(addr, "ada");
    ada.hello();
    assert_ok(&login_with(&mut ada, "ada", NEW_PASSWORD));
    let rows = client.admin_connections().expect("admin_connections");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter().any(|r| r.user.as_deref() == Some("ada")),
        "{rows:?}"
    );
    assert_eq!(client.admin_announce("hi").expect("admin_announce"), 2);
    assert_eq!(ada.expect_event("announcement")["text"], "hi");
    assert_eq!(
        client.admin_kill("ada", Some("test")).expect("admin_kill"),
        1
    );
    let until = client.admin_ban("ada", Some(60), None).expect("admin_ban");
    assert!(until.is_some_and(|u| u > common_now_ms()), "{until:?}");
    client.admin_unban("ada").expect("admin_unban");
    client
        .admin_set_password("ada", PASSWORD)
        .expect("admin_set_password");
    assert_ok(&login_with(&mut Line::connect(addr), "ada", PASSWORD));
    match client.admin_reload() {
        Err(parlor::ClientError::Server { code, .. }) => {
            assert_eq!(code, parlor::ErrorCode::Internal)
        }
        other => panic!("admin_reload without a hook: {other:?}"),
    }
}

/// The whole suite again, with each server storing to a data directory.
#[test]
fn the_admin_suite_passes_with_a_store() {
    rerun_with_store("the_admin_suite_passes_with_a_store");
}
