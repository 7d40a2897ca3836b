//! musrec: music recommendation from listening logs and raw audio.
//!
//! The core modules are plain Rust (no Python), so the same code serves the Python
//! extension, `cargo test` and any future server binary. The PyO3 layer lives in
//! `python/` behind the `python` feature that maturin enables.

// `!(x > 0.0)` is how we say "not positive, or NaN": NaN must take the failure path.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

/// mimalloc keeps freed memory mapped for reuse: training allocates and frees several 5-15 MB
/// buffers per step, which glibc's malloc returns to the kernel and faults in again (measured:
/// a fusion training step 0.044 s with glibc, 0.028 s when its mmap and trim thresholds are
/// raised).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod audio;
pub mod data;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod io;
pub mod kernels;
pub mod linalg;
pub mod memory;
pub mod nn;
pub mod parallel;
pub mod serve;
pub mod sparse;
pub mod synthetic;
pub mod topk;
pub mod wmf;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
