//! The seam between the transport (sockets, readiness, queues) and what a server does
//! with the bytes: echo them, or speak the chat protocol.
//!
//! A service sees the transport only through this module: the [`Service`] trait it
//! implements, the connection handle it answers through ([`Conn`], with the [`Flusher`]
//! that writes a job's frames out at its end, and [`Io`], the connection's input and
//! session), and the [`Pool`] that runs its own work on the workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::metrics::Encoder;
use std::sync::Weak;

pub(crate) use crate::transport::conn::{CloseReason, Conn, Flusher, Io, pending};
use crate::transport::reactor::{Call, Reactor};

/// The worker pool, as a service sees it: where it runs work of its own (such as
/// delivery after a commit), at most `jobs` at a time. It holds the pool weakly: once
/// the server has stopped, [`Pool::call`] says so and the service runs the work itself.
pub(crate) struct Pool<S: Service> {
    reactor: Weak<Reactor<S>>,
    jobs: usize,
}

// Not derived: that would ask `S: Clone`.
impl<S: Service> Clone for Pool<S> {
    fn clone(&self) -> Pool<S> {
        Pool {
            reactor: Weak::clone(&self.reactor),
            jobs: self.jobs,
        }
    }
}

impl<S: Service> Pool<S> {
    pub(crate) fn new(reactor: &Arc<Reactor<S>>, jobs: usize) -> Pool<S> {
        Pool {
            reactor: Arc::downgrade(reactor),
            jobs: jobs.max(1),
        }
    }

    /// Jobs of the service's own that may be queued or running at once: the job queue
    /// has room for that many besides the connections' (see `server::serve`), so a
    /// service that keeps to it never blocks in [`Pool::call`].
    pub(crate) fn jobs(&self) -> usize {
        self.jobs
    }

    /// The open connections that hold a place (not those refused by a limit and only
    /// finishing their TLS handshake to be told so), in no order; empty once the
    /// server has stopped.
    pub(crate) fn connections(&self) -> Vec<Arc<Conn<S>>> {
        self.reactor.upgrade().map_or_else(Vec::new, |r| {
            let mut conns = r.snapshot();
            conns.retain(|c| !c.is_refused());
            conns
        })
    }

    /// Runs `call` on a worker, with that worker's flusher; false (and `call` is
    /// dropped) when the pool has stopped.
    pub(crate) fn call(&self, call: Call<S>) -> bool {
        self.reactor.upgrade().is_some_and(|r| r.call(call))
    }
}

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

    /// Per-connection facts that others read without the connection's job (e.g. the
    /// protocol version a chat connection speaks, read while delivering to it): set
    /// by the service, kept in [`Conn::tag`].
    type Tag: Default + Send + Sync;

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

    /// The server runs: `pool` takes the service's own jobs from now on.
    fn attach(&self, _pool: Pool<Self>) {}

    /// The server is stopping and is about to tell every connection, then close it:
    /// finish what was accepted so its answers go out first, by `deadline` at most.
    /// Called on the poller thread.
    fn quiesce(&self, _deadline: Instant) {}

    /// The connection is closed; release what refers to it.
    fn closed(&self, conn: &Arc<Conn<Self>>, session: &mut Self::Session, reason: CloseReason);

    /// The frame that tells a client why it is being closed, if the protocol has one.
    fn closing_frame(reason: CloseReason) -> Option<Bytes>;

    /// Writes the service's own metrics (for a scrape of `/metrics`).
    fn encode_metrics(&self, out: &mut Encoder<'_>) -> std::fmt::Result;

    /// Whether the service can do its work now (for `/readyz`); Err: why not.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}
