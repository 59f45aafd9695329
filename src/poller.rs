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

use crate::conn::{CloseReason, Conn, pending};
use crate::reactor::Reactor;
use crate::service::Service;

/// The listener's poller key; connections count up from 1 and never reuse a key.
const LISTENER_KEY: usize = 0;
/// Connections accepted per wake-up before events of open connections get a turn.
const ACCEPTS_PER_WAKE: usize = 256;
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a graceful shutdown lets clients drain their queues.
const DRAIN_TIME: Duration = Duration::from_secs(3);
/// How long a graceful shutdown then waits for the forced closes.
const CLOSE_TIME: Duration = Duration::from_secs(1);

/// What the poller thread needs besides the reactor.
pub(crate) struct PollerSetup {
    pub(crate) listener: TcpListener,
    pub(crate) max_conns: usize,
    pub(crate) idle_timeout: Duration,
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
    // SAFETY: the listener is deleted from the poller before this function returns,
    // and it is dropped only after that.
    unsafe { poller.add(&setup.listener, Event::readable(LISTENER_KEY))? };
    let mut events = Events::new();
    let mut next_key = LISTENER_KEY + 1;
    let tick = (setup.idle_timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut next_scan = Instant::now() + tick;
    let mut accept_paused_until: Option<Instant> = None;
    let mut shutdown: Option<Shutdown> = None;

    loop {
        let mut wake_at = next_scan;
        if let Some(until) = accept_paused_until {
            wake_at = wake_at.min(until);
        }
        if shutdown.is_some() {
            wake_at = wake_at.min(Instant::now() + Duration::from_millis(20));
        }
        events.clear();
        match poller.wait(
            &mut events,
            Some(wake_at.saturating_duration_since(Instant::now())),
        ) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            if event.key == LISTENER_KEY {
                if shutdown.is_some() {
                    continue;
                }
                match accept(reactor, service, &setup, &mut next_key) {
                    Accepted::Drained | Accepted::Budget => {
                        poller.modify(&setup.listener, Event::readable(LISTENER_KEY))?;
                    }
                    Accepted::Backoff => {
                        accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    }
                }
                continue;
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
        }
        let now = Instant::now();
        if let Some(until) = accept_paused_until
            && now >= until
            && shutdown.is_none()
        {
            accept_paused_until = None;
            poller.modify(&setup.listener, Event::readable(LISTENER_KEY))?;
        }
        if now >= next_scan {
            next_scan = now + tick;
            close_idle(reactor, setup.idle_timeout);
        }
        if shutdown.is_none() && setup.stop.load(Ordering::Acquire) {
            poller.delete(&setup.listener)?;
            shutdown = Some(Shutdown::begin(reactor));
        }
        if let Some(state) = &mut shutdown
            && state.step(reactor)
        {
            break;
        }
    }
    reactor.stop_workers(setup.workers);
    Ok(())
}

fn accept<S: Service>(
    reactor: &Arc<Reactor<S>>,
    service: &S,
    setup: &PollerSetup,
    next_key: &mut usize,
) -> Accepted {
    for _ in 0..ACCEPTS_PER_WAKE {
        let (stream, peer) = match setup.listener.accept() {
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
        if reactor.conns.lock().len() >= setup.max_conns {
            log::warn!(
                "refusing {peer}: {} connections open (--max-conns)",
                setup.max_conns
            );
            refuse::<S>(stream);
            continue;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            log::debug!("cannot set up a socket from {peer}: {e}");
            continue;
        }
        // Frames are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let key = *next_key;
        *next_key += 1;
        let conn = Arc::new(Conn::new(
            key,
            stream,
            peer,
            Arc::clone(reactor),
            service.open(peer),
        ));
        // SAFETY: `Conn` deletes its socket from the poller when it closes, and again in
        // `Drop` if it never closed, so the socket never outlives its registration.
        if let Err(e) = unsafe { reactor.poller.add(conn.socket(), Event::readable(key)) } {
            log::warn!("cannot register a connection from {peer}: {e}");
            continue;
        }
        reactor.conns.lock().insert(key, conn);
        log::info!("conn {key} from {peer} opened");
    }
    Accepted::Budget
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
}

/// Tells a connection over the limit why (if the protocol can) and closes it.
fn refuse<S: Service>(stream: std::net::TcpStream) {
    use std::io::Write;
    if let Some(frame) = S::server_full_frame() {
        let _ = stream.set_nonblocking(true);
        // A fresh socket's send buffer takes one small frame without blocking.
        let _ = (&stream).write_all(&frame);
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn close_idle<S: Service>(reactor: &Reactor<S>, idle_timeout: Duration) {
    let now = reactor.now_ms();
    let limit = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
    for conn in reactor.snapshot() {
        if conn.idle_ms(now) >= limit {
            conn.abort(CloseReason::IdleTimeout);
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
