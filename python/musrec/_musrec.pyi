"""Type stubs of the compiled core ``musrec._musrec``; the public API is in the wrappers."""

from os import PathLike
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

CsrTuple = Tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32], int, int]
F32 = npt.NDArray[np.float32]
_Path = Union[str, PathLike[str]]

class MusrecError(Exception): ...
class FormatError(MusrecError): ...

def wmf_fit(
    params_json: str,
    user_items: CsrTuple,
    user_init: Optional[F32] = None,
    item_init: Optional[F32] = None,
    num_threads: int = 0,
    callback: Optional[Callable[[int, int, Optional[float]], None]] = None,
) -> Tuple[F32, F32, list[float], int, Optional[BaseException]]: ...
def wmf_loss(params_json: str, user_items: CsrTuple, user_factors: F32, item_factors: F32, num_threads: int = 0) -> float: ...
def wmf_fold_in(params_json: str, fixed: F32, rows: CsrTuple, num_threads: int = 0) -> F32: ...
def wmf_save(path: _Path, params_json: str, user_factors: F32, item_factors: F32) -> None: ...
def wmf_load(path: _Path) -> Tuple[str, F32, F32]: ...
def top_n(
    queries: F32,
    items: F32,
    n: int,
    exclude: Optional[CsrTuple] = None,
    filter_items: Optional[npt.NDArray[np.int32]] = None,
    candidates: Optional[npt.NDArray[np.int32]] = None,
    num_threads: int = 0,
) -> Tuple[npt.NDArray[np.int32], F32]: ...
def ranking_metrics(
    user_factors: F32, item_factors: F32, train: CsrTuple, test: CsrTuple, n: int, num_threads: int = 0
) -> Dict[str, float]: ...
def popularity_ranking_metrics(train: CsrTuple, test: CsrTuple, n: int, num_threads: int = 0) -> Dict[str, float]: ...
def random_ranking_metrics(
    train: CsrTuple, test: CsrTuple, n: int, seed: int, num_threads: int = 0
) -> Dict[str, float]: ...
def train_test_split(user_items: CsrTuple, test_fraction: float, seed: int) -> Tuple[CsrTuple, CsrTuple]: ...
def generate_listening(config_json: str) -> Dict[str, object]: ...
