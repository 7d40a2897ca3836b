//! Python bindings of WMF fitting, fold-in, persistence and top-N ranking.

use super::config::PyWmfParams;
use super::convert::{CsrArgs, csr, enter_keeping, matrix, slice1, slice2};
use crate::ensure;
use crate::error::{Error, Result};
use crate::parallel::Threads;
use crate::topk::{Exclusions, top_n as core_top_n, unit_rows as core_unit_rows};
use crate::wmf::{self, WmfModel};
use numpy::{PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use std::path::PathBuf;

type Factors<'py> = Bound<'py, PyArray2<f32>>;
/// (item ids, scores), queries x N.
type Ranked<'py> = (Bound<'py, PyArray2<i32>>, Bound<'py, PyArray2<f32>>);

/// Fit, storing `user_factors`, `item_factors` and `loss_history` on `model` (the Python
/// WMF); returns the iterations done. Ctrl-C or an exception from `callback` stops after the
/// current half-sweep: the factors of the last complete iteration are stored, then it
/// propagates.
#[pyfunction]
#[pyo3(signature = (model, params, user_items, seed=None, user_init=None, item_init=None, num_threads=0,
    callback=None))]
#[allow(clippy::too_many_arguments)]
fn wmf_fit<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    params: PyRef<'py, PyWmfParams>,
    user_items: CsrArgs<'py>,
    seed: Option<u64>,
    user_init: Option<PyReadonlyArray2<'py, f32>>,
    item_init: Option<PyReadonlyArray2<'py, f32>>,
    num_threads: usize,
    callback: Option<Py<PyAny>>,
) -> PyResult<usize> {
    let params = params.core(seed)?;
    let m = csr(&user_items)?;
    let warm = match (&user_init, &item_init) {
        (Some(u), Some(i)) => Some((slice2(u, "user_init")?.0.to_vec(), slice2(i, "item_init")?.0.to_vec())),
        (None, None) => None,
        _ => return Err(Error::invalid("give both user_init and item_init, or neither").into()),
    };
    let threads = Threads::new(num_threads)?;
    let k = params.factors;
    enter_keeping(
        py,
        callback,
        |progress| wmf::fit(&params, m, warm, &threads, progress),
        |py, (fitted, report)| {
            model.setattr("user_factors", matrix(py, fitted.user_factors, fitted.n_users, k)?)?;
            model.setattr("item_factors", matrix(py, fitted.item_factors, fitted.n_items, k)?)?;
            model.setattr("loss_history", report.losses)?;
            Ok(report.iterations_done)
        },
    )
}

#[pyfunction]
#[pyo3(signature = (params, user_items, user_factors, item_factors, num_threads=0))]
fn wmf_loss(
    py: Python<'_>,
    params: PyRef<'_, PyWmfParams>,
    user_items: CsrArgs<'_>,
    user_factors: PyReadonlyArray2<'_, f32>,
    item_factors: PyReadonlyArray2<'_, f32>,
    num_threads: usize,
) -> PyResult<f64> {
    let params = params.core(None)?;
    let m = csr(&user_items)?;
    let (x, y) = (
        slice2(&user_factors, "user_factors")?.0,
        slice2(&item_factors, "item_factors")?.0,
    );
    let threads = Threads::new(num_threads)?;
    Ok(py.detach(|| wmf::training_loss(&params, m, x, y, &threads))?)
}

/// Exact factors for new rows (users against item factors, or items against user factors).
#[pyfunction]
#[pyo3(signature = (params, fixed, rows, num_threads=0))]
fn wmf_fold_in<'py>(
    py: Python<'py>,
    params: PyRef<'py, PyWmfParams>,
    fixed: PyReadonlyArray2<'py, f32>,
    rows: CsrArgs<'py>,
    num_threads: usize,
) -> PyResult<Factors<'py>> {
    let params = params.core(None)?;
    let (fixed, _, k) = slice2(&fixed, "factors")?;
    ensure_py(k == params.factors, || {
        format!("factors have {k} columns, expected {}", params.factors)
    })?;
    let m = csr(&rows)?;
    let threads = Threads::new(num_threads)?;
    let out = py.detach(|| wmf::fold_in(&params, fixed, m, &threads))?;
    matrix(py, out, m.n_rows, k)
}

fn ensure_py(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if cond { Ok(()) } else { Err(Error::invalid(msg())) }
}

/// `seed`: the seed the fit used (drawn when `random_state` was None), saved in its place.
#[pyfunction]
#[pyo3(signature = (path, params, user_factors, item_factors, seed=None))]
fn wmf_save(
    py: Python<'_>,
    path: PathBuf,
    params: PyRef<'_, PyWmfParams>,
    user_factors: PyReadonlyArray2<'_, f32>,
    item_factors: PyReadonlyArray2<'_, f32>,
    seed: Option<u64>,
) -> PyResult<()> {
    let params = params.core(seed)?;
    let (x, n_users, ku) = slice2(&user_factors, "user_factors")?;
    let (y, n_items, ki) = slice2(&item_factors, "item_factors")?;
    ensure_py(ku == params.factors && ki == params.factors, || {
        "factor arrays do not match `factors`".into()
    })?;
    let model = WmfModel {
        params,
        n_users,
        n_items,
        user_factors: x.to_vec(),
        item_factors: y.to_vec(),
    };
    Ok(py.detach(|| wmf::save(&model, &path))?)
}

/// Returns (params, user_factors, item_factors).
#[pyfunction]
fn wmf_load<'py>(py: Python<'py>, path: PathBuf) -> PyResult<(PyWmfParams, Factors<'py>, Factors<'py>)> {
    let model = py.detach(|| wmf::load(&path))?;
    let params = PyWmfParams::from_core(&model.params);
    let k = model.params.factors;
    Ok((
        params,
        matrix(py, model.user_factors, model.n_users, k)?,
        matrix(py, model.item_factors, model.n_items, k)?,
    ))
}

/// Top-`n` items by inner product for each query row; (ids int32, scores float32), padded
/// with -1 / -inf where fewer than `n` items are eligible.
#[pyfunction]
#[pyo3(signature = (queries, items, n, exclude=None, filter_items=None, candidates=None, num_threads=0))]
#[allow(clippy::too_many_arguments)]
fn top_n<'py>(
    py: Python<'py>,
    queries: PyReadonlyArray2<'py, f32>,
    items: PyReadonlyArray2<'py, f32>,
    n: usize,
    exclude: Option<CsrArgs<'py>>,
    filter_items: Option<PyReadonlyArray1<'py, i32>>,
    candidates: Option<PyReadonlyArray1<'py, i32>>,
    num_threads: usize,
) -> PyResult<Ranked<'py>> {
    let (q, n_queries, kq) = slice2(&queries, "queries")?;
    let (y, _, ky) = slice2(&items, "item factors")?;
    ensure!(kq == ky, "queries have {kq} factors but items have {ky}");
    ensure!(n >= 1, "N must be at least 1, got {n}");
    let per_query = exclude.as_ref().map(csr).transpose()?;
    let global = match &filter_items {
        Some(a) => slice1(a, "filter_items")?,
        None => &[],
    };
    let candidates = candidates.as_ref().map(|a| slice1(a, "items")).transpose()?;
    let threads = Threads::new(num_threads)?;
    let (ids, scores) =
        py.detach(|| threads.run(|| core_top_n(q, y, kq, n, Exclusions { per_query, global }, candidates)))?;
    let width = ids.len().checked_div(n_queries).unwrap_or(n);
    Ok((
        matrix(py, ids, n_queries, width)?,
        matrix(py, scores, n_queries, width)?,
    ))
}

/// Each row scaled to unit length (zero rows stay zero): the one normalisation cosine
/// rankings use.
#[pyfunction]
fn unit_rows<'py>(py: Python<'py>, factors: PyReadonlyArray2<'py, f32>) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (values, n, k) = slice2(&factors, "factors")?;
    let unit = py.detach(|| core_unit_rows(values, k));
    matrix(py, unit, n, k)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(wmf_fit, m)?)?;
    m.add_function(wrap_pyfunction!(wmf_loss, m)?)?;
    m.add_function(wrap_pyfunction!(wmf_fold_in, m)?)?;
    m.add_function(wrap_pyfunction!(wmf_save, m)?)?;
    m.add_function(wrap_pyfunction!(wmf_load, m)?)?;
    m.add_function(wrap_pyfunction!(top_n, m)?)?;
    m.add_function(wrap_pyfunction!(unit_rows, m)?)?;
    Ok(())
}
