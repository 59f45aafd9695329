//! A connection's outbound side: the bounded queue of frames, the write path that
//! gathers them into one `write_vectored` call, and the [`Flusher`] that writes each
//! connection a job gave frames to once, at the job's end.
//!
//! Invariants (see also the module header of `conn`):
//! - At most one thread writes a connection's socket at a time: `Outbound::writing`
//!   is the writer token, taken and given back under the `out` lock; others leave the
//!   flush to its holder.
//! - A write that started before the queue was cut (`abort`, `close`) never counts its
//!   bytes against the queue that replaced it: `Outbound::epoch` tells them apart.
//! - WRITABLE is armed only after a write came back short or `WouldBlock`.
//! - The `out` lock is never held while the `ctl` lock is taken.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use bytes::Bytes;

use super::{CloseReason, Conn, pending};
use crate::transport::service::Service;

pub(super) struct Outbound {
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

/// Whether a flush goes on after one write.
#[derive(PartialEq, Eq)]
enum Wrote {
    /// Nothing more to do now: drained, socket full, closing, or another owns it.
    Done,
    /// More is queued and the socket may take it.
    More,
}

/// Frames gathered into one `write_vectored` call.
const MAX_IOV: usize = 64;

/// Up to this many frames are written from a small slice array: clearing the full
/// `MAX_IOV` one (1 KiB) cost more than the rest of a one-frame flush, and one frame
/// per write is what a paced room delivers to each member.
const SMALL_IOV: usize = 4;

impl<S: Service> Conn<S> {
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
            if self.wrote(result, offered, epoch) == Wrote::Done {
                return;
            }
        }
    }

    /// Gives the writer token back and acts on one write's result: counts and drops
    /// what was written, resumes reading or closes as the queue asks, arms WRITABLE
    /// when the socket is full.
    fn wrote(self: &Arc<Self>, result: io::Result<usize>, offered: usize, epoch: u64) -> Wrote {
        let mut out = self.out.lock();
        out.writing = false;
        if out.epoch != epoch {
            // Cut off or closed while this write was under way: the queue it was
            // writing from is gone, and the closing path owns what is left.
            return Wrote::Done;
        }
        let written = match result {
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                drop(out);
                self.want_write();
                return Wrote::Done;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Wrote::More,
            Err(e) => {
                out.dead = true;
                drop(out);
                log::debug!("conn {} write error: {e}", self.key);
                self.request_close(CloseReason::Error);
                return Wrote::Done;
            }
        };
        // Counted per write call, not per frame queued: these atomics are shared by
        // every worker, and fan-out queues a frame per recipient.
        self.reactor.metrics.bytes_out.add(written as u64);
        self.stats.sent(written);
        let frames = out.advance(written);
        self.reactor.metrics.frames_out.add(frames);
        let resume_reading = out.read_blocked && out.queued <= self.reactor.max_outbound / 2;
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
            return Wrote::Done;
        }
        // A plain socket that took less than offered is full: another write now would
        // only return `WouldBlock`. (rustls takes less when its own buffer is full,
        // which says nothing about the socket.)
        if written < offered && self.tls.is_none() {
            self.want_write();
            return Wrote::Done;
        }
        if drained { Wrote::Done } else { Wrote::More }
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

    /// The last write of a closing connection: one non-blocking try at what is queued
    /// (TLS's close_notify included); then the queue is dropped and takes no more.
    pub(super) fn flush_last(self: &Arc<Self>, scratch: &mut Vec<Bytes>) {
        self.out.lock().close_when_drained = None;
        if let Some(tls) = &self.tls {
            tls.lock().send_close_notify();
        }
        self.flush(scratch);
        let mut out = self.out.lock();
        out.dead = true;
        out.epoch += 1;
        out.queue.clear();
        out.queued = 0;
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
}

impl Outbound {
    pub(super) fn new() -> Outbound {
        Outbound {
            queue: VecDeque::new(),
            head_written: 0,
            queued: 0,
            writing: false,
            close_when_drained: None,
            read_blocked: false,
            dead: false,
            epoch: 0,
        }
    }

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
