//! `parlor chat`, the terminal client, driven as a real process: stdin and stdout are
//! pipes, so the first stdin line is the password and output is plain lines.
//!
//! Every wait is bounded (`common::TIMEOUT`): a stuck client fails the test, and the
//! child is killed when its `Chatter` is dropped.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{PASSWORD, TIMEOUT, start, start_chat};
use parlor::client::TlsOptions;
use parlor::{Client, Event, ServerHandle, TlsConfig};

/// A running `parlor chat` process.
struct Chatter {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stdout line read so far, for failure messages.
    shown: Vec<String>,
}

impl Chatter {
    /// Starts `parlor chat --addr addr --user user [extra...]` and types the password.
    fn start(addr: SocketAddr, user: &str, password: &str, extra: &[&str]) -> Chatter {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parlor"))
            .args(["chat", "--addr", &addr.to_string(), "--user", user])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("parlor chat starts");
        let stdout = lines_of(child.stdout.take().expect("stdout is piped"));
        let stderr = lines_of(child.stderr.take().expect("stderr is piped"));
        let mut chatter = Chatter {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            shown: Vec::new(),
        };
        chatter.type_line(password);
        chatter
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        writeln!(stdin, "{line}").expect("parlor chat reads stdin");
    }

    /// Closes stdin: the end of input.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a stdout line containing `needle` and returns it.
    fn expect(&mut self, needle: &str) -> String {
        self.expect_within(needle, TIMEOUT)
    }

    /// As `expect`, waiting up to `wait`.
    fn expect_within(&mut self, needle: &str, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.shown.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} on stdout within {wait:?}; it showed:\n{}",
                    self.shown.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit, and checks that it succeeded.
    #[track_caller]
    fn exit_ok(&mut self) {
        let (status, stderr) = self.exit();
        assert!(status.success(), "{status}, stderr: {stderr}");
    }

    /// Waits for the process to exit and returns its status and all of its stderr.
    fn exit(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for parlor chat") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "parlor chat did not exit within {TIMEOUT:?}; stdout:\n{}",
                self.shown.join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        };
        // The process is gone, so stderr is at its end: the reader thread finishes.
        let stderr: Vec<String> = self.stderr.iter().collect();
        (status, stderr.join("\n"))
    }
}

impl Drop for Chatter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user `name` who signed up and logged in on `client`.
fn signed_up(mut client: Client, name: &str) -> Client {
    client.signup(name, PASSWORD).expect("signup");
    client.login(name, PASSWORD).expect("login");
    client
}

/// A server that speaks TLS only, with a fresh self-signed certificate in a directory
/// of its own (`tag` names it), removed when this is dropped.
struct TlsServer {
    _server: ServerHandle,
    addr: SocketAddr,
    cert: PathBuf,
    dir: PathBuf,
}

impl TlsServer {
    fn start(tag: &str) -> TlsServer {
        TlsServer::start_with(tag, |_| {})
    }

    /// As `start`, with the test configuration changed by `tweak`.
    fn start_with(tag: &str, tweak: impl FnOnce(&mut parlor::Config)) -> TlsServer {
        let dir =
            std::env::temp_dir().join(format!("parlor-terminal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names = parlor::certs::DEFAULT_NAMES.map(str::to_owned);
        let files = parlor::certs::write_self_signed(&dir, &names, false).expect("certificate");
        let (server, addr) = start(|c| {
            c.tls = Some(TlsConfig::new(&files.cert, &files.key));
            tweak(c);
        });
        TlsServer {
            _server: server,
            addr,
            cert: files.cert,
            dir,
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lines of a child's output as they come, through a reader thread.
fn lines_of(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn two_terminals_chat() {
    let (_server, addr) = start_chat();
    let mut ada = Chatter::start(addr, "ada", PASSWORD, &["--signup"]);
    ada.expect("logged in as ada");
    ada.type_line("/create r say hello");
    ada.expect("created r");

    let mut bob = Chatter::start(addr, "bob", "battery staple", &["--signup"]);
    bob.type_line("/join r");
    let joined = bob.expect("now in r");
    assert!(
        joined.contains("say hello") && joined.contains("ada, bob"),
        "{joined}"
    );
    ada.expect("[r] * bob joined");

    bob.type_line("hello from bob");
    let line = ada.expect("[r] bob: hello from bob");
    // Local time first, HH:MM:SS.
    let clock = line.split(' ').next().unwrap_or_default();
    assert!(
        clock.len() == 8 && clock.chars().filter(|&c| c == ':').count() == 2,
        "{line}"
    );

    ada.type_line("hi bob");
    bob.expect("[r] ada: hi bob");
    ada.type_line("/dm bob psst");
    bob.expect("[dm] ada: psst");

    bob.type_line("/quit");
    bob.exit_ok();
    ada.close_stdin();
    ada.exit_ok();
}

#[test]
fn joining_shows_recent_history_and_commands_answer() {
    let (_server, addr) = start_chat();
    let mut ada = signed_up(Client::connect(addr).expect("connects"), "ada");
    ada.create("r", None).expect("create");
    for n in 1..=12 {
        ada.send("r", &format!("message {n}")).expect("send");
    }

    let mut bob = Chatter::start(addr, "bob", PASSWORD, &["--signup"]);
    bob.type_line("/join r");
    bob.expect("now in r");
    // The last ten, oldest first.
    bob.expect("[r] ada: message 3");
    bob.expect("[r] ada: message 12");
    bob.type_line("/history 2");
    bob.expect("[r] ada: message 11");
    bob.expect("[r] ada: message 12");
    bob.type_line("/who");
    bob.expect("-- in r: ada, bob");
    bob.type_line("/rooms");
    bob.expect("r (2 members)");
    bob.type_line("/leave");
    bob.expect("left r");
    bob.type_line("anyone?");
    bob.expect("no current room");
    bob.close_stdin();
    bob.exit_ok();
}

#[test]
fn errors_are_readable_lines() {
    let (_server, addr) = start_chat();
    let mut ada = Chatter::start(addr, "ada", PASSWORD, &["--signup"]);
    ada.type_line("/join nowhere");
    let line = ada.expect("error: ");
    assert!(line.ends_with("(no_such_room)"), "{line}");
    ada.type_line("/dm nobody hello");
    let line = ada.expect("error: ");
    assert!(line.ends_with("(no_such_user)"), "{line}");
    ada.type_line("/frobnicate");
    ada.expect("unknown command /frobnicate");
    ada.type_line("/join");
    ada.expect("usage: /join ROOM");
    // Still alive and well after all that.
    ada.type_line("/create r");
    ada.expect("created r");
    ada.type_line("/quit");
    ada.exit_ok();
}

#[test]
fn wrong_password_is_a_clear_error() {
    let (_server, addr) = start_chat();
    let mut ada = Client::connect(addr).expect("connects");
    ada.signup("ada", PASSWORD).expect("signup");

    // With --signup, the login fails, signup says the user exists: a wrong password.
    let mut chatter = Chatter::start(addr, "ada", "not the password", &["--signup"]);
    let (status, stderr) = chatter.exit();
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("wrong password for ada"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Without it, nothing is created and the error says how to create the account.
    let mut chatter = Chatter::start(addr, "nobody", PASSWORD, &[]);
    let (status, stderr) = chatter.exit();
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("cannot log in as nobody") && stderr.contains("--signup"),
        "{stderr}"
    );
}

#[test]
fn room_commands_act_and_their_events_read_as_words() {
    let (_server, addr) = start_chat();
    let mut ada = Chatter::start(addr, "ada", PASSWORD, &["--signup"]);
    ada.type_line("/create lobby");
    ada.expect("created lobby");
    let mut bob = Chatter::start(addr, "bob", PASSWORD, &["--signup"]);
    bob.type_line("/join lobby");
    bob.expect("now in lobby");
    ada.expect("bob joined");

    bob.type_line("/topic mine now");
    bob.expect("(forbidden)");
    ada.type_line("/topic cats and dogs");
    ada.expect("topic of lobby set");
    bob.expect("[lobby] * ada set the topic: cats and dogs");
    ada.type_line("/op bob");
    bob.expect("[lobby] * ada made bob an op");
    ada.type_line("/deop bob");
    bob.expect("[lobby] * ada made bob a plain member");
    ada.type_line("/kick bob too loud");
    bob.expect("[lobby] * ada removed bob (too loud)");
    bob.expect("no current room now");

    ada.type_line("/ban bob spam");
    ada.expect("banned bob from lobby");
    bob.type_line("/join lobby");
    bob.expect("(banned)");
    ada.type_line("/unban bob");
    ada.expect("bob may join lobby again");
    ada.type_line("/private on");
    ada.expect("lobby is now invite-only");
    bob.type_line("/join lobby");
    bob.expect("(not_invited)");
    ada.type_line("/invite bob");
    bob.expect("ada invited you to lobby");
    bob.type_line("/join lobby");
    bob.expect("now in lobby (cats and dogs)");

    ada.type_line("/delete-room");
    ada.expect("deleted lobby");
    bob.expect("[lobby] * ada deleted the room");
    bob.expect("no current room now");
    for chatter in [&mut ada, &mut bob] {
        chatter.type_line("/quit");
        chatter.exit_ok();
    }
}

/// Cuts ada's connection through `proxy`, and checks that she reconnects and shows
/// what bob sent to room r meanwhile.
fn cut_and_catch_up(proxy: &Proxy, ada: &mut Chatter, bob: &mut Client) {
    proxy.cut();
    ada.expect("connection lost");
    // Sent while ada is (most likely) away: shown once, live or caught up.
    bob.send("r", "while you were out").expect("send");
    ada.expect("reconnected");
    ada.expect("[r] bob: while you were out");
}

#[test]
fn reconnects_and_stays_in_the_room() {
    let (_server, addr) = start_chat();
    let proxy = Proxy::start(addr);
    let mut ada = Chatter::start(proxy.addr, "ada", PASSWORD, &["--signup"]);
    ada.type_line("/create r");
    ada.expect("created r");

    let mut bob = signed_up(Client::connect(addr).expect("connects"), "bob");
    bob.join("r").expect("join");

    cut_and_catch_up(&proxy, &mut ada, &mut bob);
    bob.send("r", "welcome back").expect("send");
    ada.expect("[r] bob: welcome back");

    // A plain line still goes to r: the current room survived the reconnect.
    ada.type_line("still here");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match bob.next_event(left).expect("bob listens") {
            Some(Event::Message(m)) if m.text == "still here" => {
                assert_eq!((m.room.as_str(), m.from.as_str()), ("r", "ada"));
                break;
            }
            Some(_) => {}
            None => panic!("bob never got ada's line after the reconnect"),
        }
    }
    ada.type_line("/quit");
    ada.exit_ok();
    let shown = ada.shown.join("\n");
    assert_eq!(shown.matches("while you were out").count(), 1, "{shown}");
}

#[test]
fn a_send_whose_answer_was_lost_goes_again_with_its_nonce_and_posts_once() {
    let (_server, addr) = start_chat();
    let proxy = Proxy::start(addr);
    let mut ada = Chatter::start(proxy.addr, "ada", PASSWORD, &["--signup"]);
    ada.type_line("/create r");
    ada.expect("created r");
    let mut bob = signed_up(Client::connect(addr).expect("connects"), "bob");
    bob.join("r").expect("join");
    let idempotent = bob.hello(2).expect("hello").has("idempotency");

    // The line reaches the server; its answer never reaches ada, whose request times
    // out (10 s) and whose chat reconnects.
    proxy.mute();
    ada.type_line("only once");
    ada.expect_within("connection lost", TIMEOUT * 2);
    ada.expect("reconnected");
    if idempotent {
        ada.expect("sending again: only once");
    } else {
        ada.expect("\"only once\" may not have been sent");
    }
    ada.type_line("/quit");
    ada.exit_ok();
    let mut copies = 0;
    while let Some(event) = bob
        .next_event(Duration::from_millis(300))
        .expect("bob listens")
    {
        if matches!(&event, Event::Message(m) if m.text == "only once") {
            copies += 1;
        }
    }
    assert_eq!(copies, 1, "the server posted it once");
}

#[test]
fn password_and_account_commands_ask_without_echo_and_act() {
    let (_server, addr) = start_chat();
    let mut ada = Chatter::start(addr, "ada", PASSWORD, &["--signup"]);
    ada.expect("logged in as ada");
    let accounts = Client::connect(addr)
        .and_then(|mut c| c.hello(2))
        .expect("hello")
        .has("accounts");
    if !accounts {
        // A server without the op refuses it; the chat still asked and carries on.
        ada.type_line("/password");
        for line in [PASSWORD, "a new password", "a new password"] {
            ada.type_line(line);
        }
        ada.expect("(unknown_op)");
        return;
    }
    ada.type_line("/password");
    ada.expect("current password");
    ada.type_line(PASSWORD);
    ada.type_line("a new password");
    ada.type_line("another one");
    ada.expect("the two new passwords differ");
    ada.type_line("/password");
    for line in ["wrong password", "a new password", "a new password"] {
        ada.type_line(line);
    }
    ada.expect("(auth_failed)");
    ada.type_line("/password");
    for line in [PASSWORD, "a new password", "a new password"] {
        ada.type_line(line);
    }
    ada.expect("password changed");
    let mut check = Client::connect(addr).expect("connects");
    check
        .login("ada", "a new password")
        .expect("the new password works");
    check.quit().expect("quit");

    ada.type_line("/delete-account");
    ada.type_line("a new password");
    ada.type_line("no");
    ada.expect("account kept");
    ada.type_line("/delete-account");
    ada.type_line("a new password");
    ada.type_line("yes");
    ada.expect("account ada deleted");
    ada.exit_ok();
    let mut check = Client::connect(addr).expect("connects");
    assert!(
        check.login("ada", "a new password").is_err(),
        "the account is gone"
    );
}

#[test]
fn reconnects_over_tls_with_the_same_settings() {
    let server = TlsServer::start("tls");
    // The proxy only forwards bytes: TLS runs from parlor chat to the server.
    let proxy = Proxy::start(server.addr);
    let ca = server.cert.to_str().expect("a UTF-8 temp path");
    let mut ada = Chatter::start(proxy.addr, "ada", PASSWORD, &["--signup", "--ca", ca]);
    ada.type_line("/create r");
    ada.expect("created r");

    let tls = TlsOptions {
        ca_file: Some(server.cert.clone()),
        ..TlsOptions::default()
    };
    let mut bob = signed_up(
        Client::connect_tls(server.addr, &tls).expect("connects"),
        "bob",
    );
    bob.join("r").expect("join");

    cut_and_catch_up(&proxy, &mut ada, &mut bob);
    ada.type_line("/quit");
    ada.exit_ok();
}

#[test]
fn a_plain_client_on_a_tls_port_is_told_to_add_tls() {
    let server = TlsServer::start("notls");
    let mut ada = Chatter::start(server.addr, "ada", PASSWORD, &["--signup"]);
    let (status, stderr) = ada.exit();
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("add --tls"), "{stderr}");
}

#[test]
fn a_full_server_is_reported_as_full() {
    let (_server, addr) = start(|c| c.max_conns = 1);
    let mut first = Client::connect(addr).expect("connects");
    first.ping().expect("the one connection allowed");
    let mut ada = Chatter::start(addr, "ada", PASSWORD, &["--signup"]);
    let (status, stderr) = ada.exit();
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("the server is full"), "{stderr}");
    assert!(!stderr.contains("TLS"), "{stderr}");
}

// The server finishes a refused client's TLS handshake to send it `closing`, so the
// terminal client can say why instead of blaming TLS.
#[test]
fn a_full_tls_server_is_reported_as_full() {
    let server = TlsServer::start_with("full", |c| c.max_conns = 1);
    let tls = TlsOptions {
        ca_file: Some(server.cert.clone()),
        ..TlsOptions::default()
    };
    let mut first = Client::connect_tls(server.addr, &tls).expect("connects");
    first.ping().expect("the one connection allowed");
    let ca = server.cert.to_str().expect("a UTF-8 temp path");
    let mut ada = Chatter::start(server.addr, "ada", PASSWORD, &["--signup", "--ca", ca]);
    let (status, stderr) = ada.exit();
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("the server is full"), "{stderr}");
    assert!(!stderr.contains("serving TLS"), "{stderr}");
}

#[test]
fn help_explains_every_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["chat", "--help"])
        .output()
        .expect("parlor chat --help runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--addr",
        "--user",
        "--signup",
        "--tls",
        "--ca",
        "--server-name",
        "default 127.0.0.1:7878",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

/// A TCP forwarder between `parlor chat` and the server whose connections the test
/// can cut, as a network failure would, while the server stays up.
struct Proxy {
    addr: SocketAddr,
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// One flag per connection: set, the server's bytes to the client are dropped.
    mutes: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Proxy {
    fn start(server: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let open = Arc::new(Mutex::new(Vec::new()));
        let registry = Arc::clone(&open);
        let mutes = Arc::new(Mutex::new(Vec::new()));
        let mute_registry = Arc::clone(&mutes);
        // Lives as long as the test process: it only ever blocks in `accept`.
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(upstream) = TcpStream::connect(server) else {
                    continue;
                };
                let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone())
                else {
                    continue;
                };
                if let Ok(mut open) = registry.lock() {
                    open.extend(client.try_clone());
                    open.extend(upstream.try_clone());
                }
                let muted = Arc::new(AtomicBool::new(false));
                if let Ok(mut mutes) = mute_registry.lock() {
                    mutes.push(Arc::clone(&muted));
                }
                forward(client, upstream2, Arc::new(AtomicBool::new(false)));
                forward(upstream, client2, muted);
            }
        });
        Proxy { addr, open, mutes }
    }

    /// From now on, drops what the server sends on the connections open so far (the
    /// requests still get through); new connections are not muted.
    fn mute(&self) {
        for muted in self.mutes.lock().expect("proxy mutes").drain(..) {
            muted.store(true, Ordering::SeqCst);
        }
    }

    /// Cuts every connection open through the proxy; new ones still get through.
    fn cut(&self) {
        let mut open = self.open.lock().expect("proxy registry");
        for stream in open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn an_operator_runs_admin_commands_from_parlor_chat() {
    let (_server, addr) = start(|c| c.operators = vec!["root".into()]);
    let mut bob = signed_up(Client::connect(addr).expect("connects"), "bob");
    let mut root = Chatter::start(addr, "root", PASSWORD, &["--signup"]);
    root.type_line("/admin connections");
    root.expect("root from 127.0.0.1:");
    root.type_line("/admin signup eve");
    root.expect("type the password for eve");
    root.type_line("correct horse");
    root.expect("account eve created");
    root.type_line("/admin ban eve 60 spam");
    root.expect("eve is banned until");
    root.type_line("/admin unban eve");
    root.expect("eve is no longer banned");
    root.type_line("/admin kill bob");
    root.expect("bob: 1 connection(s) closed");
    match bob.next_event(TIMEOUT) {
        Ok(Some(Event::Closing { reason })) => assert_eq!(reason, "killed"),
        other => panic!("bob is told why it is closed: {other:?}"),
    }
    root.type_line("/admin reload");
    root.expect("reload is not available");
    root.type_line("/admin frobnicate");
    root.expect("usage: /admin kill USER");
    root.close_stdin();
    root.exit_ok();
    let mut eve = Client::connect(addr).expect("connects");
    eve.login("eve", "correct horse").expect("eve logs in");
}

/// Copies `from` to `to` on a thread until either side closes, dropping the bytes
/// while `muted` is set.
fn forward(mut from: TcpStream, mut to: TcpStream, muted: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if !muted.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

#[test]
fn conversations_replies_edits_deletes_and_reactions_from_the_terminal() {
    let (_server, addr) = start_chat();
    let mut ada = Chatter::start(addr, "ada", PASSWORD, &["--signup"]);
    ada.expect("logged in as ada");
    let mut bob = Chatter::start(addr, "bob", "battery staple", &["--signup"]);
    bob.expect("logged in as bob");
    ada.type_line("/dm bob");
    ada.expect("no messages with bob yet");
    ada.expect("conversation with bob");
    ada.type_line("are you there?");
    bob.expect("[dm] ada: are you there?  #1");
    bob.type_line("/dm ada");
    bob.expect("ada: are you there?  #1");
    bob.type_line("/reply 1 I am");
    ada.expect("[dm] bob (re #1): I am  #2");
    ada.type_line("/edit 1 still there?");
    bob.expect("[dm ada] * ada edited #1: still there?");
    bob.type_line("/react 1 +1");
    ada.expect("[dm bob] * bob reacted +1 on #1");
    bob.type_line("/edit 1 not mine");
    bob.expect("forbidden");
    ada.type_line("/delete 2");
    ada.expect("forbidden");
    bob.type_line("/delete 2");
    ada.expect("[dm bob] * bob deleted #2");
    ada.type_line("/history");
    ada.expect("ada: still there? (edited) [+1 bob]  #1");
    ada.expect("bob: [deleted]  #2");
    ada.type_line("/create r");
    ada.expect("created r");
    ada.type_line("in the room");
    ada.type_line("/history");
    ada.expect("[r] ada: in the room  #1");
    bob.type_line("/quit");
    bob.exit_ok();
    ada.close_stdin();
    ada.exit_ok();
}

#[test]
fn unread_typing_and_presence_read_as_words() {
    let (_server, addr) = start_chat();
    let mut ada = Chatter::start(addr, "ada", PASSWORD, &["--signup"]);
    ada.type_line("/create quiet");
    ada.expect("created quiet");
    ada.type_line("/create lobby");
    ada.expect("created lobby");
    let mut bob = signed_up(Client::connect(addr).unwrap(), "bob");
    bob.hello(2).unwrap();
    bob.join("quiet").unwrap();
    ada.expect("bob joined");
    bob.send("quiet", "one").unwrap();
    bob.send("quiet", "two").unwrap();
    ada.expect("[quiet] bob: two");
    ada.type_line("/rooms");
    ada.expect("lobby (1 members)");
    ada.expect("quiet (2 members, 2 unread)");
    bob.join("lobby").unwrap();
    ada.expect("[lobby] * bob joined");
    bob.send("lobby", "seen").unwrap();
    ada.expect("[lobby] bob: seen");
    // Shown in the current room: the marker moved (the line came, then the mark).
    let deadline = Instant::now() + Duration::from_secs(10);
    while unread_of_ada(addr) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(unread_of_ada(addr), 0);
    bob.typing(parlor::client::Target::Room("lobby"), true)
        .unwrap();
    ada.expect("[lobby] * bob is typing…");
    bob.away(Some("lunch")).unwrap();
    ada.expect("* bob is away: lunch");
    ada.type_line("/away coffee");
    ada.expect("you show as away");
    let event = bob.next_event(Duration::from_secs(10)).unwrap();
    assert!(
        matches!(&event, Some(Event::Presence { user, status, .. }) if user == "ada" && status == "away"),
        "{event:?}"
    );
    ada.type_line("/quit");
    ada.exit_ok();
}

/// Ada's unread count in lobby, asked on a connection of her own.
fn unread_of_ada(addr: SocketAddr) -> u64 {
    let mut ada = Client::connect(addr).unwrap();
    ada.login("ada", PASSWORD).unwrap();
    ada.unread().unwrap().rooms["lobby"].count
}
