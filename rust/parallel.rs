//! The thread-pool policy.
//!
//! - No threads exist until a batch call asks for more than one.
//! - Pools are private (never rayon's global pool) and cached per thread count.
//! - Pools are owned by the process that made them: after `fork()` the child finds a cache
//!   stamped with its parent's pid, forgets it (the parent's worker threads do not exist in the
//!   child, so joining or dropping them could hang) and builds fresh pools. This is what keeps
//!   DataLoader workers and `multiprocessing` children from deadlocking (rayon issue #708).
//! - A batch of one item, or `num_threads == 1`, runs on the calling thread.
//!
//! Kernels call rayon's parallel iterators only inside [`run`] and only when it hands them
//! `par == true`, so they execute on the chosen pool; with `par == false` they use the serial
//! iterators ([`map`], [`for_each_chunk`] choose for them). A parallel iterator on the inline
//! path would silently run on rayon's global pool (a bug this crate once had: `num_threads=1`
//! Fourier and trainer calls used every CPU).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Upper bound on `num_threads`; more is almost certainly a bug in the caller.
pub const MAX_THREADS: usize = 1024;

struct Cache {
    pid: u32,
    pools: HashMap<usize, Arc<rayon::ThreadPool>>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Threads used when the caller passes `None`: `PROBCRAFT_NUM_THREADS`, else
/// `RAYON_NUM_THREADS` (both read at each call, so a change to `os.environ` takes effect),
/// else the number of CPUs available to this process, found once (like rayon's global pool):
/// `available_parallelism` reads the cgroup files and the affinity mask at every call, ~40 µs
/// in this VM — as long as a 32-line `encode_batch`, which with the default took 51 µs
/// against 12 µs with `num_threads` given.
pub fn default_threads() -> usize {
    for var in ["PROBCRAFT_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if let Ok(v) = std::env::var(var) {
            if let Ok(n) = v.trim().parse::<usize>() {
                if n >= 1 {
                    return n.min(MAX_THREADS);
                }
            }
        }
    }
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// Validates a user-supplied thread count (`None` = default).
pub fn resolve_threads(num_threads: Option<usize>) -> Result<usize> {
    match num_threads {
        None => Ok(default_threads()),
        Some(0) => Err(Error::invalid("num_threads must be at least 1 (or None)")),
        Some(n) if n > MAX_THREADS => Err(Error::invalid(format!(
            "num_threads={n} exceeds the limit of {MAX_THREADS}"
        ))),
        Some(n) => Ok(n),
    }
}

fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    let pid = std::process::id();
    // A poisoned lock only means another thread panicked while holding it; the map is still
    // consistent (insertions are atomic with respect to it).
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_some_and(|c| c.pid != pid) {
        // Forked child: the pools' threads belong to the parent. Leak them deliberately.
        if let Some(old) = guard.take() {
            std::mem::forget(old);
        }
    }
    let cache = guard.get_or_insert_with(|| Cache {
        pid,
        pools: HashMap::new(),
    });
    if let Some(p) = cache.pools.get(&threads) {
        return Ok(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("probcraft-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("could not start {threads} threads: {e}")))?;
    let p = Arc::new(p);
    cache.pools.insert(threads, p.clone());
    Ok(p)
}

/// Runs `f(par)` on a pool of `num_threads` threads (`None` = default), or inline with
/// `par == false` when a single thread suffices (`n_items <= 1` or one thread requested).
/// Panics inside `f` propagate to the caller, where the binding layer turns them into
/// exceptions.
///
/// `f` must not call a rayon parallel iterator when `par` is false: on the inline path there
/// is no pool installed, so rayon would hand the work to its *global* pool — every CPU, whatever
/// thread count the caller asked for, and a hang in a forked child that inherited that pool.
/// [`map`] and [`for_each_chunk`] pick the serial or parallel iterator from `par`.
pub fn run<R: Send>(
    num_threads: Option<usize>,
    n_items: usize,
    f: impl FnOnce(bool) -> R + Send,
) -> Result<R> {
    let threads = resolve_threads(num_threads)?.min(n_items.max(1));
    if threads <= 1 {
        return Ok(f(false));
    }
    Ok(pool(threads)?.install(|| f(true)))
}

/// Runs `f` on the calling thread with a scope whose spawned jobs run on the pool of
/// `workers` threads (at least 1): for a caller that works alongside its jobs (the batch
/// binding reads the items, builds the finished chunks' arrays and encodes chunks itself
/// while the workers encode the others). Every spawned job has finished when this returns.
pub fn in_place_scope<'s, R>(workers: usize, f: impl FnOnce(&rayon::Scope<'s>) -> R) -> Result<R> {
    let workers = resolve_threads(Some(workers.max(1)))?;
    Ok(pool(workers)?.in_place_scope(f))
}

/// `f(0), …, f(n - 1)` in index order; on the current pool when `par`, else on this thread.
pub fn map<R: Send>(par: bool, n: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if par {
        (0..n).into_par_iter().map(f).collect()
    } else {
        (0..n).map(f).collect()
    }
}

/// `f(k, chunk)` for the `k`-th `size`-element chunk of `data`; on the current pool when
/// `par`, else on this thread.
pub fn for_each_chunk<T: Send>(
    par: bool,
    data: &mut [T],
    size: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if par {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each(|(k, c)| f(k, c));
    } else {
        data.chunks_mut(size).enumerate().for_each(|(k, c)| f(k, c));
    }
}

/// Number of threads a call to [`run`] with these arguments would use.
pub fn effective_threads(num_threads: Option<usize>, n_items: usize) -> Result<usize> {
    Ok(resolve_threads(num_threads)?.min(n_items.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_for_single_items() {
        let main = std::thread::current().id();
        let (id, par) = run(Some(4), 1, |par| (std::thread::current().id(), par)).unwrap();
        assert_eq!(id, main);
        assert!(!par);
    }

    #[test]
    fn uses_requested_threads() {
        let n = run(Some(3), 100, |par| {
            assert!(par);
            rayon::current_num_threads()
        })
        .unwrap();
        assert_eq!(n, 3);
        let s: u64 = run(Some(2), 1000, |_| (0..1000u64).into_par_iter().sum()).unwrap();
        assert_eq!(s, 999 * 1000 / 2);
    }

    /// The scope's body runs on the calling thread, its jobs on the pool, all finished at
    /// the end.
    #[test]
    fn in_place_scope_runs_jobs_on_the_pool() {
        let main = std::thread::current().id();
        let (tx, rx) = std::sync::mpsc::channel();
        let done = in_place_scope(1, |s| {
            for k in 0..16 {
                let tx = tx.clone();
                s.spawn(move |_| tx.send((k, std::thread::current().id())).unwrap());
            }
            assert_eq!(std::thread::current().id(), main);
            (0..16).map(|_| rx.recv().unwrap()).collect::<Vec<_>>()
        })
        .unwrap();
        assert!(done.iter().all(|(_, t)| *t != main));
        let mut ks: Vec<_> = done.iter().map(|(k, _)| *k).collect();
        ks.sort();
        assert_eq!(ks, (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn rejects_bad_counts() {
        assert!(run(Some(0), 10, |_| ()).is_err());
        assert!(run(Some(MAX_THREADS + 1), 10, |_| ()).is_err());
    }

    /// The serial helpers run on the calling thread and in order; the parallel ones on the
    /// pool. Both give the same results.
    #[test]
    fn helpers_respect_par() {
        let main = std::thread::current().id();
        for threads in [1, 2] {
            let (ids, par) = run(Some(threads), 64, |par| {
                let ids = map(par, 64, |i| (i, std::thread::current().id()));
                (ids, par)
            })
            .unwrap();
            assert_eq!(par, threads > 1);
            assert!(ids.iter().enumerate().all(|(k, (i, _))| *i == k));
            assert_eq!(ids.iter().all(|(_, t)| *t == main), threads == 1);
            let mut data = vec![0usize; 1000];
            run(Some(threads), 10, |par| {
                for_each_chunk(par, &mut data, 100, |k, c| {
                    assert_eq!(std::thread::current().id() == main, !par);
                    c.iter_mut().for_each(|v| *v = k);
                })
            })
            .unwrap();
            assert!(data.iter().enumerate().all(|(i, v)| *v == i / 100));
        }
    }
}
