//! The worker threads of a session: started once at session creation, woken for each
//! parallel step, and stopped when the session is dropped.
//!
//! A parallel step hands every participant (the calling thread is participant 0, worker `i`
//! is participant `i + 1`) the same borrowed closure, called with the participant's index;
//! the work split is static (see `Session`). Dispatch allocates nothing and sends nothing
//! through a channel: the job is published through an atomic generation counter, workers
//! spin for a short while on it and then sleep on a condition variable, and completion is
//! an atomic countdown.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A borrowed job with its lifetime erased; only dereferenced while [`Pool::run`] waits.
#[derive(Clone, Copy)]
struct JobPtr(*const (dyn Fn(usize) + Sync));

// SAFETY: the pointee is `Sync`, and `Pool::run` keeps it alive until every worker is done.
unsafe impl Send for JobPtr {}

struct Shared {
    /// Bumped once per job; a worker runs a job when it sees a generation it has not run.
    generation: AtomicU64,
    /// The current job, written before `generation` is bumped.
    job: Mutex<Option<JobPtr>>,
    /// Workers that have not finished the current job.
    remaining: AtomicUsize,
    /// Workers asleep on `wake`.
    sleepers: Mutex<usize>,
    wake: Condvar,
    /// A worker's job panicked.
    panicked: AtomicBool,
    quit: AtomicBool,
}

/// How long a worker spins for the next job before it sleeps: longer than the serial parts
/// between two parallel steps (a classifier, the input's layout copy, the gap between two
/// runs of a model), whose end would otherwise wait for a sleeping thread to wake (tens of
/// microseconds, more on a virtual machine), yet short enough that an idle session gives its
/// cores back quickly. Spinning by count instead (20,000 pause instructions) lasted 0.19 ms on
/// the development VM, and a pause's length differs several-fold between CPUs
/// (`docs/decisions.md`, session 25).
const SPIN_TIME: Duration = Duration::from_millis(2);

/// Spins between two reads of the clock while a worker waits.
const SPINS_PER_CLOCK: u32 = 256;

/// A fixed set of worker threads (possibly none).
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool with `threads` participants in all: `threads - 1` workers plus the caller.
    /// Worker `i` is pinned to `cpus[i % cpus.len()]` when `cpus` is not empty.
    pub fn new(threads: usize, cpus: &[usize]) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: Mutex::new(None),
            remaining: AtomicUsize::new(0),
            sleepers: Mutex::new(0),
            wake: Condvar::new(),
            panicked: AtomicBool::new(false),
            quit: AtomicBool::new(false),
        });
        let mut pool = Pool {
            shared,
            workers: Vec::new(),
        };
        for i in 0..threads.saturating_sub(1) {
            let s = Arc::clone(&pool.shared);
            let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let h = std::thread::Builder::new()
                .name(format!("smof-worker-{}", i + 1))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    worker(&s, i + 1)
                })?;
            pool.workers.push(h);
        }
        Ok(pool)
    }

    /// Participants: workers plus the calling thread.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(t)` for `t` in `0..parts` only (`parts` at most [`Pool::threads`]; the other
    /// participants stay idle): on the calling thread alone when `parts` is 1, and not at all
    /// when it is 0.
    pub fn run_parts(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        match parts {
            0 => {}
            1 => f(0),
            p if p >= self.threads() => self.run(f),
            p => self.run(&|t| {
                if t < p {
                    f(t)
                }
            }),
        }
    }

    /// Calls `f(t)` for every participant `t` in `0..self.threads()`, `f(0)` on the calling
    /// thread, and returns when all calls have returned. A panic in any call is resumed here.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() {
            f(0);
            return;
        }
        let s = &*self.shared;
        // SAFETY (lifetime erasure): the pointer is only used by workers between the
        // generation bump below and their decrement of `remaining`, and this function does
        // not return before `remaining` is zero.
        let ptr: *const (dyn Fn(usize) + Sync + '_) = f;
        let ptr: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(ptr) };
        *lock(&s.job) = Some(JobPtr(ptr));
        s.remaining.store(self.workers.len(), Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::Release);
        if *lock(&s.sleepers) > 0 {
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        while s.remaining.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        *lock(&s.job) = None;
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a session worker thread panicked");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.quit.store(true, Ordering::Release);
        s.generation.fetch_add(1, Ordering::Release);
        {
            let _g = lock(&s.sleepers);
            s.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Locks `m`, ignoring poisoning (the guarded data are plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        // Wait for a new generation: spin for `SPIN_TIME`, then sleep.
        let until = Instant::now() + SPIN_TIME;
        let mut spins = 0u32;
        let gen = loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                break g;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(SPINS_PER_CLOCK) || Instant::now() < until {
                std::hint::spin_loop();
                continue;
            }
            let mut sleepers = lock(&s.sleepers);
            *sleepers += 1;
            while s.generation.load(Ordering::Acquire) == seen {
                sleepers = s.wake.wait(sleepers).unwrap_or_else(|e| e.into_inner());
            }
            *sleepers -= 1;
        };
        seen = gen;
        if s.quit.load(Ordering::Acquire) {
            return;
        }
        let job = *lock(&s.job);
        if let Some(JobPtr(f)) = job {
            // SAFETY: `Pool::run` keeps the closure alive until `remaining` reaches zero.
            let f = unsafe { &*f };
            if catch_unwind(AssertUnwindSafe(|| f(index))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.remaining.fetch_sub(1, Ordering::Release);
    }
}

/// Pins the calling thread to `cpu` (Linux and Android; elsewhere a no-op). Failure (for
/// example a CPU the process may not use) leaves the thread unpinned.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn pin_to(cpu: usize) {
    // SAFETY: `set` is a plain bit set owned by this frame; sched_setaffinity(0, ..) only
    // affects the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < 8 * std::mem::size_of::<libc::cpu_set_t>() {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn pin_to(_cpu: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_participant_runs_once_per_job() {
        for threads in 1..4 {
            let pool = Pool::new(threads, &[]).unwrap();
            assert_eq!(pool.threads(), threads);
            for _ in 0..200 {
                let hits: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
                pool.run(&|t| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn run_parts_calls_exactly_the_first_parts_participants() {
        let pool = Pool::new(3, &[]).unwrap();
        for parts in 0..=4 {
            let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            pool.run_parts(parts, &|t| {
                hits[t].fetch_add(1, Ordering::Relaxed);
            });
            for (t, h) in hits.iter().enumerate() {
                let want = usize::from(t < parts);
                assert_eq!(
                    h.load(Ordering::Relaxed),
                    want,
                    "{parts} parts, participant {t}"
                );
            }
        }
    }

    #[test]
    fn sleeping_workers_wake_up() {
        let pool = Pool::new(2, &[0]).unwrap();
        let n = AtomicUsize::new(0);
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(30));
            pool.run(&|_| {
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(n.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn a_worker_panic_reaches_the_caller() {
        let pool = Pool::new(2, &[]).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(&|t| assert!(t == 0))));
        assert!(r.is_err());
        // The pool still works afterwards.
        let n = AtomicUsize::new(0);
        pool.run(&|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }
}
