//! The seam between the transport (sockets, readiness, queues) and what a server does
//! with the bytes: echo them, or speak the chat protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::transport::conn::{CloseReason, Conn, Flusher, Io};
use crate::transport::reactor::Reactor;

/// What the transport does after the service has consumed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading.
    Continue,
    /// Stop reading until the service is woken (`pending::WAKE`).
    Park,
    /// Stop reading; the service has asked for the connection to close.
    Stop,
}

/// A protocol served over connections. Every call for one connection happens on the
/// worker that holds its job, so calls for one connection never overlap.
pub(crate) trait Service: Send + Sync + Sized + 'static {
    /// Per-connection state.
    type Session: Send;

    /// Stop reading a connection whose outbound queue is full (true), or cut it off as
    /// a slow consumer (false).
    const BACKPRESSURE: bool;

    /// Most unconsumed input to buffer for one connection.
    fn read_limit(&self) -> usize;

    /// The state for a new connection from `peer`.
    fn open(&self, peer: SocketAddr) -> Self::Session;

    /// New bytes are in `io.inbuf`: consume what can be handled now.
    fn input(&self, conn: &Arc<Conn<Self>>, io: &mut Io<Self>, flusher: &mut Flusher<Self>)
    -> Flow;

    /// The service's own wake-up (`Conn::schedule(pending::WAKE)`) arrived.
    fn wake(&self, conn: &Arc<Conn<Self>>, io: &mut Io<Self>, flusher: &mut Flusher<Self>) -> Flow;

    /// The client closed its sending side: nothing more arrives. The connection must
    /// close once everything it sent is answered; by default, once what is queued is
    /// written. A service that answers later stops reading (`Conn::set_parked`) and
    /// closes it itself.
    fn input_ended(&self, conn: &Arc<Conn<Self>>, _session: &mut Self::Session) {
        conn.close_when_drained(CloseReason::Eof, None);
    }

    /// The server runs: `reactor` takes the service's own jobs (`Reactor::call`), at
    /// most `jobs` at a time.
    fn attach(&self, _reactor: &Arc<Reactor<Self>>, _jobs: usize) {}

    /// The server is stopping and is about to tell every connection, then close it:
    /// finish what was accepted so its answers go out first, by `deadline` at most.
    /// Called on the poller thread.
    fn quiesce(&self, _deadline: Instant) {}

    /// The connection is closed; release what refers to it.
    fn closed(&self, conn: &Arc<Conn<Self>>, session: &mut Self::Session, reason: CloseReason);

    /// The frame that tells a client why it is being closed, if the protocol has one.
    fn closing_frame(reason: CloseReason) -> Option<Bytes>;

    /// The frame that tells a client it was refused because the server is full.
    fn server_full_frame() -> Option<Bytes>;

    /// Appends the service's own metrics, Prometheus text format.
    fn render_metrics(&self, out: &mut String);
}
