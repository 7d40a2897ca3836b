//! Core errors become Python exceptions: bad input -> ValueError, missing files ->
//! FileNotFoundError, unreadable model files -> musrec.FormatError (a ValueError), a stop
//! request -> KeyboardInterrupt.

use crate::error::Error;
use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(
    musrec,
    MusrecError,
    PyException,
    "Base class of musrec's own exceptions."
);
pyo3::create_exception!(
    musrec,
    FormatError,
    MusrecError,
    "A file exists but is not a valid musrec file."
);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let msg = err.to_string();
        match err {
            Error::InvalidInput(_) => PyValueError::new_err(msg),
            Error::NotFound(path) => PyFileNotFoundError::new_err((2, "No such file or directory", path)),
            Error::PermissionDenied(path) => PyPermissionError::new_err((13, "Permission denied", path)),
            Error::Io { .. } => PyOSError::new_err(msg),
            Error::Format { .. } => FormatError::new_err(msg),
            Error::Interrupted => PyKeyboardInterrupt::new_err(msg),
            Error::Compute(_) => MusrecError::new_err(msg),
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MusrecError", py.get_type::<MusrecError>())?;
    m.add("FormatError", py.get_type::<FormatError>())?;
    Ok(())
}
