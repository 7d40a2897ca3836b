//! musrec: music recommendation from listening logs and raw audio.
//!
//! The core modules are plain Rust (no Python), so the same code serves the Python
//! extension, `cargo test` and any future server binary. The PyO3 layer lives in
//! `python/` behind the `python` feature that maturin enables.

// `!(x > 0.0)` is how we say "not positive, or NaN": NaN must take the failure path.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

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
