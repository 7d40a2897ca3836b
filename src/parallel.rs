//! Thread pools and progress reporting for long-running work.

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// Where parallel sections run: rayon's global pool (one thread per core) or a pool of a
/// chosen size. Loops that report progress stay on the caller's thread and send only their
/// parallel sections here, so a caller on Python's main thread can still see Ctrl-C.
pub struct Threads {
    pool: Option<Arc<rayon::ThreadPool>>,
}

/// Pools built so far, by size. Starting a pool spawns its threads (~0.5 ms), which calls
/// that do little work each (one file, one clip) would otherwise pay every time; idle pool
/// threads only sleep.
static POOLS: Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
/// Sizes kept; a program asking for more distinct sizes rebuilds the oldest.
const KEPT_POOLS: usize = 8;

impl Threads {
    /// `num_threads == 0` means one thread per core.
    pub fn new(num_threads: usize) -> Result<Self> {
        if num_threads == 0 {
            return Ok(Threads { pool: None });
        }
        let mut pools = POOLS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == num_threads) {
            return Ok(Threads {
                pool: Some(Arc::clone(pool)),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(num_threads)
            .build()
            .map_err(|e| Error::invalid(format!("cannot start {num_threads} threads: {e}")))?;
        let pool = Arc::new(pool);
        if pools.len() == KEPT_POOLS {
            pools.remove(0);
        }
        pools.push((num_threads, Arc::clone(&pool)));
        Ok(Threads { pool: Some(pool) })
    }

    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }
}

/// Run `f` with `num_threads` threads (0 = one per core).
pub fn with_threads<R: Send>(num_threads: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    Ok(Threads::new(num_threads)?.run(f))
}

/// One step of a long computation: `done` of `total` units, and a loss where one is known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub done: usize,
    pub total: usize,
    pub loss: Option<f64>,
}

/// Called after each step on the caller's thread; returning an error (usually
/// [`Error::Interrupted`]) stops the work cleanly, keeping what was computed so far.
pub type Progress<'a> = &'a mut dyn FnMut(Step) -> Result<()>;

/// Report `step`: `Ok(false)` when the sink asked to stop ([`Error::Interrupted`], e.g. Ctrl-C),
/// so the caller can keep what it has; other errors pass through.
pub fn keep_going(progress: Progress<'_>, step: Step) -> Result<bool> {
    match progress(step) {
        Ok(()) => Ok(true),
        Err(Error::Interrupted) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A progress sink that never stops anything, for callers that do not watch.
pub fn ignore_progress(_: Step) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_of_one_size_are_built_once_and_have_that_size() {
        let (a, b) = (Threads::new(3).unwrap(), Threads::new(3).unwrap());
        assert!(Arc::ptr_eq(a.pool.as_ref().unwrap(), b.pool.as_ref().unwrap()));
        assert_eq!(a.run(rayon::current_num_threads), 3);
        assert_eq!(Threads::new(1).unwrap().run(rayon::current_num_threads), 1);
        assert!(Threads::new(0).unwrap().pool.is_none());
    }
}
