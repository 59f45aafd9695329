//! The poller thread: owns the listener and every socket's readiness, accepts
//! connections, hands ready ones to the worker pool, enforces the idle timeout, and
//! runs the graceful shutdown.
//!
//! Writes are not flushed here: a worker writes at the end of the job that produced
//! the frames, and only after `WouldBlock` is WRITABLE armed; the event then schedules
//! a flush job on a worker. That keeps this thread free for readiness (a large write
//! never delays an accept or another connection's event) and keeps every socket
//! operation of a connection in the one place that owns its job.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use polling::{Event, Events};

use rustls::ServerConnection;

use crate::live::Live;
use crate::transport::conn::{CloseReason, Conn, pending};
use crate::transport::reactor::Reactor;
use crate::transport::service::Service;
use crate::transport::tls::TLS_BUFFER;

/// Poller keys below this are listeners (by index); connections count up from it and
/// never reuse a key.
const FIRST_CONN_KEY: usize = 8;
/// Refused TLS clients finishing their handshake at once (to be told `server_full`);
/// past this, a refused TLS client is closed untold. Each holds a file descriptor
/// for at most the handshake timeout.
const MAX_REFUSING_HANDSHAKES: usize = 64;
/// Connections accepted per wake-up before events of open connections get a turn.
const ACCEPTS_PER_WAKE: usize = 256;
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a graceful shutdown lets the service finish what it accepted.
const QUIESCE_TIME: Duration = Duration::from_secs(1);
/// How long a graceful shutdown lets clients drain their queues.
const DRAIN_TIME: Duration = Duration::from_secs(3);
/// How long a graceful shutdown then waits for the forced closes.
const CLOSE_TIME: Duration = Duration::from_secs(1);

/// A listening socket, and the TLS settings of the connections it accepts.
pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    /// `Some` when its connections speak TLS: each with the certificate in
    /// `Live::tls` at the time of its accept.
    pub(crate) tls: Option<Arc<Live>>,
}

/// What the poller thread needs besides the reactor.
pub(crate) struct PollerSetup {
    /// Fewer than `FIRST_CONN_KEY`; each is registered under its index.
    pub(crate) listeners: Vec<Listener>,
    /// `max_conns`, `max_conns_per_ip`, `idle_timeout` and the TLS certificate, as
    /// the last reload left them.
    pub(crate) live: Arc<Live>,
    /// Whether loopback counts against `max_conns_per_ip`.
    pub(crate) limit_loopback: bool,
    pub(crate) workers: usize,
    pub(crate) stop: Arc<AtomicBool>,
}

enum Accepted {
    /// Nothing more to accept now: re-arm the listener.
    Drained,
    /// The accept budget is used: re-arm (it fires again at once if more wait).
    Budget,
    /// Out of file descriptors or memory: wait before accepting again.
    Backoff,
}

/// Runs the poller loop until a shutdown completes, then tells the workers to stop.
pub(crate) fn run<S: Service>(
    reactor: &Arc<Reactor<S>>,
    service: &S,
    setup: PollerSetup,
) -> io::Result<()> {
    let poller = &reactor.poller;
    for (key, listener) in setup.listeners.iter().enumerate() {
        // SAFETY: every listener is deleted from the poller before this function
        // returns (shutdown) or is dropped with the poller after it (error paths).
        unsafe { poller.add(&listener.socket, Event::readable(key))? };
    }
    // A reload that shortens the idle timeout below four ticks closes idle
    // connections up to a tick late.
    let tick =
        (setup.live.idle_timeout() / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut state = Loop {
        reactor,
        service,
        setup,
        next_key: FIRST_CONN_KEY,
        tick,
        next_scan: Instant::now() + tick,
        accept_paused_until: None,
        shutdown: None,
    };
    let mut events = Events::new();
    loop {
        events.clear();
        match poller.wait(&mut events, Some(state.timeout())) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            state.event(event)?;
        }
        if state.housekeeping()? {
            break;
        }
    }
    reactor.stop_workers(state.setup.workers);
    Ok(())
}

/// The poller thread's state between wake-ups.
struct Loop<'a, S: Service> {
    reactor: &'a Arc<Reactor<S>>,
    service: &'a S,
    setup: PollerSetup,
    next_key: usize,
    /// How often idle and handshake timeouts are checked.
    tick: Duration,
    next_scan: Instant,
    /// Accepting is paused until then (out of file descriptors).
    accept_paused_until: Option<Instant>,
    shutdown: Option<Shutdown>,
}

impl<S: Service> Loop<'_, S> {
    /// How long the next wait may last: until the next scan, the end of an accept
    /// pause, or a shutdown step.
    fn timeout(&self) -> Duration {
        let mut wake_at = self.next_scan;
        if let Some(until) = self.accept_paused_until {
            wake_at = wake_at.min(until);
        }
        if self.shutdown.is_some() {
            wake_at = wake_at.min(Instant::now() + Duration::from_millis(20));
        }
        if let Some(deadline) = self.reactor.next_wake() {
            let wait = deadline.saturating_sub(self.reactor.now_ms());
            wake_at = wake_at.min(Instant::now() + Duration::from_millis(wait));
        }
        wake_at.saturating_duration_since(Instant::now())
    }

    /// Handles one readiness event: a listener's, or a connection's.
    fn event(&mut self, event: Event) -> io::Result<()> {
        let (reactor, poller) = (self.reactor, &self.reactor.poller);
        if let Some(listener) = self.setup.listeners.get(event.key) {
            if self.shutdown.is_some() {
                return Ok(());
            }
            match accept(
                reactor,
                self.service,
                &self.setup,
                listener,
                &mut self.next_key,
            ) {
                Accepted::Drained | Accepted::Budget => {
                    poller.modify(&listener.socket, Event::readable(event.key))?;
                }
                Accepted::Backoff => {
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                }
            }
            return Ok(());
        }
        let conn = reactor.conns.lock().get(&event.key).cloned();
        if let Some(conn) = conn {
            let mut bits = 0;
            if event.readable {
                bits |= pending::READ;
            }
            if event.writable {
                bits |= pending::WRITE;
            }
            conn.schedule(bits);
        }
        Ok(())
    }

    /// What runs after every wake-up: ends an accept pause, checks timeouts, starts
    /// and steps a shutdown. Returns true when the poller may stop.
    fn housekeeping(&mut self) -> io::Result<bool> {
        let (reactor, poller) = (self.reactor, &self.reactor.poller);
        let now = Instant::now();
        if let Some(until) = self.accept_paused_until
            && now >= until
            && self.shutdown.is_none()
        {
            self.accept_paused_until = None;
            for (key, listener) in self.setup.listeners.iter().enumerate() {
                poller.modify(&listener.socket, Event::readable(key))?;
            }
        }
        let now_ms = reactor.now_ms();
        for key in reactor.due(now_ms) {
            let conn = reactor.conns.lock().get(&key).cloned();
            if let Some(conn) = conn {
                conn.resume_if_due(now_ms);
            }
        }
        if now >= self.next_scan {
            self.next_scan = now + self.tick;
            close_idle(reactor, self.setup.live.idle_timeout());
        }
        if self.shutdown.is_none() && self.setup.stop.load(Ordering::Acquire) {
            for listener in &self.setup.listeners {
                poller.delete(&listener.socket)?;
            }
            self.service.quiesce(Instant::now() + QUIESCE_TIME);
            self.shutdown = Some(Shutdown::begin(reactor));
        }
        Ok(match &mut self.shutdown {
            Some(state) => state.step(reactor),
            None => false,
        })
    }
}

fn accept<S: Service>(
    reactor: &Arc<Reactor<S>>,
    service: &S,
    setup: &PollerSetup,
    listener: &Listener,
    next_key: &mut usize,
) -> Accepted {
    for _ in 0..ACCEPTS_PER_WAKE {
        let (stream, peer) = match listener.socket.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_resource_exhaustion(&e) => {
                log::warn!(
                    "cannot accept: {e}; pausing accepts for {} ms (raise the open-file limit with `ulimit -n`, or lower --max-conns)",
                    ACCEPT_BACKOFF.as_millis()
                );
                return Accepted::Backoff;
            }
            Err(e) => {
                // A connection reset before it was accepted, and the like: its own problem.
                log::debug!("accept failed: {e}");
                continue;
            }
        };
        let key = *next_key;
        *next_key += 1;
        let max_conns = setup.live.max_conns();
        if reactor.open_count() >= max_conns {
            log::warn!("refusing {peer}: {max_conns} connections open (--max-conns)");
            refuse(reactor, service, listener, stream, peer, key);
            continue;
        }
        let per_ip = setup.live.max_conns_per_ip();
        if !reactor.admit_ip(peer.ip(), per_ip, setup.limit_loopback) {
            log::warn!(
                "refusing {peer}: {per_ip} connections open from that address (--max-conns-per-ip)"
            );
            refuse(reactor, service, listener, stream, peer, key);
            continue;
        }
        reactor.metrics.accepted.inc();
        if let Err(e) = register(reactor, service, listener, stream, peer, key, false) {
            reactor.release_ip(peer.ip());
            log::warn!("cannot set up a connection from {peer}: {e}");
        }
    }
    Accepted::Budget
}

/// Tells a connection over a limit why, in the service's `server_full` frame, and
/// closes it. A plain socket gets the frame at once. A TLS one must finish its
/// handshake first, so it becomes a refused connection (no place held, input never
/// handled, closed by the handshake timeout if it stalls); beyond
/// `MAX_REFUSING_HANDSHAKES` of those at once it is closed untold.
fn refuse<S: Service>(
    reactor: &Arc<Reactor<S>>,
    service: &S,
    listener: &Listener,
    stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
    key: usize,
) {
    use std::io::Write;
    reactor.metrics.refused.inc();
    let Some(frame) = S::closing_frame(CloseReason::ServerFull) else {
        let _ = stream.shutdown(std::net::Shutdown::Write);
        return;
    };
    if listener.tls.is_none() {
        let _ = stream.set_nonblocking(true);
        // A fresh socket's send buffer takes one small frame without blocking.
        let _ = (&stream).write_all(&frame);
        let _ = stream.shutdown(std::net::Shutdown::Write);
    } else if reactor.refusing() < MAX_REFUSING_HANDSHAKES {
        if let Err(e) = register(reactor, service, listener, stream, peer, key, true) {
            log::debug!("cannot tell {peer} it is refused: {e}");
        }
    } else {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

/// Makes an accepted socket a connection: non-blocking, TLS if the listener has it,
/// registered with the poller under `key`, and in the connections map. A `refused`
/// one is a TLS client over a limit (see `refuse`); the service still opens and
/// closes it (the embedder's hooks see it), but never sees its input.
fn register<S: Service>(
    reactor: &Arc<Reactor<S>>,
    service: &S,
    listener: &Listener,
    stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
    key: usize,
    refused: bool,
) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    // Frames are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let tls = match listener.tls.as_ref().and_then(|live| live.tls()) {
        Some(config) => {
            let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
            tls.set_buffer_limit(Some(TLS_BUFFER));
            Some(tls)
        }
        None => None,
    };
    let conn = Arc::new(Conn::new(
        key,
        stream,
        peer,
        Arc::clone(reactor),
        service.open(peer),
        tls,
        refused,
    ));
    // SAFETY: `Conn` deletes its socket from the poller when it closes, and again in
    // `Drop` if it never closed, so the socket never outlives its registration.
    unsafe { reactor.poller.add(conn.socket(), Event::readable(key))? };
    reactor.insert(conn);
    if refused {
        log::info!("conn {key} from {peer} opened, refused: told once its TLS handshake is done");
    } else {
        log::info!("conn {key} from {peer} opened");
    }
    Ok(())
}

/// Out of file descriptors (the process's or the system's) or of memory: accepting
/// again at once would fail the same way.
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn close_idle<S: Service>(reactor: &Reactor<S>, idle_timeout: Duration) {
    let now = reactor.now_ms();
    let limit = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
    for conn in reactor.snapshot() {
        // A throttled client is sending; it is the server that is not reading.
        if conn.throttled_until().is_some() {
            continue;
        }
        if conn.idle_ms(now) >= limit {
            reactor.metrics.idle_closes.inc();
            conn.abort(CloseReason::IdleTimeout);
        } else if conn.handshake_overdue(now) {
            conn.abort(CloseReason::HandshakeTimeout);
        }
    }
}

/// The stages of a graceful shutdown.
struct Shutdown {
    drain_until: Instant,
    forced_at: Option<Instant>,
}

impl Shutdown {
    /// Stops reading everywhere, tells every client, and lets the queues drain.
    fn begin<S: Service>(reactor: &Reactor<S>) -> Shutdown {
        let conns = reactor.snapshot();
        log::info!("shutting down: closing {} connections", conns.len());
        for conn in conns {
            conn.close_when_drained(
                CloseReason::Shutdown,
                S::closing_frame(CloseReason::Shutdown),
            );
        }
        Shutdown {
            drain_until: Instant::now() + DRAIN_TIME,
            forced_at: None,
        }
    }

    /// Returns true when the poller may stop.
    fn step<S: Service>(&mut self, reactor: &Reactor<S>) -> bool {
        if reactor.conns.lock().is_empty() {
            return true;
        }
        let now = Instant::now();
        match self.forced_at {
            None if now >= self.drain_until => {
                for conn in reactor.snapshot() {
                    conn.request_close(CloseReason::Shutdown);
                }
                self.forced_at = Some(now);
                false
            }
            Some(at) if now >= at + CLOSE_TIME => {
                log::warn!(
                    "shutdown: {} connections did not close in time",
                    reactor.conns.lock().len()
                );
                true
            }
            _ => false,
        }
    }
}
