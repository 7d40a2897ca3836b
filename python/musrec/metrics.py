"""Top-N ranking metrics over a held-out split, the split itself, and the reference baselines
of the experiment (artist popularity, training mean).

Per evaluated user u (one with at least one held-out item), with T_u the held-out items,
R_u the top-N ranking of all items the user did not play in training, and
hits = |R_u ∩ T_u|:

* ``precision`` = hits / N  (the true precision@N);
* ``recall`` = hits / |T_u|;
* ``f1`` = harmonic mean of the mean precision and the mean recall;
* ``ndcg`` = DCG / IDCG with binary relevance, DCG = sum over hits at rank r (0-based) of
  1 / log2(r + 2), IDCG the DCG of min(|T_u|, N) hits at the top;
* ``map`` = mean of AP@N = (1 / min(|T_u|, N)) * sum over hits at rank r of
  (hits in ranks 0..r) / (r + 1);
* ``auc`` = fraction of (held-out item, unplayed item) pairs ranked correctly, over all
  unplayed items (not only the top N), ties counting 1/2.

Each is averaged over the evaluated users (AUC over those with at least one unplayed item).

Unlike implicit's ``precision_at_k``, which divides hits by min(K, |T_u|) — recall for users
with at most K held-out items and precision for the others — these are the textbook
definitions, and precision and recall are reported separately.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from . import _musrec
from ._sparse import csr_tuple, to_csr

__all__ = [
    "vector_errors",
    "train_test_split",
    "ranking_metrics",
    "popularity_ranking_metrics",
    "random_ranking_metrics",
    "artist_popularity",
    "training_mean_errors",
]


def _seed(random_state: int | None) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise ValueError(f"random_state must be a non-negative integer or None, got {random_state!r}")
    return int(random_state)


def _from_tuple(t: tuple[np.ndarray, np.ndarray, np.ndarray, int, int]) -> sp.csr_matrix:
    indptr, indices, data, n_rows, n_cols = t
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def train_test_split(
    user_items: Any, test_fraction: float = 0.2, random_state: int | None = None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each user's interactions at random into train and test.

    A user with n >= 2 interactions holds out round(test_fraction * n) of them, at least one
    and at most n - 1; users with fewer stay entirely in train. Both results have the shape
    of ``user_items`` (users x items) and keep its play counts. Deterministic for a given
    ``random_state``.
    """
    if not isinstance(test_fraction, (float, int)) or not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")
    csr = to_csr(user_items, "user_items")
    train, test = _musrec.train_test_split(csr_tuple(csr), float(test_fraction), _seed(random_state))
    return _from_tuple(train), _from_tuple(test)


def _pair(train: Any, test: Any) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    train = to_csr(train, "train")
    test = to_csr(test, "test")
    if train.shape != test.shape:
        raise ValueError(f"train has shape {train.shape} but test has shape {test.shape}")
    return train, test


def _n(N: Any) -> int:
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
        raise ValueError(f"N must be a positive integer, got {N!r}")
    return int(N)


def vector_errors(predicted: Any, actual: Any) -> dict[str, float]:
    """The paper's Table 1 errors of predicted vs true (WMF) song vectors, over all values.

    Returns ``mse``, ``rmse``, ``mae`` and ``msle`` = mean (log(1 + p) - log(1 + t))^2. MSLE
    is undefined for values <= -1 and latent factors can be negative: every value (predicted
    and true) below -1 + 1e-6 is raised to it first, and ``msle_clipped`` says how many of
    the ``n_values`` values that touched.
    """
    p = np.ascontiguousarray(predicted, dtype=np.float32)
    a = np.ascontiguousarray(actual, dtype=np.float32)
    if p.ndim == 1:
        p = p[None, :]
    if a.ndim == 1:
        a = a[None, :]
    if p.ndim != 2 or a.ndim != 2:
        raise ValueError(f"expected (songs, factors) arrays, got shapes {p.shape} and {a.shape}")
    return _musrec.vector_errors(p, a)


def ranking_metrics(model: Any, train: Any, test: Any, N: int = 10, num_threads: int = 0) -> dict[str, float]:
    """Precision, recall, F1, NDCG, MAP at N and AUC of a factor model on a held-out split.

    ``model`` is a fitted :class:`musrec.WMF` (or anything with ``user_factors`` and
    ``item_factors``); ``train`` and ``test`` are users x items matrices, the user's train
    items are excluded from their ranking. Returns a dict with those keys plus
    ``users_evaluated``.
    """
    train, test = _pair(train, test)
    users = getattr(model, "user_factors", None)
    items = getattr(model, "item_factors", None)
    if users is None or items is None:
        raise ValueError("model has no user_factors/item_factors; fit it first")
    users = np.ascontiguousarray(users, dtype=np.float32)
    items = np.ascontiguousarray(items, dtype=np.float32)
    if users.shape[0] != train.shape[0] or items.shape[0] != train.shape[1]:
        raise ValueError(
            f"the model has {users.shape[0]} users x {items.shape[0]} items but train is "
            f"{train.shape[0]} x {train.shape[1]} (it must be users x items)"
        )
    return _musrec.ranking_metrics(users, items, csr_tuple(train), csr_tuple(test), _n(N), num_threads=num_threads)


def popularity_ranking_metrics(train: Any, test: Any, N: int = 10, num_threads: int = 0) -> dict[str, float]:
    """The same metrics for the popularity baseline: every user is offered the items most
    training users played (minus their own)."""
    train, test = _pair(train, test)
    return _musrec.popularity_ranking_metrics(csr_tuple(train), csr_tuple(test), _n(N), num_threads=num_threads)


def random_ranking_metrics(
    train: Any, test: Any, N: int = 10, random_state: int | None = None, num_threads: int = 0
) -> dict[str, float]:
    """The same metrics for a random ranking (the floor any recommender must clear)."""
    train, test = _pair(train, test)
    return _musrec.random_ranking_metrics(
        csr_tuple(train), csr_tuple(test), _n(N), _seed(random_state), num_threads=num_threads
    )


def _indices(a: Any) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def artist_popularity(
    plays: Any, artist_ids: list[str], known: Any, new: Any, tie_break: int | None = None
) -> np.ndarray:
    """A cold-start popularity score for each of the ``new`` songs: the mean number of
    listeners of the ``known`` songs by the same artist (the mean over all known songs for
    an unknown ("") or new artist). Uses nothing of the new songs but their artist.
    ``tie_break`` (a seed) adds a seeded random amount below a millionth of the largest score
    to each, so songs with the same score are not ranked by their order."""
    return _musrec.artist_popularity(
        csr_tuple(to_csr(plays)), list(artist_ids), _indices(known), _indices(new), tie_break=tie_break
    )


def training_mean_errors(vectors: Any, train: Any, test: Any) -> dict[str, float]:
    """:func:`vector_errors` of knowing nothing of a song: every ``test`` song's vector
    predicted as the mean of the ``train`` songs' vectors (rows of ``vectors``)."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    return _musrec.training_mean_errors(v, _indices(train), _indices(test))
