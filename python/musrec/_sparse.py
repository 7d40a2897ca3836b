"""Conversion of user input to the CSR layout the Rust core reads without copying.

The core takes (indptr int64, indices int32, data float32, n_rows, n_cols). A float32 CSR
matrix in canonical format crosses with only ``indptr`` converted; anything else is
converted once here, never inside a loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

CsrTuple = tuple[np.ndarray, np.ndarray, np.ndarray, int, int]


def to_csr(matrix: Any, name: str = "user_items") -> sp.csr_matrix:
    """Return ``matrix`` as a canonical float32 CSR matrix (copying only when needed).

    Dense arrays are refused: an implicit-feedback matrix is sparse, and a dense one is
    usually a mistake (for example item factors passed where counts were meant).

    Parameters
    ----------
    matrix : scipy.sparse matrix
        Any 2-D scipy.sparse matrix or array of real numbers.
    name : str, default "user_items"
        The argument's name in error messages.

    Returns
    -------
    scipy.sparse.csr_matrix
        Float32, with sorted indices and no duplicates (duplicates are summed).

    Raises
    ------
    TypeError
        For a dense array, anything not scipy.sparse, or a dtype that is not real numbers.
    ValueError
        For a matrix that is not 2-dimensional, or with more columns than int32 holds.
    """
    if isinstance(matrix, np.ndarray) or (hasattr(matrix, "__array__") and not sp.issparse(matrix)):
        raise TypeError(
            f"{name} must be a scipy.sparse matrix (rows x columns of play counts), got a dense "
            f"{type(matrix).__name__}; wrap it with scipy.sparse.csr_matrix(...)"
        )
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy.sparse matrix, got {type(matrix).__name__}")
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional, got shape {matrix.shape}")
    csr = matrix.tocsr()
    if csr.dtype != np.float32:
        if not (np.issubdtype(csr.dtype, np.number) and not np.issubdtype(csr.dtype, np.complexfloating)):
            raise TypeError(f"{name} must hold real numbers, got dtype {csr.dtype}")
        csr = csr.astype(np.float32)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    if csr.shape[1] > np.iinfo(np.int32).max:
        raise ValueError(f"{name} has too many columns ({csr.shape[1]})")
    return csr


def from_parts(parts: tuple) -> sp.csr_matrix:
    """Build the CSR matrix of the core's ``(indptr, indices, data, rows, cols)`` parts."""
    indptr, indices, data, rows, cols = parts
    return sp.csr_matrix((data, indices, indptr), shape=(rows, cols))


def csr_tuple(csr: sp.csr_matrix) -> CsrTuple:
    """Return the arrays of a matrix from :func:`to_csr`, typed as the core expects.

    Parameters
    ----------
    csr : scipy.sparse.csr_matrix
        A matrix from :func:`to_csr`.

    Returns
    -------
    tuple
        ``(indptr int64, indices int32, data float32, n_rows, n_cols)``, the arrays contiguous.
    """
    return (
        np.ascontiguousarray(csr.indptr, dtype=np.int64),
        np.ascontiguousarray(csr.indices, dtype=np.int32),
        np.ascontiguousarray(csr.data, dtype=np.float32),
        int(csr.shape[0]),
        int(csr.shape[1]),
    )


def ids(values: Any, upper: int, name: str) -> np.ndarray:
    """Validate integer ids in ``[0, upper)``; returns an int32 array (1-D).

    Parameters
    ----------
    values : array_like of int
        The ids, of any shape (flattened); an empty sequence of any dtype is allowed.
    upper : int
        One more than the largest valid id.
    name : str
        The argument's name in error messages.

    Returns
    -------
    numpy.ndarray
        The ids as a 1-D int32 array.

    Raises
    ------
    TypeError
        For non-integer (or boolean) ids.
    IndexError
        For an id outside ``[0, upper)``.
    """
    arr = np.asarray(values)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if arr.size == 0:
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    arr = arr.reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() >= upper):
        bad = arr[(arr < 0) | (arr >= upper)][0]
        raise IndexError(f"{name} contains {bad}, out of range 0..{upper - 1}")
    return arr.astype(np.int32)


def sorted_ids(values: Any, upper: int, name: str) -> np.ndarray:
    """Validate ids as :func:`ids` does; return them sorted, without duplicates."""
    return np.unique(ids(values, upper, name))
