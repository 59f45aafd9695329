//! Delivery after a commit, on the worker pool: room fan-out and the writes of frames
//! the store's writer queued, so the writer thread goes straight on to its next
//! commit and rooms fan out in parallel.
//!
//! Each room has a lane (`room::Lane`): its committed events, in commit order, and
//! whether it waits in the ready queue or is being run. A room is in the ready queue
//! at most once and run by one worker at a time, which takes the events queued so far
//! in order; so each room's events reach every member in commit order, while
//! different rooms run side by side. At most one delivery job per worker is in the
//! pool's queue (`Ready::running`), which is what the queue is sized for.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::chat::Chat;
use crate::chat::room::{Room, RoomEvent};
use crate::metrics::ChatMetrics;
use crate::transport::service::{Flusher, Pool};

/// Room events waiting in lanes beyond which the store's writer delivers too, before
/// its next commit: delivery that cannot keep up slows the commits, and the store's
/// queue then slows the senders, so the lanes stay bounded.
const LANE_BACKLOG: usize = 64 * 1024;

/// Work for a delivery job.
enum Work {
    /// Run the room's lane.
    Room(Arc<Room>),
    /// Write out connections whose frames the writer queued.
    Flush(Flusher<Chat>),
}

#[derive(Default)]
struct Ready {
    work: VecDeque<Work>,
    /// Delivery jobs queued or running on the pool.
    running: usize,
}

/// The delivery lanes' scheduler.
pub(crate) struct Delivery {
    /// The worker pool, once the server runs (before, and after it stops, delivery
    /// runs on the calling thread).
    pool: OnceLock<Pool<Chat>>,
    ready: Mutex<Ready>,
    /// Room events in lanes, not yet delivered.
    backlog: AtomicUsize,
    metrics: Arc<ChatMetrics>,
}

impl Delivery {
    pub(crate) fn new(metrics: Arc<ChatMetrics>) -> Delivery {
        Delivery {
            pool: OnceLock::new(),
            ready: Mutex::new(Ready::default()),
            backlog: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Runs delivery on `pool` from now on.
    pub(crate) fn attach(&self, pool: Pool<Chat>) {
        let _ = self.pool.set(pool);
    }

    /// Queues a committed room event on the room's lane.
    pub(crate) fn room(self: &Arc<Self>, room: &Arc<Room>, event: RoomEvent) {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        if room.lane.lock().push(event) {
            self.push(Work::Room(Arc::clone(room)));
        }
    }

    /// Has the pool write out what was queued into `flusher`.
    pub(crate) fn flush(self: &Arc<Self>, flusher: Flusher<Chat>) {
        self.push(Work::Flush(flusher));
    }

    /// Called by the store's writer after each batch: while the lanes hold too much,
    /// it delivers too (work it takes from the ready queue is its own, so a room still
    /// has one deliverer at a time).
    pub(crate) fn help_if_behind(&self) {
        let mut flusher = Flusher::default();
        while self.backlog.load(Ordering::Relaxed) > LANE_BACKLOG {
            let Some(work) = self.ready.lock().work.pop_front() else {
                break;
            };
            self.run_guarded(work, &mut flusher);
        }
    }

    /// Whether nothing waits for delivery.
    pub(crate) fn idle(&self) -> bool {
        let ready = self.ready.lock();
        ready.work.is_empty() && ready.running == 0
    }

    fn push(self: &Arc<Self>, work: Work) {
        let mut ready = self.ready.lock();
        ready.work.push_back(work);
        let Some(pool) = self.pool.get() else {
            drop(ready);
            return self.run_here();
        };
        if ready.running >= pool.jobs() {
            return;
        }
        ready.running += 1;
        drop(ready);
        let this = Arc::clone(self);
        let spawned = pool.call(Box::new(move |flusher| this.drain(flusher)));
        if !spawned {
            self.ready.lock().running -= 1;
            self.run_here();
        }
    }

    /// Without a pool (starting, or stopped): delivers on this thread.
    fn run_here(self: &Arc<Self>) {
        let mut flusher = Flusher::default();
        self.ready.lock().running += 1;
        self.drain(&mut flusher);
    }

    /// A delivery job: runs ready work until there is none.
    fn drain(&self, flusher: &mut Flusher<Chat>) {
        loop {
            let work = {
                let mut ready = self.ready.lock();
                match ready.work.pop_front() {
                    Some(work) => work,
                    None => {
                        ready.running -= 1;
                        return;
                    }
                }
            };
            self.run_guarded(work, flusher);
        }
    }

    /// Runs one piece of work and writes out what it queued. A panic costs that
    /// piece, not the job's count (which would leak and stall every lane) nor the
    /// store's writer.
    fn run_guarded(&self, work: Work, flusher: &mut Flusher<Chat>) {
        if panic::catch_unwind(AssertUnwindSafe(|| self.run(work, flusher))).is_err() {
            log::error!("delivery panicked; its frames are lost");
        }
        flusher.flush_all();
    }

    fn run(&self, work: Work, flusher: &mut Flusher<Chat>) {
        match work {
            Work::Flush(mut queued) => queued.flush_all(),
            Work::Room(room) => {
                let events = room.lane.lock().take();
                self.backlog.fetch_sub(events.len(), Ordering::Relaxed);
                let delivered: usize = {
                    let state = room.state.lock();
                    events.into_iter().map(|e| e.deliver(&state, flusher)).sum()
                };
                self.metrics.deliveries.add(delivered as u64);
                // More arrived meanwhile: back of the queue, so a busy room cannot
                // hold a worker.
                if room.lane.lock().done() {
                    self.ready.lock().work.push_back(Work::Room(room));
                }
            }
        }
    }
}
