//! One client connection as the transport sees it: its socket, its inbound buffer,
//! its bounded outbound queue, and the scheduling state that keeps at most one job
//! per connection alive.
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

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use polling::Event;
use rustls::ServerConnection;

use crate::transport::reactor::Reactor;
use crate::transport::service::Service;

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
    /// The client kept sending faster than `max_frame_rate` after being told.
    Flood,
    /// A socket error.
    Error,
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
            CloseReason::Flood => "flood",
            CloseReason::Error => "error",
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
    closed: bool,
}

struct Outbound {
    queue: VecDeque<Bytes>,
    /// Bytes of `queue[0]` already written.
    head_written: usize,
    /// Bytes queued and not yet written.
    queued: usize,
    /// A thread is writing outside the lock; others leave the flush to it.
    writing: bool,
    /// Close once everything queued is written (quit, echo EOF, shutdown).
    close_when_drained: Option<CloseReason>,
    /// Reading stopped because the queue was full (echo backpressure).
    read_blocked: bool,
    /// No more frames are accepted: the connection is being closed.
    dead: bool,
    /// Bumped whenever the queue is cut (abort, close): a write that started before
    /// must not count its bytes against the queue that replaced it.
    epoch: u64,
}

/// What happened to a frame handed to [`Conn::push`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The queue was empty: the pusher must see that it is flushed.
    First,
    /// Queued behind others; whoever queued the first one flushes.
    Queued,
    /// Not queued: the connection is closing, or just became a slow consumer.
    Dropped,
}

/// What one read from a connection got.
pub(crate) struct Received {
    /// Bytes added to the inbound buffer; 0 at the end of the stream.
    pub(crate) bytes: usize,
    /// The socket gave less than there was room for, so it held nothing more just
    /// then: reading again would only cost a `WouldBlock` syscall, and the re-armed
    /// poller reports anything that arrives since.
    pub(crate) drained: bool,
}

/// Bytes received and not yet consumed by the service.
///
/// Taken on demand (from the worker's spares, or allocated) and given back when empty
/// at the end of a job, so idle connections hold no buffer.
#[derive(Default)]
pub(crate) struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

const READ_CHUNK: usize = 16 * 1024;

/// Most spare inbound buffers one worker keeps.
const SPARE_BUFS: usize = 4;

/// Inbound buffers of `READ_CHUNK` bytes a worker keeps from connections it has drained,
/// for the next connection it reads: a new buffer costs an allocation and 16 KiB of
/// zeroing, which was more than the rest of a small job's own work, while idle
/// connections still hold no buffer.
#[derive(Default)]
pub(crate) struct SpareBufs(Vec<Vec<u8>>);

impl SpareBufs {
    fn take(&mut self) -> Option<Vec<u8>> {
        self.0.pop()
    }

    fn keep(&mut self, buf: Vec<u8>) {
        if buf.len() == READ_CHUNK && self.0.len() < SPARE_BUFS {
            self.0.push(buf);
        }
    }
}

impl InBuf {
    /// Unconsumed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once with `read` into free space, growing the buffer up to `limit` bytes
    /// of unconsumed data (the caller consumes before the limit is reached, so a read
    /// always has room). Returns the bytes read and whether that was less than the
    /// room offered.
    fn read_with(
        &mut self,
        limit: usize,
        spare: &mut SpareBufs,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<(usize, bool)> {
        if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.is_empty() {
            self.buf = spare.take().unwrap_or_default();
        }
        if self.end == self.buf.len() {
            let want = (self.buf.len() * 2).clamp(READ_CHUNK, limit.max(READ_CHUNK));
            self.buf.resize(want.max(self.end + 1), 0);
        }
        let room = self.buf.len() - self.end;
        let n = read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok((n, n < room))
    }

    /// Gives the buffer up (to `spare`, or freed) if nothing is left in it, so idle
    /// connections hold none.
    pub(crate) fn release_if_empty(&mut self, spare: &mut SpareBufs) {
        if self.start == self.end && !self.buf.is_empty() {
            spare.keep(std::mem::take(&mut self.buf));
            self.start = 0;
            self.end = 0;
        }
    }
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
    reactor: Arc<Reactor<S>>,
    ctl: Mutex<Ctl>,
    out: Mutex<Outbound>,
    /// Milliseconds (reactor clock) of the last byte received, for the idle timeout.
    last_input: AtomicU64,
    pub(crate) io: Mutex<Io<S>>,
}

/// Connections whose outbound queue got its first frame during a job, to flush once at
/// its end: one write call for everything a batch of requests produced.
pub(crate) struct Flusher<S: Service> {
    dirty: Vec<Arc<Conn<S>>>,
    scratch: Vec<Bytes>,
}

impl<S: Service> Default for Flusher<S> {
    fn default() -> Self {
        Flusher {
            dirty: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

impl<S: Service> Flusher<S> {
    /// A reusable vector for the frames of one write call.
    pub(crate) fn scratch(&mut self) -> &mut Vec<Bytes> {
        &mut self.scratch
    }

    /// Writes out every connection that got frames since the last call.
    pub(crate) fn flush_all(&mut self) {
        while let Some(conn) = self.dirty.pop() {
            conn.flush(&mut self.scratch);
        }
    }
}

/// Frames gathered into one `write_vectored` call.
const MAX_IOV: usize = 64;

/// Up to this many frames are written from a small slice array: clearing the full
/// `MAX_IOV` one (1 KiB) cost more than the rest of a one-frame flush, and one frame
/// per write is what a paced room delivers to each member.
const SMALL_IOV: usize = 4;

impl<S: Service> Conn<S> {
    pub(crate) fn new(
        key: usize,
        socket: TcpStream,
        peer: SocketAddr,
        reactor: Arc<Reactor<S>>,
        session: S::Session,
        tls: Option<ServerConnection>,
    ) -> Self {
        let now = reactor.now_ms();
        Conn {
            key,
            peer,
            socket,
            tls: tls.map(Mutex::new),
            opened_ms: now,
            reactor,
            ctl: Mutex::new(Ctl {
                job: Job::Idle,
                pending: 0,
                close_reason: None,
                parked: false,
                blocked: false,
                finishing: false,
                want_write: false,
                closed: false,
            }),
            out: Mutex::new(Outbound {
                queue: VecDeque::new(),
                head_written: 0,
                queued: 0,
                writing: false,
                close_when_drained: None,
                read_blocked: false,
                dead: false,
                epoch: 0,
            }),
            last_input: AtomicU64::new(now),
            io: Mutex::new(Io {
                inbuf: InBuf::default(),
                session,
            }),
        }
    }

    pub(crate) fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Milliseconds since the last byte arrived from the client.
    pub(crate) fn idle_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_input.load(Ordering::Relaxed))
    }

    /// Queues a frame and, if it is the first in the queue, records the connection in
    /// `flusher` so the current job writes it out at its end.
    ///
    /// A queue that would grow past `max_outbound` makes this a slow consumer: it is
    /// closed, and nobody else waits for it.
    pub(crate) fn send(self: &Arc<Self>, frame: Bytes, flusher: &mut Flusher<S>) {
        match self.push(frame, false) {
            Pushed::First => flusher.dirty.push(Arc::clone(self)),
            Pushed::Queued | Pushed::Dropped => {}
        }
    }

    /// Queues a frame without the `max_outbound` check (echo mode, which stops reading
    /// instead).
    pub(crate) fn send_unbounded(self: &Arc<Self>, frame: Bytes, flusher: &mut Flusher<S>) {
        if self.push(frame, true) == Pushed::First {
            flusher.dirty.push(Arc::clone(self));
        }
    }

    fn push(self: &Arc<Self>, frame: Bytes, unbounded: bool) -> Pushed {
        let mut out = self.out.lock();
        if out.dead {
            return Pushed::Dropped;
        }
        if !unbounded && out.queued + frame.len() > self.reactor.max_outbound {
            drop(out);
            self.reactor.metrics.slow_consumer_closes.inc();
            self.abort(CloseReason::SlowConsumer);
            return Pushed::Dropped;
        }
        out.queued += frame.len();
        out.queue.push_back(frame);
        if out.queue.len() == 1 && !out.writing {
            Pushed::First
        } else {
            Pushed::Queued
        }
    }

    /// Whether the outbound queue is full enough that reading more would only grow it.
    pub(crate) fn outbound_full(&self) -> bool {
        let mut out = self.out.lock();
        if out.queued >= self.reactor.max_outbound {
            out.read_blocked = true;
            true
        } else {
            false
        }
    }

    /// Writes as much of the queue as the socket takes now. Arms WRITABLE when the
    /// socket is full; closes the connection on a write error or once drained if asked.
    pub(crate) fn flush(self: &Arc<Self>, scratch: &mut Vec<Bytes>) {
        loop {
            let (head_written, epoch);
            {
                let mut out = self.out.lock();
                if out.writing || (out.queue.is_empty() && !self.tls_output_pending()) {
                    return;
                }
                out.writing = true;
                head_written = out.head_written;
                epoch = out.epoch;
                scratch.clear();
                scratch.extend(out.queue.iter().take(MAX_IOV).cloned());
            }
            let (result, offered) = if scratch.len() <= SMALL_IOV {
                self.write_frames::<SMALL_IOV>(scratch, head_written)
            } else {
                self.write_frames::<MAX_IOV>(scratch, head_written)
            };
            scratch.clear();
            let mut out = self.out.lock();
            out.writing = false;
            if out.epoch != epoch {
                // Cut off or closed while this write was under way: the queue it was
                // writing from is gone, and the closing path owns what is left.
                return;
            }
            match result {
                Ok(written) => {
                    // Counted per write call, not per frame queued: these atomics are
                    // shared by every worker, and fan-out queues a frame per recipient.
                    self.reactor.metrics.bytes_out.add(written as u64);
                    let frames = out.advance(written);
                    self.reactor.metrics.frames_out.add(frames);
                    let resume_reading =
                        out.read_blocked && out.queued <= self.reactor.max_outbound / 2;
                    if resume_reading {
                        out.read_blocked = false;
                    }
                    let drained = out.queue.is_empty() && !self.tls_output_pending();
                    let drained_close = if drained {
                        out.close_when_drained
                    } else {
                        None
                    };
                    drop(out);
                    if resume_reading {
                        self.schedule(pending::READ);
                    }
                    if let Some(reason) = drained_close {
                        self.request_close(reason);
                        return;
                    }
                    // A plain socket that took less than offered is full: another
                    // write now would only return `WouldBlock`. (rustls takes less when
                    // its own buffer is full, which says nothing about the socket.)
                    if written < offered && self.tls.is_none() {
                        self.want_write();
                        return;
                    }
                    if drained {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drop(out);
                    self.want_write();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.dead = true;
                    drop(out);
                    log::debug!("conn {} write error: {e}", self.key);
                    self.request_close(CloseReason::Error);
                    return;
                }
            }
        }
    }

    /// Writes `frames` in one call, the first from byte `skip` on (`N` >= the number of
    /// frames). Returns the write's result and the bytes offered.
    fn write_frames<const N: usize>(
        &self,
        frames: &[Bytes],
        skip: usize,
    ) -> (io::Result<usize>, usize) {
        let mut slices = [IoSlice::new(&[]); N];
        let mut offered = 0;
        for (slot, frame) in slices.iter_mut().zip(frames) {
            *slot = IoSlice::new(frame);
            offered += frame.len();
        }
        if let Some(head) = frames.first() {
            slices[0] = IoSlice::new(&head[skip..]);
            offered -= skip;
        }
        (self.write_out(&slices[..frames.len()]), offered)
    }

    /// Writes plaintext: straight to the socket, or through TLS. Returns how much of
    /// `bufs` was taken; `WouldBlock` only when nothing could be taken or sent.
    fn write_out(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return (&self.socket).write_vectored(bufs);
        };
        let mut tls = tls.lock();
        // rustls takes only what fits under its buffer limit; the rest stays queued.
        let taken = if bufs.is_empty() {
            0
        } else {
            tls.writer().write_vectored(bufs)?
        };
        while tls.wants_write() {
            match tls.write_tls(&mut &self.socket) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && taken > 0 => return Ok(taken),
                Err(e) => return Err(e),
            }
        }
        Ok(taken)
    }

    /// Whether TLS holds encrypted bytes (handshake, or records) not yet written.
    fn tls_output_pending(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.lock().wants_write())
    }

    /// Whether the connection is TLS and its handshake has not finished in time.
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

    /// Cuts the connection off now: drops what is queued (keeping a half-written frame
    /// whole), queues the service's `closing` frame, and closes.
    pub(crate) fn abort(self: &Arc<Self>, reason: CloseReason) {
        {
            let mut out = self.out.lock();
            if out.dead {
                return;
            }
            out.dead = true;
            out.epoch += 1;
            let keep = usize::from(out.head_written > 0 && !out.queue.is_empty());
            out.queue.truncate(keep);
            out.queued = out.queue.front().map_or(0, |f| f.len() - out.head_written);
            if let Some(frame) = S::closing_frame(reason) {
                out.queued += frame.len();
                out.queue.push_back(frame);
            }
        }
        self.request_close(reason);
    }

    /// Stops reading and closes once everything queued is written (or at once if
    /// nothing is), e.g. after `quit`, or when an echo client half-closes.
    pub(crate) fn close_when_drained(self: &Arc<Self>, reason: CloseReason, last: Option<Bytes>) {
        let empty = {
            let mut out = self.out.lock();
            if out.dead {
                return;
            }
            if let Some(frame) = last {
                out.queued += frame.len();
                out.queue.push_back(frame);
            }
            out.close_when_drained = Some(reason);
            out.queue.is_empty() && !out.writing
        };
        self.ctl.lock().finishing = true;
        if empty {
            self.request_close(reason);
        } else {
            let mut scratch = Vec::new();
            self.flush(&mut scratch);
        }
    }

    /// Claims the connection's pending work; `None` when there is none left, in which
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

    /// Reads once into the inbound buffer.
    pub(crate) fn read_into(
        &self,
        inbuf: &mut InBuf,
        limit: usize,
        spare: &mut SpareBufs,
    ) -> io::Result<Received> {
        let (n, drained) = match &self.tls {
            None => inbuf.read_with(limit, spare, |buf| (&self.socket).read(buf))?,
            // rustls hands out one record's plaintext at a time: a short read says
            // nothing about the socket.
            Some(tls) => {
                let (n, _) =
                    inbuf.read_with(limit, spare, |buf| self.read_tls(&mut tls.lock(), buf))?;
                (n, false)
            }
        };
        if n > 0 {
            self.reactor.metrics.bytes_in.add(n as u64);
            self.last_input
                .store(self.reactor.now_ms(), Ordering::Relaxed);
        }
        Ok(Received { bytes: n, drained })
    }

    /// Reads plaintext through TLS: what rustls has decrypted already, else more
    /// records from the socket. Handshake replies are left for the next flush.
    fn read_tls(&self, tls: &mut ServerConnection, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: for a chat client, plain EOF.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut &self.socket)? == 0 {
                return Ok(0);
            }
            if let Err(e) = tls.process_new_packets() {
                // Tell the client why (an alert), best effort, then give up on it.
                let _ = tls.write_tls(&mut &self.socket);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
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
        self.out.lock().close_when_drained = None;
        if let Some(tls) = &self.tls {
            tls.lock().send_close_notify();
        }
        self.flush(scratch);
        {
            let mut out = self.out.lock();
            out.dead = true;
            out.epoch += 1;
            out.queue.clear();
            out.queued = 0;
        }
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

impl Ctl {
    fn read_wanted(&self) -> bool {
        !self.parked && !self.blocked && !self.finishing
    }
}

impl Outbound {
    /// Drops what was written from the queue; returns how many whole frames that was.
    fn advance(&mut self, mut written: usize) -> u64 {
        self.queued -= written;
        let mut frames = 0;
        while written > 0 {
            let Some(head) = self.queue.front() else {
                break;
            };
            let left = head.len() - self.head_written;
            if written >= left {
                written -= left;
                self.head_written = 0;
                self.queue.pop_front();
                frames += 1;
            } else {
                self.head_written += written;
                written = 0;
            }
        }
        frames
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
