//! `parlor backup` of a live server under traffic, and `parlor restore` into a
//! stopped server's data directory.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{DataDir, PASSWORD, on_disk, start, stop};
use parlor::{Client, HistoryQuery};

fn parlor(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(args)
        .output()
        .expect("run the parlor binary")
}

#[test]
fn a_backup_under_traffic_restores_every_message_acknowledged_before_it() {
    let live = DataDir::new("backup-live");
    let restored = DataDir::new("backup-restored");
    let file = live.path().with_extension("backup.db");
    let (handle, addr) = start(on_disk(&live));
    let mut setup = Client::connect(addr).unwrap();
    setup.signup("ada", PASSWORD).unwrap();
    setup.login("ada", PASSWORD).unwrap();
    setup.create("lobby", None).unwrap();

    // A sender keeps sending; `acked` is the highest seq the server acknowledged.
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acked, done) = (Arc::clone(&acked), Arc::clone(&done));
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            for n in 0..100_000 {
                if done.load(Ordering::Acquire) || Instant::now() > deadline {
                    break;
                }
                let sent = setup.send("lobby", &format!("m{n}")).expect("send");
                acked.store(sent.seq, Ordering::Release);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.load(Ordering::Acquire) < 50 {
        assert!(Instant::now() < deadline, "the sender is stuck");
        thread::sleep(Duration::from_millis(10));
    }
    let before = acked.load(Ordering::Acquire);
    let out = parlor(&[
        "backup",
        "--data-dir",
        live.path().to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    done.store(true, Ordering::Release);
    sender.join().unwrap();

    // Restoring into a directory a server holds is refused.
    let busy = parlor(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        live.path().to_str().unwrap(),
    ]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use"));
    stop(handle);

    let out = parlor(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        restored.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (handle, addr) = start(on_disk(&restored));
    let mut client = Client::connect(addr).unwrap();
    client.login("ada", PASSWORD).unwrap();
    let query = HistoryQuery {
        after: Some(0),
        limit: Some(500),
        ..HistoryQuery::default()
    };
    let mut seen = Vec::new();
    while seen.len() < usize::try_from(before).unwrap() {
        let page = client
            .history(
                "lobby",
                HistoryQuery {
                    after: seen.last().copied(),
                    ..query
                },
            )
            .unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().map(|m| m.seq));
    }
    let expected: Vec<u64> = (1..=before).collect();
    assert_eq!(&seen[..expected.len().min(seen.len())], &expected[..]);
    assert!(
        seen.len() as u64 >= before,
        "{} of {before} messages",
        seen.len()
    );
    stop(handle);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn restore_refuses_a_file_that_is_not_a_parlor_database() {
    let dir = DataDir::new("backup-not-parlor");
    std::fs::create_dir_all(dir.path()).unwrap();
    let bogus = dir.path().join("bogus.db");
    std::fs::write(&bogus, "not a database at all, just text").unwrap();
    let target = dir.path().join("data");
    let out = parlor(&[
        "restore",
        "--from",
        bogus.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a parlor database"), "{stderr}");
    assert!(
        !target.join("parlor.db").exists(),
        "nothing was put in place"
    );
}

#[test]
fn a_backup_into_the_data_directory_is_refused_and_the_server_goes_on() {
    let dir = DataDir::new("backup-inside");
    let (handle, addr) = start(on_disk(&dir));
    let mut ada = Client::connect(addr).expect("connects");
    ada.signup("ada", PASSWORD).expect("signup");
    ada.login("ada", PASSWORD).expect("login");
    ada.create("lobby", None).expect("create");
    ada.send("lobby", "before").expect("send");
    let data = dir.path().to_str().unwrap();
    for out in [dir.path().join("parlor.db"), dir.path().join("copy.db")] {
        let run = parlor(&["backup", "--data-dir", data, "--out", out.to_str().unwrap()]);
        assert!(!run.status.success(), "a backup to {out:?} must be refused");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains("outside"), "{stderr}");
    }
    ada.send("lobby", "after")
        .expect("send after the refused backups");
    drop(ada);
    stop(handle);
    let (_server, addr) = start(on_disk(&dir));
    let mut ada = Client::connect(addr).expect("connects");
    ada.login("ada", PASSWORD).expect("login after a restart");
    let texts: Vec<String> = ada
        .history("lobby", HistoryQuery::default())
        .expect("history")
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["before", "after"], "the live database is intact");
}
