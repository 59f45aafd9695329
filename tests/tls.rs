//! TLS end to end: the blocking client against a real server, both over rustls, with
//! certificates from `parlor::certs` (and one run of `parlor gen-cert`).
//!
//! Every server listens on 127.0.0.1 port 0, and every wait is bounded: a hung
//! handshake fails a test in seconds.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{PASSWORD, TIMEOUT, read_to_end_until, start_chat, tcp, test_config};
use parlor::certs::{self, CertFiles};
use parlor::client::{HistoryQuery, TlsOptions};
use parlor::{Client, ClientError, Event, Server, ServerHandle, TlsConfig};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// The server's handshake timeout is 10 s; this leaves room for a loaded machine.
const HANDSHAKE_CLOSE_WITHIN: Duration = Duration::from_secs(15);

/// A directory of its own under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("parlor-tls-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh self-signed certificate for localhost and 127.0.0.1, in `dir`.
fn cert_in(dir: &Path) -> CertFiles {
    let names = certs::DEFAULT_NAMES.map(str::to_owned);
    certs::write_self_signed(dir, &names, false).expect("certificate written")
}

/// A TLS server: on its main address, or with `side_by_side` on a second address
/// beside a plain one. Returns the handle, the main address and the TLS address.
fn start_tls(cert: &CertFiles, side_by_side: bool) -> (ServerHandle, SocketAddr, SocketAddr) {
    let mut config = test_config();
    let mut tls = TlsConfig::new(&cert.cert, &cert.key);
    tls.listen = side_by_side.then(|| "127.0.0.1:0".parse().expect("an address"));
    config.tls = Some(tls);
    let server = Server::bind(config).expect("TLS server binds");
    let main = server.local_addr();
    let tls = server.tls_addr().expect("a TLS address");
    assert_eq!(side_by_side, tls != main, "main {main}, TLS {tls}");
    (server.spawn(), main, tls)
}

/// Client settings trusting `ca` (a PEM file) alone.
fn trusting(ca: &Path) -> TlsOptions {
    TlsOptions {
        ca_file: Some(ca.to_owned()),
        ..TlsOptions::default()
    }
}

/// A TLS connection trusting `ca`, signed up and logged in as `name`.
fn tls_user(addr: SocketAddr, ca: &Path, name: &str) -> Client {
    let mut client = Client::connect_tls(addr, &trusting(ca))
        .unwrap_or_else(|e| panic!("{name}: TLS connect to {addr}: {e}"));
    client.set_timeout(TIMEOUT);
    client.signup(name, PASSWORD).expect("signup");
    client.login(name, PASSWORD).expect("login");
    client
}

/// The next event of `client`, failing the test if none comes within [`TIMEOUT`].
fn next_event(client: &mut Client, who: &str) -> Event {
    match client.next_event(TIMEOUT) {
        Ok(Some(event)) => event,
        other => panic!("{who}: expected an event, got {other:?}"),
    }
}

/// The next room message of `client`, skipping other events.
fn next_message(client: &mut Client, who: &str) -> parlor::Message {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event(left) {
            Ok(Some(Event::Message(message))) => return message,
            Ok(Some(_)) => {}
            other => panic!("{who}: expected a message, got {other:?}"),
        }
    }
}

/// The start of a real TLS ClientHello, as rustls writes it.
fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut conn = ClientConnection::new(Arc::new(config), name).expect("a TLS client");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("writes to memory");
    }
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello
}

/// Asserts that the server closes `stream` (EOF or reset) within `within`, and
/// returns what it sent first and how long it took.
fn closed_within(stream: &mut TcpStream, within: Duration, what: &str) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let (sent, ended) = read_to_end_until(stream, start + within);
    assert!(ended, "{what}: still open after {within:?}");
    (sent, start.elapsed())
}

/// Asserts that TLS to `addr` fails at connect with a TLS error; returns its text.
fn refused(addr: SocketAddr, tls: &TlsOptions) -> String {
    let start = Instant::now();
    let result = Client::connect_tls(addr, tls);
    assert!(start.elapsed() < TIMEOUT, "took {:?}", start.elapsed());
    match result {
        Err(ClientError::Tls(what)) => what,
        Err(other) => panic!("expected a TLS error at connect, got {other:?}"),
        Ok(_) => panic!("connected to {addr} with {tls:?}"),
    }
}

// Named to sort first: the test harness starts tests in name order, so this wait of
// about ten seconds runs beside the other tests rather than after them.
#[test]
fn a_handshake_that_never_finishes_is_closed_in_time() {
    let dir = TempDir::new("stall");
    let cert = cert_in(dir.path());
    let (_server, _, tls) = start_tls(&cert, false);
    // One sends nothing, one stops halfway through its ClientHello.
    let mut silent = tcp(tls);
    let mut halfway = tcp(tls);
    let hello = client_hello();
    halfway
        .write_all(&hello[..hello.len() / 2])
        .expect("half a ClientHello");
    let (sent, took) = closed_within(&mut silent, HANDSHAKE_CLOSE_WITHIN, "silent client");
    assert!(
        took >= Duration::from_secs(5),
        "closed after {took:?}, well before the handshake timeout"
    );
    assert!(
        !sent.contains(&b'{'),
        "JSON to a client without TLS: {sent:?}"
    );
    // Connected at the same moment, so closed at about the same moment.
    closed_within(&mut halfway, Duration::from_secs(5), "halfway client");
}

/// Asserts that a real TLS client finishes its handshake and is told `server_full`.
fn told_server_full(addr: SocketAddr, ca: &Path) {
    let mut refused = Client::connect_tls(addr, &trusting(ca))
        .unwrap_or_else(|e| panic!("the handshake of a refused client finishes: {e}"));
    match refused.next_event(TIMEOUT) {
        Ok(Some(Event::Closing { reason })) => assert_eq!(reason, "server_full"),
        other => panic!("expected closing/server_full, got {other:?}"),
    }
    assert!(refused.ping().is_err(), "a refused client was served");
}

#[test]
fn a_tls_client_over_a_connection_limit_is_told_why() {
    let dir = TempDir::new("full");
    let cert = cert_in(dir.path());
    for (limit, tweak) in [
        (
            "--max-conns",
            (|c: &mut parlor::Config| c.max_conns = 1) as fn(&mut _),
        ),
        ("--max-conns-per-ip", |c: &mut parlor::Config| {
            c.max_conns_per_ip = 1;
            c.limit_loopback = true;
        }),
    ] {
        let mut config = test_config();
        tweak(&mut config);
        config.tls = Some(TlsConfig::new(&cert.cert, &cert.key));
        let server = Server::bind(config).expect("TLS server binds");
        let addr = server.local_addr();
        let _handle = server.spawn();
        let mut first = tls_user(addr, &cert.cert, "ada");
        told_server_full(addr, &cert.cert);
        told_server_full(addr, &cert.cert);
        // The refused ones took no place: the first is served, and once it leaves
        // its place is free.
        first.ping().unwrap_or_else(|e| panic!("{limit}: {e}"));
        drop(first);
        let served = (0..50).any(|_| {
            thread::sleep(Duration::from_millis(20));
            Client::connect_tls(addr, &trusting(&cert.cert)).is_ok_and(|mut c| c.ping().is_ok())
        });
        assert!(served, "{limit}: the freed place was never given back");
    }
}

#[test]
fn chat_over_tls_end_to_end() {
    let dir = TempDir::new("chat");
    let cert = cert_in(dir.path());
    let (_server, _, addr) = start_tls(&cert, false);

    let mut ada = tls_user(addr, &cert.cert, "ada");
    ada.create("lobby", Some("over TLS")).expect("create");
    // By DNS name this time; the certificate carries both.
    let by_name = TlsOptions {
        server_name: Some("localhost".to_owned()),
        ..trusting(&cert.cert)
    };
    let mut bob = Client::connect_tls(addr, &by_name).expect("connects as localhost");
    bob.set_timeout(TIMEOUT);
    bob.signup("bob", PASSWORD).expect("signup");
    bob.login("bob", PASSWORD).expect("login");
    let joined = bob.join("lobby").expect("join");
    assert_eq!(joined.members, ["ada", "bob"]);
    assert_eq!(joined.topic, "over TLS");
    match next_event(&mut ada, "ada") {
        Event::Joined { room, user } => {
            assert_eq!((room.as_str(), user.as_str()), ("lobby", "bob"))
        }
        other => panic!("ada: expected bob joining, got {other:?}"),
    }

    let sent = ada.send("lobby", "hello over TLS").expect("send");
    let message = next_message(&mut bob, "bob");
    assert_eq!(
        (message.from.as_str(), message.text.as_str(), message.seq),
        ("ada", "hello over TLS", sent.seq)
    );
    // Longer than one TLS record (16 KiB of plaintext at most) once framed.
    let long = "x".repeat(16_000);
    let sent_long = bob.send("lobby", &long).expect("send long");
    let message = next_message(&mut ada, "ada");
    assert_eq!(
        (message.text.len(), message.seq),
        (long.len(), sent_long.seq)
    );
    assert_eq!(message.text, long);

    bob.dm("ada", "psst").expect("dm");
    match next_event(&mut ada, "ada") {
        Event::Dm { from, text, .. } => assert_eq!((from.as_str(), text.as_str()), ("bob", "psst")),
        other => panic!("ada: expected a dm, got {other:?}"),
    }

    let history = bob
        .history("lobby", HistoryQuery::default())
        .expect("history");
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hello over TLS", long.as_str()]);

    // Pipelined requests come back in order, the responses spanning records.
    let ids: Vec<u64> = (0..50)
        .map(|n| {
            ada.send_request("echo", serde_json::json!({ "data": n }))
                .expect("pipelined request")
        })
        .collect();
    for n in 0..ids.len() {
        let answer = ada.recv_response().expect("pipelined answer");
        assert_eq!(answer["data"], n, "{answer}");
    }
    ada.quit().expect("quit");
    bob.quit().expect("quit");
}

#[test]
fn wrong_ca_or_name_is_refused_at_connect() {
    let dir = TempDir::new("wrong-ca");
    let cert = cert_in(&dir.path().join("server"));
    let other = cert_in(&dir.path().join("other"));
    let (_server, _, addr) = start_tls(&cert, false);

    let what = refused(addr, &trusting(&other.cert));
    assert!(what.contains("UnknownIssuer"), "{what}");
    // The public authorities do not know a self-signed certificate either.
    let what = refused(addr, &TlsOptions::default());
    assert!(what.contains("UnknownIssuer"), "{what}");
    let wrong_name = TlsOptions {
        server_name: Some("chat.example.org".to_owned()),
        ..trusting(&cert.cert)
    };
    let what = refused(addr, &wrong_name);
    assert!(what.contains("chat.example.org"), "{what}");
    let no_ca = TlsOptions {
        ca_file: Some(dir.path().join("missing.pem")),
        ..TlsOptions::default()
    };
    let what = refused(addr, &no_ca);
    assert!(what.contains("missing.pem"), "{what}");

    // The refused handshakes cost the server nothing.
    let mut ada = tls_user(addr, &cert.cert, "ada");
    ada.ping().expect("ping");
}

#[test]
fn plain_text_on_the_tls_port_is_closed() {
    let dir = TempDir::new("plain-on-tls");
    let cert = cert_in(dir.path());
    let (_server, _, addr) = start_tls(&cert, false);
    let mut plain = tcp(addr);
    plain.write_all(b"{\"op\":\"ping\"}\n").expect("write");
    let (sent, _) = closed_within(&mut plain, Duration::from_secs(5), "plain client");
    // At most a TLS alert; never a JSON answer.
    assert!(!sent.contains(&b'{'), "answered in plain text: {sent:?}");
    let mut ada = tls_user(addr, &cert.cert, "ada");
    ada.ping().expect("ping");
}

#[test]
fn tls_on_a_plain_port_is_refused_at_connect() {
    let dir = TempDir::new("tls-on-plain");
    let cert = cert_in(dir.path());
    let (_server, addr) = start_chat();
    let what = refused(addr, &trusting(&cert.cert));
    assert!(what.contains("during the TLS handshake"), "{what}");
    let mut plain = Client::connect(addr).expect("connects");
    plain.ping().expect("the plain server still answers");
}

#[test]
fn broken_handshakes_leave_the_server_healthy() {
    let dir = TempDir::new("broken");
    let cert = cert_in(dir.path());
    let (_server, _, addr) = start_tls(&cert, false);
    let mut ada = tls_user(addr, &cert.cert, "ada");
    ada.create("r", None).expect("create");

    let hello = client_hello();
    // A record header alone; half a ClientHello; all of it: each then closed by the
    // client, before the server's answer.
    for cut in [5, hello.len() / 2, hello.len()] {
        let mut stream = tcp(addr);
        stream.write_all(&hello[..cut]).expect("write");
        drop(stream);
    }
    // A record header promising 16 KiB, then garbage: refused, and closed.
    let mut garbage = tcp(addr);
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x40, 0x00])
        .expect("write");
    garbage.write_all(&[0xff; 64]).expect("write");
    garbage.write_all(&[0; 16 << 10]).ok();
    let (sent, _) = closed_within(&mut garbage, Duration::from_secs(5), "garbage handshake");
    assert!(!sent.contains(&b'{'), "{sent:?}");

    // Everyone else is still served: the old connection and new ones.
    ada.ping().expect("ada still served");
    let mut bob = tls_user(addr, &cert.cert, "bob");
    bob.join("r").expect("join");
    bob.send("r", "still here").expect("send");
    let message = next_message(&mut ada, "ada");
    assert_eq!(message.text, "still here");
}

#[test]
fn tls_listen_serves_plain_and_tls_side_by_side() {
    let dir = TempDir::new("side-by-side");
    let cert = cert_in(dir.path());
    let (_server, plain_addr, tls_addr) = start_tls(&cert, true);

    let mut ada = Client::connect(plain_addr).expect("plain connect");
    ada.set_timeout(TIMEOUT);
    ada.signup("ada", PASSWORD).expect("signup");
    ada.login("ada", PASSWORD).expect("login");
    ada.create("r", None).expect("create");
    let mut bob = tls_user(tls_addr, &cert.cert, "bob");
    bob.join("r").expect("join");

    ada.send("r", "from plain").expect("send");
    let message = next_message(&mut bob, "bob");
    assert_eq!(
        (message.from.as_str(), message.text.as_str()),
        ("ada", "from plain")
    );
    bob.send("r", "from TLS").expect("send");
    let message = next_message(&mut ada, "ada");
    assert_eq!(
        (message.from.as_str(), message.text.as_str()),
        ("bob", "from TLS")
    );

    // Each port speaks only its own.
    let what = refused(plain_addr, &trusting(&cert.cert));
    assert!(what.contains("during the TLS handshake"), "{what}");
    let mut plain = tcp(tls_addr);
    plain.write_all(b"{\"op\":\"ping\"}\n").expect("write");
    let (sent, _) = closed_within(&mut plain, Duration::from_secs(5), "plain on TLS port");
    assert!(!sent.contains(&b'{'), "{sent:?}");
}

/// Runs `parlor ARGS...` to its end (within [`TIMEOUT`]).
fn parlor(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parlor runs");
    finish(child, "parlor")
}

/// Waits for `child` to exit within [`TIMEOUT`] (killing it if it does not) and
/// returns its output.
fn finish(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().expect("waiting").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("killed");
            panic!(
                "{what} did not exit within {TIMEOUT:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn gen_cert_writes_files_the_server_uses() {
    let dir = TempDir::new("gen-cert");
    let out = dir.path().join("certs");
    let out_arg = out.to_str().expect("a UTF-8 temp path");
    let output = parlor(&["gen-cert", "--out", out_arg]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let cert = out.join("cert.pem");
    let key = out.join("key.pem");
    // It says what to run next, with the real paths.
    for next in [
        format!(
            "parlor serve --tls-cert {} --tls-key {}",
            cert.display(),
            key.display()
        ),
        format!("parlor chat --ca {}", cert.display()),
    ] {
        assert!(stdout.contains(&next), "{next:?} missing from:\n{stdout}");
    }

    let files = CertFiles {
        cert: cert.clone(),
        key: key.clone(),
    };
    let (_server, _, addr) = start_tls(&files, false);
    let mut ada = tls_user(addr, &cert, "ada");
    ada.ping().expect("ping");
    let by_name = TlsOptions {
        server_name: Some("localhost".to_owned()),
        ..trusting(&cert)
    };
    Client::connect_tls(addr, &by_name).expect("valid for localhost too");

    // Never overwrites by accident...
    let before = std::fs::read(&key).expect("key");
    let output = parlor(&["gen-cert", "--out", out_arg]);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--force"),
        "{output:?}"
    );
    assert_eq!(std::fs::read(&key).expect("key"), before);
    // ...only when asked.
    let output = parlor(&["gen-cert", "--out", out_arg, "--force"]);
    assert!(output.status.success(), "{output:?}");
    assert_ne!(std::fs::read(&key).expect("key"), before);

    // Other names: valid for those, and no longer for 127.0.0.1.
    let named = dir.path().join("named");
    let named_arg = named.to_str().expect("a UTF-8 temp path");
    let output = parlor(&["gen-cert", "--out", named_arg, "--name", "chat.example.org"]);
    assert!(output.status.success(), "{output:?}");
    let files = CertFiles {
        cert: named.join("cert.pem"),
        key: named.join("key.pem"),
    };
    let (_server, _, addr) = start_tls(&files, false);
    let as_named = TlsOptions {
        server_name: Some("chat.example.org".to_owned()),
        ..trusting(&files.cert)
    };
    Client::connect_tls(addr, &as_named).expect("valid for chat.example.org");
    let what = refused(addr, &trusting(&files.cert));
    assert!(what.contains("127.0.0.1"), "{what}");
}

#[test]
fn the_commands_gen_cert_prints_work() {
    let dir = TempDir::new("commands");
    let out = dir.path().to_str().expect("a UTF-8 temp path").to_owned() + "/certs";
    let output = parlor(&["gen-cert", "--out", &out]);
    assert!(output.status.success(), "{output:?}");
    let (cert, key) = (format!("{out}/cert.pem"), format!("{out}/key.pem"));

    // `parlor serve --tls-cert ... --tls-key ...`, on a free port and in memory.
    let server = common::serve_command()
        .args(["--tls-cert", &cert, "--tls-key", &key])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parlor serve runs");
    let mut server = KillOnDrop(server);
    let addr = listening_addr(&mut server.0);

    // `parlor chat --ca DIR/cert.pem ...`, scripted through stdin.
    let mut chat = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["chat", "--ca", &cert, "--addr", &addr.to_string()])
        .args(["--user", "ada", "--signup"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parlor chat runs");
    let mut stdin = chat.stdin.take().expect("piped stdin");
    writeln!(stdin, "{PASSWORD}\n/create r\nhello\n/history\n/quit").expect("typed");
    drop(stdin);
    let output = finish(chat, "parlor chat");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("created r"), "{stdout}");
    assert!(stdout.contains("[r] ada: hello"), "{stdout}");
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address `parlor serve` logs as `listening on ADDR`, read from its stderr.
fn listening_addr(server: &mut Child) -> SocketAddr {
    use std::io::{BufRead, BufReader};
    let stderr = server.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps draining stderr after the line is found, so the server never blocks on it.
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some((_, rest)) = line.split_once("listening on ") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(addr.parse::<SocketAddr>());
            }
        }
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(Ok(addr)) => addr,
        other => panic!("parlor serve did not log its address: {other:?}"),
    }
}
