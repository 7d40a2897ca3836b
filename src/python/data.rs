//! Python bindings of the synthetic data, the train/test split and the ranking metrics.

use super::config::PyWorldConfig;
use super::convert::{CsrArgs, CsrOut, csr, csr_out, matrix, slice2};
use crate::ensure;
use crate::metrics::{self, RankingMetrics};
use crate::parallel::Threads;
use crate::split;
use crate::synthetic::{self, WorldConfig};
use numpy::{IntoPyArray, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn metrics_dict<'py>(py: Python<'py>, m: RankingMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("precision", m.precision)?;
    d.set_item("recall", m.recall)?;
    d.set_item("f1", m.f1)?;
    d.set_item("ndcg", m.ndcg)?;
    d.set_item("map", m.map)?;
    d.set_item("auc", m.auc)?;
    d.set_item("users_evaluated", m.users_evaluated)?;
    Ok(d)
}

#[pyfunction]
#[pyo3(signature = (user_factors, item_factors, train, test, n, num_threads=0))]
fn ranking_metrics<'py>(
    py: Python<'py>,
    user_factors: PyReadonlyArray2<'py, f32>,
    item_factors: PyReadonlyArray2<'py, f32>,
    train: CsrArgs<'py>,
    test: CsrArgs<'py>,
    n: usize,
    num_threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let (x, _, k) = slice2(&user_factors, "user_factors")?;
    let (y, _, ky) = slice2(&item_factors, "item_factors")?;
    ensure!(k == ky, "user factors have {k} columns but item factors have {ky}");
    let (train, test) = (csr(&train)?, csr(&test)?);
    let threads = Threads::new(num_threads)?;
    let m = py.detach(|| threads.run(|| metrics::ranking_metrics(x, y, k, train, test, n)))?;
    metrics_dict(py, m)
}

/// The paper's Table 1 errors of predicted vs true song vectors.
#[pyfunction]
fn vector_errors<'py>(
    py: Python<'py>,
    predicted: PyReadonlyArray2<'py, f32>,
    actual: PyReadonlyArray2<'py, f32>,
) -> PyResult<Bound<'py, PyDict>> {
    let (p, pn, pk) = slice2(&predicted, "predicted")?;
    let (a, an, ak) = slice2(&actual, "actual")?;
    ensure!(
        (pn, pk) == (an, ak),
        "predicted is ({pn}, {pk}) but actual is ({an}, {ak})"
    );
    let e = crate::vector_errors::vector_errors(p, a)?;
    let d = PyDict::new(py);
    d.set_item("mse", e.mse)?;
    d.set_item("rmse", e.rmse)?;
    d.set_item("mae", e.mae)?;
    d.set_item("msle", e.msle)?;
    d.set_item("msle_clipped", e.msle_clipped)?;
    d.set_item("n_values", e.n_values)?;
    Ok(d)
}

#[pyfunction]
#[pyo3(signature = (train, test, n, num_threads=0))]
fn popularity_ranking_metrics<'py>(
    py: Python<'py>,
    train: CsrArgs<'py>,
    test: CsrArgs<'py>,
    n: usize,
    num_threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let (train, test) = (csr(&train)?, csr(&test)?);
    let threads = Threads::new(num_threads)?;
    let m = py.detach(|| threads.run(|| metrics::popularity_ranking_metrics(train, test, n)))?;
    metrics_dict(py, m)
}

#[pyfunction]
#[pyo3(signature = (train, test, n, seed, num_threads=0))]
fn random_ranking_metrics<'py>(
    py: Python<'py>,
    train: CsrArgs<'py>,
    test: CsrArgs<'py>,
    n: usize,
    seed: u64,
    num_threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let (train, test) = (csr(&train)?, csr(&test)?);
    let threads = Threads::new(num_threads)?;
    let m = py.detach(|| threads.run(|| metrics::random_ranking_metrics(train, test, n, seed)))?;
    metrics_dict(py, m)
}

#[pyfunction]
fn train_test_split<'py>(
    py: Python<'py>,
    user_items: CsrArgs<'py>,
    test_fraction: f64,
    seed: u64,
) -> PyResult<(CsrOut<'py>, CsrOut<'py>)> {
    let m = csr(&user_items)?;
    let (train, test) = py.detach(|| split::train_test_split(m, test_fraction, seed))?;
    Ok((csr_out(py, train), csr_out(py, test)))
}

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
    m.add_function(wrap_pyfunction!(ranking_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(vector_errors, m)?)?;
    m.add_function(wrap_pyfunction!(popularity_ranking_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(random_ranking_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(train_test_split, m)?)?;
    m.add_function(wrap_pyfunction!(generate_listening, m)?)?;
    Ok(())
}
