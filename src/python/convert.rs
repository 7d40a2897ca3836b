//! Crossing the boundary: numpy arrays in as borrowed slices (no copies), Vecs out as numpy
//! arrays (moved, no copies), heavy work with the GIL released.

use crate::error::{Error, Result};
use crate::parallel::Step;
use crate::sparse::{Csr, CsrRef};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// A scipy CSR matrix as the Python wrappers pass it: (indptr int64, indices int32,
/// data float32, n_rows, n_cols).
pub type CsrArgs<'py> = (
    PyReadonlyArray1<'py, i64>,
    PyReadonlyArray1<'py, i32>,
    PyReadonlyArray1<'py, f32>,
    usize,
    usize,
);

/// A CSR matrix on its way out to Python: the same five parts, as numpy arrays.
pub type CsrOut<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<f32>>,
    usize,
    usize,
);

/// Move `m`'s arrays into numpy (no copies).
pub fn csr_out(py: Python<'_>, m: Csr) -> CsrOut<'_> {
    (
        m.indptr.into_pyarray(py),
        m.indices.into_pyarray(py),
        m.data.into_pyarray(py),
        m.n_rows,
        m.n_cols,
    )
}

pub fn csr<'a>(args: &'a CsrArgs<'_>) -> Result<CsrRef<'a>> {
    CsrRef::new(
        args.3,
        args.4,
        slice1(&args.0, "indptr")?,
        slice1(&args.1, "indices")?,
        slice1(&args.2, "data")?,
    )
}

pub fn slice1<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, name: &str) -> Result<&'a [T]> {
    a.as_slice()
        .map_err(|_| Error::invalid(format!("{name} must be a contiguous array")))
}

/// A C-contiguous 2-D array as (slice, rows, cols).
pub fn slice2<'a, T: numpy::Element>(a: &'a PyReadonlyArray2<'_, T>, name: &str) -> Result<(&'a [T], usize, usize)> {
    let shape = a.shape();
    let s = a
        .as_slice()
        .map_err(|_| Error::invalid(format!("{name} must be a C-contiguous array")))?;
    Ok((s, shape[0], shape[1]))
}

pub fn matrix<'py, T: numpy::Element>(
    py: Python<'py>,
    data: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let arr = Array2::from_shape_vec((rows, cols), data).map_err(|e| Error::invalid(e.to_string()))?;
    Ok(arr.into_pyarray(py))
}

/// The one way heavy work runs: without the GIL, with a progress hook that re-takes it
/// briefly to check for Ctrl-C and to call `callback(done, total, loss)`. An exception from
/// either stops the work cleanly (the core sees `Interrupted`) and is what this raises.
pub fn enter<T: Send>(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
    work: impl FnOnce(&mut dyn FnMut(Step) -> Result<()>) -> Result<T> + Send,
) -> PyResult<T> {
    enter_keeping(py, callback, work, |_, value| Ok(value))
}

/// [`enter`], handing what the work returned to `keep` before raising, so a stopped fit can
/// store its last complete state (the core returns partial results when interrupted).
pub fn enter_keeping<T: Send, R>(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
    work: impl FnOnce(&mut dyn FnMut(Step) -> Result<()>) -> Result<T> + Send,
    keep: impl FnOnce(Python<'_>, T) -> PyResult<R>,
) -> PyResult<R> {
    let mut raised: Option<PyErr> = None;
    let result = py.detach(|| {
        let mut progress = |step: Step| -> Result<()> {
            Python::attach(|py| {
                py.check_signals()?;
                if let Some(cb) = &callback {
                    cb.call1(py, (step.done, step.total, step.loss))?;
                }
                Ok::<(), PyErr>(())
            })
            .map_err(|e| {
                raised = Some(e);
                Error::Interrupted
            })
        };
        work(&mut progress)
    });
    match (result, raised) {
        (Ok(value), raised) => {
            let kept = keep(py, value)?;
            match raised {
                Some(e) => Err(e),
                None => Ok(kept),
            }
        }
        // The callback's exception (or Ctrl-C) wins over the core's `Interrupted`.
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
    }
}

/// A core config from the wrappers' dict (or value) of it, read through serde: a wrong type
/// is a TypeError, a missing or unknown field or a bad value a ValueError, naming `what`.
pub fn from_py<T: serde::de::DeserializeOwned>(what: &str, v: &Bound<'_, PyAny>) -> PyResult<T> {
    // serde_path_to_error names the field that failed (`window`, not the whole config).
    serde_path_to_error::deserialize(to_json(what, v)?).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { what.to_string() } else { field };
        super::config::setting_error(what, &field, e.into_inner())
    })
}

/// A report of the core as Python objects (dicts and lists).
pub fn report<'py, T: serde::Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    // Through the text form, which writes an f32 as its shortest decimal (1e-10), where
    // to_value would widen it to 1.000000013351432e-10.
    let bad = |e: serde_json::Error| Error::invalid(format!("cannot convert a report: {e}"));
    let text = serde_json::to_string(value).map_err(bad)?;
    from_json(py, &serde_json::from_str(&text).map_err(bad)?)
}

/// A Python value as JSON, for a setting whose core type serde then checks: None, bools,
/// integers (numpy's too), floats, strings, and lists or tuples of these.
pub fn to_json(name: &str, v: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    use pyo3::types::{PyBool, PyList, PyTuple};
    use serde_json::Value;
    if v.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if v.hasattr("__index__")?
        && let Ok(i) = v.call_method0("__index__")?.extract::<i64>()
    {
        return Ok(Value::from(i));
    }
    if let Ok(x) = v.extract::<f64>() {
        return serde_json::Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| Error::invalid(format!("{name} must be finite, got {x}")).into());
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(Value::String(s));
    }
    if let Ok(d) = v.cast::<pyo3::types::PyDict>() {
        let mut out = serde_json::Map::new();
        for (k, item) in d.iter() {
            let key: String = k.extract()?;
            let value = to_json(&key, &item)?;
            out.insert(key, value);
        }
        return Ok(Value::Object(out));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for item in v.try_iter()? {
            out.push(to_json(name, &item?)?);
        }
        return Ok(Value::Array(out));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "{name}: unsupported value of type {}",
        v.get_type().name()?
    )))
}

/// JSON as Python objects (dicts, lists, numbers, strings, None): reports and settings for
/// the wrappers, without a JSON string in between.
pub fn from_json<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = pyo3::types::PyList::empty(py);
            for item in items {
                list.append(from_json(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let d = pyo3::types::PyDict::new(py);
            for (k, item) in map {
                d.set_item(k, from_json(py, item)?)?;
            }
            d.into_any()
        }
    })
}
