//! A light soak and fault test, short enough for CI: an in-process server takes a few
//! seconds of chat traffic mixed with misbehaving clients (slow readers, abrupt
//! disconnects, garbage bytes, over-long lines, clients that reconnect), then must
//! still answer, have every acknowledged message in its history exactly once, and be
//! back near its memory baseline.
//!
//! `benches/soak.sh` runs the heavy version (thousands of connections, a minute)
//! against the release binary. Run this one with `--nocapture` to see its figures.

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parlor::client::HistoryQuery;
use parlor::{Client, Config, ErrorCode, Event, Server, Storage};
use serde_json::json;

/// How long the mixed load runs.
const RUN_FOR: Duration = Duration::from_secs(8);
const PASSWORD: &str = "correct horse";
const ROOMS: [&str; 3] = ["soak0", "soak1", "soak2"];
/// Messages put in `soak0` before the load, so a `history` answer is large and a
/// client that never reads its answers soon passes `max_outbound`.
const SEED_MESSAGES: usize = 500;
const MAX_OUTBOUND: usize = 256 * 1024;
/// How much more resident memory the process may hold after the run than before it:
/// the messages sent are kept (in memory), allocators keep freed pages and per-thread
/// arenas, and the test itself holds its ledger. A leak of what the faults put through
/// (over-long lines, slow consumers' queues, dropped connections) is far larger.
const RSS_MARGIN_KIB: u64 = 32 * 1024;

/// A small deterministic generator (xorshift64*): the test needs varied bytes and
/// choices, not good randomness, and no extra dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// What the clients did, for the report and the checks.
#[derive(Default)]
struct Tally {
    /// Messages acknowledged by the server: (room, seq, text).
    acked: Mutex<Vec<(String, u64, String)>>,
    half_frames: AtomicU64,
    mid_conversation_drops: AtomicU64,
    instant_drops: AtomicU64,
    garbage_lines: AtomicU64,
    tls_on_plain: AtomicU64,
    oversize_lines: AtomicU64,
    oversize_drops: AtomicU64,
    slow_readers: AtomicU64,
    slow_readers_cut: AtomicU64,
    slow_readers_told: AtomicU64,
    reconnects: AtomicU64,
    rate_limited: AtomicU64,
}

impl Tally {
    fn ack(&self, room: &str, seq: u64, text: String) {
        self.acked
            .lock()
            .unwrap()
            .push((room.to_owned(), seq, text));
    }

    fn count(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// Everything a load thread needs.
struct Load<'a> {
    addr: SocketAddr,
    until: Instant,
    max_frame: usize,
    tally: &'a Tally,
}

impl Load<'_> {
    fn running(&self) -> bool {
        Instant::now() < self.until
    }
}

/// A connection spoken to with raw bytes, for what `Client` would never send.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads lines until one contains `needle`; returns every line read, that one last.
    fn lines_until(&mut self, needle: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..=pos);
                let found = line.contains(needle);
                lines.push(line);
                if found {
                    return lines;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needle} within {within:?}; got {lines:?}"
            );
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("closed before a line with {needle}; got {lines:?}"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read failed before a line with {needle}: {e}"),
            }
        }
    }

    /// Reads until the server closes the connection, for at most `within`. Returns
    /// whether it closed, and the last bytes received.
    fn until_closed(&mut self, within: Duration) -> (bool, Vec<u8>) {
        let deadline = Instant::now() + within;
        let mut tail = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 64 * 1024];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return (true, tail),
                Ok(n) => {
                    tail.extend_from_slice(&chunk[..n]);
                    let keep = tail.len().saturating_sub(4096);
                    tail.drain(..keep);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return (true, tail),
            }
        }
        (false, tail)
    }
}

/// Resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn logged_in(addr: SocketAddr, session: &str) -> Client {
    let mut client = Client::connect(addr).unwrap();
    client.set_timeout(Duration::from_secs(10));
    client.resume(session).unwrap();
    client
}

/// Sends to the rooms as fast as it is answered (with a pause, so the history stays a
/// reasonable size), recording every acknowledged message, and reads its events,
/// checking they come in seq order per room.
fn chatter(load: &Load<'_>, session: &str, who: usize) {
    let mut rng = Rng::new(100 + who as u64);
    let mut client = logged_in(load.addr, session);
    let mut last_seen: HashMap<String, u64> = HashMap::new();
    for n in 0..4000 {
        if !load.running() {
            break;
        }
        let room = ROOMS[rng.below(ROOMS.len())];
        let text = format!("chatter {who} message {n}");
        match client.send(room, &text) {
            Ok(sent) => load.tally.ack(room, sent.seq, text),
            Err(e) if e.code() == Some(&ErrorCode::RateLimited) => {
                Tally::bump(&load.tally.rate_limited, 1);
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("chatter {who}: send failed: {e}"),
        }
        while let Some(event) = client.next_event(Duration::ZERO).unwrap() {
            if let Event::Message(m) = event {
                let last = last_seen.entry(m.room.clone()).or_insert(0);
                assert!(m.seq > *last, "chatter {who}: {m:?} after seq {last}");
                *last = m.seq;
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Asks for big answers and never reads them: the server must cut it off once its
/// queue passes `max_outbound`, without anyone else waiting for it.
fn slow_reader(load: &Load<'_>, session: &str) {
    let history = format!(
        "{{\"op\":\"history\",\"room\":\"{}\",\"limit\":500}}\n",
        ROOMS[0]
    );
    for _ in 0..30 {
        if !load.running() {
            break;
        }
        let mut raw = Raw::connect(load.addr);
        let mut requests = format!("{{\"op\":\"resume\",\"session\":\"{session}\"}}\n");
        for _ in 0..100 {
            requests.push_str(&history);
        }
        // Once the server cuts it off, the rest of the write fails: that is the point.
        let _ = raw.stream.write_all(requests.as_bytes());
        Tally::bump(&load.tally.slow_readers, 1);
        thread::sleep(Duration::from_millis(300));
        let (closed, tail) = raw.until_closed(Duration::from_secs(5));
        if closed {
            Tally::bump(&load.tally.slow_readers_cut, 1);
        }
        if String::from_utf8_lossy(&tail).contains("\"slow_consumer\"") {
            Tally::bump(&load.tally.slow_readers_told, 1);
        }
    }
}

/// Connections that go away at a bad moment.
fn disconnector(load: &Load<'_>, session: &str, who: usize) {
    let mut rng = Rng::new(200 + who as u64);
    for _ in 0..2000 {
        if !load.running() {
            break;
        }
        match rng.below(4) {
            0 => {
                let mut raw = Raw::connect(load.addr);
                raw.send(b"{\"op\":\"send\",\"room\":\"soak0\",\"te");
                Tally::bump(&load.tally.half_frames, 1);
            }
            1 => {
                // Logged in, a request on its way, gone before the answer.
                let mut client = logged_in(load.addr, session);
                client
                    .send_request("send", json!({"room": ROOMS[1], "text": "never acked"}))
                    .unwrap();
                Tally::bump(&load.tally.mid_conversation_drops, 1);
            }
            2 => {
                let mut raw = Raw::connect(load.addr);
                raw.send(b"{\"op\":\"login\",\"user\":\"chat0\",\"pass");
                raw.stream.shutdown(Shutdown::Write).unwrap();
                Tally::bump(&load.tally.half_frames, 1);
            }
            _ => {
                drop(TcpStream::connect(load.addr).unwrap());
                Tally::bump(&load.tally.instant_drops, 1);
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Random binary lines (invalid UTF-8, not JSON, stray `\r`s): each gets an error
/// answer and the connection still answers a ping after them. Now and then a TLS
/// handshake byte first, which the plain port closes at once.
fn garbage(load: &Load<'_>) {
    let mut rng = Rng::new(300);
    for _ in 0..400 {
        if !load.running() {
            break;
        }
        let mut raw = Raw::connect(load.addr);
        if rng.below(20) == 0 {
            raw.send(&[0x16, 0x03, 0x01, 0x00, 0x05, b'\n']);
            assert!(
                raw.until_closed(Duration::from_secs(5)).0,
                "TLS byte not closed"
            );
            Tally::bump(&load.tally.tls_on_plain, 1);
            continue;
        }
        let mut bytes = Vec::new();
        for _ in 0..1 + rng.below(10) {
            let len = 1 + rng.below(200);
            bytes.extend(rng.bytes(len));
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(
            b"\xff\xfe{\"op\":\"ping\"}\n{\"op\":\"send\",\"room\":\"\xc3\x28\"}\n",
        );
        // A first byte of 0x16 would be taken for TLS, which is the case above.
        if bytes[0] == 0x16 {
            bytes[0] = b'!';
        }
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        raw.send(&bytes);
        raw.send(b"{\"id\":\"probe\",\"op\":\"ping\"}\n");
        let answers = raw.lines_until("\"probe\"", Duration::from_secs(10));
        assert!(
            answers.last().unwrap().contains("\"pong\":true"),
            "{answers:?}"
        );
        Tally::bump(&load.tally.garbage_lines, lines as u64);
    }
}

/// Lines over `max_frame`, sent in pieces: answered `frame_too_large`, and the next
/// request is served. Every third one is abandoned half-way (a disconnect mid-frame).
fn oversize(load: &Load<'_>) {
    let mut rng = Rng::new(400);
    let piece = vec![b'x'; 16 * 1024];
    for n in 0..200 {
        if !load.running() {
            break;
        }
        let mut raw = Raw::connect(load.addr);
        raw.send(b"{\"op\":\"echo\",\"data\":\"");
        let len = load.max_frame + rng.below(load.max_frame);
        let mut sent = 0;
        while sent < len {
            let take = piece.len().min(len - sent);
            raw.send(&piece[..take]);
            sent += take;
        }
        if n % 3 == 2 {
            Tally::bump(&load.tally.oversize_drops, 1);
            continue;
        }
        raw.send(b"\"}\n{\"id\":\"probe\",\"op\":\"ping\"}\n");
        let answers = raw.lines_until("\"probe\"", Duration::from_secs(10));
        assert_eq!(answers.len(), 2, "{answers:?}");
        assert!(answers[0].contains("\"frame_too_large\""), "{answers:?}");
        Tally::bump(&load.tally.oversize_lines, 1);
    }
}

/// A user who keeps coming back on new connections: mostly `resume`, sometimes a
/// fresh `login`; sends one message each time, then quits or just goes.
fn reconnector(load: &Load<'_>, user: &str, first_session: String, who: usize) {
    let mut rng = Rng::new(500 + who as u64);
    let mut session = first_session;
    for n in 0..1000 {
        if !load.running() {
            break;
        }
        let mut client = Client::connect(load.addr).unwrap();
        client.set_timeout(Duration::from_secs(10));
        if n % 5 == 4 {
            session = client.login(user, PASSWORD).unwrap();
        } else {
            assert_eq!(client.resume(&session).unwrap(), user);
        }
        let room = ROOMS[rng.below(ROOMS.len())];
        let text = format!("{user} visit {n}");
        match client.send(room, &text) {
            Ok(sent) => load.tally.ack(room, sent.seq, text),
            Err(e) if e.code() == Some(&ErrorCode::RateLimited) => {
                Tally::bump(&load.tally.rate_limited, 1);
            }
            Err(e) => panic!("{user}: send failed: {e}"),
        }
        if rng.below(2) == 0 {
            client.quit().unwrap();
        }
        Tally::bump(&load.tally.reconnects, 1);
        thread::sleep(Duration::from_millis(5));
    }
}

/// Every message of `room`, paged oldest first with `after`.
fn whole_history(client: &mut Client, room: &str) -> Vec<parlor::Message> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let query = HistoryQuery {
            after: Some(after),
            limit: Some(500),
            ..HistoryQuery::default()
        };
        let page = client.history(room, query).unwrap();
        let Some(last) = page.last() else {
            return all;
        };
        after = last.seq;
        all.extend(page);
    }
}

#[test]
fn server_survives_mixed_faults_and_loses_nothing() {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        storage: Storage::InMemory,
        bcrypt_cost: 4,
        max_outbound: MAX_OUTBOUND,
        ..Config::default()
    };
    let max_frame = config.max_frame;
    let handle = Server::bind(config).unwrap().spawn();
    let addr = handle.addr();

    // Accounts: three chatters, a slow reader, two reconnecting users; everyone is in
    // every room.
    let users = ["chat0", "chat1", "chat2", "slow", "again0", "again1"];
    let mut sessions = BTreeMap::new();
    for user in users {
        let mut client = Client::connect(addr).unwrap();
        client.signup(user, PASSWORD).unwrap();
        sessions.insert(user, client.login(user, PASSWORD).unwrap());
        for room in ROOMS {
            if user == users[0] {
                client.create(room, None).unwrap();
            } else {
                client.join(room).unwrap();
            }
        }
    }
    let tally = Tally::default();
    let mut seeder = logged_in(addr, &sessions["chat0"]);
    let filler = "y".repeat(100);
    for n in 0..SEED_MESSAGES {
        let text = format!("seed {n} {filler}");
        let sent = seeder.send(ROOMS[0], &text).unwrap();
        tally.ack(ROOMS[0], sent.seq, text);
    }
    drop(seeder);
    thread::sleep(Duration::from_millis(200));
    let rss_before = rss_kib();

    let started = Instant::now();
    let load = Load {
        addr,
        until: started + RUN_FOR,
        max_frame,
        tally: &tally,
    };
    thread::scope(|s| {
        let load = &load;
        for (who, user) in ["chat0", "chat1", "chat2"].into_iter().enumerate() {
            let session = &sessions[user];
            s.spawn(move || chatter(load, session, who));
        }
        s.spawn(|| slow_reader(load, &sessions["slow"]));
        for who in 0..2 {
            let session = &sessions["chat1"];
            s.spawn(move || disconnector(load, session, who));
        }
        s.spawn(|| garbage(load));
        s.spawn(|| oversize(load));
        for (who, user) in ["again0", "again1"].into_iter().enumerate() {
            let session = sessions[user].clone();
            s.spawn(move || reconnector(load, user, session, who));
        }
    });
    let ran_for = started.elapsed();

    // Still serving: a fresh client's ping.
    let mut fresh = Client::connect(addr).unwrap();
    fresh.set_timeout(Duration::from_secs(5));
    fresh
        .ping()
        .expect("the server answers a fresh client after the soak");

    // Nothing acknowledged is missing, no seq is given twice, no gap.
    let mut checker = logged_in(addr, &sessions["chat0"]);
    let mut stored: HashMap<(String, u64), String> = HashMap::new();
    let mut total = 0;
    for room in ROOMS {
        let messages = whole_history(&mut checker, room);
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(
                m.seq,
                i as u64 + 1,
                "{room}: seq out of order, repeated or missing"
            );
        }
        total += messages.len();
        stored.extend(messages.into_iter().map(|m| ((m.room, m.seq), m.text)));
    }
    let acked = tally.acked.lock().unwrap();
    let lost: Vec<_> = acked
        .iter()
        .filter(|(room, seq, text)| stored.get(&(room.clone(), *seq)) != Some(text))
        .collect();
    drop((fresh, checker));

    // Memory: the slow readers' queues, the over-long lines and the dropped
    // connections' buffers must all be gone.
    thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib();

    eprintln!(
        "soak: {ran_for:.1?}; messages acked {} (stored {total}), lost {}; faults: \
         half frames {}, mid-conversation drops {}, instant drops {}, garbage lines {}, \
         TLS bytes on the plain port {}, oversize lines {} (+{} abandoned), slow readers {} \
         (cut off {}, told slow_consumer {}), reconnects {}, rate limited {}; \
         RSS {rss_before} KiB before, {rss_after} KiB after",
        acked.len(),
        lost.len(),
        Tally::count(&tally.half_frames),
        Tally::count(&tally.mid_conversation_drops),
        Tally::count(&tally.instant_drops),
        Tally::count(&tally.garbage_lines),
        Tally::count(&tally.tls_on_plain),
        Tally::count(&tally.oversize_lines),
        Tally::count(&tally.oversize_drops),
        Tally::count(&tally.slow_readers),
        Tally::count(&tally.slow_readers_cut),
        Tally::count(&tally.slow_readers_told),
        Tally::count(&tally.reconnects),
        Tally::count(&tally.rate_limited),
    );
    assert!(lost.is_empty(), "acknowledged but not in history: {lost:?}");
    assert!(
        Tally::count(&tally.slow_readers_cut) > 0,
        "no slow reader was cut off"
    );
    assert!(
        rss_after <= rss_before + RSS_MARGIN_KIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    handle.shutdown();
}
