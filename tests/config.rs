//! `parlor serve --config FILE`, `parlor config example`, live reload (limits, a
//! renewed certificate, a bad file changing nothing), and `/healthz` + `/readyz`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{PASSWORD, TIMEOUT, test_config};
use parlor::certs;
use parlor::client::TlsOptions;
use parlor::{Client, ClientError, Server, TlsConfig};

fn parlor(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(args)
        .output()
        .expect("run the parlor binary")
}

fn example() -> String {
    let out = parlor(&["config", "example"]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every `--flag` that `parlor serve --help` lists.
fn serve_flags() -> Vec<String> {
    let out = parlor(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags: Vec<String> = help
        .split(|c: char| c.is_whitespace() || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_start_matches("--")
                .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_serve_flag_has_a_key_in_the_example() {
    let example = example();
    let flags = serve_flags();
    assert!(flags.len() > 20, "too few flags found: {flags:?}");
    for flag in flags {
        // `--config` names the file itself; `--operator` is repeatable: `operators`.
        let key = match flag.as_str() {
            "help" | "config" => continue,
            "operator" => "operators".to_owned(),
            other => other.to_owned(),
        };
        let set = format!("\n{key} = ");
        let commented = format!("\n# {key} = ");
        assert!(
            example.contains(&set) || example.contains(&commented),
            "--{flag} has no `{key}` key in `parlor config example`"
        );
    }
}

/// A `parlor serve` process and what it logs.
struct Served {
    child: std::process::Child,
    addr: SocketAddr,
    log: std::sync::mpsc::Receiver<String>,
}

impl Served {
    /// Waits for a log line containing `text`; false if none comes in time.
    fn logs(&self, text: &str) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `parlor serve` with `args` until it listens; its stderr if it exits first.
fn serve(args: &[&str]) -> Result<Served, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parlor"))
        .arg("serve")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parlor binary");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + TIMEOUT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = log.recv_timeout(left) else {
            break;
        };
        if let Some(i) = line.find("listening on ") {
            let rest = &line[i + "listening on ".len()..];
            let addr = rest
                .split(' ')
                .next()
                .unwrap_or("")
                .parse()
                .expect("an address");
            return Ok(Served { child, addr, log });
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(seen)
}

#[test]
fn a_file_with_every_key_round_trips_into_a_running_server() {
    let dir = common::DataDir::new("config-every-key");
    std::fs::create_dir_all(dir.path()).unwrap();
    let data = dir.path().join("data");
    // The example with every default, then a few keys changed to values a test can see.
    let text = example()
        .replace("addr = \"127.0.0.1:7878\"", "addr = \"127.0.0.1:0\"")
        .replace(
            "data-dir = \"parlor-data\"",
            &format!("data-dir = {:?}", data),
        )
        .replace("bcrypt-cost = 12", "bcrypt-cost = 4")
        .replace("# max-text = 16384", "max-text = 20")
        .replace("signup = \"open\"", "signup = \"closed\"");
    let file = dir.path().join("parlor.toml");
    std::fs::write(&file, text).unwrap();
    let Ok(served) = serve(&["--config", file.to_str().unwrap()]) else {
        panic!("it starts");
    };
    let mut client = Client::connect(served.addr).unwrap();
    let refused = client.signup("ada", PASSWORD);
    assert!(
        matches!(&refused, Err(ClientError::Server { code, .. }) if code.to_string() == "forbidden"),
        "signup = closed: {refused:?}"
    );
    let hello = client
        .request("hello", serde_json::json!({"protocol": 2}))
        .unwrap();
    assert_eq!(hello["limits"]["max_text"], 20);
    assert!(data.join("parlor.db").is_file(), "data-dir from the file");
}

#[test]
fn a_flag_wins_over_the_file() {
    let dir = common::DataDir::new("config-flag-wins");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("parlor.toml");
    std::fs::write(
        &file,
        "in-memory = true\nmax-text = 20\naddr = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let Ok(served) = serve(&["--config", file.to_str().unwrap(), "--max-text", "30"]) else {
        panic!("it starts");
    };
    assert_eq!(max_text(served.addr), 30);
}

#[test]
fn a_bad_file_refuses_to_start_and_names_the_line() {
    let dir = common::DataDir::new("config-bad-file");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("parlor.toml");
    std::fs::write(
        &file,
        "in-memory = true\naddr = \"127.0.0.1:0\"\nmax-txt = 20\n",
    )
    .unwrap();
    let Err(stderr) = serve(&["--config", file.to_str().unwrap()]) else {
        panic!("it must not start");
    };
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("max-txt"), "{stderr}");
    std::fs::write(&file, "max-text = \"many\"\n").unwrap();
    let Err(stderr) = serve(&["--config", file.to_str().unwrap()]) else {
        panic!("a wrong type must not start");
    };
    assert!(stderr.contains("line 1"), "{stderr}");
}

fn say(client: &mut Client, text: &str) -> Result<(), String> {
    client
        .send("lobby", text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn a_reload_changes_max_text_and_a_bad_one_changes_nothing() {
    let config = test_config();
    let server = Server::bind(config.clone()).unwrap();
    let addr = server.local_addr();
    let handle = server.spawn();
    let mut client = Client::connect(addr).unwrap();
    client.signup("ada", PASSWORD).unwrap();
    client.login("ada", PASSWORD).unwrap();
    client.create("lobby", None).unwrap();
    say(&mut client, &"x".repeat(50)).expect("50 bytes fit the default");

    let mut smaller = config.clone();
    smaller.max_text = 10;
    let report = handle.reload(smaller).expect("a valid reload");
    assert!(
        report.applied.iter().any(|a| a.starts_with("max-text")),
        "{report}"
    );
    let err = say(&mut client, &"x".repeat(50)).expect_err("over the new max-text");
    assert!(err.contains("too_long"), "{err}");

    let mut broken = config.clone();
    broken.max_text = 1;
    broken.max_rooms = 0;
    broken.max_frame = 10; // below the 64-byte floor: the whole reload is refused
    handle.reload(broken).expect_err("an invalid configuration");
    say(&mut client, "short").expect("max-text is still 10");
    let err = say(&mut client, &"x".repeat(11)).expect_err("still 10");
    assert!(err.contains("too_long"), "{err}");
    client
        .create("second", None)
        .expect("max-rooms unchanged by the refused reload");

    let mut moved = config;
    moved.max_text = 10;
    moved.addr = "127.0.0.1:1".parse().unwrap();
    let report = handle.reload(moved).expect("valid; the address stays");
    assert!(
        report.kept.iter().any(|k| k.starts_with("addr")),
        "{report}"
    );
    Client::connect(addr)
        .unwrap()
        .ping()
        .expect("still on the old address");
}

fn tls_client(addr: SocketAddr, ca: &Path) -> Result<Client, ClientError> {
    let options = TlsOptions {
        ca_file: Some(ca.to_owned()),
        ..TlsOptions::default()
    };
    Client::connect_tls(addr, &options)
}

#[test]
fn a_reloaded_certificate_serves_new_handshakes_and_old_connections_keep_theirs() {
    let dir = common::DataDir::new("config-cert-swap");
    let names = ["127.0.0.1".to_owned()];
    let live = certs::write_self_signed(&dir.path().join("live"), &names, false).unwrap();
    let old = dir.path().join("old.pem");
    std::fs::copy(&live.cert, &old).unwrap();
    let mut config = test_config();
    config.tls = Some(TlsConfig::new(&live.cert, &live.key));
    let server = Server::bind(config.clone()).unwrap();
    let addr = server.local_addr();
    let handle = server.spawn();
    let mut before = tls_client(addr, &old).expect("the first certificate");
    before.ping().unwrap();

    // Renewal: new files at the same paths, then a reload.
    let renewed = certs::write_self_signed(&dir.path().join("live"), &names, true).unwrap();
    let report = handle
        .reload(config)
        .expect("the renewed certificate loads");
    assert!(report.applied.iter().any(|a| a.contains("tls")), "{report}");
    tls_client(addr, &renewed.cert)
        .expect("a new handshake gets the renewed certificate")
        .ping()
        .unwrap();
    assert!(
        tls_client(addr, &old).is_err(),
        "a new handshake must not get the old certificate"
    );
    before
        .ping()
        .expect("the connection made before keeps working");
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    answer
}

#[test]
fn healthz_and_readyz_answer_on_the_metrics_address() {
    let dir = common::DataDir::new("config-health");
    let mut config = test_config();
    config.storage = parlor::Storage::Dir(dir.path().to_owned());
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(config).unwrap();
    let metrics = server.metrics_addr().expect("a metrics address");
    let handle = server.spawn();
    assert!(http_get(metrics, "/healthz").starts_with("HTTP/1.1 200"));
    let ready = http_get(metrics, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(http_get(metrics, "/nothing").starts_with("HTTP/1.1 404"));
    handle.shutdown();
    // While shutting down the server is no longer ready, or no longer answers.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = String::new();
    while Instant::now() < deadline {
        last = match TcpStream::connect(metrics) {
            Ok(_) => http_get(metrics, "/readyz"),
            Err(_) => break,
        };
        if last.is_empty() || last.starts_with("HTTP/1.1 503") {
            break;
        }
    }
    assert!(
        last.is_empty() || last.starts_with("HTTP/1.1 503"),
        "{last}"
    );
    handle.join().unwrap();
}

fn max_text(addr: SocketAddr) -> serde_json::Value {
    let mut client = Client::connect(addr).unwrap();
    let hello = client
        .request("hello", serde_json::json!({"protocol": 2}))
        .unwrap();
    hello["limits"]["max_text"].clone()
}

#[test]
fn sighup_reloads_the_file_and_a_bad_file_changes_nothing() {
    let dir = common::DataDir::new("config-sighup");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("parlor.toml");
    let base = "in-memory = true\naddr = \"127.0.0.1:0\"\n";
    std::fs::write(&file, format!("{base}max-text = 20\n")).unwrap();
    let Ok(served) = serve(&["--config", file.to_str().unwrap()]) else {
        panic!("it starts");
    };
    assert_eq!(max_text(served.addr), 20);

    // `addr` cannot change live: logged, kept.
    let moved = "in-memory = true\naddr = \"127.0.0.1:1\"\nmax-text = 10\n";
    std::fs::write(&file, moved).unwrap();
    served.signal("-HUP");
    assert!(served.logs("max-text: 20 -> 10"), "the reload is logged");
    assert_eq!(max_text(served.addr), 10);

    std::fs::write(&file, format!("{base}max-text = 5\nmax-rooms = \"x\"\n")).unwrap();
    served.signal("-HUP");
    assert!(
        served.logs("reload refused, nothing changed"),
        "the refusal is logged"
    );
    assert_eq!(max_text(served.addr), 10, "a bad file changes nothing");
}
