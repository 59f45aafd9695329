//! Helpers shared by the integration tests: starting a server on a free port, a
//! line-oriented client over a raw `TcpStream`, a few chat shortcuts, and the example
//! binaries.
//!
//! Every read has a deadline, so a hung server fails a test in seconds.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use parlor::{Config, Mode, Server, ServerHandle, Storage};
use serde_json::Value;
use serde_json::value::RawValue;

/// How long a read waits before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse";

/// The configuration every test starts from: a free port on 127.0.0.1, nothing on
/// disk, and cheap password hashing.
///
/// With `PARLOR_TEST_STORE` set to a directory (see [`rerun_with_store`]), each server
/// stores to a fresh data directory under it instead of keeping state in memory.
pub fn test_config() -> Config {
    static NEXT_DIR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let storage = match std::env::var_os(STORE_ENV) {
        Some(root) => {
            let n = NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Storage::Dir(std::path::PathBuf::from(root).join(format!("server-{n}")))
        }
        None => Storage::InMemory,
    };
    let mut config = Config::default();
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.storage = storage;
    config.bcrypt_cost = 4;
    config
}

const STORE_ENV: &str = "PARLOR_TEST_STORE";

/// Runs this test binary again, skipping `this_test`, with every server storing to a
/// data directory: the same suite then checks the stored path (answers and events
/// after commit) as well as the in-memory one. Does nothing inside that rerun.
pub fn rerun_with_store(this_test: &str) {
    if std::env::var_os(STORE_ENV).is_some() {
        return;
    }
    let root =
        std::env::temp_dir().join(format!("parlor-suite-{}-{this_test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = std::process::Command::new(exe)
        .env(STORE_ENV, &root)
        .args(["--skip", this_test, "--test-threads", "4"])
        .output()
        .expect("cannot rerun the test binary");
    let _ = std::fs::remove_dir_all(&root);
    // Its report is shown only when it failed, so a passing run reads as one test.
    assert!(
        output.status.success(),
        "the suite failed against servers with a data directory:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts a server with `test_config()` changed by `tweak`.
pub fn start(tweak: impl FnOnce(&mut Config)) -> (ServerHandle, SocketAddr) {
    let mut config = test_config();
    tweak(&mut config);
    start_with(config)
}

/// Starts a server with exactly this configuration.
pub fn start_with(config: Config) -> (ServerHandle, SocketAddr) {
    let server = Server::bind(config).expect("server binds");
    let addr = server.local_addr();
    assert!(
        addr.ip().is_loopback(),
        "tests only use 127.0.0.1, got {addr}"
    );
    assert_ne!(addr.port(), 0, "local_addr must report the bound port");
    (server.spawn(), addr)
}

/// A chat server with the test defaults.
pub fn start_chat() -> (ServerHandle, SocketAddr) {
    start(|_| {})
}

/// An echo server with the test defaults.
pub fn start_echo() -> (ServerHandle, SocketAddr) {
    start(|c| c.mode = Mode::Echo)
}

/// Opens a TCP connection with read and write timeouts of [`TIMEOUT`].
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// How a read with a deadline ended without producing a line.
#[derive(Debug)]
pub enum End {
    /// Nothing (or only part of a line) arrived before the deadline.
    Timeout,
    /// The server closed the connection (orderly EOF).
    Eof,
    /// The connection was reset or failed otherwise.
    Error(std::io::ErrorKind),
}

/// One frame received: the exact bytes of the line (without the line ending) and
/// its parsed value.
#[derive(Debug, Clone)]
pub struct Frame {
    pub raw: Vec<u8>,
    pub value: Value,
}

/// A client speaking newline-delimited JSON over a raw socket.
///
/// Frames the tests have read past (for example events that arrived while waiting
/// for a response) are kept in a queue, so nothing is lost silently.
pub struct Line {
    pub stream: TcpStream,
    /// Bytes received but not yet split into lines.
    buf: Vec<u8>,
    /// Frames read from the socket but not yet handed to the test.
    pending: VecDeque<Frame>,
    /// A name for panic messages.
    pub name: String,
}

impl Line {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Line {
        Line::named(addr, "client")
    }

    /// Connects to `addr`; `name` appears in failure messages.
    pub fn named(addr: SocketAddr, name: &str) -> Line {
        Line {
            stream: tcp(addr),
            buf: Vec::new(),
            pending: VecDeque::new(),
            name: name.to_owned(),
        }
    }

    /// A client over a connection opened elsewhere (e.g. from another address).
    pub fn from_stream(stream: TcpStream, name: &str) -> Line {
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Line {
            stream,
            buf: Vec::new(),
            pending: VecDeque::new(),
            name: name.to_owned(),
        }
    }

    /// Writes these bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            panic!("{}: write of {} bytes failed: {e}", self.name, bytes.len());
        }
    }

    /// Writes `value` as one frame (compact JSON and `\n`).
    pub fn send_json(&mut self, value: Value) {
        let mut bytes = serde_json::to_vec(&value).unwrap();
        bytes.push(b'\n');
        self.send_raw(&bytes);
    }

    /// Reads one complete line from the socket (not the queue) before `deadline`.
    fn read_line_until(&mut self, deadline: Instant) -> Result<Vec<u8>, End> {
        let mut chunk = [0u8; 65536];
        // Even with the deadline passed, look once at what has already arrived.
        let mut looked = false;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            let now = Instant::now();
            if now >= deadline && looked {
                return Err(End::Timeout);
            }
            looked = true;
            let wait = deadline
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(wait)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(End::Eof),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(End::Error(e.kind())),
            }
        }
    }

    /// Reads one frame from the socket before `deadline`, or says why not.
    pub fn try_read_frame(&mut self, deadline: Instant) -> Result<Frame, End> {
        let raw = self.read_line_until(deadline)?;
        let value = serde_json::from_slice(&raw).unwrap_or_else(|e| {
            panic!(
                "{}: server sent a line that is not JSON ({e}): {:?}",
                self.name,
                String::from_utf8_lossy(&raw)
            )
        });
        Ok(Frame { raw, value })
    }

    /// Reads one frame from the socket, panicking on timeout or close.
    fn read_frame(&mut self, deadline: Instant, waiting_for: &str) -> Frame {
        match self.try_read_frame(deadline) {
            Ok(frame) => frame,
            Err(end) => panic!(
                "{}: waiting for {waiting_for}: {end:?} (queued: {:?}, partial line: {:?})",
                self.name,
                self.pending_values(),
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            ),
        }
    }

    /// The next frame (queued first, then the socket), with its raw bytes.
    pub fn recv_frame(&mut self) -> Frame {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        self.read_frame(Instant::now() + TIMEOUT, "a frame")
    }

    /// The next frame (queued first, then the socket), passing over `presence`
    /// events: they come whenever users log in or out (tests of them use
    /// `expect_event`).
    pub fn recv(&mut self) -> Value {
        loop {
            let value = self.recv_frame().value;
            if value["event"] != "presence" {
                return value;
            }
        }
    }

    /// Sends `request` and returns the next response (a frame with `"ok"`); events
    /// that arrive first stay queued.
    pub fn request(&mut self, request: Value) -> Value {
        self.request_frame_raw(&line_of(&request)).value
    }

    /// Sends these bytes and returns the next response with its raw bytes; events
    /// that arrive first stay queued.
    pub fn request_frame_raw(&mut self, bytes: &[u8]) -> Frame {
        self.assert_no_queued_response();
        self.send_raw(bytes);
        self.next_response()
    }

    /// Sends these bytes and returns the next response.
    pub fn request_raw(&mut self, bytes: &[u8]) -> Value {
        self.request_frame_raw(bytes).value
    }

    /// Reads until the next response (a frame with `"ok"`), queueing events.
    pub fn next_response(&mut self) -> Frame {
        if let Some(i) = self
            .pending
            .iter()
            .position(|f| f.value.get("ok").is_some())
        {
            return self.pending.remove(i).unwrap();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let frame = self.read_frame(deadline, "a response");
            if frame.value.get("ok").is_some() {
                return frame;
            }
            self.pending.push_back(frame);
        }
    }

    fn assert_no_queued_response(&self) {
        if let Some(f) = self.pending.iter().find(|f| f.value.get("ok").is_some()) {
            panic!(
                "{}: an earlier response was never consumed: {}",
                self.name, f.value
            );
        }
    }

    /// Waits for the event named `name` (queued first), leaving other frames queued.
    pub fn expect_event(&mut self, name: &str) -> Value {
        if let Some(i) = self.pending.iter().position(|f| f.value["event"] == name) {
            return self.pending.remove(i).unwrap().value;
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let frame = self.read_frame(deadline, &format!("event {name:?}"));
            if frame.value["event"] == name {
                return frame.value;
            }
            self.pending.push_back(frame);
        }
    }

    /// Asserts that nothing is queued and nothing arrives for `wait` but `presence`
    /// events (see `recv`).
    pub fn expect_silence(&mut self, wait: Duration) {
        self.pending.retain(|f| f.value["event"] != "presence");
        assert!(
            self.pending.is_empty(),
            "{}: expected silence, but frames are queued: {:?}",
            self.name,
            self.pending_values()
        );
        let deadline = Instant::now() + wait;
        let mut next = self.try_read_frame(deadline);
        while let Ok(frame) = &next
            && frame.value["event"] == "presence"
        {
            next = self.try_read_frame(deadline);
        }
        match next {
            Err(End::Timeout) => assert!(
                self.buf.is_empty(),
                "{}: expected silence, got partial line {:?}",
                self.name,
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(frame) => panic!("{}: expected silence, got {}", self.name, frame.value),
            Err(end) => panic!(
                "{}: expected silence, but connection ended: {end:?}",
                self.name
            ),
        }
    }

    /// Asserts that nothing more is queued or arrives, and the server closes the
    /// connection (EOF or reset) within [`TIMEOUT`].
    pub fn expect_closed(&mut self) {
        assert!(
            self.pending.is_empty(),
            "{}: expected close, but frames are queued: {:?}",
            self.name,
            self.pending_values()
        );
        match self.try_read_frame(Instant::now() + TIMEOUT) {
            Err(End::Eof | End::Error(_)) => {}
            Err(End::Timeout) => panic!(
                "{}: expected the server to close the connection; still open after {TIMEOUT:?}",
                self.name
            ),
            Ok(frame) => panic!("{}: expected close, got {}", self.name, frame.value),
        }
    }

    /// Reads whatever arrives until the server closes the connection; returns the
    /// frames (queued ones first). Panics if it is still open after `timeout`.
    pub fn read_until_closed(&mut self, timeout: Duration) -> Vec<Value> {
        let mut frames: Vec<Value> = self.pending.drain(..).map(|f| f.value).collect();
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_line_until(deadline) {
                Ok(raw) => match serde_json::from_slice(&raw) {
                    Ok(v) => frames.push(v),
                    Err(e) => panic!(
                        "{}: non-JSON line: {e}: {:?}",
                        self.name,
                        String::from_utf8_lossy(&raw[..raw.len().min(200)])
                    ),
                },
                Err(End::Eof | End::Error(_)) => return frames,
                Err(End::Timeout) => panic!(
                    "{}: expected the server to close the connection; still open after \
                     {timeout:?} ({} frames read)",
                    self.name,
                    frames.len()
                ),
            }
        }
    }

    /// The frames read but not yet consumed.
    pub fn pending_values(&self) -> Vec<Value> {
        self.pending.iter().map(|f| f.value.clone()).collect()
    }

    /// Removes and returns the queued events named `name`, in arrival order.
    pub fn take_events(&mut self, name: &str) -> Vec<Value> {
        let (taken, kept): (VecDeque<Frame>, VecDeque<Frame>) = self
            .pending
            .drain(..)
            .partition(|f| f.value["event"] == name);
        self.pending = kept;
        taken.into_iter().map(|f| f.value).collect()
    }

    /// Forgets every queued frame.
    pub fn clear_pending(&mut self) {
        self.pending.clear();
    }

    /// Half-closes the sending side.
    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }

    // ----- chat shortcuts -----

    /// `ping`, asserting the answer.
    pub fn ping(&mut self) {
        let r = self.request(serde_json::json!({"op": "ping"}));
        assert_eq!(r["ok"], true, "{}: ping failed: {r}", self.name);
        assert_eq!(r["pong"], true, "{}: ping answer: {r}", self.name);
    }

    /// `signup` with [`PASSWORD`], asserting success.
    pub fn signup(&mut self, user: &str) {
        let r =
            self.request(serde_json::json!({"op": "signup", "user": user, "password": PASSWORD}));
        assert_ok(&r);
        assert_eq!(r["user"], user, "signup answer: {r}");
    }

    /// `login` with [`PASSWORD`], asserting success; returns the session token.
    pub fn login(&mut self, user: &str) -> String {
        let r =
            self.request(serde_json::json!({"op": "login", "user": user, "password": PASSWORD}));
        assert_ok(&r);
        assert_eq!(r["user"], user, "login answer: {r}");
        r["session"]
            .as_str()
            .unwrap_or_else(|| panic!("login answer without session string: {r}"))
            .to_owned()
    }

    /// `signup` then `login`; returns the session token.
    pub fn signup_login(&mut self, user: &str) -> String {
        self.signup(user);
        self.login(user)
    }

    /// `hello` asking for protocol 2, asserting the connection now speaks it;
    /// returns the answer.
    pub fn hello(&mut self) -> Value {
        let r = self.request(serde_json::json!({"op": "hello", "protocol": 2}));
        assert_ok(&r);
        assert_eq!(r["protocol"], 2, "hello answer: {r}");
        r
    }

    /// `create` without topic, asserting success.
    pub fn create(&mut self, room: &str) {
        let r = self.request(serde_json::json!({"op": "create", "room": room}));
        assert_ok(&r);
        assert_eq!(r["room"], room, "create answer: {r}");
    }

    /// `join`, asserting success; returns the response.
    pub fn join(&mut self, room: &str) -> Value {
        let r = self.request(serde_json::json!({"op": "join", "room": room}));
        assert_ok(&r);
        assert_eq!(r["room"], room, "join answer: {r}");
        r
    }

    /// `send`, asserting success; returns the response (`seq`, `ts`).
    pub fn say(&mut self, room: &str, text: &str) -> Value {
        let r = self.request(serde_json::json!({"op": "send", "room": room, "text": text}));
        assert_ok(&r);
        assert!(r["seq"].is_u64() && r["ts"].is_u64(), "send answer: {r}");
        r
    }
}

/// A chat connection, signed up and logged in as `user`.
pub fn user(addr: SocketAddr, user: &str) -> Line {
    let mut c = Line::named(addr, user);
    c.signup_login(user);
    c
}

/// A chat connection speaking protocol 2, signed up and logged in as `user`.
pub fn user2(addr: SocketAddr, user: &str) -> Line {
    let mut c = Line::named(addr, user);
    c.hello();
    c.signup_login(user);
    c
}

/// Another protocol-2 connection of an existing `user`, logged in.
pub fn second2(addr: SocketAddr, user: &str) -> Line {
    let mut c = Line::named(addr, &format!("{user}#2"));
    c.hello();
    c.login(user);
    c
}

/// Another connection of an existing `user`, logged in.
pub fn second(addr: SocketAddr, user: &str) -> Line {
    let mut c = Line::named(addr, &format!("{user}#2"));
    c.login(user);
    c
}

/// `login` with `password`, the answer as it comes (success or not).
pub fn login_with(line: &mut Line, user: &str, password: &str) -> Value {
    line.request(serde_json::json!({"op": "login", "user": user, "password": password}))
}

/// The reason of the one `closing` event a connection gets before the server closes it.
pub fn closing_reason(line: &mut Line) -> Value {
    let frames = line.read_until_closed(Duration::from_secs(10));
    let closing: Vec<&Value> = frames.iter().filter(|f| f["event"] == "closing").collect();
    assert_eq!(
        closing.len(),
        1,
        "{}: one closing event: {frames:?}",
        line.name
    );
    closing[0]["reason"].clone()
}

/// Asserts that a `hello` answer names each of `features`.
pub fn assert_features(hello: &Value, features: &[&str]) {
    let named = hello["features"].as_array().cloned().unwrap_or_default();
    for feature in features {
        assert!(
            named.contains(&Value::from(*feature)),
            "hello does not name `{feature}`: {hello}"
        );
    }
}

/// The bytes of `value` as one frame.
pub fn line_of(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap();
    bytes.push(b'\n');
    bytes
}

/// Asserts a success response.
pub fn assert_ok(response: &Value) {
    assert_eq!(
        response["ok"], true,
        "expected a success response, got {response}"
    );
    assert!(
        response.get("error").is_none(),
        "success response with error: {response}"
    );
}

/// Asserts an error response with this code and a human message.
pub fn assert_err(response: &Value, code: &str) {
    assert_eq!(
        response["ok"], false,
        "expected error {code:?}, got {response}"
    );
    assert_eq!(
        response["error"], code,
        "expected error {code:?}, got {response}"
    );
    assert!(
        response["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error response without a message: {response}"
    );
}

/// The exact text of a top-level field of a JSON object line, as the sender wrote
/// it, or `None` if the field is absent.
pub fn raw_field(line: &[u8], field: &str) -> Option<String> {
    let map: HashMap<String, Box<RawValue>> = serde_json::from_slice(line).unwrap_or_else(|e| {
        panic!(
            "not a JSON object ({e}): {:?}",
            String::from_utf8_lossy(line)
        )
    });
    map.get(field).map(|raw| raw.get().to_owned())
}

/// A small deterministic pseudo-random generator (xorshift64*).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// A barrier whose `wait` gives up (and panics) after a timeout, so one failed
/// thread cannot hang the others forever.
pub struct TimedBarrier {
    parties: usize,
    state: Mutex<(usize, bool)>,
    cvar: Condvar,
}

impl TimedBarrier {
    pub fn new(parties: usize) -> TimedBarrier {
        TimedBarrier {
            parties,
            state: Mutex::new((0, false)),
            cvar: Condvar::new(),
        }
    }

    /// Waits until all parties arrived, or panics after `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 += 1;
        if state.0 >= self.parties {
            state.1 = true;
            self.cvar.notify_all();
            return;
        }
        while !state.1 {
            let now = Instant::now();
            assert!(
                now < deadline,
                "barrier: only {} of {} parties arrived within {timeout:?}",
                state.0,
                self.parties
            );
            state = self
                .cvar
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Reads from `stream` until it ends (EOF or reset) or `deadline`; returns the bytes
/// and whether it ended (false: the deadline passed first).
pub fn read_to_end_until(stream: &mut TcpStream, deadline: Instant) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return (out, false);
        }
        stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (out, true),
        }
    }
}

/// Reads exactly `len` bytes before `deadline`, panicking otherwise.
pub fn read_exact_until(stream: &mut TcpStream, len: usize, deadline: Instant) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let now = Instant::now();
        assert!(
            now < deadline,
            "read {got} of {len} bytes before the deadline"
        );
        stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut out[got..]) {
            Ok(0) => panic!("EOF after {got} of {len} bytes"),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {got} of {len} bytes: {e}"),
        }
    }
    out
}

/// The path of an example binary, built on first use.
///
/// `cargo test` builds the examples but `cargo test --test client` does not, so the
/// test builds them itself; once they are fresh that is a quick no-op. They land next
/// to this test's own profile directory (`target/<profile>/deps/..`), which is where
/// the binaries are looked for.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .ok_or("test binary outside target/<profile>/deps")?;
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let status = Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "--profile", &profile])
            .args(["--example", "echo_client", "--example", "multi_client"])
            .args(["--example", "soak"])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building the examples failed: {status}"));
        }
        Ok(profile_dir.join("examples"))
    });
    match dir {
        Ok(dir) => dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)),
        Err(e) => panic!("{e}"),
    }
}

/// `parlor serve` on a free loopback port, in memory, with cheap password hashes: the
/// binary itself, for what only the process does (flags, logs, signals, TLS files).
/// The binary exists only with the `cli` feature.
#[cfg(feature = "cli")]
pub fn serve_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parlor"));
    command.args(["serve", "--addr", "127.0.0.1:0", "--in-memory"]);
    command.args(["--bcrypt-cost", "4"]);
    command
}

/// A fresh data directory, removed when dropped.
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(test: &str) -> DataDir {
        let path = std::env::temp_dir().join(format!("parlor-test-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        DataDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Runs `sql` on the database while no server has it open.
    pub fn sql(&self, sql: &str) {
        let db = rusqlite::Connection::open(self.0.join("parlor.db")).expect("open the database");
        db.execute_batch(sql).expect("run the SQL");
    }

    pub fn count(&self, sql: &str) -> i64 {
        let db = rusqlite::Connection::open(self.0.join("parlor.db")).expect("open the database");
        db.query_row(sql, [], |r| r.get(0)).expect("count")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn on_disk(dir: &DataDir) -> impl FnOnce(&mut Config) + '_ {
    move |c: &mut Config| c.storage = Storage::Dir(dir.path().to_owned())
}

/// Stops a server and waits until it has let go of its data directory.
pub fn stop(handle: ServerHandle) {
    handle.shutdown();
    handle.join().expect("the server stops cleanly");
}
