//! Persistence, end to end: the real `parlor` binary on a data directory, stopped by
//! SIGTERM and by SIGKILL (also in the middle of heavy sending) and started again on
//! the same directory, and refused on directories it cannot use.
//!
//! Every child process sits in a guard that kills and reaps it on every path, every
//! wait has a deadline, and every test has its own temporary directory.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{PASSWORD, XorShift};
use parlor::{Client, ClientError, ErrorCode, Event, HistoryQuery, Message, RoomInfo};
use serde_json::json;

/// How long the server may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server that must refuse to start may take to exit.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SIGTERM may take to stop the server (PROTOCOL: drain for up to 3 s).
const TERM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits for any one response.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to listen for something that must not arrive.
const SHORT: Duration = Duration::from_millis(300);

/// Bob's password (everyone else has [`PASSWORD`]).
const BOB_PASSWORD: &str = "battery staple";

// ------------------------------------------------------------------ helpers

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("parlor-store-test-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A `parlor` command with logging at `info`, so the start-up line is printed.
fn parlor() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parlor"));
    cmd.env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// `parlor serve` on a free port of 127.0.0.1 with cheap hashing and `data_dir`.
fn serve_cmd(data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = parlor();
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--bcrypt-cost", "4"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra);
    cmd
}

/// A running child process whose stderr is collected by a thread. Dropping it kills
/// and reaps the child.
struct Proc {
    child: Child,
    /// Everything the child wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
    /// The same, line by line, as it arrives.
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd.spawn().expect("cannot spawn the parlor binary");
        let pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let log = Arc::clone(&stderr);
        let reader = thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                {
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        Proc {
            child,
            stderr,
            lines,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote to stderr so far (all of it once it has exited).
    fn stderr(&mut self) -> String {
        if let Ok(Some(_)) = self.child.try_wait() {
            // The pipe is closed once the child is gone, so the reader ends soon.
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
        }
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for the child to exit, for at most `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => panic!("cannot wait for the parlor process: {e}"),
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the child to exit on its own within `timeout`; returns its status
    /// and its whole stderr. Fails the test if it is still running.
    fn expect_exit(&mut self, timeout: Duration) -> (ExitStatus, String) {
        match self.wait_exit(timeout) {
            Some(status) => (status, self.stderr()),
            None => panic!(
                "parlor is still running after {timeout:?}; stderr so far:\n{}",
                self.stderr()
            ),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // `kill` on a child already reaped does nothing.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The address in a start-up line: `... listening on 127.0.0.1:PORT (...)`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A `parlor serve` that printed its listening address.
struct Server {
    proc: Proc,
    addr: SocketAddr,
}

impl Server {
    /// Starts a server on `data_dir` with `extra` flags.
    fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::spawn(serve_cmd(data_dir, extra))
    }

    /// Spawns `cmd` and waits for its `listening on` line.
    fn spawn(cmd: Command) -> Server {
        let mut proc = Proc::spawn(cmd);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match proc.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        assert!(addr.ip().is_loopback(), "listening on {addr}, not loopback");
                        return Server { proc, addr };
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no `listening on` line within {START_TIMEOUT:?}; stderr so far:\n{}",
                    proc.stderr()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = proc.wait_exit(Duration::from_secs(5));
                    panic!(
                        "parlor ended its stderr before listening (exit: {status:?}); stderr:\n{}",
                        proc.stderr()
                    );
                }
            }
        }
    }

    /// SIGTERM (with the `kill` command); the server must exit 0 within 5 s.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.proc.pid().to_string()])
            .status()
            .expect("cannot run `kill`");
        assert!(status.success(), "`kill -TERM` failed: {status}");
        let (status, stderr) = self.proc.expect_exit(TERM_TIMEOUT);
        assert!(
            status.success(),
            "after SIGTERM parlor must exit 0, got {status}; stderr:\n{stderr}"
        );
    }

    /// SIGKILL: no chance to clean up.
    fn crash(mut self) {
        self.proc.child.kill().expect("SIGKILL the server");
        let status = self.proc.wait_exit(Duration::from_secs(5));
        assert!(status.is_some(), "parlor still running after SIGKILL");
    }

    fn client(&self) -> Client {
        connect(self.addr)
    }
}

/// How a server is stopped before the restart.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Term,
    Kill,
}

impl Server {
    fn stop(self, how: Stop) {
        match how {
            Stop::Term => self.terminate(),
            Stop::Kill => self.crash(),
        }
    }
}

/// A client with a bounded connect and bounded waits.
fn connect(addr: SocketAddr) -> Client {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let mut client = Client::from_stream(stream).expect("client from stream");
    client.set_timeout(CLIENT_TIMEOUT);
    client
}

/// A new connection logged in as `user` (password [`PASSWORD`]); and its token.
fn logged_in(server: &Server, user: &str) -> (Client, String) {
    let mut c = server.client();
    let token = c
        .login(user, PASSWORD)
        .unwrap_or_else(|e| panic!("login as {user}: {e}"));
    (c, token)
}

/// The server's error code, failing the test on success or on any other failure.
fn server_code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Server { code, .. }) => code,
        other => panic!("expected an error response, got {other:?}"),
    }
}

fn query(before: Option<u64>, after: Option<u64>, limit: Option<u64>) -> HistoryQuery {
    HistoryQuery {
        before,
        after,
        limit,
    }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

// ------------------------------------------------------------------ restart

/// The ten messages of `lobby`, seq 1-10: `history` pages over them, each page
/// compared whole (text, sender, seq and the `ts` of the sender's ack). With
/// `--history-len 2` all but the last two come from the database.
fn check_lobby_history(c: &mut Client, sent: &[Message], when: &str) {
    assert_eq!(sent.len(), 10);
    let mut page = |before, after, limit| {
        c.history("lobby", query(before, after, limit))
            .unwrap_or_else(|e| panic!("{when}: history {before:?}/{after:?}/{limit:?}: {e}"))
    };
    let range = |first: usize, last: usize| sent[first - 1..last].to_vec();

    assert_eq!(page(None, None, None), sent, "{when}: whole history");
    assert_eq!(page(None, None, Some(3)), range(8, 10), "{when}: newest 3");
    assert_eq!(
        page(Some(5), None, Some(3)),
        range(2, 4),
        "{when}: before 5"
    );
    assert_eq!(page(None, Some(3), Some(4)), range(4, 7), "{when}: after 3");
    assert_eq!(page(Some(6), Some(2), None), range(3, 5), "{when}: (2, 6)");
    assert_eq!(page(Some(2), None, None), range(1, 1), "{when}: before 2");
    assert_eq!(page(None, Some(0), Some(1)), range(1, 1), "{when}: after 0");
    assert_eq!(page(Some(1), None, None), [], "{when}: before 1");
    assert_eq!(page(None, Some(10), None), [], "{when}: after 10");

    // Paging back from the newest, three at a time, reaches seq 1.
    let mut back: Vec<Message> = Vec::new();
    let mut before = None;
    for _ in 0..10 {
        let older = page(before, None, Some(3));
        if older.is_empty() {
            break;
        }
        assert!(
            older.len() <= 3,
            "{when}: page over limit: {:?}",
            seqs(&older)
        );
        before = Some(older[0].seq);
        back.splice(0..0, older);
    }
    assert_eq!(back, sent, "{when}: paging back with `before`");

    // And forward from the start, four at a time.
    let mut forward: Vec<Message> = Vec::new();
    let mut after = 0;
    for _ in 0..10 {
        let newer = page(None, Some(after), Some(4));
        let Some(last) = newer.last() else { break };
        after = last.seq;
        forward.extend(newer);
    }
    assert_eq!(forward, sent, "{when}: paging forward with `after`");
}

fn restart_keeps_everything(how: Stop, test: &str) {
    let dir = TempDir::new(test);
    let flags = ["--history-len", "2"];

    // ---- before the restart
    let server = Server::start(dir.path(), &flags);
    let mut ada = server.client();
    ada.signup("ada", PASSWORD).unwrap();
    let ada_token = ada.login("ada", PASSWORD).unwrap();
    let mut bob = server.client();
    bob.signup("bob", BOB_PASSWORD).unwrap();
    drop(bob); // bob never logs in before the restart: his DMs are kept
    let mut carol = server.client();
    carol.signup("carol", PASSWORD).unwrap();
    let carol_token = carol.login("carol", PASSWORD).unwrap();

    ada.create("lobby", Some("say hello")).unwrap();
    ada.create("quiet", None).unwrap();
    assert_eq!(carol.join("lobby").unwrap().seq, 0);
    carol.join("quiet").unwrap();
    carol.leave("quiet").unwrap();

    let mut sent = Vec::new();
    for i in 1..=10u64 {
        let text = format!("message {i}");
        let ack = ada.send("lobby", &text).unwrap();
        assert_eq!(ack.seq, i, "seq of the message number {i}");
        sent.push(Message {
            room: "lobby".into(),
            from: "ada".into(),
            text,
            seq: ack.seq,
            ts: ack.ts,
            reply_to: None,
            changes: Default::default(),
        });
    }
    let dm1 = ada.dm("bob", "while you were out").unwrap();
    let dm2 = ada.dm("bob", "and another thing").unwrap();
    check_lobby_history(&mut ada, &sent, "before the restart");

    // A session revoked by logout, and one that only disconnects.
    carol.logout().unwrap();
    let (ada2, ada2_token) = logged_in(&server, "ada");
    drop(ada2);
    assert_eq!(
        server_code(server.client().resume(&carol_token)),
        ErrorCode::AuthFailed,
        "a revoked token must not resume, even before the restart"
    );

    // Connections stay open across the stop: the server must cope.
    server.stop(how);
    drop((ada, carol));

    // ---- after the restart
    let server = Server::start(dir.path(), &flags);
    let when = format!("after {how:?} and restart");

    // Sessions: issued before the restart resume; revoked by logout do not.
    let mut ada = server.client();
    assert_eq!(
        ada.resume(&ada_token)
            .unwrap_or_else(|e| panic!("{when}: resume with ada's token: {e}")),
        "ada"
    );
    assert_eq!(
        server
            .client()
            .resume(&ada2_token)
            .expect("resume with the token of a closed connection"),
        "ada"
    );
    assert_eq!(
        server_code(server.client().resume(&carol_token)),
        ErrorCode::AuthFailed,
        "{when}: a token revoked by logout before the restart must stay revoked"
    );

    // Users: the same passwords log in, wrong ones do not, names stay taken.
    let (mut carol, _) = logged_in(&server, "carol");
    assert_eq!(
        server_code(server.client().login("ada", "not the password")),
        ErrorCode::AuthFailed
    );
    assert_eq!(
        server_code(server.client().signup("ada", PASSWORD)),
        ErrorCode::UserExists,
        "{when}: ada's name must still be taken"
    );

    // Memberships.
    let me = ada.whoami().unwrap();
    assert_eq!(
        (me.user.as_str(), me.rooms),
        ("ada", vec!["lobby".to_owned(), "quiet".to_owned()])
    );
    assert_eq!(
        carol.whoami().unwrap().rooms,
        ["lobby"],
        "{when}: carol left quiet"
    );
    assert_eq!(ada.members("lobby").unwrap(), ["ada", "carol"]);
    assert_eq!(ada.members("quiet").unwrap(), ["ada"]);

    // Rooms and topics.
    assert_eq!(
        ada.rooms().unwrap(),
        [
            RoomInfo {
                room: "lobby".into(),
                topic: "say hello".into(),
                members: 2
            },
            RoomInfo {
                room: "quiet".into(),
                topic: "".into(),
                members: 1
            },
        ],
        "{when}: rooms"
    );
    assert_eq!(
        server_code(ada.create("lobby", None)),
        ErrorCode::RoomExists,
        "{when}: lobby must still exist"
    );

    // Pending DMs arrive right after bob's first login, in order, once.
    let mut bob = server.client();
    bob.login("bob", BOB_PASSWORD)
        .unwrap_or_else(|e| panic!("{when}: bob's login: {e}"));
    for (text, ts) in [("while you were out", dm1), ("and another thing", dm2)] {
        let event = bob
            .next_event(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{when}: waiting for bob's kept DM: {e}"));
        assert_eq!(
            event,
            Some(Event::Dm {
                from: "ada".into(),
                text: text.into(),
                ts
            }),
            "{when}: bob's kept DMs"
        );
    }
    let mut bob2 = server.client();
    bob2.login("bob", BOB_PASSWORD).unwrap();
    assert_eq!(
        bob2.next_event(SHORT).unwrap(),
        None,
        "{when}: DMs are delivered once"
    );

    // History, from the database back to seq 1.
    check_lobby_history(&mut ada, &sent, &when);

    // Seqs continue; they are never reused.
    let ack = ada.send("lobby", "after the restart").unwrap();
    assert_eq!(ack.seq, 11, "{when}: the first send after the restart");
    match carol.next_event(Duration::from_secs(5)).unwrap() {
        Some(Event::Message(m)) => assert_eq!((m.seq, m.text.as_str()), (11, "after the restart")),
        other => panic!("{when}: carol expected the message, got {other:?}"),
    }
    assert_eq!(bob.join("lobby").unwrap().seq, 11);
    assert_eq!(
        seqs(&ada.history("lobby", query(None, Some(8), None)).unwrap()),
        [9, 10, 11]
    );
    assert_eq!(
        ada.join("quiet").unwrap().seq,
        0,
        "{when}: quiet has no messages"
    );

    server.terminate();
}

#[test]
fn restart_after_sigterm_keeps_everything() {
    restart_keeps_everything(Stop::Term, "sigterm");
}

#[test]
fn restart_after_sigkill_keeps_everything() {
    restart_keeps_everything(Stop::Kill, "sigkill");
}

/// `change_password` and `delete_account` are acknowledged after their commit, so
/// a `kill -9` right after the answers keeps both.
#[test]
fn account_changes_survive_sigkill() {
    let dir = TempDir::new("accounts-sigkill");
    let server = Server::start(dir.path(), &[]);
    let mut ada = server.client();
    ada.signup("ada", PASSWORD).unwrap();
    ada.login("ada", PASSWORD).unwrap();
    let mut carol = server.client();
    carol.signup("carol", PASSWORD).unwrap();
    carol.login("carol", PASSWORD).unwrap();
    carol.create("den", None).unwrap();
    ada.join("den").unwrap();
    let new = json!({"old_password": PASSWORD, "new_password": BOB_PASSWORD});
    ada.send_request("change_password", new).unwrap();
    ada.recv_response().unwrap();
    carol
        .send_request("delete_account", json!({"password": PASSWORD}))
        .unwrap();
    carol.recv_response().unwrap();
    server.stop(Stop::Kill);
    drop((ada, carol));

    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    assert_eq!(server_code(c.login("ada", PASSWORD)), ErrorCode::AuthFailed);
    c.login("ada", BOB_PASSWORD).unwrap();
    assert_eq!(
        server_code(c.signup("carol", PASSWORD)),
        ErrorCode::UserExists
    );
    let members = c.request("members", json!({"room": "den"})).unwrap();
    assert_eq!(members["members"], json!(["ada"]));
    assert_eq!(
        members["roles"],
        json!({"ada": "owner"}),
        "ownership passed on"
    );
}

// ------------------------------------------------------------------ crash under load

/// A message whose `send` was acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    room: String,
    seq: u64,
    from: String,
    text: String,
}

const ROOMS: [&str; 2] = ["red", "blue"];
const SENDERS: usize = 4;
/// Sends each sender keeps in flight.
const WINDOW: usize = 32;

/// Logs in as `user` and pipelines sends (alternating the rooms) until the server
/// goes away; returns every acknowledged message and the number of sends left
/// unanswered.
fn pipeline_sends(addr: SocketAddr, user: String, acks: Arc<AtomicUsize>) -> (Vec<Acked>, usize) {
    let mut c = connect(addr);
    c.login(&user, PASSWORD).unwrap();
    let mut in_flight: VecDeque<(&str, String)> = VecDeque::new();
    let mut acked = Vec::new();
    // A bound in case the server is never killed (the test fails then anyway).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0usize;
    loop {
        let mut server_gone = false;
        while in_flight.len() < WINDOW && Instant::now() < deadline {
            let room = ROOMS[n % ROOMS.len()];
            let text = format!("{user}-{n}");
            match c.send_request("send", json!({ "room": room, "text": text })) {
                Ok(_) => in_flight.push_back((room, text)),
                Err(_) => {
                    server_gone = true;
                    break;
                }
            }
            n += 1;
        }
        // Read the answers that are here (or the first one due), even when the
        // server is gone: those that arrived before it died still count.
        let Some((room, text)) = in_flight.pop_front() else {
            break;
        };
        match c.recv_response() {
            Ok(response) => {
                let seq = response["seq"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("send answer without seq: {response}"));
                acked.push(Acked {
                    room: room.to_owned(),
                    seq,
                    from: user.clone(),
                    text,
                });
                acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(ClientError::Server { code, message }) => {
                panic!("{user}: send refused: {code}: {message}")
            }
            Err(_) => {
                in_flight.push_front((room, text));
                break;
            }
        }
        if server_gone {
            // Keep reading answers already on their way.
            continue;
        }
        // The other senders' messages arrive as events: drop those already here.
        while let Ok(Some(_)) = c.next_event(Duration::ZERO) {}
    }
    (acked, in_flight.len())
}

/// Every stored message of `room`, paging forward with `after` and limit 500.
fn all_history(c: &mut Client, room: &str) -> Vec<Message> {
    let mut all = Vec::new();
    let mut after = 0;
    for _ in 0..10_000 {
        let page = c
            .history(room, query(None, Some(after), Some(500)))
            .unwrap_or_else(|e| panic!("history of {room} after {after}: {e}"));
        let Some(last) = page.last() else {
            return all;
        };
        assert!(page.len() <= 500, "a page of {} messages", page.len());
        assert!(
            last.seq > after,
            "history after {after} answered seq {} last",
            last.seq
        );
        after = last.seq;
        all.extend(page);
    }
    panic!("history of {room} never ended");
}

#[test]
fn sigkill_during_heavy_sending_loses_no_acknowledged_message() {
    let dir = TempDir::new("crash-under-load");
    // A load test: the per-connection frame rate limit would only get in the way.
    let flags = ["--history-len", "100", "--max-frame-rate", "0"];
    let server = Server::start(dir.path(), &flags);

    let users: Vec<String> = (0..SENDERS).map(|i| format!("w{i}")).collect();
    let mut owner = server.client();
    for user in &users {
        owner.signup(user, PASSWORD).unwrap();
    }
    owner.login(&users[0], PASSWORD).unwrap();
    for room in ROOMS {
        owner.create(room, None).unwrap();
    }
    for user in &users[1..] {
        let (mut c, _) = logged_in(&server, user);
        for room in ROOMS {
            c.join(room).unwrap();
        }
    }
    drop(owner);

    let acks = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = users
        .iter()
        .map(|user| {
            let (addr, user, acks) = (server.addr, user.clone(), Arc::clone(&acks));
            thread::spawn(move || pipeline_sends(addr, user, acks))
        })
        .collect();

    // Kill mid-stream: after 1 s, or sooner once plenty is acknowledged.
    let started = Instant::now();
    loop {
        let n = acks.load(Ordering::Relaxed);
        if n >= 20_000 || (n >= 100 && started.elapsed() >= Duration::from_secs(1)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {n} sends acknowledged in 10 s"
        );
        thread::sleep(Duration::from_millis(5));
    }
    server.crash();

    let mut acked = Vec::new();
    let mut unanswered = 0;
    for sender in senders {
        let (mine, left) = sender.join().expect("a sender thread panicked");
        acked.extend(mine);
        unanswered += left;
    }
    eprintln!(
        "killed after {:?}: {} sends acknowledged, {unanswered} unanswered",
        started.elapsed(),
        acked.len()
    );

    let server = Server::start(dir.path(), &flags);
    let (mut reader, _) = logged_in(&server, &users[0]);
    for room in ROOMS {
        let stored = all_history(&mut reader, room);
        eprintln!("{room}: {} messages stored", stored.len());

        // Strictly increasing seqs: none twice, none out of order.
        for pair in stored.windows(2) {
            assert!(
                pair[0].seq < pair[1].seq,
                "{room}: seq {} is followed by seq {}",
                pair[0].seq,
                pair[1].seq
            );
        }
        // Every stored message is one that was sent, stored once, and each sender's
        // messages keep the order they were sent in.
        let mut texts = HashSet::new();
        let mut last_n: HashMap<&str, usize> = HashMap::new();
        for m in &stored {
            assert_eq!(m.room, room);
            let n: usize = m
                .text
                .strip_prefix(&format!("{}-", m.from))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{room}: a message nobody sent: {m:?}"));
            assert!(texts.insert(m.text.as_str()), "{room}: stored twice: {m:?}");
            if let Some(&before) = last_n.get(m.from.as_str()) {
                assert!(
                    before < n,
                    "{room}: {}'s message {n} stored after their message {before}",
                    m.from
                );
            }
            last_n.insert(m.from.as_str(), n);
        }
        // Every acknowledged message is there, with the seq of its ack.
        let by_seq: BTreeMap<u64, &Message> = stored.iter().map(|m| (m.seq, m)).collect();
        let mut checked = 0;
        for a in acked.iter().filter(|a| a.room == room) {
            let Some(m) = by_seq.get(&a.seq) else {
                panic!(
                    "{room}: acknowledged message lost: {a:?} ({} stored, last seq {:?})",
                    stored.len(),
                    stored.last().map(|m| m.seq)
                );
            };
            assert_eq!(
                (m.from.as_str(), m.text.as_str()),
                (a.from.as_str(), a.text.as_str()),
                "{room}: seq {} holds another message than its ack said",
                a.seq
            );
            checked += 1;
        }
        assert!(checked > 0, "{room}: no acknowledged sends to check");

        // A new send continues after the last stored seq.
        let last = stored.last().map_or(0, |m| m.seq);
        let ack = reader.send(room, "after the crash").unwrap();
        assert_eq!(
            ack.seq,
            last + 1,
            "{room}: the first send after the crash must follow the last stored seq {last}"
        );
    }
    server.terminate();
}

// ------------------------------------------------------------------ refusals

/// Runs `cmd`, which must exit non-zero within [`REFUSE_TIMEOUT`]; returns its stderr.
fn expect_refusal(cmd: Command, what: &str) -> String {
    let mut proc = Proc::spawn(cmd);
    let (status, stderr) = proc.expect_exit(REFUSE_TIMEOUT);
    assert!(
        !status.success(),
        "{what}: parlor must exit non-zero, got {status}; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("listening on"),
        "{what}: parlor must not start listening; stderr:\n{stderr}"
    );
    stderr
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = TempDir::new("two-servers");
    let first = Server::start(dir.path(), &[]);
    let mut ada = first.client();
    ada.signup("ada", PASSWORD).unwrap();

    let started = Instant::now();
    let stderr = expect_refusal(serve_cmd(dir.path(), &[]), "a second server");
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("data directory") && lower.contains("in use"),
        "the refusal must say the data directory is in use; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "the refusal must name the directory; stderr:\n{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the refusal took {:?}",
        started.elapsed()
    );

    // The first server is unharmed, and keeps what it was told.
    ada.login("ada", PASSWORD).unwrap();
    ada.create("lobby", None).unwrap();
    assert_eq!(ada.send("lobby", "still here").unwrap().seq, 1);
    first.terminate();
    let again = Server::start(dir.path(), &[]);
    let (mut ada, _) = logged_in(&again, "ada");
    assert_eq!(
        seqs(&ada.history("lobby", HistoryQuery::default()).unwrap()),
        [1]
    );
    again.terminate();
}

#[test]
fn a_garbage_database_is_refused_and_left_untouched() {
    let dir = TempDir::new("garbage");
    let db = dir.path().join("parlor.db");
    let garbage = XorShift::new(42).bytes(64 * 1024);
    fs::write(&db, &garbage).unwrap();

    let stderr = expect_refusal(serve_cmd(dir.path(), &[]), "a garbage database");
    assert!(
        stderr.contains("not a parlor database"),
        "the refusal must say `not a parlor database`; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&db.display().to_string()),
        "the refusal must name the file; stderr:\n{stderr}"
    );
    let after = fs::read(&db).unwrap();
    assert!(
        after == garbage,
        "the garbage file was changed ({} bytes before, {} after)",
        garbage.len(),
        after.len()
    );
}

#[test]
fn a_data_dir_that_is_not_a_directory_is_refused() {
    let dir = TempDir::new("not-a-dir");
    let file = dir.path().join("plain-file");
    fs::write(&file, b"not a directory\n").unwrap();

    // The data directory is a regular file.
    let stderr = expect_refusal(serve_cmd(&file, &[]), "a data dir that is a file");
    assert!(
        stderr.contains("data directory") && stderr.contains(&file.display().to_string()),
        "the refusal must name the data directory; stderr:\n{stderr}"
    );
    assert_eq!(
        fs::read(&file).unwrap(),
        b"not a directory\n",
        "the file was changed"
    );

    // The data directory would be inside a regular file.
    let inside = file.join("data");
    let stderr = expect_refusal(serve_cmd(&inside, &[]), "a data dir inside a file");
    assert!(
        stderr.contains("data directory") && stderr.contains(&inside.display().to_string()),
        "the refusal must name the data directory; stderr:\n{stderr}"
    );
    assert_eq!(
        fs::read(&file).unwrap(),
        b"not a directory\n",
        "the file was changed"
    );
}

// ------------------------------------------------------------------ in memory

fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn in_memory_writes_no_files() {
    let dir = TempDir::new("in-memory");
    let mut cmd = parlor();
    cmd.args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--bcrypt-cost",
        "4",
        "--in-memory",
        "--history-len",
        "2",
    ])
    .current_dir(dir.path());
    let server = Server::spawn(cmd);

    let mut ada = server.client();
    ada.signup("ada", PASSWORD).unwrap();
    ada.login("ada", PASSWORD).unwrap();
    server.client().signup("bob", BOB_PASSWORD).unwrap();
    ada.create("lobby", Some("topic")).unwrap();
    for i in 1..=5 {
        assert_eq!(ada.send("lobby", &format!("m{i}")).unwrap().seq, i);
    }
    ada.dm("bob", "kept in memory").unwrap();
    // In memory, history keeps every message whatever --history-len says.
    assert_eq!(
        seqs(&ada.history("lobby", HistoryQuery::default()).unwrap()),
        [1, 2, 3, 4, 5]
    );
    ada.logout().unwrap();
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "files written while running"
    );

    server.terminate();
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "files written by the stop"
    );
}
