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
//! Kernels call rayon's parallel iterators only inside [`run`], so they execute on the chosen
//! pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Upper bound on `num_threads`; more is almost certainly a bug in the caller.
pub const MAX_THREADS: usize = 1024;

struct Cache {
    pid: u32,
    pools: HashMap<usize, Arc<rayon::ThreadPool>>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Threads used when the caller passes `None`: `PROBCRAFT_NUM_THREADS`, else
/// `RAYON_NUM_THREADS`, else the number of CPUs available to this process.
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
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
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

/// Runs `f` on a pool of `num_threads` threads (`None` = default), or inline when a single
/// thread suffices (`n_items <= 1` or one thread requested). Panics inside `f` propagate to
/// the caller, where the binding layer turns them into exceptions.
pub fn run<R: Send>(
    num_threads: Option<usize>,
    n_items: usize,
    f: impl FnOnce() -> R + Send,
) -> Result<R> {
    let threads = resolve_threads(num_threads)?.min(n_items.max(1));
    if threads <= 1 {
        return Ok(f());
    }
    Ok(pool(threads)?.install(f))
}

/// Number of threads a call to [`run`] with these arguments would use.
pub fn effective_threads(num_threads: Option<usize>, n_items: usize) -> Result<usize> {
    Ok(resolve_threads(num_threads)?.min(n_items.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn serial_for_single_items() {
        let main = std::thread::current().id();
        let id = run(Some(4), 1, || std::thread::current().id()).unwrap();
        assert_eq!(id, main);
    }

    #[test]
    fn uses_requested_threads() {
        let n = run(Some(3), 100, rayon::current_num_threads).unwrap();
        assert_eq!(n, 3);
        let s: u64 = run(Some(2), 1000, || (0..1000u64).into_par_iter().sum()).unwrap();
        assert_eq!(s, 999 * 1000 / 2);
    }

    #[test]
    fn rejects_bad_counts() {
        assert!(run(Some(0), 10, || ()).is_err());
        assert!(run(Some(MAX_THREADS + 1), 10, || ()).is_err());
    }
}
