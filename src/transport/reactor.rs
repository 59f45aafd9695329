//! What every connection needs from the server core: the poller to re-arm, the job
//! queue to schedule itself on, and the limits and clock they share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use polling::Poller;

use crate::metrics::TransportMetrics;
use crate::transport::conn::{Conn, Flusher};
use crate::transport::service::Service;

/// A unit of work for the worker pool.
pub(crate) enum Task<S: Service> {
    /// Run the connection's job: its pending reads, writes, wake-ups or close.
    Run(Arc<Conn<S>>),
    /// The service's own work, of no one connection (the chat's delivery after a
    /// commit); the worker writes out what it queued.
    Call(Call<S>),
    /// The server is stopping: the worker exits.
    Stop,
}

/// See [`Task::Call`].
pub(crate) type Call<S> = Box<dyn FnOnce(&mut Flusher<S>) + Send>;

/// Shared by the poller thread, the workers and every connection.
pub(crate) struct Reactor<S: Service> {
    /// The one poller that owns every socket's readiness.
    pub(crate) poller: Arc<Poller>,
    /// Every open connection by poller key. Never taken while a connection lock is held.
    pub(crate) conns: Mutex<HashMap<usize, Arc<Conn<S>>>>,
    /// Open connections per client address, for the per-IP limit.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Counters for `/metrics`.
    pub(crate) metrics: TransportMetrics,
    jobs: Sender<Task<S>>,
    /// Bytes one connection's outbound queue may hold.
    pub(crate) max_outbound: usize,
    epoch: Instant,
}

impl<S: Service> Reactor<S> {
    pub(crate) fn new(poller: Arc<Poller>, jobs: Sender<Task<S>>, max_outbound: usize) -> Self {
        Reactor {
            poller,
            conns: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            metrics: TransportMetrics::default(),
            jobs,
            max_outbound,
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the server started: a cheap monotonic clock for timeouts.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Hands a connection's job to the pool. The queue holds at most one job per
    /// connection (plus the stop tasks), and is sized for that, so this never blocks.
    pub(crate) fn submit(&self, conn: Arc<Conn<S>>) {
        if self.jobs.send(Task::Run(conn)).is_err() {
            log::debug!("job dropped: the worker pool has stopped");
        }
    }

    /// Hands the service's own work to the pool; false if the pool has stopped. The
    /// queue has room for one such job per worker besides the connections' (see
    /// `server::serve`): the service keeps to that, so this never blocks.
    pub(crate) fn call(&self, call: Call<S>) -> bool {
        self.jobs.send(Task::Call(call)).is_ok()
    }

    /// Tells `workers` workers to exit once the jobs before are done.
    pub(crate) fn stop_workers(&self, workers: usize) {
        for _ in 0..workers {
            let _ = self.jobs.send(Task::Stop);
        }
    }
}

impl<S: Service> Reactor<S> {
    /// Forgets a closed connection.
    pub(crate) fn remove(&self, conn: &Conn<S>) {
        self.conns.lock().remove(&conn.key);
        self.release_ip(conn.peer.ip());
    }

    /// Uncounts a connection from `ip` (closed, or never set up).
    pub(crate) fn release_ip(&self, ip: IpAddr) {
        let mut per_ip = self.per_ip.lock();
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    /// Counts a new connection from `ip`, unless `ip` already has `limit` (0: no
    /// limit). Loopback is limited only if `loopback`: it is this machine, or a proxy
    /// in front of it.
    pub(crate) fn admit_ip(&self, ip: IpAddr, limit: usize, loopback: bool) -> bool {
        let mut per_ip = self.per_ip.lock();
        let count = per_ip.entry(ip).or_insert(0);
        if limit > 0 && *count >= limit && (loopback || !ip.is_loopback()) {
            return false;
        }
        *count += 1;
        true
    }

    /// A snapshot of the open connections (the map lock is released on return).
    pub(crate) fn snapshot(&self) -> Vec<Arc<Conn<S>>> {
        self.conns.lock().values().cloned().collect()
    }
}
