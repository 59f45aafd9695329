//! The seam between the transport (sockets, readiness, queues) and what a server does
//! with the bytes: echo them, or speak the chat protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::metrics::Encoder;
use crate::transport::conn::{CloseReason, Conn, Flusher, Io};

/// What the transport does after the service has consumed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading.
    Continue,
    /// Stop reading until the service is woken (`pending::WAKE`).
    Park,
    /// Stop reading; the service has asked for the connection to close.
    Stop,
    /// Stop reading for this long (the client is over its rate), then wake the
    /// service (`Service::wake`) to go on with what is buffered. The idle timeout is
    /// paused meanwhile.
    Throttle(Duration),
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

    /// The connection is closed; release what refers to it.
    fn closed(&self, conn: &Arc<Conn<Self>>, session: &mut Self::Session, reason: CloseReason);

    /// The frame that tells a client why it is being closed, if the protocol has one.
    fn closing_frame(reason: CloseReason) -> Option<Bytes>;

    /// Writes the service's own metrics (for a scrape of `/metrics`).
    fn encode_metrics(&self, out: &mut Encoder<'_>) -> std::fmt::Result;
}
