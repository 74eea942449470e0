//! A bound on CPU- and memory-heavy work (password hashing): at most N at once, and a caller
//! that cannot get a slot within the wait answers "busy" instead of queueing without end.
//!
//! Each argon2id hash holds a 19 MiB block for its whole run. Unbounded, 48 concurrent sign-ups
//! on 2 cores run 48 hashes at once, each slower, and the process's memory grows by a gigabyte;
//! bounded to the cores, the same burst takes as long in all and holds a few blocks.
//!
//! The work runs on threads of its own, as many as slots, never on tokio's blocking pool. glibc
//! gives each thread that allocates a malloc arena, and an arena keeps a freed 19 MiB block for
//! the next allocation instead of returning it: spread over the blocking pool's changing threads,
//! a burst of sign-ups left about 860 MiB resident for good (docs/BENCHMARKS.md, "Memory").
//! On a fixed few threads the blocks are reused, so the memory stays at about one block per
//! slot, and no hash pays for fresh pages (returning each block to the system instead, with a
//! fixed mmap threshold, cost a third of the throughput).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use tokio::sync::Semaphore;

/// No slot was free within the wait: the caller should answer 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error("too much work in progress: no slot within {}s", .retry_after.as_secs())]
pub struct Busy {
    pub retry_after: Duration,
}

#[derive(Clone, Debug)]
pub struct Slots {
    inner: Arc<Inner>,
}

struct Inner {
    semaphore: Arc<Semaphore>,
    /// One thread per slot, started by the first piece of work: a function that never hashes
    /// (health, uploads) never starts them, and a cold start does not wait for them.
    threads: std::sync::OnceLock<rayon_core::ThreadPool>,
    limit: usize,
    wait: Duration,
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl Slots {
    pub fn new(limit: usize, wait: Duration) -> Self {
        let limit = limit.max(1);
        Self {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(limit)),
                threads: std::sync::OnceLock::new(),
                limit,
                wait,
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            }),
        }
    }

    /// One slot per core: the work is CPU-bound, so more at once only adds memory.
    pub fn per_core(wait: Duration) -> Self {
        Self::new(
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            wait,
        )
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// The most that ever ran at once (for tests and benchmarks).
    pub fn peak(&self) -> usize {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// Runs `work` on one of the slots' threads once a slot is free, or gives up after the
    /// wait. The slot is held by the work itself, so a caller that goes away (a client that
    /// hangs up) frees it only when the work is done.
    pub async fn run_blocking<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let wait = self.inner.wait;
        let permit = tokio::time::timeout(wait, self.inner.semaphore.clone().acquire_owned())
            .await
            .map_err(|_| Busy {
                retry_after: wait.max(Duration::from_secs(1)),
            })?
            .map_err(|_| anyhow::anyhow!("the work slots are closed"))?;
        let inner = self.inner.clone();
        let threads = match self.inner.threads.get() {
            Some(threads) => threads,
            None => {
                let started = rayon_core::ThreadPoolBuilder::new()
                    .num_threads(self.inner.limit)
                    .thread_name(|i| format!("work-{i}"))
                    .build()
                    .context("starting the work threads")?;
                self.inner.threads.get_or_init(|| started)
            }
        };
        let (done, result) = tokio::sync::oneshot::channel();
        threads.spawn(move || {
            let running = inner.running.fetch_add(1, Ordering::SeqCst) + 1;
            inner.peak.fetch_max(running, Ordering::SeqCst);
            // A panic must not take the thread pool (and by default the process) down with it.
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            inner.running.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            let _ = done.send(out);
        });
        match result.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(anyhow::anyhow!("the work panicked")),
            Err(_) => Err(anyhow::anyhow!("the work thread went away")),
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("limit", &self.limit)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// Most threads the runtime's blocking pool may start (tokio's default is 512). Password hashes
/// run on [`Slots`]' own threads; the pool serves DNS lookups and file I/O, which a slow
/// resolver or disk could otherwise turn into hundreds of threads, each with its stack. Past
/// this, blocking work waits in tokio's queue instead.
pub const MAX_BLOCKING_THREADS: usize = 64;

/// The runtime of a function serving API Gateway events on Lambda: one thread. Lambda hands an
/// instance one event at a time and gives it at most one vCPU below 1,769 MB, so worker threads
/// would only add their start to every cold start; the event's I/O (Postgres and Redis in
/// parallel, the shutdown extension's round trip while the routes are built) still overlaps on
/// the one thread. Password hashes run on [`Slots`]' own threads, as everywhere.
pub fn lambda_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    start(tokio::runtime::Builder::new_current_thread())
}

/// The multi-threaded runtime of the local server, the `db` tool and the migrate and backup
/// functions: tokio's defaults, with the blocking pool bounded by [`MAX_BLOCKING_THREADS`].
/// (`#[tokio::main]` cannot set that bound.)
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    start(tokio::runtime::Builder::new_multi_thread())
}

/// What both runtimes share: every driver, the bounded blocking pool, and the process start
/// marked for the cold-start metric.
fn start(mut builder: tokio::runtime::Builder) -> std::io::Result<tokio::runtime::Runtime> {
    crate::metrics::mark_process_start();
    builder
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
}
