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
//! Exits 0 only if everything expected came back within `--max-secs`; the last line
//! ends in ` ok` or starts with `multi_client: FAILED`.
//!
//! ```text
//! cargo run --release --example multi_client -- --mode echo --conns 100 --messages 10000
//! cargo run --release --example multi_client -- --mode chat --conns 50 --rooms 5
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

    /// what to exercise: echo (a server run with --echo) or chat (default echo)
    #[argh(option, default = "LoadMode::Echo", from_str_fn(parse_mode))]
    mode: LoadMode,

    /// concurrent connections (default 10)
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

    /// give up, and fail, after this many seconds (default 60)
    #[argh(option, default = "60")]
    max_secs: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LoadMode {
    Echo,
    Chat,
}

fn parse_mode(value: &str) -> Result<LoadMode, String> {
    match value {
        "echo" => Ok(LoadMode::Echo),
        "chat" => Ok(LoadMode::Chat),
        _ => Err(format!("unknown mode `{value}`: expected echo or chat")),
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
        sockets: Mutex::new(Vec::new()),
        aborted: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        received_bytes: AtomicU64::new(0),
        gate: Gate::new(args.conns),
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
                        LoadMode::Chat => chat_conn(ctx, conn),
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
    if let Some(first) = errors.first() {
        // After an abort every connection fails with a closed socket; the deadline
        // is the cause worth reporting.
        if ctx.aborted.load(Ordering::SeqCst) {
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
        LoadMode::Chat => "deliveries",
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
    }
}

/// Prints totals; latency covers the connections that finished.
fn report(ctx: &Ctx, latency: &Histogram<u64>, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let sent = ctx.sent.load(Ordering::SeqCst);
    let received = ctx.received.load(Ordering::SeqCst);
    let bytes = ctx.received_bytes.load(Ordering::SeqCst);
    let rooms = match ctx.mode {
        LoadMode::Echo => String::new(),
        LoadMode::Chat => format!(" rooms={}", ctx.rooms),
    };
    println!(
        "multi_client: mode={} conns={}{rooms} sent={sent} received={received} bytes={bytes} in {secs:.3} s",
        mode_name(ctx.mode),
        ctx.conns,
    );
    println!(
        "multi_client: {:.0} sent/s, {:.0} received/s, {:.2} MB/s received",
        sent as f64 / secs,
        received as f64 / secs,
        bytes as f64 / secs / 1e6,
    );
    let what = match ctx.mode {
        LoadMode::Echo => "round trip",
        LoadMode::Chat => "send to delivery",
    };
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
    /// Clones of every connection's socket, so `abort` can unblock them all.
    sockets: Mutex<Vec<TcpStream>>,
    aborted: AtomicBool,
    /// Messages written (echo) or acknowledged (chat), over all connections.
    sent: AtomicU64,
    /// Echoes or deliveries checked, over all connections.
    received: AtomicU64,
    received_bytes: AtomicU64,
    gate: Gate,
}

impl Ctx {
    fn connect(&self) -> Result<TcpStream, String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let stream = TcpStream::connect_timeout(&self.addr, left.max(Duration::from_millis(1)))
            .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
        let clone = stream
            .try_clone()
            .map_err(|e| format!("cannot clone the socket: {e}"))?;
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock so a socket cannot slip in after `abort` went through.
        if self.aborted.load(Ordering::SeqCst) {
            return Err("aborted".to_owned());
        }
        sockets.push(clone);
        Ok(stream)
    }

    /// Gives up: every blocked read and write returns, every waiter wakes.
    fn abort(&self) {
        let sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        self.aborted.store(true, Ordering::SeqCst);
        for socket in sockets.iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
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
            LoadMode::Chat => {
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
    state: Mutex<GateState>,
    woken: Condvar,
}

#[derive(Default)]
struct GateState {
    arrived: usize,
    failed: bool,
    /// When the last connection arrived: the load starts then.
    opened: Option<Instant>,
}

impl Gate {
    fn new(total: usize) -> Gate {
        Gate {
            total,
            state: Mutex::new(GateState::default()),
            woken: Condvar::new(),
        }
    }

    fn arrive_and_wait(&self, deadline: Instant) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.arrived += 1;
        if state.arrived == self.total {
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
