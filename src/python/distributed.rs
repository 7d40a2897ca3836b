//! Python bindings of what musrec.distributed spreads over Ray actors: a WMF shard that solves
//! its rows of one half-sweep, the Gram matrix the coordinator shares with every shard, and
//! the local fit's starting factors.

use super::config::PyWmfParams;
use super::convert::{CsrArgs, csr, enter, matrix, slice2};
use crate::ensure;
use crate::parallel::Threads;
use crate::wmf::{self, Shard};
use numpy::{PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

type Factors<'py> = Bound<'py, PyArray2<f32>>;

/// One actor's rows of one side (users x items, or items x users) for the half-step solver.
#[pyclass(name = "WmfShard", module = "musrec._musrec", frozen)]
pub struct PyWmfShard {
    shard: Shard,
    factors: usize,
}

#[pymethods]
impl PyWmfShard {
    #[new]
    fn new(params: PyRef<'_, PyWmfParams>, rows: CsrArgs<'_>) -> PyResult<Self> {
        let params = params.core(None)?;
        let shard = Shard::new(&params, csr(&rows)?)?;
        Ok(PyWmfShard {
            shard,
            factors: params.factors,
        })
    }

    #[getter]
    fn n_rows(&self) -> usize {
        self.shard.n_rows()
    }

    #[getter]
    fn nnz(&self) -> usize {
        self.shard.nnz()
    }

    /// The shard's rows solved against `fixed` and `gram` (from `wmf_gram`), warm-started
    /// from `x`; a new array, `x` is left as it was.
    #[pyo3(signature = (x, fixed, gram, num_threads=0))]
    fn solve<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        fixed: PyReadonlyArray2<'py, f32>,
        gram: PyReadonlyArray2<'py, f32>,
        num_threads: usize,
    ) -> PyResult<Factors<'py>> {
        let (x, rows, k) = slice2(&x, "x")?;
        ensure!(k == self.factors, "x has {k} columns, expected {}", self.factors);
        let fixed = slice2(&fixed, "fixed")?.0;
        let gram = slice2(&gram, "gram")?.0;
        let threads = Threads::new(num_threads)?;
        let mut out = x.to_vec();
        enter(py, None, |_| self.shard.solve(&mut out, fixed, gram, &threads))?;
        matrix(py, out, rows, k)
    }
}

/// Y^T Y + regularization I of `fixed` (factors x factors), as one half-sweep uses it.
#[pyfunction]
#[pyo3(signature = (params, fixed, num_threads=0))]
fn wmf_gram<'py>(
    py: Python<'py>,
    params: PyRef<'py, PyWmfParams>,
    fixed: PyReadonlyArray2<'py, f32>,
    num_threads: usize,
) -> PyResult<Factors<'py>> {
    let params = params.core(None)?;
    let (fixed, _, k) = slice2(&fixed, "fixed")?;
    ensure!(
        k == params.factors,
        "fixed has {k} columns, expected {}",
        params.factors
    );
    let threads = Threads::new(num_threads)?;
    let gram = enter(py, None, |_| Ok(threads.run(|| wmf::fold_in_gram(&params, fixed))))?;
    matrix(py, gram, k, k)
}

type GramPartTuple<'py> = (usize, usize, Factors<'py>, Factors<'py>, Factors<'py>);
/// A `GramPartTuple` as Python hands it back.
type GramPartArgs<'py> = (
    usize,
    usize,
    PyReadonlyArray2<'py, f32>,
    PyReadonlyArray2<'py, f32>,
    PyReadonlyArray2<'py, f32>,
);

/// One shard's share of the Gram matrix of its rows `fixed` (starting at row `first_row` of
/// all the factors): `(first_row, n_rows, chunks, head, tail)`, the products of the
/// `WMF_GRAM_CHUNK_ROWS`-row chunks inside the range ((chunks * k) x k) and the rows of the
/// chunks it shares with its neighbours.
#[pyfunction]
#[pyo3(signature = (fixed, first_row, num_threads=0))]
fn wmf_gram_part<'py>(
    py: Python<'py>,
    fixed: PyReadonlyArray2<'py, f32>,
    first_row: usize,
    num_threads: usize,
) -> PyResult<GramPartTuple<'py>> {
    let (rows, _, k) = slice2(&fixed, "fixed")?;
    let threads = Threads::new(num_threads)?;
    let part = enter(py, None, |_| threads.run(|| wmf::GramPart::new(k, first_row, rows)))?;
    let n = |v: &Vec<f32>| v.len() / k.max(1);
    let (chunks, head, tail) = (n(&part.chunks), n(&part.head), n(&part.tail));
    Ok((
        part.first_row,
        part.n_rows,
        matrix(py, part.chunks, chunks, k)?,
        matrix(py, part.head, head, k)?,
        matrix(py, part.tail, tail, k)?,
    ))
}

/// Y^T Y + regularization I of `n_rows` rows from the `wmf_gram_part`s of contiguous shards
/// covering them in order; equal, bit for bit, to `wmf_gram` of all the rows.
#[pyfunction]
#[pyo3(signature = (params, n_rows, parts))]
fn wmf_gram_from_parts<'py>(
    py: Python<'py>,
    params: PyRef<'py, PyWmfParams>,
    n_rows: usize,
    parts: Vec<GramPartArgs<'py>>,
) -> PyResult<Factors<'py>> {
    let params = params.core(None)?;
    let k = params.factors;
    let mut owned = Vec::with_capacity(parts.len());
    for (first_row, rows, chunks, head, tail) in &parts {
        let take = |a: &PyReadonlyArray2<'py, f32>, name: &str| -> PyResult<Vec<f32>> {
            let (v, _, cols) = slice2(a, name)?;
            ensure!(
                v.is_empty() || cols == k,
                "a Gram part's {name} has {cols} columns, expected {k}"
            );
            Ok(v.to_vec())
        };
        owned.push(wmf::GramPart {
            first_row: *first_row,
            n_rows: *rows,
            chunks: take(chunks, "chunks")?,
            head: take(head, "head")?,
            tail: take(tail, "tail")?,
        });
    }
    let gram = enter(py, None, |_| wmf::gram_from_parts(&params, n_rows, &owned))?;
    matrix(py, gram, k, k)
}

/// The (user, item) factors a fit with `seed` starts from.
#[pyfunction]
#[pyo3(signature = (params, n_users, n_items, seed=None))]
fn wmf_initial_factors<'py>(
    py: Python<'py>,
    params: PyRef<'py, PyWmfParams>,
    n_users: usize,
    n_items: usize,
    seed: Option<u64>,
) -> PyResult<(Factors<'py>, Factors<'py>)> {
    let params = params.core(seed)?;
    let k = params.factors;
    let (x, y) = py.detach(|| wmf::initial_factors(&params, n_users, n_items));
    Ok((matrix(py, x, n_users, k)?, matrix(py, y, n_items, k)?))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWmfShard>()?;
    m.add_function(wrap_pyfunction!(wmf_gram, m)?)?;
    m.add_function(wrap_pyfunction!(wmf_gram_part, m)?)?;
    m.add_function(wrap_pyfunction!(wmf_gram_from_parts, m)?)?;
    m.add("WMF_GRAM_CHUNK_ROWS", wmf::GRAM_CHUNK_ROWS)?;
    m.add("WMF_REVISION", wmf::REVISION)?;
    m.add_function(wrap_pyfunction!(wmf_initial_factors, m)?)?;
    Ok(())
}
