//! Python bindings of the evaluation (`eval/`): the ranking metrics, Table 1's errors, the
//! interaction and song splits, and the popularity and training-mean baselines.

use super::convert::{CsrArgs, CsrOut, csr, csr_out, slice1, slice2};
use crate::ensure;
use crate::error::Result;
use crate::eval::baselines;
use crate::eval::metrics::{self, RankingMetrics};
use crate::eval::songs::{self, SplitBy};
use crate::eval::split;
use crate::eval::vector_errors::VectorErrors;
use crate::parallel::Threads;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
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

fn errors_dict<'py>(py: Python<'py>, e: VectorErrors) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("mse", e.mse)?;
    d.set_item("rmse", e.rmse)?;
    d.set_item("mae", e.mae)?;
    d.set_item("msle", e.msle)?;
    d.set_item("msle_clipped", e.msle_clipped)?;
    d.set_item("n_values", e.n_values)?;
    Ok(d)
}

/// Song indices from numpy (int64), checked to be non-negative.
fn indices(a: &PyReadonlyArray1<'_, i64>, name: &str) -> Result<Vec<usize>> {
    slice1(a, name)?
        .iter()
        .map(|&i| {
            usize::try_from(i).map_err(|_| crate::error::Error::invalid(format!("{name} has a negative index {i}")))
        })
        .collect()
}

/// Song indices as a numpy int64 array.
type Indices<'py> = Bound<'py, PyArray1<i64>>;

fn index_array(py: Python<'_>, v: Vec<usize>) -> Indices<'_> {
    v.into_iter().map(|i| i as i64).collect::<Vec<i64>>().into_pyarray(py)
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
    errors_dict(py, crate::eval::vector_errors::vector_errors(p, a)?)
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
    let m = py.detach(|| threads.run(|| baselines::popularity_ranking_metrics(train, test, n)))?;
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
    let m = py.detach(|| threads.run(|| baselines::random_ranking_metrics(train, test, n, seed)))?;
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

/// The experiment's (training songs, test songs) among the usable ones.
#[pyfunction]
fn split_songs<'py>(
    py: Python<'py>,
    usable: PyReadonlyArray1<'py, bool>,
    artist_ids: Vec<String>,
    test_fraction: f64,
    by: &str,
    random_state: u64,
) -> PyResult<(Indices<'py>, Indices<'py>)> {
    let usable = slice1(&usable, "usable")?;
    let (train, test) = songs::split_songs(usable, &artist_ids, test_fraction, SplitBy::named(by)?, random_state)?;
    Ok((index_array(py, train), index_array(py, test)))
}

/// The experiment's (songs to fit on, validation songs or None) of the training songs.
#[pyfunction]
fn validation_songs<'py>(
    py: Python<'py>,
    train: PyReadonlyArray1<'py, i64>,
    artist_ids: Vec<String>,
    by: &str,
    random_state: u64,
) -> PyResult<(Indices<'py>, Option<Indices<'py>>)> {
    let train = indices(&train, "train")?;
    let (fit, validation) = songs::validation_songs(&train, &artist_ids, SplitBy::named(by)?, random_state)?;
    Ok((index_array(py, fit), validation.map(|v| index_array(py, v))))
}

/// The cold-start popularity scores of the `new` songs (see `eval::baselines`), their ties
/// broken at random when `tie_break` is a seed.
#[pyfunction]
#[pyo3(signature = (plays, artist_ids, known, new, tie_break=None))]
fn artist_popularity<'py>(
    py: Python<'py>,
    plays: CsrArgs<'py>,
    artist_ids: Vec<String>,
    known: PyReadonlyArray1<'py, i64>,
    new: PyReadonlyArray1<'py, i64>,
    tie_break: Option<u64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (known, new) = (indices(&known, "known")?, indices(&new, "new")?);
    let mut scores = baselines::artist_popularity(csr(&plays)?, &artist_ids, &known, &new)?;
    if let Some(seed) = tie_break {
        baselines::break_ties(&mut scores, seed);
    }
    Ok(scores.into_pyarray(py))
}

/// Table 1's row of the training mean (see `eval::baselines`).
#[pyfunction]
fn training_mean_errors<'py>(
    py: Python<'py>,
    vectors: PyReadonlyArray2<'py, f32>,
    train: PyReadonlyArray1<'py, i64>,
    test: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyDict>> {
    let (v, _, k) = slice2(&vectors, "vectors")?;
    let (train, test) = (indices(&train, "train")?, indices(&test, "test")?);
    errors_dict(py, baselines::training_mean_errors(v, k, &train, &test)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ranking_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(vector_errors, m)?)?;
    m.add_function(wrap_pyfunction!(popularity_ranking_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(random_ranking_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(train_test_split, m)?)?;
    m.add_function(wrap_pyfunction!(split_songs, m)?)?;
    m.add_function(wrap_pyfunction!(validation_songs, m)?)?;
    m.add_function(wrap_pyfunction!(artist_popularity, m)?)?;
    m.add_function(wrap_pyfunction!(training_mean_errors, m)?)?;
    Ok(())
}
