//! Load generator for a parlor server on this machine.
//!
//! `--mode echo` (against `parlor serve --echo`): every connection streams `--messages`
//! messages of `--size` bytes with at most `--in-flight` unanswered, checks the echoed
//! stream byte for byte, and measures round-trip latency.
//!
//! `--mode chat` (against `parlor serve`): every connection signs up and logs in a
//! fresh user, joins room `i % --rooms`, then sends `--messages` messages; every other
//! member of the room must receive each one exactly once, in order. It measures
//! fan-out deliveries per second and send-to-delivery latency (each text carries its
//! send time).
//!
//! `--mode fanout` (against `parlor serve`) and `--mode redis` (against `redis-server`)
//! run one and the same fan-out load through the same code: `--conns` K subscribers
//! (room members that only listen; SUBSCRIBE connections to one channel), and one
//! publisher that sends `--messages` payloads of `--size` bytes (`send` to the room;
//! PUBLISH) with at most `--in-flight` unanswered, as fast as that allows or paced at
//! `--rate` messages per second. Each payload carries its send time; `--readers`
//! threads read all K subscriber sockets (nonblocking, level-triggered polling), check
//! that every subscriber gets every payload once, in order and intact, and measure
//! send-to-delivery latency. The redis side speaks minimal RESP over a `TcpStream`.
//!
//! `--server-pid PID` adds the server process's CPU time (utime + stime from
//! `/proc/PID/stat`) over the load alone, per message (echo) or delivery.
//!
//! Exits 0 only if everything expected came back within `--max-secs`; the last line
//! ends in ` ok` or starts with `multi_client: FAILED`.
//!
//! ```text
//! cargo run --release --example multi_client -- --mode echo --conns 100 --messages 10000
//! cargo run --release --example multi_client -- --mode chat --conns 50 --rooms 5
//! cargo run --release --example multi_client -- --mode fanout --conns 100 --size 128
//! cargo run --release --example multi_client -- --mode redis --addr 127.0.0.1:6379 \
//!     --conns 100 --size 128 --rate 5000
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argh::FromArgs;
use hdrhistogram::Histogram;
use parlor::client::Event;
use parlor::{Client, ClientError, ErrorCode};
use serde_json::json;

/// Load-test a parlor server on this machine (echo or chat mode).
#[derive(FromArgs)]
struct Args {
    /// server address; loopback only (default 127.0.0.1:7878)
    #[argh(option, default = "String::from(\"127.0.0.1:7878\")")]
    addr: String,

    /// what to exercise: echo (a server run with --echo), chat, fanout (one publisher
    /// to a parlor room) or redis (the same fan-out over redis pub/sub) (default echo)
    #[argh(option, default = "LoadMode::Echo", from_str_fn(parse_mode))]
    mode: LoadMode,

    /// concurrent connections; in fanout and redis modes, subscribers, besides the
    /// one publisher (default 10)
    #[argh(option, short = 'n', default = "10")]
    conns: usize,

    /// messages each connection sends (default 1000)
    #[argh(option, short = 'm', default = "1000")]
    messages: u64,

    /// bytes per message (default 64; in chat mode at least 43, the header's length)
    #[argh(option, short = 's', default = "64")]
    size: usize,

    /// most messages a connection has sent but not had answered (default 8)
    #[argh(option, short = 'd', default = "8")]
    in_flight: u64,

    /// rooms, chat mode only; connection i is in room i % rooms (default 4)
    #[argh(option, short = 'k', default = "4")]
    rooms: usize,

    /// chat mode: how many connections send (the first S; the others only listen),
    /// e.g. 1 for the fan-out of one sender to a room (default: all)
    #[argh(option)]
    senders: Option<usize>,

    /// fanout and redis modes: messages per second the publisher sends, paced
    /// (default: as fast as --in-flight allows)
    #[argh(option)]
    rate: Option<f64>,

    /// fanout and redis modes: threads reading the subscribers' sockets (default 1)
    #[argh(option, default = "1")]
    readers: usize,

    /// pid of the server process (on this machine): report its CPU time over the
    /// load, per message (echo) or delivery (the other modes)
    #[argh(option)]
    server_pid: Option<u32>,

    /// give up, and fail, after this many seconds (default 60)
    #[argh(option, default = "60")]
    max_secs: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LoadMode {
    Echo,
    Chat,
    Fanout,
    Redis,
}

fn parse_mode(value: &str) -> Result<LoadMode, String> {
    match value {
        "echo" => Ok(LoadMode::Echo),
        "chat" => Ok(LoadMode::Chat),
        "fanout" => Ok(LoadMode::Fanout),
        "redis" => Ok(LoadMode::Redis),
        _ => Err(format!(
            "unknown mode `{value}`: expected echo, chat, fanout or redis"
        )),
    }
}

/// Every account this tool creates has this password; the names are what is unique.
const PASSWORD: &str = "multi-client-load";

/// Length of the chat text header: send time, sender and index, fixed-width hex.
const HEADER_LEN: usize = 16 + 1 + 8 + 1 + 16 + 1;

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("multi_client: FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let addr = loopback_addr(&args.addr)?;
    if args.conns == 0 || args.size == 0 || args.in_flight == 0 || args.rooms == 0 {
        return Err("--conns, --size, --in-flight and --rooms must be at least 1".to_owned());
    }
    if args.mode == LoadMode::Chat && args.size < HEADER_LEN {
        return Err(format!("--size must be at least {HEADER_LEN} in chat mode"));
    }
    match args.mode {
        LoadMode::Fanout => return fanout::run(args, addr, fanout::Proto::Parlor),
        LoadMode::Redis => return fanout::run(args, addr, fanout::Proto::Redis),
        LoadMode::Echo | LoadMode::Chat => {}
    }
    if args.rate.is_some() {
        return Err("--rate is for the fanout and redis modes".to_owned());
    }
    let cpu_before = args.server_pid.map(server_cpu).transpose()?;
    let start = Instant::now();
    let ctx = Ctx {
        mode: args.mode,
        addr,
        conns: args.conns,
        messages: args.messages,
        size: args.size,
        in_flight: args.in_flight,
        rooms: args.rooms,
        senders: args.senders.unwrap_or(args.conns).min(args.conns),
        start,
        deadline: start + Duration::from_secs(args.max_secs),
        prefix: run_prefix(),
        sockets: Sockets::default(),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        received_bytes: AtomicU64::new(0),
        gate: Gate::new(args.conns, args.server_pid),
    };

    let results: Vec<Result<Histogram<u64>, String>> = thread::scope(|scope| {
        let (done, watch) = mpsc::channel::<()>();
        let ctx = &ctx;
        scope.spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) =
                watch.recv_timeout(ctx.deadline.saturating_duration_since(Instant::now()))
            {
                ctx.abort();
            }
        });
        let workers: Vec<_> = (0..ctx.conns)
            .map(|conn| {
                scope.spawn(move || {
                    let result = match args.mode {
                        LoadMode::Echo => echo_conn(ctx, conn),
                        // (fanout and redis modes went their own way above)
                        _ => chat_conn(ctx, conn),
                    };
                    if result.is_err() {
                        ctx.gate.fail();
                    }
                    result.map_err(|e| format!("connection {conn}: {e}"))
                })
            })
            .collect();
        let results = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("thread panicked".to_owned()))
            })
            .collect();
        drop(done);
        results
    });
    // Chat connections sign up and log in first; only the load after that counts.
    let elapsed = ctx.gate.opened().unwrap_or(start).elapsed();
    let cpu_after = args.server_pid.map(server_cpu).transpose()?;

    let mut latency = new_histogram();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(conn_latency) => {
                // Same bounds on both sides, so adding cannot fail.
                let _ = latency.add(&conn_latency);
            }
            Err(e) => errors.push(e),
        }
    }
    report(&ctx, &latency, elapsed);
    let what = match args.mode {
        LoadMode::Echo => "message",
        _ => "delivery",
    };
    // Chat mode counts from the moment the gate opened, after every login.
    let cpu_before = ctx.gate.cpu_at_open().or(cpu_before);
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        report_cpu(before, after, ctx.received.load(Ordering::SeqCst), what);
    }
    if let Some(first) = errors.first() {
        // After an abort every connection fails with a closed socket; the deadline
        // is the cause worth reporting.
        if ctx.sockets.aborted() {
            return Err(format!(
                "exceeded --max-secs {} ({} of {} connections unfinished)",
                args.max_secs,
                errors.len(),
                args.conns
            ));
        }
        return Err(format!(
            "{} of {} connections failed; first: {first}",
            errors.len(),
            args.conns
        ));
    }
    let expected = ctx.expected_deliveries();
    let received = ctx.received.load(Ordering::SeqCst);
    if received != expected {
        return Err(format!("{received} of {expected} messages came back"));
    }
    let what = match args.mode {
        LoadMode::Echo => "messages",
        _ => "deliveries",
    };
    println!(
        "multi_client: mode={} conns={} {what}={expected} ok",
        mode_name(args.mode),
        args.conns
    );
    Ok(())
}

fn mode_name(mode: LoadMode) -> &'static str {
    match mode {
        LoadMode::Echo => "echo",
        LoadMode::Chat => "chat",
        LoadMode::Fanout => "fanout",
        LoadMode::Redis => "redis",
    }
}

/// CPU time (user + system, all threads) the process `pid` has used so far, from
/// `/proc/PID/stat`.
fn server_cpu(pid: u32) -> Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count the
    // fields after its closing one. utime and stime are fields 14 and 15.
    let rest = stat
        .rfind(')')
        .map(|at| &stat[at + 1..])
        .ok_or_else(|| format!("{path}: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |n: usize| -> Result<u64, String> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: no field {n}"))
    };
    let total = ticks(14)? + ticks(15)?;
    Ok(Duration::from_secs_f64(total as f64 / clock_ticks() as f64))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), 100 if that cannot be run.
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

/// Prints the server's CPU time over the load, per message or delivery, and this
/// process's own CPU time since it started (setup included), for comparison.
fn report_cpu(before: Duration, after: Duration, count: u64, what: &str) {
    let used = after.saturating_sub(before);
    let per = used.as_secs_f64() * 1e9 / count.max(1) as f64;
    let client = server_cpu(std::process::id()).map_or_else(
        |_| String::new(),
        |own| format!("; client cpu {:.3} s in all", own.as_secs_f64()),
    );
    println!(
        "multi_client: server cpu {:.3} s, {per:.0} ns per {what} (tick {} ms){client}",
        used.as_secs_f64(),
        1000 / clock_ticks().max(1),
    );
}

/// Prints totals; latency covers the connections that finished.
fn report(ctx: &Ctx, latency: &Histogram<u64>, elapsed: Duration) {
    let rooms = match ctx.mode {
        LoadMode::Echo => String::new(),
        _ => format!(" rooms={}", ctx.rooms),
    };
    let what = match ctx.mode {
        LoadMode::Echo => "round trip",
        _ => "send to delivery",
    };
    print_totals(
        &format!("mode={} conns={}{rooms}", mode_name(ctx.mode), ctx.conns),
        Totals {
            sent: ctx.sent.load(Ordering::SeqCst),
            received: ctx.received.load(Ordering::SeqCst),
            bytes: ctx.received_bytes.load(Ordering::SeqCst),
            elapsed,
        },
        what,
        latency,
    );
}

/// What a run sent and received, and over how long.
struct Totals {
    sent: u64,
    received: u64,
    bytes: u64,
    elapsed: Duration,
}

/// Prints a run's totals, rates and latency percentiles, in the same lines for every
/// mode: the bench scripts read them.
fn print_totals(head: &str, totals: Totals, what: &str, latency: &Histogram<u64>) {
    let Totals {
        sent,
        received,
        bytes,
        elapsed,
    } = totals;
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!("multi_client: {head} sent={sent} received={received} bytes={bytes} in {secs:.3} s");
    println!(
        "multi_client: {:.0} sent/s, {:.0} received/s, {:.2} MB/s received",
        sent as f64 / secs,
        received as f64 / secs,
        bytes as f64 / secs / 1e6,
    );
    if latency.is_empty() {
        println!("multi_client: {what} latency: no samples");
    } else {
        println!(
            "multi_client: {what} latency us: p50={} p99={} p999={} max={}",
            latency.value_at_quantile(0.5),
            latency.value_at_quantile(0.99),
            latency.value_at_quantile(0.999),
            latency.max(),
        );
    }
}

/// Resolves `addr`, refusing anything but loopback: this tool is for one's own server.
fn loopback_addr(addr: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    match addrs.first() {
        Some(first) if addrs.iter().all(|a| a.ip().is_loopback()) => Ok(*first),
        Some(_) => Err(format!("{addr} is not a loopback address")),
        None => Err(format!("{addr} resolves to nothing")),
    }
}

/// A prefix for user and room names that no earlier run against the same server has
/// used, so reruns do not collide with accounts and rooms that are already there.
fn run_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("mc{:x}x{:x}", std::process::id(), nanos % (1 << 40))
}

/// What every connection thread shares.
struct Ctx {
    mode: LoadMode,
    addr: SocketAddr,
    conns: usize,
    messages: u64,
    size: usize,
    in_flight: u64,
    rooms: usize,
    /// Connections `0..senders` send; the rest only listen.
    senders: usize,
    start: Instant,
    deadline: Instant,
    prefix: String,
    sockets: Sockets,
    /// Messages written (echo) or acknowledged (chat), over all connections.
    sent: AtomicU64,
    /// Echoes or deliveries checked, over all connections.
    received: AtomicU64,
    received_bytes: AtomicU64,
    gate: Gate,
}

/// Every socket a run opens, so that giving up can unblock every read and write in
/// every thread at once (one connection's failure or the deadline ends the run).
#[derive(Default)]
struct Sockets {
    /// Clones of the sockets.
    open: Mutex<Vec<TcpStream>>,
    aborted: AtomicBool,
}

impl Sockets {
    /// Connects to `addr`, giving up at `deadline`, and keeps a clone of the socket.
    fn connect(&self, addr: SocketAddr, deadline: Instant) -> Result<TcpStream, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let stream = TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(1)))
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        // Latency is measured per message: Nagle's delay would be most of it.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
        let clone = stream
            .try_clone()
            .map_err(|e| format!("cannot clone the socket: {e}"))?;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock so a socket cannot slip in after `abort` went through.
        if self.aborted() {
            return Err("aborted".to_owned());
        }
        open.push(clone);
        Ok(stream)
    }

    /// Shuts every socket down, so blocked reads and writes return; later connects fail.
    fn abort(&self) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        self.aborted.store(true, Ordering::SeqCst);
        for socket in open.iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    fn aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }
}

impl Ctx {
    fn connect(&self) -> Result<TcpStream, String> {
        self.sockets.connect(self.addr, self.deadline)
    }

    /// Gives up: every blocked read and write returns, every waiter wakes.
    fn abort(&self) {
        self.sockets.abort();
        self.gate.fail();
    }

    fn room_of(&self, conn: usize) -> usize {
        conn % self.rooms
    }

    fn room_name(&self, room: usize) -> String {
        format!("{}r{room}", self.prefix)
    }

    fn user_name(&self, conn: usize) -> String {
        format!("{}u{conn}", self.prefix)
    }

    /// How many of the first `n` connections are in room `room` (the ones whose
    /// index is `room` modulo the room count).
    fn in_room(&self, room: usize, n: usize) -> u64 {
        (n / self.rooms + usize::from(room < n % self.rooms)) as u64
    }

    /// How many messages connection `conn` sends.
    fn to_send(&self, conn: usize) -> u64 {
        match self.mode {
            LoadMode::Chat if conn >= self.senders => 0,
            _ => self.messages,
        }
    }

    /// Messages the whole run must receive: echoes, or one delivery per message per
    /// other member of the sender's room.
    fn expected_deliveries(&self) -> u64 {
        (0..self.conns).map(|conn| self.expected_for(conn)).sum()
    }

    fn expected_for(&self, conn: usize) -> u64 {
        match self.mode {
            LoadMode::Echo => self.messages,
            _ => {
                let senders = self.in_room(self.room_of(conn), self.senders);
                self.messages * (senders - u64::from(conn < self.senders))
            }
        }
    }
}

/// A latency histogram in microseconds, 1 us to an hour at 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|e| unreachable!("fixed, valid histogram bounds: {e}"))
}

/// Counts one message that came back as it should, and its latency.
fn record(ctx: &Ctx, latency: &mut Histogram<u64>, bytes: usize, took: Duration) {
    ctx.received.fetch_add(1, Ordering::Relaxed);
    ctx.received_bytes
        .fetch_add(bytes as u64, Ordering::Relaxed);
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    latency.saturating_record(micros.max(1));
}

/// Holds chat connections back until every one has joined its room, so that no
/// message is sent before all its recipients are there to get it.
struct Gate {
    total: usize,
    /// The server process whose CPU time is read when the gate opens, if any.
    server_pid: Option<u32>,
    state: Mutex<GateState>,
    woken: Condvar,
}

#[derive(Default)]
struct GateState {
    arrived: usize,
    failed: bool,
    /// When the last connection arrived: the load starts then.
    opened: Option<Instant>,
    /// The server's CPU time then.
    cpu_at_open: Option<Duration>,
}

impl Gate {
    fn new(total: usize, server_pid: Option<u32>) -> Gate {
        Gate {
            total,
            server_pid,
            state: Mutex::new(GateState::default()),
            woken: Condvar::new(),
        }
    }

    fn cpu_at_open(&self) -> Option<Duration> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cpu_at_open
    }

    fn arrive_and_wait(&self, deadline: Instant) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.arrived += 1;
        if state.arrived == self.total {
            state.cpu_at_open = self.server_pid.and_then(|pid| server_cpu(pid).ok());
            state.opened = Some(Instant::now());
        }
        self.woken.notify_all();
        loop {
            if state.failed {
                return Err("another connection failed before everyone had joined".to_owned());
            }
            if state.arrived == self.total {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("not every connection joined in time".to_owned());
            }
            state = self
                .woken
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// When the load started (setup, such as logins, is not measured).
    fn opened(&self) -> Option<Instant> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .opened
    }

    fn fail(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed = true;
        self.woken.notify_all();
    }
}

/// One echo-mode connection: a writer thread keeps up to `in_flight` messages
/// outstanding while this thread reads the echoes back and checks them.
fn echo_conn(ctx: &Ctx, conn: usize) -> Result<Histogram<u64>, String> {
    let mut writer = ctx.connect()?;
    let mut reader = writer
        .try_clone()
        .map_err(|e| format!("cannot clone the socket: {e}"))?;
    // The channel holds the send time of every message not yet echoed, so its bound
    // is the in-flight limit. std allocates the bound up front: keep it realistic.
    let bound = ctx.in_flight.min(ctx.messages).max(1);
    let (sent_at, arrived) = mpsc::sync_channel::<Instant>(bound as usize);
    thread::scope(|scope| {
        let writing = scope.spawn(move || {
            let result = write_messages(ctx, conn, &mut writer, &sent_at);
            if result.is_err() {
                // Wakes the reader, which would otherwise wait for echoes never sent.
                let _ = writer.shutdown(Shutdown::Both);
            }
            result
        });
        let read = read_echoes(ctx, conn, &mut reader, arrived);
        if read.is_err() {
            // Wakes the writer if it is stuck in a write the server will not take.
            let _ = reader.shutdown(Shutdown::Both);
        }
        let written = writing
            .join()
            .unwrap_or_else(|_| Err("writer thread panicked".to_owned()));
        // The writer's error is the cause when both failed: its shutdown is what
        // made the read fail.
        written.and(read)
    })
}

fn write_messages(
    ctx: &Ctx,
    conn: usize,
    writer: &mut TcpStream,
    sent_at: &mpsc::SyncSender<Instant>,
) -> Result<(), String> {
    let mut message = vec![0; ctx.size];
    for i in 0..ctx.messages {
        fill(&mut message, conn, i);
        if sent_at.send(Instant::now()).is_err() {
            // The reader gave up; its error says why.
            return Ok(());
        }
        writer
            .write_all(&message)
            .map_err(|e| format!("sending message {i}: {e}"))?;
        ctx.sent.fetch_add(1, Ordering::Relaxed);
    }
    // Half-close: the server echoes what it still has, then closes, which lets the
    // reader check that nothing beyond what was sent comes back.
    writer
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutting down the sending side: {e}"))
}

fn read_echoes(
    ctx: &Ctx,
    conn: usize,
    reader: &mut TcpStream,
    arrived: mpsc::Receiver<Instant>,
) -> Result<Histogram<u64>, String> {
    let mut latency = new_histogram();
    let mut got = vec![0; ctx.size];
    let mut want = vec![0; ctx.size];
    for i in 0..ctx.messages {
        reader.read_exact(&mut got).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => format!(
                "the server closed the connection after {i} of {} messages",
                ctx.messages
            ),
            _ => format!("receiving message {i}: {e}"),
        })?;
        fill(&mut want, conn, i);
        if let Some(at) = got.iter().zip(&want).position(|(g, w)| g != w) {
            return Err(format!("message {i} came back different from byte {at} on"));
        }
        let sent = arrived
            .recv()
            .map_err(|_| format!("echo of message {i} arrived before it was sent"))?;
        record(ctx, &mut latency, ctx.size, sent.elapsed());
    }
    let mut extra = Vec::new();
    reader
        .read_to_end(&mut extra)
        .map_err(|e| format!("waiting for the server to close: {e}"))?;
    if !extra.is_empty() {
        return Err(format!("{} bytes came back beyond those sent", extra.len()));
    }
    Ok(latency)
}

/// Fills `message` with bytes that depend on the connection and the message index,
/// so a byte lost, duplicated or crossed between connections shows as a mismatch.
fn fill(message: &mut [u8], conn: usize, index: u64) {
    let mut x = (conn as u64).rotate_left(32) ^ index ^ 0x9e37_79b9_7f4a_7c15;
    for byte in message {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *byte = (x >> 56) as u8;
    }
}

/// One chat-mode connection: log in, join, wait for everyone, then send while
/// receiving the rest of the room's messages.
fn chat_conn(ctx: &Ctx, conn: usize) -> Result<Histogram<u64>, String> {
    let mut client = Client::from_stream(ctx.connect()?).map_err(|e| e.to_string())?;
    // `abort` enforces --max-secs; the client's own timeout must not cut in first.
    client.set_timeout(ctx.deadline.saturating_duration_since(ctx.start));
    let user = ctx.user_name(conn);
    retry_busy(ctx, || client.signup(&user, PASSWORD)).map_err(|e| format!("signup: {e}"))?;
    retry_busy(ctx, || client.login(&user, PASSWORD).map(drop))
        .map_err(|e| format!("login: {e}"))?;
    let room = ctx.room_name(ctx.room_of(conn));
    match client.create(&room, None) {
        Ok(()) => {}
        Err(e) if e.code() == Some(&ErrorCode::RoomExists) => {
            client
                .join(&room)
                .map_err(|e| format!("join {room}: {e}"))?;
        }
        Err(e) => return Err(format!("create {room}: {e}")),
    }
    ctx.gate.arrive_and_wait(ctx.deadline)?;

    let mut inbox = Inbox {
        ctx,
        room: &room,
        next_index: HashMap::new(),
        want: String::with_capacity(ctx.size),
        received: 0,
        latency: new_histogram(),
    };
    let mut text = String::with_capacity(ctx.size);
    let (mut sent, mut acked) = (0, 0);
    let to_send = ctx.to_send(conn);
    while acked < to_send {
        while sent < to_send && sent - acked < ctx.in_flight {
            chat_text(&mut text, ctx.size, ctx.start.elapsed(), conn, sent);
            client
                .send_request("send", json!({ "room": room, "text": text }))
                .map_err(|e| format!("sending message {sent}: {e}"))?;
            sent += 1;
        }
        client
            .recv_response()
            .map_err(|e| format!("the answer to message {acked}: {e}"))?;
        acked += 1;
        ctx.sent.fetch_add(1, Ordering::Relaxed);
        while let Some(event) = client
            .next_event(Duration::ZERO)
            .map_err(|e| e.to_string())?
        {
            inbox.take(event)?;
        }
    }
    let expected = ctx.expected_for(conn);
    while inbox.received < expected {
        let left = ctx.deadline.saturating_duration_since(Instant::now());
        match client.next_event(left).map_err(|e| e.to_string())? {
            Some(event) => inbox.take(event)?,
            None => {
                return Err(format!(
                    "{} of {expected} deliveries arrived in time",
                    inbox.received
                ));
            }
        }
    }
    client.quit().map_err(|e| format!("quit: {e}"))?;
    Ok(inbox.latency)
}

/// Runs an op that hashes a password, retrying while the server sheds load.
fn retry_busy(
    ctx: &Ctx,
    mut op: impl FnMut() -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    let mut pause = Duration::from_millis(10);
    loop {
        match op() {
            Err(e)
                if e.code() == Some(&ErrorCode::ServerBusy)
                    && Instant::now() + pause < ctx.deadline =>
            {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

/// Writes message `index` of connection `conn` into `text`: a fixed-width header
/// (send time in microseconds since the run started, sender, index) padded to `size`
/// bytes with letters that depend on all three, so any change in transit shows.
fn chat_text(text: &mut String, size: usize, sent: Duration, conn: usize, index: u64) {
    use std::fmt::Write as _;
    text.clear();
    let micros = u64::try_from(sent.as_micros()).unwrap_or(u64::MAX);
    let _ = write!(text, "{micros:016x} {conn:08x} {index:016x} ");
    let seed = micros as usize ^ conn ^ index as usize;
    text.extend((HEADER_LEN..size).map(|j| char::from(b'a' + ((seed + j) % 26) as u8)));
}

/// Checks and counts the messages one chat connection receives.
struct Inbox<'a> {
    ctx: &'a Ctx,
    room: &'a str,
    /// Per sending connection, the index its next message must have.
    next_index: HashMap<usize, u64>,
    /// Scratch space for the text a message should have.
    want: String,
    /// Deliveries checked so far.
    received: u64,
    latency: Histogram<u64>,
}

impl Inbox<'_> {
    fn take(&mut self, event: Event) -> Result<(), String> {
        let message = match event {
            Event::Message(message) => message,
            // Members who joined after this one, before the gate opened.
            Event::Joined { .. } => return Ok(()),
            Event::Closing { reason } => {
                return Err(format!("the server is closing the connection: {reason}"));
            }
            other => return Err(format!("unexpected event {other:?}")),
        };
        let bad = |why: &str| format!("bad delivery ({why}): {message:?}");
        if message.room != self.room {
            return Err(bad("wrong room"));
        }
        let (micros, conn, index) = parse_header(&message.text).ok_or_else(|| bad("no header"))?;
        if conn >= self.ctx.conns || message.from != self.ctx.user_name(conn) {
            return Err(bad("wrong sender"));
        }
        let next = self.next_index.entry(conn).or_insert(0);
        if index != *next {
            return Err(bad(&format!("expected message {next} from this sender")));
        }
        *next += 1;
        let sent = Duration::from_micros(micros);
        chat_text(&mut self.want, self.ctx.size, sent, conn, index);
        if message.text != self.want {
            return Err(bad("text changed in transit"));
        }
        self.received += 1;
        let took = self.ctx.start.elapsed().saturating_sub(sent);
        record(self.ctx, &mut self.latency, message.text.len(), took);
        Ok(())
    }
}

fn parse_header(text: &str) -> Option<(u64, usize, u64)> {
    let micros = u64::from_str_radix(text.get(0..16)?, 16).ok()?;
    let conn = usize::from_str_radix(text.get(17..25)?, 16).ok()?;
    let index = u64::from_str_radix(text.get(26..42)?, 16).ok()?;
    Some((micros, conn, index))
}

/// The fan-out load of `--mode fanout` (a parlor room) and `--mode redis` (a redis
/// pub/sub channel): one publisher, K subscribers, and one code path for both servers
/// but for the wire format (a JSON line; a RESP array).
mod fanout {
    use std::io::{self, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, PoisonError, mpsc};
    use std::thread;
    use std::time::{Duration, Instant};

    use hdrhistogram::Histogram;
    use memchr::memmem;
    use polling::{Event, Events, PollMode, Poller};

    use super::{
        Args, PASSWORD, Sockets, Totals, new_histogram, print_totals, report_cpu, run_prefix,
        server_cpu,
    };

    /// Which server, so which wire format.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Proto {
        Parlor,
        Redis,
    }

    /// Length of the payload header: send time (microseconds since the run started)
    /// and message index, fixed-width hex, each followed by a space.
    const HEADER: usize = 16 + 1 + 16 + 1;

    /// Threads that log the subscribers in (parlor) or subscribe them (redis).
    const SETUP_THREADS: usize = 8;

    /// What the publisher, the readers and the watchdog share.
    struct Load {
        proto: Proto,
        addr: SocketAddr,
        subscribers: usize,
        messages: u64,
        size: usize,
        in_flight: u64,
        rate: Option<f64>,
        /// Time origin of the send times in the payloads.
        start: Instant,
        deadline: Instant,
        max_secs: u64,
        prefix: String,
        /// The room (parlor) or channel (redis).
        topic: String,
        sockets: Sockets,
        /// The first failure: what the run reports.
        cause: Mutex<Option<String>>,
        /// Progress, for the message of a run that fails part way.
        acked: AtomicU64,
        delivered: AtomicU64,
    }

    impl Load {
        fn connect(&self) -> Result<TcpStream, String> {
            let stream = self.sockets.connect(self.addr, self.deadline)?;
            // Setup reads block; the deadline bounds them (the watchdog's `fail` too).
            let left = self.deadline.saturating_duration_since(Instant::now());
            stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| format!("cannot set a read timeout: {e}"))?;
            Ok(stream)
        }

        /// Records the first failure and stops everything: blocked reads and writes
        /// return, the readers' loops end.
        fn fail(&self, why: String) {
            {
                let mut cause = self.cause.lock().unwrap_or_else(PoisonError::into_inner);
                cause.get_or_insert(why);
            }
            self.sockets.abort();
        }

        /// The first failure, with how far the load had got.
        fn cause(&self) -> Option<String> {
            let cause = self
                .cause
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()?;
            Some(format!(
                "{cause} ({} of {} messages answered, {} of {} deliveries)",
                self.acked.load(Ordering::SeqCst),
                self.messages,
                self.delivered.load(Ordering::SeqCst),
                self.messages * self.subscribers as u64,
            ))
        }

        fn micros_now(&self) -> u64 {
            u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
        }
    }

    pub(super) fn run(args: &Args, addr: SocketAddr, proto: Proto) -> Result<(), String> {
        if args.size < HEADER {
            return Err(format!(
                "--size must be at least {HEADER} in the fanout and redis modes"
            ));
        }
        if args.readers == 0 {
            return Err("--readers must be at least 1".to_owned());
        }
        if let Some(rate) = args.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err("--rate must be a positive number of messages per second".to_owned());
        }
        let start = Instant::now();
        let prefix = run_prefix();
        let load = Load {
            proto,
            addr,
            subscribers: args.conns,
            messages: args.messages,
            size: args.size,
            in_flight: args.in_flight.min(args.messages).max(1),
            rate: args.rate,
            start,
            deadline: start + Duration::from_secs(args.max_secs),
            max_secs: args.max_secs,
            topic: format!("{prefix}fan"),
            prefix,
            sockets: Sockets::default(),
            cause: Mutex::new(None),
            acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        };
        thread::scope(|scope| {
            let (done, watch) = mpsc::channel::<()>();
            let load = &load;
            scope.spawn(move || {
                let left = load.deadline.saturating_duration_since(Instant::now());
                if let Err(mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(left) {
                    load.fail(format!("exceeded --max-secs {}", load.max_secs));
                }
            });
            let result = drive(load, args);
            drop(done);
            result.map_err(|e| load.cause().unwrap_or(e))
        })
    }

    /// Sets up the publisher and every subscriber, then runs the load and reports.
    fn drive(load: &Load, args: &Args) -> Result<(), String> {
        let publisher = match load.proto {
            Proto::Parlor => parlor_publisher(load),
            Proto::Redis => load.connect().map(|stream| (stream, Vec::new())),
        }
        .map_err(|e| format!("publisher: {e}"))?;
        let mut subs = setup_subscribers(load)?;
        let (stream, mut rest) = publisher;
        if load.proto == Proto::Parlor {
            settle(load, &stream, &mut rest, &mut subs)?;
        }
        let publisher = (stream, rest);

        let cpu_before = args.server_pid.map(server_cpu).transpose()?;
        let load_start = Instant::now();
        let mut groups: Vec<Vec<Sub>> = (0..args.readers).map(|_| Vec::new()).collect();
        for (i, sub) in subs.into_iter().enumerate() {
            groups[i % args.readers].push(sub);
        }
        let (reads, published) = thread::scope(|scope| {
            let readers: Vec<_> = groups
                .into_iter()
                .map(|group| {
                    scope.spawn(move || {
                        let result = read_deliveries(load, group);
                        if let Err(e) = &result {
                            load.fail(e.clone());
                        }
                        result
                    })
                })
                .collect();
            let (stream, rest) = publisher;
            let published = publish(load, stream, rest, load_start);
            if let Err(e) = &published {
                load.fail(format!("publisher: {e}"));
            }
            let reads: Vec<Result<ReadStats, String>> = readers
                .into_iter()
                .map(|r| {
                    r.join()
                        .unwrap_or_else(|_| Err("reader thread panicked".to_owned()))
                })
                .collect();
            (reads, published)
        });
        let cpu_after = args.server_pid.map(server_cpu).transpose()?;

        let mut latency = new_histogram();
        let (mut received, mut bytes) = (0, 0);
        let mut finished = load_start;
        let mut failure = None;
        for read in reads {
            match read {
                Ok(stats) => {
                    let _ = latency.add(&stats.latency);
                    received += stats.received;
                    bytes += stats.bytes;
                    finished = finished.max(stats.finished);
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        let published = match published {
            Ok(published) => Some(published),
            Err(e) => {
                failure = failure.or(Some(format!("publisher: {e}")));
                None
            }
        };
        let name = match load.proto {
            Proto::Parlor => "fanout",
            Proto::Redis => "redis",
        };
        print_totals(
            &format!("mode={name} conns={}", load.subscribers),
            Totals {
                sent: published.as_ref().map_or(0, |p| p.acked),
                received,
                bytes,
                elapsed: finished.duration_since(load_start),
            },
            "send to delivery",
            &latency,
        );
        if let (Some(rate), Some(published)) = (load.rate, &published) {
            let took = published
                .last_write
                .duration_since(load_start)
                .as_secs_f64()
                .max(1e-9);
            // The first message is due at once: n messages span n - 1 intervals.
            let achieved = load.messages.saturating_sub(1) as f64 / took;
            println!(
                "multi_client: publisher rate target={rate:.0}/s achieved={achieved:.0}/s, behind schedule us: p50={} p99={} max={}",
                published.lag.value_at_quantile(0.5),
                published.lag.value_at_quantile(0.99),
                published.lag.max(),
            );
        }
        if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
            report_cpu(before, after, received, "delivery");
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let expected = load.messages * load.subscribers as u64;
        if received != expected {
            return Err(format!("{received} of {expected} deliveries arrived"));
        }
        println!(
            "multi_client: mode={name} conns={} deliveries={expected} ok",
            load.subscribers
        );
        Ok(())
    }

    /// One subscriber connection.
    struct Sub {
        id: usize,
        stream: TcpStream,
        /// Bytes read but not yet parsed (the tail of a frame).
        buf: Vec<u8>,
        /// Index of the next message this subscriber must get.
        next: u64,
    }

    fn setup_subscribers(load: &Load) -> Result<Vec<Sub>, String> {
        let threads = SETUP_THREADS.min(load.subscribers).max(1);
        let mut subs = thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        (t..load.subscribers)
                            .step_by(threads)
                            .map(|id| {
                                let stream = load.connect()?;
                                let (stream, buf) = match load.proto {
                                    Proto::Parlor => parlor_subscriber(load, id, stream),
                                    Proto::Redis => redis_subscriber(load, stream),
                                }
                                .map_err(|e| format!("subscriber {id}: {e}"))?;
                                Ok(Sub {
                                    id,
                                    stream,
                                    buf,
                                    next: 0,
                                })
                            })
                            .collect::<Result<Vec<Sub>, String>>()
                    })
                })
                .collect();
            let mut subs = Vec::with_capacity(load.subscribers);
            for handle in handles {
                let part = handle
                    .join()
                    .unwrap_or_else(|_| Err("setup thread panicked".to_owned()));
                match part {
                    Ok(part) => subs.extend(part),
                    Err(e) => {
                        // Stops the other setup threads too.
                        load.fail(e.clone());
                        return Err(e);
                    }
                }
            }
            Ok(subs)
        })?;
        subs.sort_by_key(|sub| sub.id);
        Ok(subs)
    }

    /// Waits, before the load starts, until the `joined` events that setup caused
    /// have all arrived and been read: every join tells each earlier member, K(K+1)/2
    /// events over the publisher and K subscribers (some 40 MB for K = 1000). Left in
    /// the sockets, they would be read, and flushed by the server, on the load's clock.
    /// Stops early after a second with nothing arriving, for a server that sends fewer.
    fn settle(
        load: &Load,
        publisher: &TcpStream,
        rest: &mut Vec<u8>,
        subs: &mut [Sub],
    ) -> Result<(), String> {
        let k = load.subscribers as u64;
        let expected = k * (k + 1) / 2;
        let mut seen = count_joined(rest)?;
        for sub in subs.iter_mut() {
            seen +=
                count_joined(&mut sub.buf).map_err(|e| format!("subscriber {}: {e}", sub.id))?;
        }
        let poller = Poller::new().map_err(|e| format!("cannot create a poller: {e}"))?;
        // The buffers apart from the sockets, so that both can be borrowed at once.
        let mut bufs: Vec<Vec<u8>> = subs
            .iter_mut()
            .map(|s| std::mem::take(&mut s.buf))
            .collect();
        // Key 0 is the publisher, key i the subscriber subs[i - 1].
        let streams: Vec<&TcpStream> = std::iter::once(publisher)
            .chain(subs.iter().map(|sub| &sub.stream))
            .collect();
        let mut added = 0;
        let mut result = Ok(());
        for (key, stream) in streams.iter().enumerate() {
            let ready = stream
                .set_nonblocking(true)
                // SAFETY: every socket added here is deleted below, before this
                // function returns; the sockets outlive it.
                .and_then(|()| unsafe {
                    poller.add_with_mode(*stream, Event::readable(key), PollMode::Level)
                });
            if let Err(e) = ready {
                result = Err(format!("cannot poll a socket: {e}"));
                break;
            }
            added += 1;
        }
        if result.is_ok() {
            let mut events = Events::new();
            let mut chunk = vec![0; 64 << 10];
            let mut last_news = Instant::now();
            while seen < expected && last_news.elapsed() < Duration::from_secs(1) {
                if Instant::now() >= load.deadline {
                    result = Err(format!(
                        "exceeded --max-secs {} waiting for the join events",
                        load.max_secs
                    ));
                    break;
                }
                events.clear();
                if let Err(e) = poller.wait(&mut events, Some(Duration::from_millis(100)))
                    && e.kind() != io::ErrorKind::Interrupted
                {
                    result = Err(format!("polling: {e}"));
                    break;
                }
                for event in events.iter() {
                    let mut stream = streams[event.key];
                    let buf = match event.key {
                        0 => &mut *rest,
                        key => &mut bufs[key - 1],
                    };
                    match stream.read(&mut chunk) {
                        Ok(0) => result = Err("the server closed a connection".to_owned()),
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            match count_joined(buf) {
                                Ok(n) => seen += n,
                                Err(e) => result = Err(e),
                            }
                            last_news = Instant::now();
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => result = Err(format!("reading: {e}")),
                    }
                }
                if result.is_err() {
                    break;
                }
            }
        }
        for stream in &streams[..added] {
            let _ = poller.delete(*stream);
        }
        drop(streams);
        for (sub, buf) in subs.iter_mut().zip(bufs) {
            sub.buf = buf;
        }
        result?;
        if seen < expected {
            eprintln!(
                "multi_client: note: {seen} of the {expected} join events expected came before \
                 the load started"
            );
        }
        // The publisher's answer reader blocks (with the deadline as its timeout).
        publisher
            .set_nonblocking(false)
            .map_err(|e| format!("cannot make the publisher's socket blocking: {e}"))
    }

    /// Consumes the whole lines in `buf`, which must be `joined` events; returns how many.
    fn count_joined(buf: &mut Vec<u8>) -> Result<u64, String> {
        let mut used = 0;
        let mut joined = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[used..]) {
            let line = &buf[used..used + nl];
            if memmem::find(line, b"\"event\":\"joined\"").is_none() {
                return Err(format!(
                    "unexpected frame before the load: {:?}",
                    String::from_utf8_lossy(line)
                ));
            }
            joined += 1;
            used += nl + 1;
        }
        buf.drain(..used);
        Ok(joined)
    }

    /// Reads from `stream` until `buf` holds a whole line; returns it (without the
    /// newline) and leaves the rest in `buf`.
    fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
        loop {
            if let Some(nl) = memchr::memchr(b'\n', buf) {
                let mut line: Vec<u8> = buf.drain(..=nl).collect();
                line.pop();
                return Ok(line);
            }
            fill_from(stream, buf)?;
        }
    }

    /// One blocking read appended to `buf`.
    fn fill_from(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
        let mut chunk = [0; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => Err("the server closed the connection".to_owned()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("reading: {e}")),
        }
    }

    /// Sends parlor requests (pipelined) and checks that each is answered `ok`,
    /// skipping events; returns what was read beyond the last answer.
    fn parlor_requests(
        stream: &mut TcpStream,
        requests: &[(&str, String)],
    ) -> Result<Vec<u8>, String> {
        let mut out = String::new();
        for (_, request) in requests {
            out.push_str(request);
            out.push('\n');
        }
        stream
            .write_all(out.as_bytes())
            .map_err(|e| format!("sending requests: {e}"))?;
        let mut buf = Vec::new();
        for (op, _) in requests {
            let line = loop {
                let line = read_line(stream, &mut buf)?;
                if memmem::find(&line, b"\"ok\":").is_some() {
                    break line;
                }
                // Events (members joining) are skipped; anything else is not parlor.
                if memmem::find(&line, b"\"event\":").is_none()
                    || memmem::find(&line, b"\"event\":\"closing\"").is_some()
                {
                    return Err(format!(
                        "{op}: unexpected answer {:?}",
                        String::from_utf8_lossy(&line)
                    ));
                }
            };
            if memmem::find(&line, b"\"ok\":true").is_none() {
                return Err(format!("{op}: {}", String::from_utf8_lossy(&line)));
            }
        }
        Ok(buf)
    }

    /// Signs up and logs in a new user `user` on `stream`, then has it `create` or
    /// `join` the room, in one pipelined round trip.
    fn parlor_member(
        load: &Load,
        mut stream: TcpStream,
        user: &str,
        room_op: &'static str,
    ) -> Result<(TcpStream, Vec<u8>), String> {
        let requests = [
            (
                "signup",
                format!(r#"{{"op":"signup","user":"{user}","password":"{PASSWORD}"}}"#),
            ),
            (
                "login",
                format!(r#"{{"op":"login","user":"{user}","password":"{PASSWORD}"}}"#),
            ),
            (
                room_op,
                format!(r#"{{"op":"{room_op}","room":"{}"}}"#, load.topic),
            ),
        ];
        let rest = parlor_requests(&mut stream, &requests)?;
        Ok((stream, rest))
    }

    /// The parlor publisher: a user who creates the room.
    fn parlor_publisher(load: &Load) -> Result<(TcpStream, Vec<u8>), String> {
        let user = format!("{}p", load.prefix);
        parlor_member(load, load.connect()?, &user, "create")
    }

    /// A parlor subscriber: a user who joins the room and then only listens.
    fn parlor_subscriber(
        load: &Load,
        id: usize,
        stream: TcpStream,
    ) -> Result<(TcpStream, Vec<u8>), String> {
        parlor_member(load, stream, &format!("{}s{id}", load.prefix), "join")
    }

    /// A redis subscriber: SUBSCRIBE, and its confirmation.
    fn redis_subscriber(
        load: &Load,
        mut stream: TcpStream,
    ) -> Result<(TcpStream, Vec<u8>), String> {
        let mut command = Vec::new();
        resp_command(&mut command, &[b"SUBSCRIBE", load.topic.as_bytes()]);
        stream
            .write_all(&command)
            .map_err(|e| format!("sending SUBSCRIBE: {e}"))?;
        let mut buf = Vec::new();
        loop {
            if let Some((frame, used)) = resp_frame(&buf)? {
                let confirmed = frame.len == 3
                    && frame.items[0] == Resp::Bulk(b"subscribe")
                    && frame.items[1] == Resp::Bulk(load.topic.as_bytes())
                    && frame.items[2] == Resp::Int(1);
                if !confirmed {
                    return Err(format!(
                        "unexpected answer to SUBSCRIBE: {:?}",
                        String::from_utf8_lossy(&buf[..used])
                    ));
                }
                buf.drain(..used);
                return Ok((stream, buf));
            }
            fill_from(&mut stream, &mut buf)?;
        }
    }

    /// A RESP command: an array of bulk strings.
    fn resp_command(out: &mut Vec<u8>, parts: &[&[u8]]) {
        out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
        for part in parts {
            out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// One RESP value; an array is only its length (its elements follow).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Resp<'a> {
        Simple(&'a [u8]),
        Error(&'a [u8]),
        Int(i64),
        Bulk(&'a [u8]),
        Nil,
        Array(usize),
    }

    /// A RESP frame: a scalar, or an array of at most four scalars (all pub/sub needs).
    struct RespFrame<'a> {
        top: Resp<'a>,
        items: [Resp<'a>; 4],
        len: usize,
    }

    fn resp_int(text: &[u8]) -> Result<i64, String> {
        std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("bad RESP integer {:?}", String::from_utf8_lossy(text)))
    }

    /// The RESP value at the start of `buf` and its length; `None` if incomplete.
    fn resp_value(buf: &[u8]) -> Result<Option<(Resp<'_>, usize)>, String> {
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            return Ok(None);
        };
        if nl < 2 || buf[nl - 1] != b'\r' {
            return Err(format!(
                "bad RESP line {:?}",
                String::from_utf8_lossy(&buf[..nl])
            ));
        }
        let line = &buf[1..nl - 1];
        let used = nl + 1;
        let value = match buf[0] {
            b'+' => Resp::Simple(line),
            b'-' => Resp::Error(line),
            b':' => Resp::Int(resp_int(line)?),
            b'*' => match resp_int(line)? {
                n if n < 0 => Resp::Nil,
                n => Resp::Array(n as usize),
            },
            b'$' => {
                let len = resp_int(line)?;
                if len < 0 {
                    return Ok(Some((Resp::Nil, used)));
                }
                let end = used + len as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err("a RESP bulk string overruns its length".to_owned());
                }
                return Ok(Some((Resp::Bulk(&buf[used..end]), end + 2)));
            }
            other => return Err(format!("unknown RESP type byte {other:#04x}")),
        };
        Ok(Some((value, used)))
    }

    fn resp_frame(buf: &[u8]) -> Result<Option<(RespFrame<'_>, usize)>, String> {
        let Some((top, mut used)) = resp_value(buf)? else {
            return Ok(None);
        };
        let mut frame = RespFrame {
            top,
            items: [Resp::Nil; 4],
            len: 0,
        };
        if let Resp::Array(n) = top {
            if n > frame.items.len() {
                return Err(format!("unexpected RESP array of {n}"));
            }
            for item in frame.items.iter_mut().take(n) {
                let Some((value, len)) = resp_value(&buf[used..])? else {
                    return Ok(None);
                };
                if let Resp::Array(_) = value {
                    return Err("unexpected nested RESP array".to_owned());
                }
                *item = value;
                used += len;
            }
            frame.len = n;
        }
        Ok(Some((frame, used)))
    }

    /// Writes message `index` into `payload`: the header, then letters that depend on
    /// the index, so that a change in transit shows. Only `[0-9a-z ]`: the same bytes
    /// are a JSON string without escapes and a RESP bulk string.
    fn fill_payload(payload: &mut [u8], sent_micros: u64, index: u64) {
        let mut header = &mut payload[..HEADER];
        let _ = write!(header, "{sent_micros:016x} {index:016x} ");
        for (j, byte) in payload.iter_mut().enumerate().skip(HEADER) {
            *byte = b'a' + ((index as usize + j) % 26) as u8;
        }
    }

    /// The send time and index of a payload, if it is intact.
    fn check_payload(payload: &[u8], size: usize) -> Option<(u64, u64)> {
        if payload.len() != size || payload[16] != b' ' || payload[33] != b' ' {
            return None;
        }
        let hex = |bytes: &[u8]| {
            std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| u64::from_str_radix(t, 16).ok())
        };
        let sent = hex(&payload[..16])?;
        let index = hex(&payload[17..33])?;
        let intact = payload
            .iter()
            .enumerate()
            .skip(HEADER)
            .all(|(j, &byte)| byte == b'a' + ((index as usize + j) % 26) as u8);
        intact.then_some((sent, index))
    }

    /// What the publisher did.
    struct Published {
        acked: u64,
        /// How late each send was against the `--rate` schedule, microseconds.
        lag: Histogram<u64>,
        last_write: Instant,
    }

    /// Sends every message, at most `in_flight` unanswered (a second thread reads the
    /// answers), paced to `--rate` if given.
    fn publish(
        load: &Load,
        stream: TcpStream,
        rest: Vec<u8>,
        start: Instant,
    ) -> Result<Published, String> {
        let mut writer = stream;
        let mut reader = writer
            .try_clone()
            .map_err(|e| format!("cannot clone the socket: {e}"))?;
        // A token per message sent and not yet answered: the channel's bound is the
        // in-flight limit.
        let (window, answered) = mpsc::sync_channel::<()>(load.in_flight as usize);
        thread::scope(|scope| {
            let acks = scope.spawn(move || {
                let result = read_acks(load, &mut reader, rest, answered);
                if let Err(e) = &result {
                    load.fail(format!("publisher: {e}"));
                }
                result
            });
            let mut lag = new_histogram();
            let mut payload = vec![0; load.size];
            let mut frame = Vec::with_capacity(load.size + 128);
            let mut last_write = start;
            for index in 0..load.messages {
                let due = load
                    .rate
                    .map(|rate| start + Duration::from_secs_f64(index as f64 / rate));
                if let Some(due) = due {
                    let now = Instant::now();
                    if due > now {
                        thread::sleep(due - now);
                    }
                }
                if window.send(()).is_err() {
                    break; // the answer reader failed; its error is the cause
                }
                let now = Instant::now();
                if let Some(due) = due {
                    let late = now.saturating_duration_since(due).as_micros();
                    lag.saturating_record(u64::try_from(late).unwrap_or(u64::MAX));
                }
                let sent =
                    u64::try_from(now.duration_since(load.start).as_micros()).unwrap_or(u64::MAX);
                fill_payload(&mut payload, sent, index);
                frame.clear();
                match load.proto {
                    Proto::Parlor => {
                        frame.extend_from_slice(br#"{"op":"send","room":""#);
                        frame.extend_from_slice(load.topic.as_bytes());
                        frame.extend_from_slice(br#"","text":""#);
                        frame.extend_from_slice(&payload);
                        frame.extend_from_slice(b"\"}\n");
                    }
                    Proto::Redis => {
                        resp_command(&mut frame, &[b"PUBLISH", load.topic.as_bytes(), &payload]);
                    }
                }
                if let Err(e) = writer.write_all(&frame) {
                    load.fail(format!("publisher: sending message {index}: {e}"));
                    break;
                }
                last_write = Instant::now();
            }
            let acked = acks
                .join()
                .unwrap_or_else(|_| Err("answer reader panicked".to_owned()))?;
            Ok(Published {
                acked,
                lag,
                last_write,
            })
        })
    }

    /// Reads the publisher's answers: `ok` for a parlor `send` (events are skipped),
    /// the receiver count for a PUBLISH, which must be every subscriber.
    fn read_acks(
        load: &Load,
        reader: &mut TcpStream,
        mut buf: Vec<u8>,
        answered: mpsc::Receiver<()>,
    ) -> Result<u64, String> {
        let mut acked = 0;
        let mut chunk = vec![0; 64 << 10];
        while acked < load.messages {
            let mut used = 0;
            loop {
                let rest = &buf[used..];
                let (is_ack, len) = match load.proto {
                    Proto::Parlor => {
                        let Some(nl) = memchr::memchr(b'\n', rest) else {
                            break;
                        };
                        let line = &rest[..nl];
                        if memmem::find(line, b"\"ok\":true").is_some() {
                            (true, nl + 1)
                        } else if memmem::find(line, b"\"ok\":").is_some()
                            || memmem::find(line, b"\"event\":\"closing\"").is_some()
                        {
                            return Err(format!(
                                "message {acked}: {}",
                                String::from_utf8_lossy(line)
                            ));
                        } else {
                            (false, nl + 1)
                        }
                    }
                    Proto::Redis => {
                        let Some((frame, len)) = resp_frame(rest)? else {
                            break;
                        };
                        match frame.top {
                            Resp::Int(n) if n == load.subscribers as i64 => (true, len),
                            Resp::Int(n) => {
                                return Err(format!(
                                    "message {acked} reached {n} of {} subscribers",
                                    load.subscribers
                                ));
                            }
                            _ => {
                                return Err(format!(
                                    "unexpected answer to PUBLISH: {:?}",
                                    String::from_utf8_lossy(&rest[..len])
                                ));
                            }
                        }
                    }
                };
                used += len;
                if is_ack {
                    if answered.try_recv().is_err() {
                        return Err("an answer to a message not sent".to_owned());
                    }
                    acked += 1;
                    load.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            buf.drain(..used);
            if acked == load.messages {
                break;
            }
            match reader.read(&mut chunk) {
                Ok(0) => return Err(format!("closed after {acked} answers")),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading answers after {acked}: {e}")),
            }
        }
        Ok(acked)
    }

    /// What one reader thread got.
    struct ReadStats {
        latency: Histogram<u64>,
        received: u64,
        bytes: u64,
        /// When its last subscriber had every message.
        finished: Instant,
    }

    /// Reads the subscribers in `subs` until each has every message, checking each
    /// delivery (intact, in order, none twice) and recording its latency.
    fn read_deliveries(load: &Load, mut subs: Vec<Sub>) -> Result<ReadStats, String> {
        let poller = Poller::new().map_err(|e| format!("cannot create a poller: {e}"))?;
        let mut stats = ReadStats {
            latency: new_histogram(),
            received: 0,
            bytes: 0,
            finished: Instant::now(),
        };
        let mut added = 0;
        let mut result = Ok(());
        for (key, sub) in subs.iter().enumerate() {
            let ready = sub
                .stream
                .set_nonblocking(true)
                // SAFETY: every socket added here is deleted below, before `subs` (which
                // owns it) is dropped.
                .and_then(|()| unsafe {
                    poller.add_with_mode(&sub.stream, Event::readable(key), PollMode::Level)
                });
            if let Err(e) = ready {
                result = Err(format!("cannot poll subscriber {}: {e}", sub.id));
                break;
            }
            added += 1;
        }
        if result.is_ok() {
            result = poll_loop(load, &poller, &mut subs, &mut stats);
        }
        for sub in &subs[..added] {
            let _ = poller.delete(&sub.stream);
        }
        result.map(|()| stats)
    }

    fn poll_loop(
        load: &Load,
        poller: &Poller,
        subs: &mut [Sub],
        stats: &mut ReadStats,
    ) -> Result<(), String> {
        let mut remaining = subs.len();
        if load.messages == 0 {
            remaining = 0;
        }
        // What setup read beyond its answers (events such as `joined`).
        for sub in subs.iter_mut() {
            let buf = std::mem::take(&mut sub.buf);
            let used = take_frames(load, &buf, sub, 0, stats)?;
            sub.buf = buf[used..].to_vec();
        }
        let mut events = Events::new();
        let mut chunk = vec![0; 64 << 10];
        while remaining > 0 {
            if load.sockets.aborted() {
                return Err("aborted".to_owned());
            }
            let left = load.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("exceeded --max-secs {}", load.max_secs));
            }
            events.clear();
            match poller.wait(&mut events, Some(left.min(Duration::from_millis(100)))) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("polling: {e}")),
            }
            for event in events.iter() {
                let sub = &mut subs[event.key];
                let n = match sub.stream.read(&mut chunk) {
                    Ok(0) => {
                        return Err(format!(
                            "subscriber {}: the server closed the connection after {} messages",
                            sub.id, sub.next
                        ));
                    }
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(format!("subscriber {}: reading: {e}", sub.id)),
                };
                let now = load.micros_now();
                let had = sub.next;
                let received = stats.received;
                if sub.buf.is_empty() {
                    let used = take_frames(load, &chunk[..n], sub, now, stats)?;
                    sub.buf.extend_from_slice(&chunk[used..n]);
                } else {
                    let mut buf = std::mem::take(&mut sub.buf);
                    buf.extend_from_slice(&chunk[..n]);
                    let used = take_frames(load, &buf, sub, now, stats)?;
                    buf.drain(..used);
                    sub.buf = buf;
                }
                if had < load.messages && sub.next == load.messages {
                    remaining -= 1;
                }
                load.delivered
                    .fetch_add(stats.received - received, Ordering::Relaxed);
            }
        }
        stats.finished = Instant::now();
        Ok(())
    }

    /// Takes every whole frame at the start of `data` for `sub`; returns the bytes used.
    fn take_frames(
        load: &Load,
        data: &[u8],
        sub: &mut Sub,
        now: u64,
        stats: &mut ReadStats,
    ) -> Result<usize, String> {
        let mut used = 0;
        loop {
            let rest = &data[used..];
            let (payload, len) = match load.proto {
                Proto::Parlor => {
                    let Some(nl) = memchr::memchr(b'\n', rest) else {
                        break;
                    };
                    let line = &rest[..nl];
                    let payload = if memmem::find(line, b"\"event\":\"message\"").is_some() {
                        memmem::find(line, b"\"text\":\"").and_then(|at| {
                            let text = &line[at + 8..];
                            memchr::memchr(b'"', text).map(|end| &text[..end])
                        })
                    } else if memmem::find(line, b"\"event\":\"closing\"").is_some()
                        || memmem::find(line, b"\"ok\":").is_some()
                    {
                        return Err(format!(
                            "subscriber {}: {}",
                            sub.id,
                            String::from_utf8_lossy(line)
                        ));
                    } else {
                        // Other events: members joining, for instance.
                        used += nl + 1;
                        continue;
                    };
                    (payload, nl + 1)
                }
                Proto::Redis => {
                    let Some((frame, len)) = resp_frame(rest)? else {
                        break;
                    };
                    let payload = match frame.items {
                        [
                            Resp::Bulk(b"message"),
                            Resp::Bulk(topic),
                            Resp::Bulk(payload),
                            _,
                        ] if frame.len == 3 && topic == load.topic.as_bytes() => Some(payload),
                        _ => None,
                    };
                    (payload, len)
                }
            };
            let frame = &rest[..len];
            let bad = |why: &str| {
                format!(
                    "subscriber {}: {why}: {:?}",
                    sub.id,
                    String::from_utf8_lossy(frame)
                )
            };
            let payload = payload.ok_or_else(|| bad("unexpected frame"))?;
            let (sent, index) =
                check_payload(payload, load.size).ok_or_else(|| bad("damaged payload"))?;
            if index != sub.next || index >= load.messages {
                return Err(bad(&format!("expected message {}", sub.next)));
            }
            sub.next += 1;
            stats.received += 1;
            stats.bytes += payload.len() as u64;
            stats
                .latency
                .saturating_record(now.saturating_sub(sent).max(1));
            used += len;
        }
        Ok(used)
    }
}
