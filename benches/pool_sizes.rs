//! Throughput of an in-process server with 1, 2, 4 and 8 workers, over loopback:
//!
//! - `echo`: echo mode, 64 connections, 64-byte messages, at most 16 in flight on each;
//!   a batch is 64 messages per connection (4096 round trips).
//! - `fanout`: chat mode, one sender and 100 other members of its room, 128-byte
//!   texts, at most 16 unanswered `send`s; a batch is 100 messages (10 000 deliveries).
//! - `mixed`: chat mode, 200 clients in 10 rooms of 20, every client sending 128-byte
//!   texts, at most 4 unanswered each; a batch is 10 messages per client (2000
//!   messages, 38 000 deliveries).
//!
//! Throughput is counted in round trips (echo) or deliveries (fanout, mixed). The
//! server and its logged-in clients are set up once per pool size, outside the timed
//! loop; each iteration pushes one batch and waits until every echo or delivery has
//! arrived, checked (intact, in order, none missing or twice). One client thread drives
//! every connection, nonblocking, with level-triggered polling. A batch that takes over
//! `BATCH_TIMEOUT` panics with the counts so far, so the bench fails rather than hangs.
//!
//! ```text
//! cargo bench --bench pool_sizes              # about 2 minutes
//! cargo bench --bench pool_sizes -- --quick   # well under 2 minutes
//! cargo bench --bench pool_sizes -- fanout    # one group
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memchr::memmem;
use parlor::{Config, Mode, Server, ServerHandle, Storage};
use polling::{Event, Events, PollMode, Poller};

/// Worker pool sizes compared.
const POOLS: [usize; 4] = [1, 2, 4, 8];

/// Longest a batch may take before the bench fails.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a setup step (connect, log in, join) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Every bench user's password.
const PASSWORD: &str = "bench password";

/// Chat texts are this long.
const TEXT_LEN: usize = 128;

fn start_server(mode: Mode, workers: usize) -> ServerHandle {
    let mut config = Config::default();
    config.addr = "127.0.0.1:0".parse().expect("a valid address");
    config.storage = Storage::InMemory;
    config.bcrypt_cost = 4;
    config.workers = workers;
    config.mode = mode;
    // Listeners send nothing for the whole group; keep them from timing out.
    config.idle_timeout = Duration::from_secs(3600);
    // This measures throughput, not the per-connection frame-rate limiter (the
    // fan-out sender alone sends far more than its default 1000 frames/s).
    config.max_frame_rate = 0;
    Server::bind(config)
        .expect("the bench server binds")
        .spawn()
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> criterion::BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

type WallTime = criterion::measurement::WallTime;

/// Runs `load` under criterion for every pool size. The server and clients are set up
/// on the first call of the routine (so not at all for a benchmark filtered out), kept
/// for every sample, and shut down before the next pool size.
fn bench_pools<L: Load>(
    c: &mut Criterion,
    name: &str,
    mode: Mode,
    elements: u64,
    setup: impl Fn(SocketAddr) -> (Net, L),
) {
    let mut group = configure(c, name);
    group.throughput(Throughput::Elements(elements));
    for workers in POOLS {
        let mut state: Option<(ServerHandle, Net, L)> = None;
        group.bench_function(BenchmarkId::new("workers", workers), |b| {
            let (_, net, load) = state.get_or_insert_with(|| {
                let server = start_server(mode, workers);
                let (net, load) = setup(server.addr());
                (server, net, load)
            });
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    net.batch(load, name);
                }
                start.elapsed()
            });
        });
        // Clients first, then the server (dropping its handle shuts it down).
        if let Some((server, net, load)) = state.take() {
            drop((net, load));
            drop(server);
        }
    }
    group.finish();
}

fn echo(c: &mut Criterion) {
    const CONNS: usize = 64;
    const PER_CONN: u64 = 64;
    bench_pools(c, "echo", Mode::Echo, CONNS as u64 * PER_CONN, |addr| {
        let mut net = Net::new();
        for _ in 0..CONNS {
            net.add(connect(addr), Vec::new());
        }
        let load = Echo {
            size: 64,
            per_conn: PER_CONN,
            in_flight: 16,
            sent: vec![0; CONNS],
            got: vec![0; CONNS],
            target: 0,
            done: CONNS,
            want: Vec::new(),
        };
        (net, load)
    });
}

fn fanout(c: &mut Criterion) {
    const MEMBERS: usize = 100;
    const BATCH: u64 = 100;
    bench_pools(c, "fanout", Mode::Chat, MEMBERS as u64 * BATCH, |addr| {
        let mut net = Net::new();
        let prefix = "f";
        // The sender creates the room, then the members join: connection 0 sends.
        for user in 0..=MEMBERS {
            let (stream, rest) = chat_user(addr, prefix, user, 0);
            net.add(stream, rest);
        }
        // Every join was announced to each earlier member.
        net.settle(joins_announced(MEMBERS + 1));
        let load = Chat::new(prefix, MEMBERS + 1, 1, 1, BATCH, 16);
        (net, load)
    });
}

fn mixed(c: &mut Criterion) {
    const CLIENTS: usize = 200;
    const ROOMS: usize = 10;
    const PER_CLIENT: u64 = 10;
    bench_pools(
        c,
        "mixed",
        Mode::Chat,
        CLIENTS as u64 * PER_CLIENT * (CLIENTS / ROOMS - 1) as u64,
        |addr| {
            let mut net = Net::new();
            let prefix = "m";
            for user in 0..CLIENTS {
                let (stream, rest) = chat_user(addr, prefix, user, user % ROOMS);
                net.add(stream, rest);
            }
            net.settle(ROOMS as u64 * joins_announced(CLIENTS / ROOMS));
            let load = Chat::new(prefix, CLIENTS, ROOMS, CLIENTS, PER_CLIENT, 4);
            (net, load)
        },
    );
}

/// `joined` events in a room of `members`, joined one after another: each join is
/// announced to every earlier member.
fn joins_announced(members: usize) -> u64 {
    (members * (members - 1) / 2) as u64
}

criterion_group! {
    name = benches;
    // The HTML plots take seconds per benchmark on a small machine; the numbers are
    // in the terminal and in target/criterion/*/*/*/new/estimates.json.
    config = Criterion::default().without_plots();
    targets = echo, fanout, mixed
}
criterion_main!(benches);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, SETUP_TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(SETUP_TIMEOUT))
        .expect("a read timeout");
    stream
}

/// Signs up and logs in user `user`, and makes it a member of room `room` (the first
/// user of a room creates it). Returns the socket and what was read past the answers.
fn chat_user(addr: SocketAddr, prefix: &str, user: usize, room: usize) -> (TcpStream, Vec<u8>) {
    let mut stream = connect(addr);
    let name = format!("{prefix}u{user}");
    let room_name = format!("{prefix}r{room}");
    let enter = if user == room { "create" } else { "join" };
    let requests = format!(
        "{{\"op\":\"signup\",\"user\":\"{name}\",\"password\":\"{PASSWORD}\"}}\n\
         {{\"op\":\"login\",\"user\":\"{name}\",\"password\":\"{PASSWORD}\"}}\n\
         {{\"op\":\"{enter}\",\"room\":\"{room_name}\"}}\n"
    );
    stream
        .write_all(requests.as_bytes())
        .unwrap_or_else(|e| panic!("{name}: sending the setup requests: {e}"));
    let mut buf = Vec::new();
    let mut answers = 0;
    while answers < 3 {
        let nl = loop {
            if let Some(nl) = memchr::memchr(b'\n', &buf) {
                break nl;
            }
            let mut chunk = [0; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => panic!("{name}: the server closed the connection during setup"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("{name}: reading the setup answers: {e}"),
            }
        };
        let line: Vec<u8> = buf.drain(..=nl).collect();
        match classify(&line) {
            Line::Ok => answers += 1,
            Line::Other => {}
            _ => panic!("{name}: setup failed: {}", String::from_utf8_lossy(&line)),
        }
    }
    (stream, buf)
}

/// What a chat line from the server is, as far as the bench cares.
enum Line<'a> {
    /// A successful answer.
    Ok,
    /// A `message` event, and its text.
    Message(&'a [u8]),
    /// Any other event (members joining).
    Other,
    /// A failure, a `closing` event, or something unreadable.
    Bad,
}

/// Classifies a line by looking for its key fields; the texts the bench sends hold no
/// quotes, so the searches cannot be fooled by them.
fn classify(line: &[u8]) -> Line<'_> {
    if memmem::find(line, b"\"ok\":true").is_some() {
        Line::Ok
    } else if memmem::find(line, b"\"event\":\"message\"").is_some() {
        let text = memmem::find(line, b"\"text\":\"").and_then(|at| {
            let text = &line[at + 8..];
            memchr::memchr(b'"', text).map(|end| &text[..end])
        });
        text.map_or(Line::Bad, Line::Message)
    } else if memmem::find(line, b"\"event\":\"closing\"").is_none()
        && memmem::find(line, b"\"event\":").is_some()
    {
        Line::Other
    } else {
        Line::Bad
    }
}

/// One connection of the driver.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet taken.
    rbuf: Vec<u8>,
    /// Bytes queued and not yet written, from `wpos`.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Whether WRITABLE is in the poller interest.
    want_write: bool,
}

impl Conn {
    fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }
}

/// Every connection of one bench, polled by the one driver thread.
struct Net {
    poller: Poller,
    conns: Vec<Conn>,
    events: Events,
    chunk: Vec<u8>,
}

impl Net {
    fn new() -> Net {
        Net {
            poller: Poller::new().expect("a poller"),
            conns: Vec::new(),
            events: Events::new(),
            chunk: vec![0; 256 << 10],
        }
    }

    fn add(&mut self, stream: TcpStream, rest: Vec<u8>) {
        stream.set_nonblocking(true).expect("nonblocking");
        let key = self.conns.len();
        // SAFETY: `Drop for Net` deletes every socket from the poller before the
        // connections (which own them) are dropped.
        unsafe {
            self.poller
                .add_with_mode(&stream, Event::readable(key), PollMode::Level)
        }
        .expect("adding a socket to the poller");
        self.conns.push(Conn {
            stream,
            rbuf: rest,
            wbuf: Vec::new(),
            wpos: 0,
            want_write: false,
        });
    }

    /// Writes what `conns[key]` has queued, as far as the socket takes it, and keeps
    /// WRITABLE in its interest exactly while something is left.
    fn flush(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        while conn.wpos < conn.wbuf.len() {
            match conn.stream.write(&conn.wbuf[conn.wpos..]) {
                Ok(0) => panic!("connection {key}: the server stopped taking bytes"),
                Ok(n) => conn.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("connection {key}: writing: {e}"),
            }
        }
        if conn.wpos == conn.wbuf.len() {
            conn.wbuf.clear();
            conn.wpos = 0;
        }
        let want_write = !conn.wbuf.is_empty();
        if want_write != conn.want_write {
            let interest = if want_write {
                Event::all(key)
            } else {
                Event::readable(key)
            };
            self.poller
                .modify_with_mode(&conn.stream, interest, PollMode::Level)
                .expect("changing the poller interest");
            conn.want_write = want_write;
        }
    }

    /// Reads and drops the `expected` events that setup caused (each join tells every
    /// earlier member of the room), so that no batch has them to read.
    fn settle(&mut self, expected: u64) {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        // Takes the whole lines in `rbuf`, which must be such events; counts them.
        fn take(rbuf: &mut Vec<u8>) -> u64 {
            let (mut used, mut seen) = (0, 0);
            while let Some(nl) = memchr::memchr(b'\n', &rbuf[used..]) {
                let line = &rbuf[used..used + nl];
                if !matches!(classify(line), Line::Other) {
                    panic!(
                        "unexpected before the load: {}",
                        String::from_utf8_lossy(line)
                    );
                }
                seen += 1;
                used += nl + 1;
            }
            rbuf.drain(..used);
            seen
        }
        let mut seen: u64 = self.conns.iter_mut().map(|conn| take(&mut conn.rbuf)).sum();
        while seen < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "only {seen} of {expected} join events came within {SETUP_TIMEOUT:?}"
            );
            self.events.clear();
            match self.poller.wait(&mut self.events, Some(left)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("polling: {e}"),
            }
            for ev in self.events.iter() {
                let conn = &mut self.conns[ev.key];
                match conn.stream.read(&mut self.chunk) {
                    Ok(0) => panic!("connection {}: closed by the server during setup", ev.key),
                    Ok(n) => {
                        conn.rbuf.extend_from_slice(&self.chunk[..n]);
                        seen += take(&mut conn.rbuf);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => panic!("connection {}: reading: {e}", ev.key),
                }
            }
        }
    }

    /// Runs one batch of `load` to completion, or panics after `BATCH_TIMEOUT`.
    fn batch<L: Load>(&mut self, load: &mut L, name: &str) {
        let deadline = Instant::now() + BATCH_TIMEOUT;
        load.start(&mut self.conns);
        for key in 0..self.conns.len() {
            // Leftovers from setup (events), then the batch's first messages.
            if !self.conns[key].rbuf.is_empty() {
                load.take(key, &mut self.conns[key])
                    .unwrap_or_else(|e| panic!("{name}: connection {key}: {e}"));
            }
            self.flush(key);
        }
        while !load.done() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{name}: a batch took over {BATCH_TIMEOUT:?}: {}",
                    load.progress()
                );
            }
            self.events.clear();
            match self.poller.wait(&mut self.events, Some(left)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("{name}: polling: {e}"),
            }
            let ready: Vec<(usize, bool, bool)> = self
                .events
                .iter()
                .map(|ev| (ev.key, ev.readable, ev.writable))
                .collect();
            for (key, readable, writable) in ready {
                if readable {
                    let conn = &mut self.conns[key];
                    match conn.stream.read(&mut self.chunk) {
                        Ok(0) => panic!(
                            "{name}: connection {key}: the server closed it ({})",
                            load.progress()
                        ),
                        Ok(n) => {
                            conn.rbuf.extend_from_slice(&self.chunk[..n]);
                            load.take(key, conn)
                                .unwrap_or_else(|e| panic!("{name}: connection {key}: {e}"));
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => panic!("{name}: connection {key}: reading: {e}"),
                    }
                }
                if readable || writable {
                    self.flush(key);
                }
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for conn in &self.conns {
            let _ = self.poller.delete(&conn.stream);
        }
    }
}

/// A load: what a batch sends, and how what comes back is checked and counted.
trait Load {
    /// Starts a batch: queues its first messages.
    fn start(&mut self, conns: &mut [Conn]);
    /// Takes the whole frames in `conn.rbuf` (connection `key`), queueing more
    /// messages on `conn` as answers come back.
    fn take(&mut self, key: usize, conn: &mut Conn) -> Result<(), String>;
    /// Whether everything of this batch has come back.
    fn done(&self) -> bool;
    /// Counts so far, for a timeout's message.
    fn progress(&self) -> String;
}

/// Echo round trips; message `i` of connection `c` has bytes that depend on both.
struct Echo {
    size: usize,
    per_conn: u64,
    in_flight: u64,
    /// Per connection, messages sent and echoes checked, over every batch.
    sent: Vec<u64>,
    got: Vec<u64>,
    /// Messages per connection at the end of this batch.
    target: u64,
    /// Connections that have all their echoes of this batch.
    done: usize,
    want: Vec<u8>,
}

fn fill(message: &mut Vec<u8>, size: usize, conn: usize, index: u64) {
    message.clear();
    let mut x = (conn as u64).rotate_left(32) ^ index ^ 0x9e37_79b9_7f4a_7c15;
    message.extend((0..size).map(|_| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 56) as u8
    }));
}

impl Echo {
    fn send_next(&mut self, key: usize, conn: &mut Conn) {
        fill(&mut self.want, self.size, key, self.sent[key]);
        conn.queue(&self.want);
        self.sent[key] += 1;
    }
}

impl Load for Echo {
    fn start(&mut self, conns: &mut [Conn]) {
        self.target += self.per_conn;
        self.done = 0;
        for (key, conn) in conns.iter_mut().enumerate() {
            for _ in 0..self.in_flight.min(self.per_conn) {
                self.send_next(key, conn);
            }
        }
    }

    fn take(&mut self, key: usize, conn: &mut Conn) -> Result<(), String> {
        let whole = conn.rbuf.len() / self.size * self.size;
        let rbuf = std::mem::take(&mut conn.rbuf);
        for echo in rbuf[..whole].chunks(self.size) {
            let index = self.got[key];
            if index >= self.sent[key] {
                return Err(format!("an echo of message {index}, which was not sent"));
            }
            fill(&mut self.want, self.size, key, index);
            if echo != self.want.as_slice() {
                return Err(format!("message {index} came back different"));
            }
            self.got[key] += 1;
            if self.got[key] == self.target {
                self.done += 1;
            }
            if self.sent[key] < self.target {
                self.send_next(key, conn);
            }
        }
        conn.rbuf = rbuf;
        conn.rbuf.drain(..whole);
        Ok(())
    }

    fn done(&self) -> bool {
        self.done == self.sent.len()
    }

    fn progress(&self) -> String {
        let got: u64 = self.got.iter().sum();
        let sent: u64 = self.sent.iter().sum();
        format!("{got} echoes of {sent} messages sent")
    }
}

/// Chat messages: each of the first `senders` clients sends `per_batch` messages to its
/// room, at most `in_flight` unanswered; every other member must get each, in order.
struct Chat {
    prefix: String,
    rooms: usize,
    senders: usize,
    per_batch: u64,
    in_flight: u64,
    /// Per client: messages sent and answered, over every batch.
    sent: Vec<u64>,
    acked: Vec<u64>,
    /// Per client, deliveries received, over every batch.
    received: Vec<u64>,
    /// Per receiving client and sender (`receiver * clients + sender`), the index
    /// of the next message due.
    next: Vec<u64>,
    /// Per client, deliveries due at the end of this batch.
    due: Vec<u64>,
    /// Messages per sender at the end of this batch.
    target: u64,
    /// Clients with every answer and delivery of this batch.
    finished: usize,
    text: Vec<u8>,
}

impl Chat {
    fn new(
        prefix: &str,
        clients: usize,
        rooms: usize,
        senders: usize,
        per_batch: u64,
        in_flight: u64,
    ) -> Chat {
        Chat {
            prefix: prefix.to_owned(),
            rooms,
            senders,
            per_batch,
            in_flight,
            sent: vec![0; clients],
            acked: vec![0; clients],
            received: vec![0; clients],
            next: vec![0; clients * clients],
            due: vec![0; clients],
            target: 0,
            finished: 0,
            text: Vec::new(),
        }
    }

    fn clients(&self) -> usize {
        self.sent.len()
    }

    /// Text of message `index` from `sender`: a header, padding that depends on both.
    fn text(text: &mut Vec<u8>, sender: usize, index: u64) {
        text.clear();
        let _ = write!(text, "{sender:08x} {index:016x} ");
        let seed = sender + index as usize;
        let pad = TEXT_LEN - text.len();
        text.extend((0..pad).map(|j| b'a' + ((seed + j) % 26) as u8));
    }

    fn send_next(&mut self, key: usize, conn: &mut Conn) {
        let index = self.sent[key];
        Chat::text(&mut self.text, key, index);
        let room = key % self.rooms;
        let _ = write!(
            conn.wbuf,
            "{{\"op\":\"send\",\"room\":\"{}r{room}\",\"text\":\"",
            self.prefix
        );
        conn.wbuf.extend_from_slice(&self.text);
        conn.wbuf.extend_from_slice(b"\"}\n");
        self.sent[key] += 1;
    }

    fn is_finished(&self, key: usize) -> bool {
        let sends = if key < self.senders { self.target } else { 0 };
        self.acked[key] == sends && self.received[key] == self.due[key]
    }

    fn check(&mut self, key: usize, text: &[u8]) -> Result<(), String> {
        let bad = |why: &str| format!("bad delivery ({why}): {}", String::from_utf8_lossy(text));
        let hex = |bytes: Option<&[u8]>| {
            bytes
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|t| u64::from_str_radix(t, 16).ok())
        };
        let sender = hex(text.get(0..8)).ok_or_else(|| bad("no sender"))? as usize;
        let index = hex(text.get(9..25)).ok_or_else(|| bad("no index"))?;
        if sender >= self.senders || sender == key || sender % self.rooms != key % self.rooms {
            return Err(bad("from a client not in the room"));
        }
        let clients = self.clients();
        let next = &mut self.next[key * clients + sender];
        if index != *next {
            return Err(bad(&format!("expected message {next} of this sender")));
        }
        *next += 1;
        Chat::text(&mut self.text, sender, index);
        if text != self.text.as_slice() {
            return Err(bad("text changed in transit"));
        }
        self.received[key] += 1;
        if self.received[key] > self.due[key] {
            return Err(bad("more deliveries than messages sent"));
        }
        Ok(())
    }
}

impl Load for Chat {
    fn start(&mut self, conns: &mut [Conn]) {
        self.target += self.per_batch;
        self.finished = 0;
        let clients = self.clients();
        for key in 0..clients {
            // Senders in this client's room, other than itself.
            let room = key % self.rooms;
            let senders = (0..self.senders)
                .filter(|&s| s % self.rooms == room && s != key)
                .count() as u64;
            self.due[key] += senders * self.per_batch;
        }
        for (key, conn) in conns.iter_mut().enumerate().take(self.senders) {
            for _ in 0..self.in_flight.min(self.per_batch) {
                self.send_next(key, conn);
            }
        }
        // A client with nothing to send or get in a batch is finished from its start.
        self.finished = (0..clients).filter(|&key| self.is_finished(key)).count();
    }

    fn take(&mut self, key: usize, conn: &mut Conn) -> Result<(), String> {
        let was_finished = self.is_finished(key);
        let rbuf = std::mem::take(&mut conn.rbuf);
        let mut used = 0;
        while let Some(nl) = memchr::memchr(b'\n', &rbuf[used..]) {
            let line = &rbuf[used..used + nl];
            used += nl + 1;
            match classify(line) {
                Line::Ok => {
                    if self.acked[key] >= self.sent[key] {
                        return Err("an answer to a message not sent".to_owned());
                    }
                    self.acked[key] += 1;
                    if self.sent[key] < self.target {
                        self.send_next(key, conn);
                    }
                }
                Line::Message(text) => self.check(key, text)?,
                Line::Other => {}
                Line::Bad => return Err(format!("{}", String::from_utf8_lossy(line))),
            }
        }
        conn.rbuf = rbuf;
        conn.rbuf.drain(..used);
        if !was_finished && self.is_finished(key) {
            self.finished += 1;
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.finished == self.clients()
    }

    fn progress(&self) -> String {
        let acked: u64 = self.acked.iter().sum();
        let received: u64 = self.received.iter().sum();
        let due: u64 = self.due.iter().sum();
        format!(
            "{acked} of {} sends answered, {received} of {due} deliveries",
            self.target * self.senders as u64
        )
    }
}
