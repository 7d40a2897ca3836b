//! The one error type of the core. The PyO3 layer maps each variant to a Python exception.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller passed something unusable: wrong shape, bad value, out-of-range id.
    #[error("{0}")]
    InvalidInput(String),
    /// A lookup named a user or song id that is not there (KeyError in Python, 404 over HTTP).
    #[error("{0}")]
    UnknownId(String),
    #[error("file not found: {}", .0.display())]
    NotFound(PathBuf),
    #[error("permission denied: {}", .0.display())]
    PermissionDenied(PathBuf),
    #[error("{path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A file exists but is not what we expect (corrupt, wrong format, wrong version).
    #[error("{path}: {message}", path = .path.display())]
    Format { path: PathBuf, message: String },
    /// An estimator was asked to predict, score or save before it was fitted or loaded.
    #[error("{0}")]
    NotFitted(String),
    /// Work was stopped on request (Ctrl-C, a callback asking to stop).
    #[error("interrupted")]
    Interrupted,
    /// A tensor operation failed inside the network code: a bug, not bad input (inputs are
    /// validated before they reach candle).
    #[error("network computation failed: {0}")]
    Compute(String),
}

impl From<candle_core::Error> for Error {
    fn from(err: candle_core::Error) -> Self {
        Error::Compute(err.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    /// Classify an I/O error on `path` so a missing file reads as such, not as a generic failure.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(path),
            std::io::ErrorKind::PermissionDenied => Error::PermissionDenied(path),
            _ => Error::Io { path, source },
        }
    }

    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// `ensure!(cond, "message {}", x)` returns `Error::InvalidInput` when `cond` is false.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::error::Error::InvalidInput(format!($($arg)+)).into());
        }
    };
}

/// Tests: the message of an `InvalidInput` error (any other outcome fails the test).
#[cfg(test)]
pub(crate) fn invalid_message<T>(r: Result<T>) -> String {
    match r {
        Err(Error::InvalidInput(m)) => m,
        Err(e) => panic!("expected InvalidInput, got {e}"),
        Ok(_) => panic!("expected an error"),
    }
}
