//! Python bindings of the synthetic listening data.

use super::config::PyWorldConfig;
use super::convert::{csr_out, matrix};
use crate::synthetic::{self, WorldConfig};
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The synthetic listening data of a world config's listening part.
#[pyfunction]
fn generate_listening<'py>(py: Python<'py>, config: PyRef<'py, PyWorldConfig>) -> PyResult<Bound<'py, PyDict>> {
    let cfg: WorldConfig = config.inner.listening.clone();
    let world = py.detach(|| synthetic::generate_listening(&cfg))?;
    let d = PyDict::new(py);
    let dim = cfg.style_dim;
    d.set_item("plays", csr_out(py, world.plays))?;
    d.set_item("song_genre", world.song_genre.into_pyarray(py))?;
    d.set_item("song_style", matrix(py, world.song_style, cfg.n_songs, dim)?)?;
    d.set_item("song_popularity", world.song_popularity.into_pyarray(py))?;
    d.set_item("user_taste", matrix(py, world.user_taste, cfg.n_users, dim)?)?;
    d.set_item("genre_centre", matrix(py, world.genre_centre, cfg.n_genres, dim)?)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(generate_listening, m)?)?;
    Ok(())
}
