"""Type stubs of the compiled core ``musrec._musrec``; the public API is in the wrappers."""

from os import PathLike
from typing import Callable

import numpy as np
import numpy.typing as npt

__version__: str

CsrTuple = tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32], int, int]
F32 = npt.NDArray[np.float32]
_Path = str | PathLike[str]

class MusrecError(Exception): ...
class FormatError(MusrecError): ...

def wmf_fit(
    params_json: str,
    user_items: CsrTuple,
    user_init: F32 | None = None,
    item_init: F32 | None = None,
    num_threads: int = 0,
    callback: Callable[[int, int, float | None], None] | None = None,
) -> tuple[F32, F32, list[float], int, BaseException | None]: ...
def wmf_loss(
    params_json: str, user_items: CsrTuple, user_factors: F32, item_factors: F32, num_threads: int = 0
) -> float: ...
def wmf_fold_in(params_json: str, fixed: F32, rows: CsrTuple, num_threads: int = 0) -> F32: ...
def wmf_save(path: _Path, params_json: str, user_factors: F32, item_factors: F32) -> None: ...
def wmf_load(path: _Path) -> tuple[str, F32, F32]: ...
def top_n(
    queries: F32,
    items: F32,
    n: int,
    exclude: CsrTuple | None = None,
    filter_items: npt.NDArray[np.int32] | None = None,
    candidates: npt.NDArray[np.int32] | None = None,
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.int32], F32]: ...
def ranking_metrics(
    user_factors: F32, item_factors: F32, train: CsrTuple, test: CsrTuple, n: int, num_threads: int = 0
) -> dict[str, float]: ...
def popularity_ranking_metrics(train: CsrTuple, test: CsrTuple, n: int, num_threads: int = 0) -> dict[str, float]: ...
def random_ranking_metrics(
    train: CsrTuple, test: CsrTuple, n: int, seed: int, num_threads: int = 0
) -> dict[str, float]: ...
def train_test_split(user_items: CsrTuple, test_fraction: float, seed: int) -> tuple[CsrTuple, CsrTuple]: ...
def generate_listening(config_json: str) -> dict[str, object]: ...
