//! A small bounded pool for password hashing, kept apart from the workers so that a
//! slow-on-purpose bcrypt never stalls chat traffic.

use std::thread::{self, JoinHandle};

use crossbeam_channel::{Sender, TrySendError};

type HashJob = Box<dyn FnOnce() + Send>;

/// The hashing pool: `threads` threads behind a queue of `queue` waiting jobs.
pub(crate) struct Hasher {
    jobs: Option<Sender<HashJob>>,
    threads: Vec<JoinHandle<()>>,
}

/// The queue is full: the caller answers `server_busy`.
#[derive(Debug)]
pub(crate) struct Busy;

impl Hasher {
    pub(crate) fn new(threads: usize, queue: usize) -> Hasher {
        let (tx, rx) = crossbeam_channel::bounded::<HashJob>(queue);
        let threads = (0..threads)
            .map(|i| {
                let rx = rx.clone();
                thread::Builder::new()
                    .name(format!("parlor-hash-{i}"))
                    .spawn(move || {
                        for job in rx {
                            job();
                        }
                    })
                    .expect("cannot start a password-hashing thread")
            })
            .collect();
        Hasher {
            jobs: Some(tx),
            threads,
        }
    }

    /// Jobs waiting for a hashing thread.
    pub(crate) fn queued(&self) -> usize {
        self.jobs.as_ref().map_or(0, |jobs| jobs.len())
    }

    /// Queues a hashing job, or refuses at once when the queue is full.
    pub(crate) fn try_run(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Busy> {
        let jobs = self.jobs.as_ref().ok_or(Busy)?;
        jobs.try_send(Box::new(job)).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => Busy,
        })
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
