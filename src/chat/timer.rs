//! Delayed work for what is not stored and must end by itself (issue 17 items 6 and
//! 7): a typing indicator that expires, an `offline` that waits out a reconnect. One
//! thread per chat service sleeps until the next job is due, runs it with its own
//! `Flusher` and hands what it queued to the delivery pool. It ends once the service
//! is gone (it holds the timer weakly).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::chat::Chat;
use crate::chat::delivery::Delivery;
use crate::transport::service::Flusher;

/// A job: queues frames into the flusher it is given.
pub(crate) type Job = Box<dyn FnOnce(&Weak<Timer>, &mut Flusher<Chat>) + Send>;

/// The longest the thread sleeps before it looks whether the service is gone.
const POLL: Duration = Duration::from_secs(1);

/// Jobs by when they are due (and a counter, so two at one instant both stay).
type Queue = BTreeMap<(Instant, u64), Job>;

/// The delayed jobs and the counter of the last one added.
pub(crate) struct Timer {
    jobs: Mutex<(Queue, u64)>,
    due: Condvar,
}

impl Timer {
    /// A timer whose thread delivers through `delivery`.
    pub(crate) fn start(delivery: Arc<Delivery>) -> Arc<Timer> {
        let timer = Arc::new(Timer {
            jobs: Mutex::new((BTreeMap::new(), 0)),
            due: Condvar::new(),
        });
        let weak = Arc::downgrade(&timer);
        let spawned = std::thread::Builder::new()
            .name("parlor-timer".into())
            .spawn(move || run(&weak, &delivery));
        if let Err(e) = spawned {
            log::error!("the timer thread could not start: {e}; typing and presence stay as set");
        }
        timer
    }

    /// Runs `job` after `delay`.
    pub(crate) fn after(&self, delay: Duration, job: Job) {
        let mut jobs = self.jobs.lock();
        jobs.1 += 1;
        let key = (Instant::now() + delay, jobs.1);
        jobs.0.insert(key, job);
        self.due.notify_one();
    }
}

fn run(weak: &Weak<Timer>, delivery: &Arc<Delivery>) {
    loop {
        let Some(timer) = weak.upgrade() else {
            return;
        };
        let ready: Vec<Job> = {
            let mut jobs = timer.jobs.lock();
            let now = Instant::now();
            let later = jobs.0.split_off(&(now, u64::MAX));
            let ready = std::mem::replace(&mut jobs.0, later);
            if ready.is_empty() {
                let wait = jobs
                    .0
                    .keys()
                    .next()
                    .map_or(POLL, |(at, _)| at.saturating_duration_since(now).min(POLL));
                let _ = timer.due.wait_for(&mut jobs, wait);
            }
            ready.into_values().collect()
        };
        drop(timer);
        if ready.is_empty() {
            continue;
        }
        let mut flusher = Flusher::default();
        for job in ready {
            job(weak, &mut flusher);
        }
        delivery.flush(flusher);
    }
}
