//! Returning freed heap memory to the operating system, and keeping it where a loop reuses
//! it.
//!
//! Rust's allocations go through mimalloc (see the crate root). Two workloads want opposite
//! things of it:
//! - the data stages (the Taste Profile's load, WMF) allocate large arrays once; memory they
//!   free should leave at once, so that the next stage's peak does not count it (measured on
//!   the full Taste Profile: peak for load and fit 1,970 MiB with mimalloc's default 10 ms
//!   purge delay, 1,859 MiB with none, at the same speed);
//! - a network's training and batched inference free and re-allocate the same 5-15 MB
//!   buffers every step; handing them back and faulting them in again made a training step
//!   3x slower (0.083 against 0.025-0.031 s).
//!
//! So [`return_memory_promptly`] (called when the Python module loads) sets no purge delay,
//! and a [`Retain`] guard keeps freed memory for a second while a network trains or predicts;
//! [`Retain::for_ms`] for 20 ms during each WMF half-sweep, whose blocks free and re-allocate
//! buffers within milliseconds (measured on the full Taste Profile, 3 iterations, alternated:
//! 9-13% faster than with no delay at the same peak; a second's delay was 14-17% faster but
//! kept ~90 MB more at the peak, above the 2.0 GB target). A fit whose factors take at most
//! 64 MiB (the paper's size) holds a [`Retain::new`] guard for its whole length instead (see
//! `wmf::fit`): what its half-sweeps free is small beside the process then.

use std::sync::Mutex;

/// The purge delay, in ms, while a [`Retain::new`] guard lives: a second, so that a buffer
/// freed in one step is still mapped when the next step allocates it (mimalloc's default of
/// 10 ms is shorter than a step; measured 0.024-0.027 s per step at 1 s, 0.025-0.029 s at
/// 10 ms).
const RETAIN_MS: std::ffi::c_long = 1000;

/// The delays of the live [`Retain`] guards; the longest applies.
static RETAINING: Mutex<Vec<std::ffi::c_long>> = Mutex::new(Vec::new());

/// `mi_option_purge_delay` in mimalloc's option enum (mimalloc.h; the Rust bindings name the
/// options around it, `mi_option_use_numa_nodes` = 16, but not this one).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn set_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: setting an option only stores a value mimalloc reads when it next purges.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, ms) };
}

/// Free memory leaves the process at once (see the module documentation).
pub fn return_memory_promptly() {
    let live = RETAINING.lock().unwrap_or_else(|e| e.into_inner());
    apply(&live);
}

/// Set the purge delay the live guards ask for: the longest, or none without a guard.
fn apply(live: &[std::ffi::c_long]) {
    set_purge_delay(live.iter().copied().max().unwrap_or(0));
}

/// While one lives, freed memory stays mapped for a short while for the next allocation.
pub struct Retain(std::ffi::c_long);

impl Retain {
    /// Keep freed memory for a second (a network's training steps).
    pub fn new() -> Self {
        Self::for_ms(RETAIN_MS)
    }

    /// Keep freed memory for `ms` milliseconds.
    pub fn for_ms(ms: std::ffi::c_long) -> Self {
        let mut live = RETAINING.lock().unwrap_or_else(|e| e.into_inner());
        live.push(ms);
        apply(&live);
        Retain(ms)
    }
}

impl Default for Retain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Retain {
    fn drop(&mut self) {
        let mut live = RETAINING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = live.iter().position(|&ms| ms == self.0) {
            live.swap_remove(i);
        }
        apply(&live);
    }
}

/// Hand the allocators' free pages back to the OS: mimalloc's, on the calling thread and
/// every thread of the current rayon pool, since blocks freed by another thread wait in
/// their owner's heap; and glibc's (the C libraries' and Python's), which keeps the memory
/// of many small frees resident. Called between the stages of a large load.
pub fn release_free_memory() {
    // SAFETY: mi_collect only walks and updates the calling thread's own heap.
    rayon::broadcast(|_| unsafe { libmimalloc_sys::mi_collect(true) });
    unsafe { libmimalloc_sys::mi_collect(true) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reads and updates the allocator's own state; 0 = keep no pad.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Other tests train networks in parallel, so the check reads the count and the option
    /// together, under the lock: no guard, no delay; otherwise the longest live guard's.
    #[test]
    fn retain_sets_and_restores_the_purge_delay() {
        assert_eq!(libmimalloc_sys::mi_option_use_numa_nodes, PURGE_DELAY + 1);
        let consistent = || {
            let live = RETAINING.lock().unwrap();
            let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
            assert_eq!(delay, live.iter().copied().max().unwrap_or(0), "guards {live:?}");
            live.len()
        };
        return_memory_promptly();
        consistent();
        let a = Retain::new();
        let b = Retain::for_ms(20);
        assert!(consistent() >= 2);
        drop(a);
        consistent();
        drop(b);
        consistent();
    }
}
