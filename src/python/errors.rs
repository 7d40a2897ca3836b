//! Core errors become Python exceptions: bad input -> ValueError, missing files ->
//! FileNotFoundError, an unknown user or song id -> KeyError, unreadable model files -> musrec.FormatError (a MusrecError and a
//! ValueError), an estimator used before fit -> musrec.NotFittedError (a MusrecError, a
//! ValueError and an AttributeError, as scikit-learn's), a stop request -> KeyboardInterrupt.

use crate::error::Error;
use pyo3::exceptions::{
    PyAttributeError, PyException, PyFileNotFoundError, PyKeyError, PyKeyboardInterrupt, PyOSError, PyPermissionError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

pyo3::create_exception!(
    musrec,
    MusrecError,
    PyException,
    "Base class of musrec's own exceptions."
);

/// The exceptions with several bases, which `create_exception!` cannot make: classes built by
/// Python's `type()` once, on first use.
static FORMAT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static NOT_FITTED_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn subclass(py: Python<'_>, name: &str, doc: &str, bases: Vec<Bound<'_, PyType>>) -> PyResult<Py<PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", "musrec")?;
    namespace.set_item("__doc__", doc)?;
    let class = py
        .get_type::<PyType>()
        .call1((name, PyTuple::new(py, bases)?, namespace))?;
    Ok(class.cast_into::<PyType>()?.unbind())
}

fn format_error(py: Python<'_>) -> PyResult<&Py<PyType>> {
    FORMAT_ERROR.get_or_try_init(py, || {
        let bases = vec![py.get_type::<MusrecError>(), py.get_type::<PyValueError>()];
        subclass(
            py,
            "FormatError",
            "A file exists but is not a valid musrec file.",
            bases,
        )
    })
}

fn not_fitted_error(py: Python<'_>) -> PyResult<&Py<PyType>> {
    NOT_FITTED_ERROR.get_or_try_init(py, || {
        let bases = vec![
            py.get_type::<MusrecError>(),
            py.get_type::<PyValueError>(),
            py.get_type::<PyAttributeError>(),
        ];
        let doc = "An estimator was used before it was fitted (or loaded).";
        subclass(py, "NotFittedError", doc, bases)
    })
}

/// An exception of one of the classes above, or the error that making the class raised.
fn raise(class: fn(Python<'_>) -> PyResult<&Py<PyType>>, msg: String) -> PyErr {
    Python::attach(|py| match class(py) {
        Ok(ty) => PyErr::from_type(ty.bind(py).clone(), msg),
        Err(e) => e,
    })
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let msg = err.to_string();
        match err {
            Error::InvalidInput(_) => PyValueError::new_err(msg),
            Error::UnknownId(_) => PyKeyError::new_err(msg),
            Error::NotFound(path) => PyFileNotFoundError::new_err((2, "No such file or directory", path)),
            Error::PermissionDenied(path) => PyPermissionError::new_err((13, "Permission denied", path)),
            Error::Io { .. } => PyOSError::new_err(msg),
            Error::Format { .. } => raise(format_error, msg),
            Error::NotFitted(_) => raise(not_fitted_error, msg),
            Error::Interrupted => PyKeyboardInterrupt::new_err(msg),
            Error::Compute(_) => MusrecError::new_err(msg),
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MusrecError", py.get_type::<MusrecError>())?;
    m.add("FormatError", format_error(py)?.bind(py))?;
    m.add("NotFittedError", not_fitted_error(py)?.bind(py))?;
    Ok(())
}
