//! The connection's bytes: the socket and the TLS session over it, cut into lines.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use rustls::ClientConnection;

use crate::client::ClientError;

/// Longest line the client accepts from the server. The server's own frames are far
/// smaller (a `history` response is capped at 1 MiB of messages); the cap only stops a
/// broken or hostile peer from growing the buffer without bound.
pub const MAX_LINE: usize = 16 << 20;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 << 10;

/// The start of a bad line, for an error message that stays readable.
pub(super) fn excerpt(line: &[u8]) -> String {
    const SHOWN: usize = 200;
    let text = String::from_utf8_lossy(&line[..line.len().min(SHOWN)]);
    if line.len() > SHOWN {
        format!("{text}... ({} bytes)", line.len())
    } else {
        text.into_owned()
    }
}

/// Whether a socket error is a read or write timeout (the kind differs by platform).
pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether a socket error means the server has gone away. Over TLS, a connection
/// closed without a TLS goodbye (`close_notify`) reads as `UnexpectedEof`; for a
/// protocol of whole lines that is a close like any other.
pub(super) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// What [`LineReader::next_line`] found.
pub(super) enum Line<'a> {
    /// A complete line, without its `\n` or `\r\n`; never blank.
    Frame(&'a [u8]),
    TimedOut,
    Eof,
}

/// Splits the byte stream into lines. Bytes read stay in `buf` until their line is
/// complete, so a timeout in the middle of a line loses nothing.
#[derive(Default)]
pub(super) struct LineReader {
    /// `buf[start..filled]` is received and not yet consumed; the rest is zeroed room
    /// for the next read, kept so that reads do not zero it again each time.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    /// How far past `start` has been searched for `\n` already, so a long line
    /// arriving in many reads is scanned once, not once per read.
    scanned: usize,
}

impl LineReader {
    pub(super) fn next_line(
        &mut self,
        stream: &mut Transport,
        deadline: Instant,
    ) -> Result<Line<'_>, ClientError> {
        loop {
            let pending = &self.buf[self.start..self.filled];
            if let Some(at) = pending[self.scanned..].iter().position(|&b| b == b'\n') {
                let line_start = self.start;
                let mut end = line_start + self.scanned + at;
                self.start = end + 1;
                self.scanned = 0;
                if end > line_start && self.buf[end - 1] == b'\r' {
                    end -= 1;
                }
                // Indices, not a slice, until the return: a borrow of `buf` held across
                // the `continue` would outlive the loop's later mutation of it.
                if self.buf[line_start..end]
                    .iter()
                    .all(u8::is_ascii_whitespace)
                {
                    continue;
                }
                return Ok(Line::Frame(&self.buf[line_start..end]));
            }
            self.scanned = pending.len();
            if self.scanned > MAX_LINE {
                return Err(ClientError::Protocol(format!(
                    "server sent a line longer than {MAX_LINE} bytes"
                )));
            }
            // Only the incomplete line is left: move it to the front before reading
            // more, which costs at most one copy of it per read.
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
            if self.buf.len() < self.filled + READ_CHUNK {
                self.buf.resize(self.filled + READ_CHUNK, 0);
            }
            match stream.read(&mut self.buf[self.filled..], deadline) {
                Ok(0) => return Ok(Line::Eof),
                Ok(n) => self.filled += n,
                Err(e) if is_timeout(&e) => return Ok(Line::TimedOut),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The connection's bytes: the socket, and the TLS session over it if there is one.
pub(super) struct Transport {
    /// Always the socket itself: timeouts and shutdown are set on it directly.
    pub(super) tcp: TcpStream,
    /// Boxed because a session is large and a plain client has none.
    pub(super) tls: Option<Box<ClientConnection>>,
}

impl Transport {
    /// One read of (plaintext) bytes into `room`, waiting no later than `deadline`;
    /// past it, takes only what has already arrived.
    pub(super) fn read(&mut self, room: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let Some(conn) = &mut self.tls else {
            return with_deadline(&mut self.tcp, deadline, |tcp| tcp.read(room));
        };
        loop {
            match conn.reader().read(room) {
                // `Ok(0)` is the server's TLS goodbye; a close without one is an error.
                Ok(n) => return Ok(n),
                // No plaintext yet: another record must come off the socket.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // At the end of the stream this reads 0, and the reader above says so next.
            with_deadline(&mut self.tcp, deadline, |tcp| conn.read_tls(tcp))?;
            if let Err(e) = conn.process_new_packets() {
                send_alert(conn, &mut self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Whatever TLS owes the server after a record (a key update, say).
            while conn.wants_write() {
                conn.write_tls(&mut self.tcp)?;
            }
        }
    }

    /// Writes all of `bytes`, encrypted if over TLS, within the socket's write timeout.
    pub(super) fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let Some(conn) = &mut self.tls else {
            return self.tcp.write_all(bytes);
        };
        // rustls buffers a bounded amount, so a long frame goes in turns: encrypt what
        // fits, send it, repeat. Written by hand rather than through `rustls::Stream`,
        // whose writes also read the socket and could wait on it past the timeout.
        while !bytes.is_empty() || conn.wants_write() {
            let taken = conn.writer().write(bytes)?;
            bytes = &bytes[taken..];
            if taken == 0 && !conn.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            while conn.wants_write() {
                if conn.write_tls(&mut self.tcp)? == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
            }
        }
        Ok(())
    }
}

/// Runs `io` on `tcp` with a read timeout ending at `deadline`; past it, `io` only
/// takes what has already arrived.
pub(super) fn with_deadline<T>(
    tcp: &mut TcpStream,
    deadline: Instant,
    io: impl FnOnce(&mut TcpStream) -> io::Result<T>,
) -> io::Result<T> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    // A zero read timeout means "block forever" to the OS, so poll instead.
    if remaining.is_zero() {
        tcp.set_nonblocking(true)?;
        let result = io(tcp);
        tcp.set_nonblocking(false)?;
        result
    } else {
        tcp.set_read_timeout(Some(remaining))?;
        io(tcp)
    }
}

/// Sends the alert rustls queued on a failure, so the server's log says why (an
/// unknown CA, say). Best effort: the connection is failing anyway.
pub(super) fn send_alert(conn: &mut ClientConnection, tcp: &mut TcpStream) {
    while conn.wants_write() {
        if !matches!(conn.write_tls(tcp), Ok(n) if n > 0) {
            return;
        }
    }
}
