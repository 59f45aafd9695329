//! Heavy soak of a running parlor server on this machine: thousands of connections for
//! a fixed time, chat traffic mixed with faults, then checks that nothing acknowledged
//! was lost. `benches/soak.sh` builds the release binary, starts it, runs this against
//! it and reads the server's log; by hand:
//!
//! ```text
//! parlor serve --addr 127.0.0.1:7979 --in-memory --bcrypt-cost 4 --max-outbound 262144 &
//! cargo run --release --example soak -- --addr 127.0.0.1:7979 --secs 60 --server-pid $!
//! ```
//!
//! The mix, all at once for `--secs`:
//! - chat connections (most of `--conns`), spread over `--drivers` threads that poll
//!   them; together they send `--rate` messages per second to the rooms, record each
//!   acknowledged (room, seq, text), and read every event they get;
//! - `--slow` slow readers at a time: pipelined `history` requests, never a byte read;
//!   each is checked after a few seconds for having been cut off by the server;
//! - abrupt disconnects: half a frame then gone, a request then gone before its
//!   answer, a connect then gone;
//! - garbage: random binary lines and invalid UTF-8, then a ping that must be answered
//!   on the same connection; now and then a TLS handshake byte on the plain port;
//! - over-long lines (over `--max-frame`), answered `frame_too_large` before the next
//!   request is served, or abandoned half-way;
//! - clients that keep reconnecting: `resume` (sometimes `login`) on a new connection,
//!   one message, then `quit` or just gone.
//!
//! Then: a fresh client's ping must be answered; every room's history is paged with
//! `after` and every acknowledged message must be there, once (`lost` counts those
//! missing); with `--server-pid`, the server's resident memory before, at its peak and
//! after. Exits 1 if anything was lost or any check failed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use argh::FromArgs;
use parlor::client::HistoryQuery;
use parlor::{Client, ClientError, ErrorCode};
use polling::{Event, Events, PollMode, Poller};
use serde_json::{Value, json};

/// Soak a parlor server on this machine with many connections and injected faults.
#[derive(FromArgs)]
struct Args {
    /// server address; loopback only (default 127.0.0.1:7979)
    #[argh(option, default = "String::from(\"127.0.0.1:7979\")")]
    addr: String,
    /// connections open at once, all kinds together (default 2000)
    #[argh(option, default = "2000")]
    conns: usize,
    /// seconds of load (default 60)
    #[argh(option, default = "60")]
    secs: u64,
    /// messages per second sent by all chat connections together (default 200)
    #[argh(option, default = "200")]
    rate: u32,
    /// rooms (default 20)
    #[argh(option, default = "20")]
    rooms: usize,
    /// user accounts the chat connections share, each in two rooms (default 100)
    #[argh(option, default = "100")]
    users: usize,
    /// slow readers open at a time (default 50)
    #[argh(option, default = "50")]
    slow: usize,
    /// threads that drive the chat connections (default 2)
    #[argh(option, default = "2")]
    drivers: usize,
    /// the server's --max-frame, for over-long lines (default 65536)
    #[argh(option, default = "65536")]
    max_frame: usize,
    /// the server's process id, to report its resident memory
    #[argh(option)]
    server_pid: Option<u32>,
}

const PASSWORD: &str = "correct horse";
/// Connections the fault threads hold at once (one each), counted in `--conns`.
const FAULT_THREADS: usize = 6;
/// Messages put in the first room before the load, so a `history` answer is large.
const SEED_MESSAGES: usize = 500;
/// `history` requests each slow reader pipelines.
const SLOW_REQUESTS: usize = 40;
/// How long a slow reader is left alone before it is checked.
const SLOW_HOLD: Duration = Duration::from_secs(3);
/// Requests a chat connection may have unanswered.
const IN_FLIGHT: usize = 8;
/// How long answers still due are waited for once the load stops.
const DRAIN: Duration = Duration::from_secs(10);
/// Timeout of every blocking read or write of the fault threads and the checks.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Anomalies printed in full; the rest are only counted.
const ANOMALIES_SHOWN: usize = 20;

/// Connections the driver holds now, and the most it held at once.
static OPEN: AtomicUsize = AtomicUsize::new(0);
static PEAK_OPEN: AtomicUsize = AtomicUsize::new(0);
static OPENED: AtomicU64 = AtomicU64::new(0);

/// Counts one open connection while it lives.
struct Open;

impl Open {
    fn new() -> Open {
        let now = OPEN.fetch_add(1, Ordering::Relaxed) + 1;
        PEAK_OPEN.fetch_max(now, Ordering::Relaxed);
        OPENED.fetch_add(1, Ordering::Relaxed);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A small deterministic generator (xorshift64*): varied bytes and choices, no extra
/// dependency.
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
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Faults injected, by kind.
#[derive(Default)]
struct Faults {
    half_frames: AtomicU64,
    mid_conversation_drops: AtomicU64,
    instant_drops: AtomicU64,
    garbage_lines: AtomicU64,
    tls_on_plain: AtomicU64,
    oversize_lines: AtomicU64,
    oversize_abandoned: AtomicU64,
    slow_readers: AtomicU64,
    slow_readers_checked: AtomicU64,
    slow_readers_cut: AtomicU64,
    slow_readers_told: AtomicU64,
    reconnects: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A message the server acknowledged.
struct Acked {
    room: usize,
    seq: u64,
    text: String,
}

/// What every thread shares.
struct Shared {
    addr: SocketAddr,
    until: Instant,
    max_frame: usize,
    rooms: Vec<String>,
    /// User names, and a session token for each.
    users: Vec<String>,
    sessions: Vec<String>,
    faults: Faults,
    acked: Mutex<Vec<Acked>>,
    anomalies: AtomicU64,
    /// Set when the load must stop early (the server went away).
    abort: AtomicBool,
}

impl Shared {
    fn running(&self) -> bool {
        Instant::now() < self.until && !self.abort.load(Ordering::Relaxed)
    }

    fn ack(&self, acked: Vec<Acked>) {
        self.acked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(acked);
    }

    /// Something the server did that it should not have: printed (the first few) and
    /// counted; any makes the run fail.
    fn anomaly(&self, what: impl AsRef<str>) {
        let n = self.anomalies.fetch_add(1, Ordering::Relaxed);
        if n < ANOMALIES_SHOWN as u64 {
            eprintln!("soak: anomaly: {}", what.as_ref());
        }
    }

    /// The two rooms user `user` is in.
    fn rooms_of(&self, user: usize) -> [usize; 2] {
        let n = self.rooms.len();
        [user % n, (user * 7 + 3) % n]
    }
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("soak: FAILED");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resident memory of process `pid` in KiB, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(args: &Args) -> Result<bool, String> {
    let addr: SocketAddr = args
        .addr
        .parse()
        .map_err(|e| format!("--addr {}: {e}", args.addr))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--addr {addr}: this load is for a server on this machine"
        ));
    }
    if args.rooms == 0 || args.users == 0 || args.drivers == 0 {
        return Err("--rooms, --users and --drivers must be at least 1".to_owned());
    }
    let chat_conns = args.conns.saturating_sub(args.slow + FAULT_THREADS);
    let rss_before = args.server_pid.and_then(rss_kib);

    let setup_started = Instant::now();
    let (users, sessions, checker) = setup(addr, args)?;
    let mut shared = Shared {
        addr,
        until: Instant::now(),
        max_frame: args.max_frame,
        rooms: (0..args.rooms).map(|r| format!("soak-r{r}")).collect(),
        users,
        sessions,
        faults: Faults::default(),
        acked: Mutex::new(Vec::new()),
        anomalies: AtomicU64::new(0),
        abort: AtomicBool::new(false),
    };
    seed(&mut shared)?;
    println!(
        "soak: setup {:.1} s ({} users, {} rooms, {} seed messages)",
        setup_started.elapsed().as_secs_f64(),
        shared.users.len(),
        shared.rooms.len(),
        SEED_MESSAGES
    );

    let started = Instant::now();
    shared.until = started + Duration::from_secs(args.secs);
    let peak_rss = AtomicU64::new(rss_before.unwrap_or(0));
    let monitor_done = AtomicBool::new(false);
    let drivers = thread::scope(|s| {
        let shared = &shared;
        if let Some(pid) = args.server_pid {
            let (peak_rss, done) = (&peak_rss, &monitor_done);
            s.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        peak_rss.fetch_max(kib, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(250));
                }
            });
        }
        s.spawn(move || slow_readers(shared, args.slow));
        for who in 0..2 {
            s.spawn(move || disconnector(shared, who));
            s.spawn(move || reconnector(shared, who));
        }
        s.spawn(move || garbage(shared));
        s.spawn(move || oversize(shared));
        let per_driver = args.rate as f64 / args.drivers as f64;
        let handles: Vec<_> = (0..args.drivers)
            .map(|d| {
                let keys: Vec<usize> = (d..chat_conns).step_by(args.drivers).collect();
                s.spawn(move || drive_chat(shared, d, &keys, per_driver))
            })
            .collect();
        let stats: Vec<DriverStats> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        // The fault threads stop at `until` by themselves; the monitor when told.
        monitor_done.store(true, Ordering::Relaxed);
        stats
    });
    let ran = started.elapsed();

    let mut total = DriverStats::default();
    for d in drivers {
        total.add(d);
    }
    let verdict = check(&shared, &checker)?;
    thread::sleep(Duration::from_secs(2));
    let rss_after = args.server_pid.and_then(rss_kib);

    let f = &shared.faults;
    let acked = shared
        .acked
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len();
    println!("soak: ran {:.1} s against {addr}", ran.as_secs_f64());
    println!(
        "connections: {} at most open at once ({} chat, {} slow readers, {} fault threads); \
         {} opened in all",
        PEAK_OPEN.load(Ordering::Relaxed),
        chat_conns,
        args.slow,
        FAULT_THREADS,
        OPENED.load(Ordering::Relaxed)
    );
    println!(
        "messages: {} sent by chat connections, {} acknowledged in all (with seeds and \
         reconnects), {} events delivered to chat connections, refused by code: {:?}",
        total.sent, acked, total.events, total.refused
    );
    println!(
        "faults injected: half frames {}, mid-conversation drops {}, instant drops {}, \
         garbage lines {}, TLS bytes on the plain port {}, oversize lines {} (+{} \
         abandoned), slow readers {} ({} checked: cut off {}, told slow_consumer {}), \
         reconnects {}",
        count(&f.half_frames),
        count(&f.mid_conversation_drops),
        count(&f.instant_drops),
        count(&f.garbage_lines),
        count(&f.tls_on_plain),
        count(&f.oversize_lines),
        count(&f.oversize_abandoned),
        count(&f.slow_readers),
        count(&f.slow_readers_checked),
        count(&f.slow_readers_cut),
        count(&f.slow_readers_told),
        count(&f.reconnects),
    );
    println!(
        "chat connections closed by the server: {}; anomalies: {}",
        total.closed,
        count(&shared.anomalies)
    );
    println!(
        "lost = {} (acknowledged, missing from history); duplicate or out-of-order seqs: {}; \
         gaps: {}; stored {} messages; fresh client's ping answered: {}",
        verdict.lost, verdict.disorder, verdict.gaps, verdict.stored, verdict.ping
    );
    let kib = |v: Option<u64>| v.map_or("?".to_owned(), |k| format!("{k} KiB"));
    let peak = args.server_pid.map(|_| peak_rss.load(Ordering::Relaxed));
    println!(
        "server RSS: before {}, peak {}, after {}",
        kib(rss_before),
        kib(peak),
        kib(rss_after)
    );
    let ok = verdict.lost == 0
        && verdict.disorder == 0
        && verdict.ping
        && total.closed == 0
        && count(&shared.anomalies) == 0
        && !shared.abort.load(Ordering::Relaxed);
    Ok(ok)
}

/// Signs up the users (and a checker in every room), logs each in once for a session
/// token the connections `resume` with, and puts each user in its two rooms.
fn setup(addr: SocketAddr, args: &Args) -> Result<(Vec<String>, Vec<String>, String), String> {
    let rooms: Vec<String> = (0..args.rooms).map(|r| format!("soak-r{r}")).collect();
    let mut names = Vec::new();
    let mut sessions = Vec::new();
    let mut checker = String::new();
    for u in 0..=args.users {
        let (name, member_of) = if u == args.users {
            ("soak-check".to_owned(), (0..args.rooms).collect::<Vec<_>>())
        } else {
            let n = args.rooms;
            (format!("soak-u{u}"), vec![u % n, (u * 7 + 3) % n])
        };
        let failed = |e: ClientError| format!("setting up {name}: {e}");
        let mut client = connect(addr).map_err(failed)?;
        match client.signup(&name, PASSWORD) {
            Err(e) if e.code() != Some(&ErrorCode::UserExists) => return Err(failed(e)),
            _ => {}
        }
        let session = client.login(&name, PASSWORD).map_err(failed)?;
        for r in member_of {
            match client.join(&rooms[r]) {
                Err(e) if e.code() == Some(&ErrorCode::NoSuchRoom) => {
                    client.create(&rooms[r], None).map_err(failed)?;
                }
                other => drop(other.map_err(failed)?),
            }
        }
        if u == args.users {
            checker = session;
        } else {
            names.push(name);
            sessions.push(session);
        }
    }
    Ok((names, sessions, checker))
}

/// Fills the first room, so that `history` answers are large.
fn seed(shared: &mut Shared) -> Result<(), String> {
    let room = shared.rooms_of(0)[0];
    let mut client = connect(shared.addr).map_err(|e| format!("seeding: {e}"))?;
    client
        .resume(&shared.sessions[0])
        .map_err(|e| format!("seeding: {e}"))?;
    let filler = "s".repeat(100);
    let mut acked = Vec::new();
    for n in 0..SEED_MESSAGES {
        let text = format!("seed {n} {filler}");
        let sent = client
            .send(&shared.rooms[room], &text)
            .map_err(|e| format!("seeding: {e}"))?;
        acked.push(Acked {
            room,
            seq: sent.seq,
            text,
        });
    }
    shared.ack(acked);
    Ok(())
}

fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    let mut client = Client::from_stream(stream)?;
    client.set_timeout(IO_TIMEOUT);
    Ok(client)
}

/// What one chat driver thread saw.
#[derive(Default)]
struct DriverStats {
    sent: u64,
    events: u64,
    /// Chat connections the server closed (or that failed): none should be.
    closed: u64,
    /// `ok: false` answers, by error code.
    refused: BTreeMap<String, u64>,
}

impl DriverStats {
    fn add(&mut self, other: DriverStats) {
        self.sent += other.sent;
        self.events += other.events;
        self.closed += other.closed;
        for (code, n) in other.refused {
            *self.refused.entry(code).or_default() += n;
        }
    }
}

/// A request sent on a chat connection and not answered yet.
enum Pending {
    Resume,
    Ping,
    Send { room: usize, text: String },
}

/// One polled chat connection.
struct ChatConn {
    stream: TcpStream,
    _open: Open,
    user: usize,
    /// Received bytes not yet a whole line.
    inbuf: Vec<u8>,
    /// Bytes the socket did not take yet.
    outbuf: Vec<u8>,
    /// Answers due, in request order (the server answers in order).
    waiting: VecDeque<Pending>,
    alive: bool,
    last_sent: Instant,
    next_id: u64,
}

impl ChatConn {
    /// Queues a request line, writing what the socket takes now.
    fn request(&mut self, op: &str, mut fields: Value, pending: Pending) -> io::Result<()> {
        fields["id"] = Value::from(self.next_id);
        fields["op"] = Value::from(op);
        self.next_id += 1;
        let mut line = fields.to_string().into_bytes();
        line.push(b'\n');
        self.outbuf.extend_from_slice(&line);
        self.waiting.push_back(pending);
        self.last_sent = Instant::now();
        self.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => drop(self.outbuf.drain(..n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Opens this driver's chat connections (each logs in with `resume`), then sends its
/// share of the message rate until the end, reading everything, then waits for the
/// answers still due.
fn drive_chat(shared: &Shared, driver: usize, keys: &[usize], rate: f64) -> DriverStats {
    let mut stats = DriverStats::default();
    let poller = match Poller::new() {
        Ok(poller) => poller,
        Err(e) => {
            shared.anomaly(format!("driver {driver}: cannot create a poller: {e}"));
            shared.abort.store(true, Ordering::Relaxed);
            return stats;
        }
    };
    let mut conns: Vec<ChatConn> = Vec::with_capacity(keys.len());
    for &key in keys {
        if !shared.running() {
            break;
        }
        match open_chat(shared, key) {
            Ok(conn) => conns.push(conn),
            Err(e) => {
                shared.anomaly(format!("chat connection {key}: cannot open: {e}"));
                shared.abort.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    let mut added = 0;
    for (i, conn) in conns.iter().enumerate() {
        // SAFETY: every socket added here is deleted below, before `conns` (which owns
        // it) is dropped.
        let result =
            unsafe { poller.add_with_mode(&conn.stream, Event::readable(i), PollMode::Level) };
        if let Err(e) = result {
            shared.anomaly(format!("driver {driver}: cannot poll: {e}"));
            shared.abort.store(true, Ordering::Relaxed);
            break;
        }
        added += 1;
    }
    if added == conns.len() {
        poll_chat(shared, driver, &poller, &mut conns, rate, &mut stats);
    }
    for conn in &conns[..added] {
        let _ = poller.delete(&conn.stream);
    }
    stats
}

fn open_chat(shared: &Shared, key: usize) -> io::Result<ChatConn> {
    let stream = TcpStream::connect_timeout(&shared.addr, IO_TIMEOUT)?;
    let open = Open::new();
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    let user = key % shared.users.len();
    let mut conn = ChatConn {
        stream,
        _open: open,
        user,
        inbuf: Vec::new(),
        outbuf: Vec::new(),
        waiting: VecDeque::new(),
        alive: true,
        last_sent: Instant::now(),
        next_id: 1,
    };
    let session = &shared.sessions[user];
    conn.request("resume", json!({ "session": session }), Pending::Resume)?;
    Ok(conn)
}

fn poll_chat(
    shared: &Shared,
    driver: usize,
    poller: &Poller,
    conns: &mut [ChatConn],
    rate: f64,
    stats: &mut DriverStats,
) {
    let mut rng = Rng::new(1000 + driver as u64);
    let mut events = Events::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut acked = Vec::new();
    let mut due = 0.0;
    let mut last_tick = Instant::now();
    let mut keepalive = 0;
    let mut drain_until = None;
    loop {
        let now = Instant::now();
        if drain_until.is_none() && !shared.running() {
            drain_until = Some(now + DRAIN);
        }
        if let Some(until) = drain_until {
            let waiting = conns.iter().any(|c| c.alive && !c.waiting.is_empty());
            if !waiting || now >= until {
                if waiting {
                    shared.anomaly(format!(
                        "driver {driver}: answers still due after the drain"
                    ));
                }
                break;
            }
        } else if !conns.is_empty() {
            // Sends due since the last tick, each from a random connection with room
            // in its window.
            due += rate * now.duration_since(last_tick).as_secs_f64();
            while due >= 1.0 {
                due -= 1.0;
                let c = rng.below(conns.len());
                let conn = &mut conns[c];
                if !conn.alive || conn.waiting.len() >= IN_FLIGHT {
                    continue;
                }
                let room = shared.rooms_of(conn.user)[rng.below(2)];
                let text = format!("d{driver} c{c} n{}", conn.next_id);
                let fields = json!({ "room": shared.rooms[room], "text": text });
                let sent = conn.request("send", fields, Pending::Send { room, text });
                stats.sent += 1;
                if let Err(e) = sent {
                    fail(shared, conn, stats, format!("writing: {e}"));
                }
            }
            // Only bytes from the client reset the server's idle timer: ping the
            // connections that have been quiet for a minute, a few per tick.
            for _ in 0..conns.len().min(16) {
                keepalive = (keepalive + 1) % conns.len();
                let conn = &mut conns[keepalive];
                if conn.alive
                    && conn.last_sent.elapsed() > Duration::from_secs(60)
                    && let Err(e) = conn.request("ping", Value::Null, Pending::Ping)
                {
                    fail(shared, conn, stats, format!("writing: {e}"));
                }
            }
        }
        last_tick = now;
        for conn in conns.iter_mut().filter(|c| c.alive && !c.outbuf.is_empty()) {
            if let Err(e) = conn.flush() {
                fail(shared, conn, stats, format!("writing: {e}"));
            }
        }
        events.clear();
        match poller.wait(&mut events, Some(Duration::from_millis(10))) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                shared.anomaly(format!("driver {driver}: polling: {e}"));
                break;
            }
        }
        for event in events.iter() {
            let conn = &mut conns[event.key];
            if !conn.alive {
                continue;
            }
            match conn.stream.read(&mut chunk) {
                Ok(0) => fail(shared, conn, stats, "closed by the server".to_owned()),
                Ok(n) => {
                    conn.inbuf.extend_from_slice(&chunk[..n]);
                    take_lines(shared, conn, stats, &mut acked);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => fail(shared, conn, stats, format!("reading: {e}")),
            }
        }
        if acked.len() >= 1024 {
            shared.ack(std::mem::take(&mut acked));
        }
    }
    shared.ack(acked);
}

/// A chat connection that broke: it reads everything, so the server had no reason to
/// close it.
fn fail(shared: &Shared, conn: &mut ChatConn, stats: &mut DriverStats, why: String) {
    conn.alive = false;
    stats.closed += 1;
    shared.anomaly(format!("chat connection of user {}: {why}", conn.user));
}

/// Handles every whole line received on `conn`.
fn take_lines(
    shared: &Shared,
    conn: &mut ChatConn,
    stats: &mut DriverStats,
    acked: &mut Vec<Acked>,
) {
    let mut start = 0;
    while let Some(len) = conn.inbuf[start..].iter().position(|&b| b == b'\n') {
        let line = &conn.inbuf[start..start + len];
        start += len + 1;
        // Events are only counted, so most lines need no parsing: the server writes
        // `"event"` first in an event and `"id"` first in an answer to a request with one.
        if line.starts_with(b"{\"event\":") {
            stats.events += 1;
            if line.starts_with(b"{\"event\":\"closing\"") {
                let what = String::from_utf8_lossy(line);
                shared.anomaly(format!("chat connection of user {}: {what}", conn.user));
            }
            continue;
        }
        let Some(pending) = conn.waiting.pop_front() else {
            let what = String::from_utf8_lossy(line);
            shared.anomaly(format!("an answer nobody asked for: {what}"));
            continue;
        };
        let answer: Value = match serde_json::from_slice(line) {
            Ok(answer) => answer,
            Err(e) => {
                shared.anomaly(format!("an answer that is not JSON ({e})"));
                continue;
            }
        };
        if answer["ok"] != Value::Bool(true) {
            let code = answer["error"].as_str().unwrap_or("(no code)").to_owned();
            if matches!(pending, Pending::Resume) {
                shared.anomaly(format!("resume refused: {code}"));
            }
            *stats.refused.entry(code).or_default() += 1;
            continue;
        }
        if let Pending::Send { room, text } = pending {
            match answer["seq"].as_u64() {
                Some(seq) => acked.push(Acked { room, seq, text }),
                None => shared.anomaly(format!("a send answer without seq: {answer}")),
            }
        }
    }
    conn.inbuf.drain(..start);
}

/// A raw connection for what `Client` would never send.
fn raw(shared: &Shared) -> io::Result<(TcpStream, Open)> {
    let stream = TcpStream::connect_timeout(&shared.addr, IO_TIMEOUT)?;
    let open = Open::new();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok((stream, open))
}

/// Reads lines until one contains `needle`; returns every line read, that one last.
fn lines_until(stream: &mut TcpStream, needle: &str) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&buf[..pos]).into_owned();
            buf.drain(..=pos);
            let found = line.contains(needle);
            lines.push(line);
            if found {
                return Ok(lines);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no answer with {needle} in {IO_TIMEOUT:?}: {lines:?}"
            ));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("closed before an answer with {needle}: {lines:?}")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
}

/// Reads until the server closes the connection, for at most `within`. Returns whether
/// it did, and the last bytes received.
fn until_closed(stream: &mut TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let deadline = Instant::now() + within;
    let mut tail = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
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

/// Keeps `count` slow readers open: each pipelines big `history` requests and reads
/// nothing; after `SLOW_HOLD` it is checked for having been cut off, and replaced.
fn slow_readers(shared: &Shared, count: usize) {
    let user = 0;
    let room = &shared.rooms[shared.rooms_of(user)[0]];
    let mut requests = format!(
        "{{\"op\":\"resume\",\"session\":\"{}\"}}\n",
        shared.sessions[user]
    );
    for _ in 0..SLOW_REQUESTS {
        requests.push_str(&format!(
            "{{\"op\":\"history\",\"room\":\"{room}\",\"limit\":500}}\n"
        ));
    }
    let mut pool: VecDeque<(TcpStream, Open, Instant)> = VecDeque::new();
    while shared.running() {
        while pool.len() < count && shared.running() {
            match raw(shared) {
                Ok((mut stream, open)) => {
                    // Once the server has cut it off, the rest of the write fails.
                    let _ = stream.write_all(requests.as_bytes());
                    bump(&shared.faults.slow_readers);
                    pool.push_back((stream, open, Instant::now()));
                }
                Err(e) => {
                    shared.anomaly(format!("slow reader: cannot connect: {e}"));
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
        match pool.front() {
            Some((_, _, opened)) if opened.elapsed() >= SLOW_HOLD => {
                if let Some((mut stream, _open, _)) = pool.pop_front() {
                    let (closed, tail) = until_closed(&mut stream, Duration::from_secs(2));
                    bump(&shared.faults.slow_readers_checked);
                    if closed {
                        bump(&shared.faults.slow_readers_cut);
                    }
                    if String::from_utf8_lossy(&tail).contains("\"slow_consumer\"") {
                        bump(&shared.faults.slow_readers_told);
                    }
                }
            }
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Connections that go away at a bad moment.
fn disconnector(shared: &Shared, who: usize) {
    let mut rng = Rng::new(200 + who as u64);
    let user = 1 % shared.users.len();
    while shared.running() {
        let result = match rng.below(4) {
            0 => raw(shared).and_then(|(mut stream, _open)| {
                stream.write_all(b"{\"op\":\"send\",\"room\":\"soak-r1\",\"te")?;
                bump(&shared.faults.half_frames);
                Ok(())
            }),
            1 => {
                // Logged in, a request on its way, gone before its answer.
                let _open = Open::new();
                connect(shared.addr)
                    .and_then(|mut client| {
                        client.resume(&shared.sessions[user])?;
                        let room = &shared.rooms[shared.rooms_of(user)[0]];
                        client.send_request("send", json!({"room": room, "text": "gone"}))
                    })
                    .map(|_| bump(&shared.faults.mid_conversation_drops))
                    .map_err(io::Error::other)
            }
            2 => raw(shared).and_then(|(mut stream, _open)| {
                stream.write_all(b"{\"op\":\"login\",\"user\":\"soak-u0\",\"pass")?;
                stream.shutdown(Shutdown::Write)?;
                bump(&shared.faults.half_frames);
                Ok(())
            }),
            _ => raw(shared).map(|_| bump(&shared.faults.instant_drops)),
        };
        if let Err(e) = result {
            shared.anomaly(format!("disconnector: {e}"));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Random binary lines, then a ping that must be answered on the same connection;
/// now and then a TLS handshake byte first, which the plain port must close.
fn garbage(shared: &Shared) {
    let mut rng = Rng::new(300);
    while shared.running() {
        let tls = rng.below(20) == 0;
        let result = raw(shared)
            .map_err(|e| e.to_string())
            .and_then(|(mut stream, _open)| {
                if tls {
                    stream
                        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, b'\n'])
                        .map_err(|e| e.to_string())?;
                    if !until_closed(&mut stream, IO_TIMEOUT).0 {
                        return Err("a TLS handshake byte did not close the connection".to_owned());
                    }
                    bump(&shared.faults.tls_on_plain);
                    return Ok(());
                }
                let mut bytes = Vec::new();
                for _ in 0..1 + rng.below(10) {
                    let len = 1 + rng.below(200);
                    bytes.extend((0..len).map(|_| rng.next() as u8));
                    bytes.push(b'\n');
                }
                bytes.extend_from_slice(b"\xff\xfe{\"op\":\"ping\"}\n");
                // A first byte of 0x16 would be taken for TLS: the case above.
                if bytes[0] == 0x16 {
                    bytes[0] = b'!';
                }
                bytes.extend_from_slice(b"{\"id\":\"probe\",\"op\":\"ping\"}\n");
                stream.write_all(&bytes).map_err(|e| e.to_string())?;
                let answers = lines_until(&mut stream, "\"probe\"")?;
                if !answers.last().is_some_and(|a| a.contains("\"pong\":true")) {
                    return Err(format!("the ping after garbage got {answers:?}"));
                }
                let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64 - 1;
                shared
                    .faults
                    .garbage_lines
                    .fetch_add(lines, Ordering::Relaxed);
                Ok(())
            });
        if let Err(e) = result {
            shared.anomaly(format!("garbage: {e}"));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Lines over `max_frame`, sent in pieces: answered `frame_too_large`, then the next
/// request is served. Every third is abandoned half-way (a disconnect mid-frame).
fn oversize(shared: &Shared) {
    let mut rng = Rng::new(400);
    let piece = vec![b'x'; 16 << 10];
    let mut n = 0u64;
    while shared.running() {
        n += 1;
        let len = shared.max_frame + rng.below(shared.max_frame);
        let result = raw(shared)
            .map_err(|e| e.to_string())
            .and_then(|(mut stream, _open)| {
                let mut write = |bytes: &[u8]| stream.write_all(bytes).map_err(|e| e.to_string());
                write(b"{\"op\":\"echo\",\"data\":\"")?;
                let mut sent = 0;
                while sent < len {
                    let take = piece.len().min(len - sent);
                    write(&piece[..take])?;
                    sent += take;
                }
                if n.is_multiple_of(3) {
                    bump(&shared.faults.oversize_abandoned);
                    return Ok(());
                }
                write(b"\"}\n{\"id\":\"probe\",\"op\":\"ping\"}\n")?;
                let answers = lines_until(&mut stream, "\"probe\"")?;
                if answers.len() != 2 || !answers[0].contains("\"frame_too_large\"") {
                    return Err(format!("an over-long line got {answers:?}"));
                }
                bump(&shared.faults.oversize_lines);
                Ok(())
            });
        if let Err(e) = result {
            shared.anomaly(format!("oversize: {e}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A user who keeps coming back on new connections: mostly `resume`, every fifth time
/// a fresh `login`; one message each time, then `quit` or just gone.
fn reconnector(shared: &Shared, who: usize) {
    let mut rng = Rng::new(500 + who as u64);
    let user = (2 + who) % shared.users.len();
    let name = &shared.users[user];
    let mut session = shared.sessions[user].clone();
    let mut n = 0u64;
    while shared.running() {
        n += 1;
        let _open = Open::new();
        let result = connect(shared.addr).and_then(|mut client| {
            if n.is_multiple_of(5) {
                session = client.login(name, PASSWORD)?;
            } else {
                client.resume(&session)?;
            }
            let room = shared.rooms_of(user)[rng.below(2)];
            let text = format!("{name} visit {n}");
            match client.send(&shared.rooms[room], &text) {
                Ok(sent) => shared.ack(vec![Acked {
                    room,
                    seq: sent.seq,
                    text,
                }]),
                Err(e) if e.code() == Some(&ErrorCode::RateLimited) => {}
                Err(e) => return Err(e),
            }
            if rng.below(2) == 0 {
                client.quit()?;
            }
            bump(&shared.faults.reconnects);
            Ok(())
        });
        if let Err(e) = result {
            shared.anomaly(format!("reconnector {name}: {e}"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// What the checks after the load found.
struct Verdict {
    ping: bool,
    stored: usize,
    lost: usize,
    disorder: usize,
    gaps: usize,
}

/// Pings with a fresh client, then pages through every room's history (as the checker,
/// a member of every room) and looks for each acknowledged message.
fn check(shared: &Shared, checker: &str) -> Result<Verdict, String> {
    let ping = connect(shared.addr).and_then(|mut c| c.ping()).is_ok();
    let mut client = connect(shared.addr).map_err(|e| format!("checking: {e}"))?;
    client
        .resume(checker)
        .map_err(|e| format!("checking: {e}"))?;
    let mut stored: HashMap<(usize, u64), String> = HashMap::new();
    let (mut disorder, mut gaps) = (0, 0);
    for (r, room) in shared.rooms.iter().enumerate() {
        let mut after = 0;
        loop {
            let query = HistoryQuery {
                after: Some(after),
                limit: Some(500),
                ..HistoryQuery::default()
            };
            let page = client
                .history(room, query)
                .map_err(|e| format!("reading the history of {room}: {e}"))?;
            if page.is_empty() {
                break;
            }
            for m in page {
                if m.seq <= after {
                    disorder += 1;
                } else if m.seq != after + 1 {
                    gaps += 1;
                }
                after = after.max(m.seq);
                if stored.insert((r, m.seq), m.text).is_some() {
                    disorder += 1;
                }
            }
        }
    }
    let acked = shared.acked.lock().unwrap_or_else(PoisonError::into_inner);
    let lost = acked
        .iter()
        .filter(|a| stored.get(&(a.room, a.seq)) != Some(&a.text))
        .count();
    Ok(Verdict {
        ping,
        stored: stored.len(),
        lost,
        disorder,
        gaps,
    })
}
