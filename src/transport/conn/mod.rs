//! One client connection as the transport sees it: its socket, its scheduling state
//! that keeps at most one job per connection alive, and its closing. Its inbound
//! buffer and read path are in `inbound`, its bounded outbound queue and write path
//! in `outbound` (child modules: they share the connection's private state).
//!
//! Invariants (the poller, the workers and every service rely on them):
//! - At most one job per connection exists at any time: `Ctl::job` moves
//!   Idle -> Queued -> Running -> Idle under the `ctl` lock, and only the thread that
//!   moved it to Queued sends the connection to the worker pool.
//! - The poller interest is only ever changed under the `ctl` lock, computed from the
//!   whole wanted state (`read_wanted`, `want_write`), so a concurrent arm can never
//!   drop the other's interest. A job that is queued or running owns the re-arm.
//! - The socket is `delete`d from the poller before it is dropped: `close` deletes it,
//!   and `Drop` deletes it again for any path that did not close (e.g. shutdown).
//! - Poller keys are never reused: they come from a counter.
//! - No connection lock is held while the connections-map lock is taken, and the `out`
//!   and `ctl` locks are never held together.
//! - A throttled connection (`Ctl::throttled_until`) is not read until the poller's
//!   timer reaches its deadline (`Reactor::due`, then `resume_if_due`); meanwhile its
//!   idle timeout is paused. The reactor keeps one deadline per throttled connection.
//! - A connection gives back its place in the map (and its `--max-conns` and per-IP
//!   counts) exactly once, however its closing ends: a drop guard in `worker::close`
//!   calls `Reactor::remove`, which does nothing the second time.

mod inbound;
mod outbound;

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use polling::Event;
use rustls::ServerConnection;

use crate::transport::reactor::Reactor;
use crate::transport::service::Service;

pub(crate) use inbound::{InBuf, SpareBufs};
pub(crate) use outbound::Flusher;
use outbound::Outbound;

/// Why a connection is closed; chat mode tells the client in a `closing` event for
/// the reasons it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client closed its side or reset the connection.
    Eof,
    /// The client asked to (`quit`).
    Quit,
    /// The outbound queue passed `max_outbound`.
    SlowConsumer,
    /// Nothing was received for `idle_timeout`.
    IdleTimeout,
    /// The server is stopping.
    Shutdown,
    /// A TLS client did not finish its handshake in time.
    HandshakeTimeout,
    /// Refused by a connection limit, told so after its TLS handshake.
    ServerFull,
    /// A socket error.
    Error,
    /// The service closed it for a reason of its own, named here (logged, and told
    /// to the client however the service does that).
    Service(&'static str),
}

impl CloseReason {
    /// The name logged, and sent in `closing` where the protocol defines one.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::Eof => "eof",
            CloseReason::Quit => "quit",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::ServerFull => "server_full",
            CloseReason::Error => "error",
            CloseReason::Service(reason) => reason,
        }
    }
}

/// Work waiting for a connection's job, as bits.
pub(crate) mod pending {
    /// The socket was reported readable (or reading should resume).
    pub const READ: u8 = 1;
    /// The socket was reported writable.
    pub const WRITE: u8 = 2;
    /// The service asked to be called back (e.g. a password hash finished).
    pub const WAKE: u8 = 4;
    /// The connection must close now.
    pub const CLOSE: u8 = 8;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Idle,
    Queued,
    Running,
}

struct Ctl {
    job: Job,
    pending: u8,
    close_reason: Option<CloseReason>,
    /// The service waits for something else (e.g. a password hash) before it reads on.
    parked: bool,
    /// The outbound queue is full: reading more would only grow it (echo backpressure).
    blocked: bool,
    /// Closing once the queue drains: nothing more is read.
    finishing: bool,
    /// A write came back short or `WouldBlock` with data left.
    want_write: bool,
    /// Over its frame rate: not read until then (reactor clock, ms); the poller wakes
    /// it (`resume_if_due`).
    throttled_until: Option<u64>,
    closed: bool,
}

/// A service's per-connection state and the inbound bytes it works on, locked together
/// by the job that holds the connection.
pub(crate) struct Io<S: Service> {
    pub(crate) inbuf: InBuf,
    pub(crate) session: S::Session,
}

/// A client connection. Shared (`Arc`) between the poller's map, the job queue and
/// whatever service state routes frames to it (e.g. a chat user's online connections).
pub(crate) struct Conn<S: Service> {
    /// The poller key: unique for the life of the server.
    pub(crate) key: usize,
    /// The client's address, for logs and per-IP limits.
    pub(crate) peer: SocketAddr,
    socket: TcpStream,
    /// The TLS state machine, for a connection that came in on a TLS listener. Locked
    /// by the job when it reads and by the writer-token holder when it writes.
    tls: Option<Mutex<ServerConnection>>,
    /// When the connection was accepted (reactor clock), for the handshake timeout.
    opened_ms: u64,
    /// Over a connection limit: it only finishes its TLS handshake, to be told
    /// `server_full`; its input never reaches the service, and it holds no place.
    refused: bool,
    reactor: Arc<Reactor<S>>,
    ctl: Mutex<Ctl>,
    out: Mutex<Outbound>,
    /// Milliseconds (reactor clock) of the last byte received, for the idle timeout.
    last_input: AtomicU64,
    /// What an operator's listing shows (`admin_connections`).
    stats: ConnStats,
    pub(crate) io: Mutex<Io<S>>,
    /// The service's facts about this connection (see `Service::Tag`).
    pub(crate) tag: S::Tag,
}

impl<S: Service> Conn<S> {
    pub(crate) fn new(
        key: usize,
        socket: TcpStream,
        peer: SocketAddr,
        reactor: Arc<Reactor<S>>,
        session: S::Session,
        tls: Option<ServerConnection>,
        refused: bool,
    ) -> Self {
        let now = reactor.now_ms();
        Conn {
            key,
            peer,
            socket,
            tls: tls.map(Mutex::new),
            opened_ms: now,
            refused,
            reactor,
            ctl: Mutex::new(Ctl {
                job: Job::Idle,
                pending: 0,
                close_reason: None,
                parked: false,
                blocked: false,
                finishing: false,
                want_write: false,
                throttled_until: None,
                closed: false,
            }),
            out: Mutex::new(Outbound::new()),
            last_input: AtomicU64::new(now),
            stats: ConnStats::new(),
            io: Mutex::new(Io {
                inbuf: InBuf::default(),
                session,
            }),
            tag: S::Tag::default(),
        }
    }

    pub(crate) fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Milliseconds since the last byte arrived from the client.
    pub(crate) fn idle_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_input.load(Ordering::Relaxed))
    }
    pub(crate) fn handshake_overdue(&self, now_ms: u64) -> bool {
        let limit = crate::transport::tls::HANDSHAKE_TIMEOUT.as_millis() as u64;
        now_ms.saturating_sub(self.opened_ms) >= limit
            && self
                .tls
                .as_ref()
                .is_some_and(|tls| tls.lock().is_handshaking())
    }

    /// Whether the connection came in on a TLS listener.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// When, and how much, the connection has talked (see [`ConnStats`]).
    pub(crate) fn stats(&self) -> &ConnStats {
        &self.stats
    }

    fn want_write(&self) {
        let mut ctl = self.ctl.lock();
        ctl.want_write = true;
        if ctl.job == Job::Idle {
            self.arm(&ctl);
        }
    }

    /// Re-arms the poller with the union of what the connection waits for. Called with
    /// `ctl` held, only when no job owns the connection.
    fn arm(&self, ctl: &Ctl) {
        if ctl.closed {
            return;
        }
        let interest = Event::new(self.key, ctl.read_wanted(), ctl.want_write);
        if let Err(e) = self.reactor.poller.modify(&self.socket, interest) {
            log::warn!("conn {}: cannot re-arm the poller: {e}", self.key);
        }
    }

    /// Adds work for the connection's job, queueing the job if none exists.
    pub(crate) fn schedule(self: &Arc<Self>, bits: u8) {
        self.enqueue(self.ctl.lock(), bits);
    }

    /// Closes the connection as soon as its job runs, after one best-effort flush of
    /// what is queued (which may end with the service's `closing` frame).
    pub(crate) fn request_close(self: &Arc<Self>, reason: CloseReason) {
        let mut ctl = self.ctl.lock();
        if !ctl.closed {
            ctl.close_reason.get_or_insert(reason);
        }
        self.enqueue(ctl, pending::CLOSE);
    }

    /// Adds `bits` to the pending work and queues the job if none exists; the one
    /// place a job is created, so there is never more than one.
    fn enqueue(self: &Arc<Self>, mut ctl: MutexGuard<'_, Ctl>, bits: u8) {
        if ctl.closed {
            return;
        }
        ctl.pending |= bits;
        if bits & pending::WRITE != 0 {
            ctl.want_write = false;
        }
        if ctl.job == Job::Idle {
            ctl.job = Job::Queued;
            drop(ctl);
            self.reactor.submit(Arc::clone(self));
        }
    }

    /// case the job is over and the poller is re-armed.
    pub(crate) fn take_pending(&self) -> Option<(u8, Option<CloseReason>)> {
        let mut ctl = self.ctl.lock();
        if ctl.closed {
            ctl.job = Job::Idle;
            return None;
        }
        if ctl.pending == 0 {
            ctl.job = Job::Idle;
            self.arm(&ctl);
            return None;
        }
        ctl.job = Job::Running;
        let bits = std::mem::take(&mut ctl.pending);
        Some((bits, ctl.close_reason))
    }

    /// Stops reading until the service is woken (it waits for a slow operation), or
    /// starts again.
    pub(crate) fn set_parked(&self, parked: bool) {
        self.ctl.lock().parked = parked;
    }

    /// Whether the connection was refused by a limit (see `refused`).
    pub(crate) fn is_refused(&self) -> bool {
        self.refused
    }

    /// Once a refused TLS connection has finished its handshake, queues `frame` (the
    /// service's `server_full`) and closes when it is written. Does nothing before, or
    /// a second time.
    pub(crate) fn finish_refusal(self: &Arc<Self>, frame: Option<Bytes>) {
        if !self.refused {
            return;
        }
        let handshaken = self
            .tls
            .as_ref()
            .is_some_and(|tls| !tls.lock().is_handshaking());
        if !handshaken || self.ctl.lock().finishing {
            return;
        }
        self.close_when_drained(CloseReason::ServerFull, frame);
    }

    /// Stops reading for `wait` (the service's rate limit): the poller's timer wakes the
    /// connection then (`resume_if_due`). Until then TCP's flow control slows the
    /// sender, and the idle timeout is paused.
    pub(crate) fn throttle(&self, wait: Duration) {
        let wait_ms = u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        let deadline = self.reactor.now_ms().saturating_add(wait_ms.max(1));
        self.ctl.lock().throttled_until = Some(deadline);
        self.reactor.wake_at(deadline, self.key);
    }

    /// Ends a throttle whose time has come: the service is woken to go on with what
    /// it holds, and the idle clock starts afresh (the client was sending all along).
    pub(crate) fn resume_if_due(self: &Arc<Self>, now_ms: u64) {
        let mut ctl = self.ctl.lock();
        if ctl.throttled_until.is_none_or(|at| at > now_ms) {
            return;
        }
        ctl.throttled_until = None;
        self.last_input.store(now_ms, Ordering::Relaxed);
        if !ctl.finishing {
            self.enqueue(ctl, pending::WAKE);
        }
    }

    /// When a throttled connection is due to be read again (reactor clock, ms).
    pub(crate) fn throttled_until(&self) -> Option<u64> {
        self.ctl.lock().throttled_until
    }

    /// Records whether reading stopped because the outbound queue is full.
    pub(crate) fn set_blocked(&self, blocked: bool) {
        self.ctl.lock().blocked = blocked;
    }

    /// Whether the job should read from the socket now.
    pub(crate) fn read_wanted(&self) -> bool {
        self.ctl.lock().read_wanted()
    }

    /// Ends the current job early and queues the connection again behind the others,
    /// so one busy client cannot hold a worker.
    pub(crate) fn requeue(self: &Arc<Self>, bits: u8) {
        let mut ctl = self.ctl.lock();
        // The running job steps back to Idle so that `enqueue` queues it afresh.
        ctl.job = Job::Idle;
        self.enqueue(ctl, bits);
    }

    /// Closes the socket: unregisters it, writes what it can of the queue, and shuts it
    /// down. Called only by the job that owns the connection. Returns false if it was
    /// already closed.
    pub(crate) fn close(self: &Arc<Self>, scratch: &mut Vec<Bytes>) -> bool {
        {
            let mut ctl = self.ctl.lock();
            if ctl.closed {
                return false;
            }
            ctl.closed = true;
        }
        if let Err(e) = self.reactor.poller.delete(&self.socket) {
            log::debug!("conn {}: poller delete failed: {e}", self.key);
        }
        // One last non-blocking write so a `closing` frame has a chance to arrive.
        self.flush_last(scratch);
        let _ = self.socket.shutdown(Shutdown::Write);
        // Reading what the client already sent avoids a RST that could destroy the
        // frames just written before the client reads them.
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match (&self.socket).read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        true
    }
}

/// A connection's accept time and byte counts, for an operator's listing. The
/// counters are relaxed atomics bumped once per read or write call: a listing may see
/// one a call behind the other, which is all it needs.
pub(crate) struct ConnStats {
    /// When the connection was accepted, in ms since the Unix epoch (the wall clock:
    /// it is shown to people, not used for timeouts).
    since_ms: u64,
    /// Bytes the service received (after TLS decryption).
    bytes_in: AtomicU64,
    /// Bytes written out of the queue (before TLS encryption).
    bytes_out: AtomicU64,
}

impl ConnStats {
    fn new() -> ConnStats {
        let since_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        ConnStats {
            since_ms,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    /// When the connection was accepted, in ms since the Unix epoch.
    pub(crate) fn since_ms(&self) -> u64 {
        self.since_ms
    }

    /// Bytes received so far.
    pub(crate) fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Bytes sent so far.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    pub(super) fn received(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn sent(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Ctl {
    fn read_wanted(&self) -> bool {
        !self.parked && !self.blocked && !self.finishing && self.throttled_until.is_none()
    }
}

impl<S: Service> Drop for Conn<S> {
    fn drop(&mut self) {
        if !self.ctl.get_mut().closed {
            // The socket must leave the poller before its fd is closed and reused.
            let _ = self.reactor.poller.delete(&self.socket);
        }
    }
}
