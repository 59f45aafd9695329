//! A small pool for password hashing, kept apart from the workers so that a
//! slow-on-purpose bcrypt never stalls chat traffic.
//!
//! It sheds by expected wait, not by count: a job is refused (`server_busy`) only when
//! the time it would wait for a thread, estimated from the measured time of a hash and
//! the jobs that would run before it, passes `max_wait`. Jobs queue per client address
//! and the addresses take turns, so one address with many connections waits behind
//! its own jobs, not in front of everyone else's.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A job hashes, then hands back what tells its client; that part runs after the
/// thread is marked free, so a client that answers at once is not counted as waiting
/// behind its own finished hash.
type HashJob = Box<dyn FnOnce() -> Then + Send>;

/// What runs once a job's hash is done: waking the client that waits for it.
pub(crate) type Then = Box<dyn FnOnce() + Send>;

/// The hashing pool.
pub(crate) struct Hasher {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Refused: the job would wait longer than the pool allows; `retry_after` is how long
/// the jobs already there should take.
#[derive(Debug)]
pub(crate) struct Busy {
    pub(crate) retry_after: Duration,
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
    /// A moving average of one job's time, in nanoseconds.
    job_nanos: AtomicU64,
    threads: u64,
    max_wait: Duration,
}

struct Queues {
    by_addr: HashMap<IpAddr, VecDeque<HashJob>>,
    /// Addresses with queued jobs, in the order they are served.
    turns: VecDeque<IpAddr>,
    queued: usize,
    /// When each hashing thread started its current job (`None`: idle).
    running: Vec<Option<Instant>>,
    closed: bool,
}

impl Queues {
    /// The next job, taking turns between addresses.
    fn pop(&mut self) -> Option<HashJob> {
        let addr = self.turns.pop_front()?;
        let queue = self.by_addr.get_mut(&addr)?;
        let job = queue.pop_front()?;
        if queue.is_empty() {
            self.by_addr.remove(&addr);
        } else {
            self.turns.push_back(addr);
        }
        self.queued -= 1;
        Some(job)
    }

    /// The work before a new job from `addr` can start, in nanoseconds of one thread:
    /// what is left of the running jobs (a job that has run its expected time, and
    /// may be waking its client right now, counts as done), then its own queued jobs
    /// and from each other address as many as take their turn first (one more than
    /// `addr` has).
    fn work_ahead_of(&self, addr: IpAddr, per_job: u64, now: Instant) -> u64 {
        let own = self.by_addr.get(&addr).map_or(0, VecDeque::len);
        let others: usize = self
            .by_addr
            .iter()
            .filter(|(other, _)| **other != addr)
            .map(|(_, queue)| queue.len().min(own + 1))
            .sum();
        let running: u64 = self
            .running
            .iter()
            .flatten()
            .map(|started| per_job.saturating_sub(nanos(now.duration_since(*started))))
            .sum();
        ((own + others) as u64)
            .saturating_mul(per_job)
            .saturating_add(running)
    }
}

impl Hasher {
    /// `threads` hashing threads; a job that would wait more than `max_wait` is refused.
    /// `first_estimate` is the time of one hash until jobs are measured.
    pub(crate) fn new(threads: usize, max_wait: Duration, first_estimate: Duration) -> Hasher {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues {
                by_addr: HashMap::new(),
                turns: VecDeque::new(),
                queued: 0,
                running: vec![None; threads],
                closed: false,
            }),
            ready: Condvar::new(),
            job_nanos: AtomicU64::new(nanos(first_estimate)),
            threads: threads.max(1) as u64,
            max_wait,
        });
        let threads = (0..threads)
            .map(|i| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("parlor-hash-{i}"))
                    .spawn(move || shared.work(i))
                    .expect("cannot start a password-hashing thread")
            })
            .collect();
        Hasher { shared, threads }
    }

    /// Jobs waiting for a hashing thread.
    pub(crate) fn queued(&self) -> usize {
        self.shared.queues.lock().queued
    }

    /// Queues a hashing job for a client at `addr`, or refuses at once when it would
    /// wait too long.
    pub(crate) fn try_run(
        &self,
        addr: IpAddr,
        job: impl FnOnce() -> Then + Send + 'static,
    ) -> Result<(), Busy> {
        let shared = &self.shared;
        let mut queues = shared.queues.lock();
        let per_job = shared.job_nanos.load(Ordering::Relaxed);
        let work = queues.work_ahead_of(addr, per_job, Instant::now());
        let wait = Duration::from_nanos(work / shared.threads);
        if queues.closed || wait > shared.max_wait {
            return Err(Busy { retry_after: wait });
        }
        let queue = queues.by_addr.entry(addr).or_default();
        queue.push_back(Box::new(job));
        if queue.len() == 1 {
            queues.turns.push_back(addr);
        }
        queues.queued += 1;
        shared.ready.notify_one();
        Ok(())
    }
}

impl Shared {
    /// Thread `slot`'s loop.
    fn work(&self, slot: usize) {
        loop {
            let (job, started) = {
                let mut queues = self.queues.lock();
                loop {
                    if let Some(job) = queues.pop() {
                        let started = Instant::now();
                        queues.running[slot] = Some(started);
                        break (job, started);
                    }
                    if queues.closed {
                        return;
                    }
                    self.ready.wait(&mut queues);
                }
            };
            let then = job();
            self.measured(started.elapsed());
            self.queues.lock().running[slot] = None;
            then();
        }
    }

    /// Folds one job's time into the average (weight 1/8: a change of cost or of load
    /// shows within a few jobs).
    fn measured(&self, took: Duration) {
        let sample = nanos(took);
        let _ = self
            .job_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(old - old / 8 + sample / 8)
            });
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Drop for Hasher {
    /// Runs the jobs already queued (their connections wait for them), then stops.
    fn drop(&mut self) {
        self.shared.queues.lock().closed = true;
        self.shared.ready.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
