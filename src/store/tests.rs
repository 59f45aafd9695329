//! The store on its own: reopening, the directory lock, a damaged file, the queue's
//! bound.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::sqlite::DB_FILE;
use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parlor-store-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn writes_survive_reopening() {
    let dir = temp_dir("reopen");
    {
        let (mut store, snapshot) = Store::<u32>::open(&dir, SyncMode::Normal, 10).unwrap();
        assert!(snapshot.users.is_empty());
        let (tx, rx) = crossbeam_channel::unbounded();
        store
            .start(move |payloads| {
                for (p, committed) in payloads {
                    assert!(committed);
                    tx.send(p).unwrap();
                }
                Vec::new()
            })
            .unwrap();
        let writes = vec![
            Write::User {
                name: "ada".into(),
                hash: "h".into(),
                created: 1,
            },
            Write::Room {
                name: "r".into(),
                topic: "t".into(),
                creator: "ada".into(),
                created: 1,
                invite_only: false,
                next_seq: 1,
            },
            Write::Message {
                room: "r".into(),
                seq: 1,
                from: "ada".into(),
                text: "hi".into(),
                ts: 5,
            },
        ];
        assert!(store.submit(writes, 7).is_ok());
        assert_eq!(rx.recv().unwrap(), 7);
    }
    let (_store, snapshot) = Store::<u32>::open(&dir, SyncMode::Normal, 10).unwrap();
    assert_eq!(snapshot.users, [("ada".to_owned(), "h".to_owned())]);
    assert_eq!(snapshot.rooms[0].last_seq, 1);
    assert_eq!(snapshot.rooms[0].members[0].user, "ada");
    assert_eq!(snapshot.rooms[0].members[0].role, "owner");
    assert_eq!(snapshot.rooms[0].recent[0].text, "hi");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_second_store_on_the_same_dir_is_refused() {
    let dir = temp_dir("locked");
    let (_first, _) = Store::<()>::open(&dir, SyncMode::Normal, 10).unwrap();
    let second = Store::<()>::open(&dir, SyncMode::Normal, 10);
    assert!(
        matches!(second, Err(StoreError::Locked { .. })),
        "{:?}",
        second.err()
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn garbage_is_not_a_parlor_database() {
    let dir = temp_dir("garbage");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(DB_FILE), vec![b'x'; 8192]).unwrap();
    let opened = Store::<()>::open(&dir, SyncMode::Normal, 10);
    assert!(
        matches!(opened, Err(StoreError::NotParlor { .. })),
        "{:?}",
        opened.err()
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_queue_asks_for_backpressure_before_it_fills_and_never_blocks() {
    let dir = temp_dir("bounded");
    // No writer runs: nothing drains, as if every commit were slow.
    let (store, _) = Store::<usize>::open(&dir, SyncMode::Normal, 10).unwrap();
    let woken = Arc::new(AtomicBool::new(false));
    for i in 0..BACKLOG_HIGH {
        let flag = Arc::clone(&woken);
        assert!(
            !store.wait_if_behind(move || flag.store(true, Ordering::Release)),
            "parked at {i} queued, below the high mark"
        );
        assert!(store.submit(Vec::new(), i).is_ok());
    }
    let flag = Arc::clone(&woken);
    assert!(
        store.wait_if_behind(move || flag.store(true, Ordering::Release)),
        "a reader must park once the queue is at its high mark"
    );
    // Threads already past the check still get in, up to the capacity; past it the
    // submission comes back at once instead of blocking.
    let mut refused = None;
    for i in BACKLOG_HIGH..QUEUE_CAP + 10 {
        if let Err(payload) = store.submit(Vec::new(), i) {
            refused = Some(payload);
            break;
        }
    }
    assert_eq!(refused, Some(QUEUE_CAP));
    assert!(!woken.load(Ordering::Acquire));
    let _ = fs::remove_dir_all(&dir);
}
