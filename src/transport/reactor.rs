//! What every connection needs from the server core: the poller to re-arm, the job
//! queue to schedule itself on, and the limits and clock they share.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Connections in `conns` that were refused by a limit and are only finishing
    /// their TLS handshake to be told so: they hold no place.
    refusing: AtomicUsize,
    /// Open connections per client address, for the per-IP limit.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Throttled connections by (deadline ms, key): when the poller must wake them.
    /// One entry per throttled connection at most, so bounded by the connections.
    throttled: Mutex<BTreeSet<(u64, usize)>>,
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
            refusing: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            throttled: Mutex::new(BTreeSet::new()),
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
    /// Forgets a closed connection; false if it was already forgotten (so its place
    /// is given back once, however often this is called).
    pub(crate) fn remove(&self, conn: &Conn<S>) -> bool {
        if let Some(deadline) = conn.throttled_until() {
            self.throttled.lock().remove(&(deadline, conn.key));
        }
        if self.conns.lock().remove(&conn.key).is_none() {
            return false;
        }
        if conn.is_refused() {
            self.refusing.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.release_ip(conn.peer.ip());
        }
        true
    }

    /// Adds a connection to the map; a refused one (`Conn::is_refused`) holds no place.
    pub(crate) fn insert(&self, conn: Arc<Conn<S>>) {
        if conn.is_refused() {
            self.refusing.fetch_add(1, Ordering::Relaxed);
        }
        self.conns.lock().insert(conn.key, conn);
    }

    /// Connections that hold a place (`--max-conns`): open and not refused.
    pub(crate) fn open_count(&self) -> usize {
        let all = self.conns.lock().len();
        all.saturating_sub(self.refusing.load(Ordering::Relaxed))
    }

    /// Refused connections still finishing their TLS handshake.
    pub(crate) fn refusing(&self) -> usize {
        self.refusing.load(Ordering::Relaxed)
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

    /// Has the poller wake connection `key` at `deadline` (reactor clock, ms), waking
    /// the poller now if that is sooner than anything it waits for.
    pub(crate) fn wake_at(&self, deadline: u64, key: usize) {
        let first = {
            let mut throttled = self.throttled.lock();
            throttled.insert((deadline, key));
            throttled.first() == Some(&(deadline, key))
        };
        if first && let Err(e) = self.poller.notify() {
            log::warn!("cannot wake the poller for a throttled connection: {e}");
        }
    }

    /// The earliest throttle deadline (reactor clock, ms), if any.
    pub(crate) fn next_wake(&self) -> Option<u64> {
        self.throttled.lock().first().map(|&(deadline, _)| deadline)
    }

    /// Takes the keys of the connections whose throttle deadline has come.
    pub(crate) fn due(&self, now_ms: u64) -> Vec<usize> {
        let mut throttled = self.throttled.lock();
        let later = throttled.split_off(&(now_ms + 1, 0));
        std::mem::replace(&mut *throttled, later)
            .into_iter()
            .map(|(_, key)| key)
            .collect()
    }

    /// A snapshot of the open connections (the map lock is released on return).
    pub(crate) fn snapshot(&self) -> Vec<Arc<Conn<S>>> {
        self.conns.lock().values().cloned().collect()
    }
}
