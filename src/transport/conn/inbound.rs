//! A connection's inbound side: the buffer of bytes received and not yet consumed by
//! the service, the spare buffers a worker keeps, and the read path (plain, or
//! through rustls).
//!
//! Invariant: only the job that holds the connection reads its socket and touches its
//! inbound buffer (both live under the `io` lock the job holds).

use std::io::{self, Read};
use std::sync::atomic::Ordering;

use rustls::ServerConnection;

use super::Conn;
use crate::transport::service::Service;

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

impl<S: Service> Conn<S> {
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
            self.stats.received(n);
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
}
