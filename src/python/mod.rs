//! The PyO3 layer: the compiled `musrec._musrec` module. Only conversion and GIL handling
//! live here; every computation is a call into the core modules.

mod audio;
mod config;
mod convert;
mod data;
mod datasets;
mod distributed;
mod errors;
mod eval;
mod experiment;
mod nn;
mod serve;
mod wmf;

use pyo3::prelude::*;

#[pymodule]
fn _musrec(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    crate::memory::return_memory_promptly();
    errors::register(m)?;
    wmf::register(m)?;
    config::register(m)?;
    audio::register(m)?;
    data::register(m)?;
    eval::register(m)?;
    nn::register(m)?;
    datasets::register(m)?;
    serve::register(m)?;
    experiment::register(m)?;
    distributed::register(m)?;
    Ok(())
}
