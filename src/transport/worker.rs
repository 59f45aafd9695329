//! The worker pool: threads that run connection jobs (read until `WouldBlock`, let the
//! service handle the frames, flush what they produced) handed over by the poller.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::Receiver;

use crate::transport::conn::{CloseReason, Conn, Flusher, InBuf, SpareBufs, pending};
use crate::transport::reactor::{Reactor, Task};
use crate::transport::service::{Flow, Service};

/// Reads one job may do before it yields the worker to other connections.
const READS_PER_JOB: usize = 16;

/// Starts `n` workers taking jobs from `jobs`.
pub(crate) fn spawn<S: Service>(
    n: usize,
    jobs: &Receiver<Task<S>>,
    reactor: &Arc<Reactor<S>>,
    service: &Arc<S>,
) -> Vec<JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let jobs = jobs.clone();
            let reactor = Arc::clone(reactor);
            let service = Arc::clone(service);
            thread::Builder::new()
                .name(format!("parlor-worker-{i}"))
                .spawn(move || work(&jobs, &reactor, &service))
                .expect("cannot start a worker thread")
        })
        .collect()
}

fn work<S: Service>(jobs: &Receiver<Task<S>>, reactor: &Reactor<S>, service: &S) {
    let mut flusher = Flusher::default();
    let mut spare = SpareBufs::default();
    loop {
        let conn = match jobs.recv() {
            Ok(Task::Run(conn)) => conn,
            Ok(Task::Call(call)) => {
                if panic::catch_unwind(AssertUnwindSafe(|| call(&mut flusher))).is_err() {
                    log::error!("a service job panicked");
                }
                flusher.flush_all();
                continue;
            }
            Ok(Task::Stop) | Err(_) => return,
        };
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            run_job(&conn, reactor, service, &mut flusher, &mut spare);
        }));
        if outcome.is_err() {
            // A bug in a handler costs that one connection, not the worker or the server.
            log::error!(
                "conn {}: handler panicked; closing the connection",
                conn.key
            );
            // Other connections queued frames during this job and count on its flush.
            if panic::catch_unwind(AssertUnwindSafe(|| flusher.flush_all())).is_err() {
                flusher = Flusher::default();
            }
            let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                close(&conn, reactor, service, &mut flusher, CloseReason::Error);
            }));
        }
    }
}

/// Runs everything pending for one connection. Only this job touches the connection's
/// `io` (inbound bytes and service session) while it runs.
fn run_job<S: Service>(
    conn: &Arc<Conn<S>>,
    reactor: &Reactor<S>,
    service: &S,
    flusher: &mut Flusher<S>,
    spare: &mut SpareBufs,
) {
    while let Some((bits, reason)) = conn.take_pending() {
        if bits & pending::CLOSE != 0 {
            close(
                conn,
                reactor,
                service,
                flusher,
                reason.unwrap_or(CloseReason::Error),
            );
            return;
        }
        if bits & pending::WRITE != 0 {
            conn.flush(flusher.scratch());
        }
        let mut io = conn.io.lock();
        let mut flow = Flow::Continue;
        if bits & pending::WAKE != 0 {
            flow = service.wake(conn, &mut io, flusher);
            conn.set_parked(flow == Flow::Park);
            if let Flow::Throttle(wait) = flow {
                conn.throttle(wait);
            }
        }
        let mut yielded = false;
        if bits & (pending::READ | pending::WAKE) != 0 && flow == Flow::Continue {
            if bits & pending::READ != 0 {
                conn.set_blocked(false);
            }
            yielded = read(conn, &mut io, service, flusher, spare);
            conn.finish_refusal(S::closing_frame(CloseReason::ServerFull));
            if conn.is_tls() {
                // Reading may have produced handshake replies or alerts to send.
                conn.flush(flusher.scratch());
            }
        }
        io.inbuf.release_if_empty(spare);
        drop(io);
        flusher.flush_all();
        if yielded {
            conn.requeue(pending::READ);
            return;
        }
    }
}

/// Reads and hands input to the service until the socket would block, the service
/// parks, or the job has had its share. Returns true when the job should yield.
fn read<S: Service>(
    conn: &Arc<Conn<S>>,
    io: &mut crate::transport::conn::Io<S>,
    service: &S,
    flusher: &mut Flusher<S>,
    spare: &mut SpareBufs,
) -> bool {
    let limit = service.read_limit();
    for _ in 0..READS_PER_JOB {
        if !conn.read_wanted() {
            return false;
        }
        if S::BACKPRESSURE && conn.outbound_full() {
            conn.set_blocked(true);
            return false;
        }
        match conn.read_into(&mut io.inbuf, limit, spare) {
            Ok(got) if got.bytes == 0 => {
                // The partial frame in the buffer is dropped; the service closes once
                // what it was sent is answered.
                service.input_ended(conn, &mut io.session);
                return false;
            }
            Ok(_) if conn.is_refused() => {
                // Sent after the handshake by a client it was refused: never handled.
                let n = io.inbuf.data().len();
                io.inbuf.consume(n);
            }
            Ok(got) => match service.input(conn, io, flusher) {
                Flow::Continue if got.drained => return false,
                Flow::Continue => {}
                Flow::Park => {
                    conn.set_parked(true);
                    return false;
                }
                Flow::Stop => return false,
                Flow::Throttle(wait) => {
                    conn.throttle(wait);
                    return false;
                }
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let reason = match e.kind() {
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                        CloseReason::Eof
                    }
                    _ => CloseReason::Error,
                };
                if e.kind() == io::ErrorKind::InvalidData {
                    // A TLS failure: a plain client on a TLS port, a bad record.
                    log::info!("conn {} from {}: TLS error: {e}", conn.key, conn.peer);
                } else {
                    log::debug!("conn {}: read error: {e}", conn.key);
                }
                conn.request_close(reason);
                return false;
            }
        }
    }
    true
}

fn close<S: Service>(
    conn: &Arc<Conn<S>>,
    reactor: &Reactor<S>,
    service: &S,
    flusher: &mut Flusher<S>,
    reason: CloseReason,
) {
    // Dropped however this ends, a panic in `conn.close` or in the service included:
    // a connection always gives back its slot (and its `--max-conns` place).
    let _release = Release {
        conn,
        reactor,
        reason,
    };
    if !conn.close(flusher.scratch()) {
        return;
    }
    let mut io = conn.io.lock();
    service.closed(conn, &mut io.session, reason);
    io.inbuf = InBuf::default();
}

/// Forgets a closing connection when dropped: see `close`.
struct Release<'a, S: Service> {
    conn: &'a Arc<Conn<S>>,
    reactor: &'a Reactor<S>,
    reason: CloseReason,
}

impl<S: Service> Drop for Release<'_, S> {
    fn drop(&mut self) {
        if self.reactor.remove(self.conn) {
            log::info!(
                "conn {} from {} closed: {}",
                self.conn.key,
                self.conn.peer,
                self.reason.as_str()
            );
        }
    }
}
