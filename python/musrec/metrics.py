"""Evaluate recommenders: ranking metrics, the held-out split and the reference baselines.

Top-N ranking metrics over a held-out split, the split itself, and the reference baselines
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
from ._musrec import NotFittedError
from ._sparse import csr_tuple, from_parts, to_csr

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


def train_test_split(
    user_items: Any, test_fraction: float = 0.2, random_state: int | None = None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each user's interactions at random into train and test.

    A user with n >= 2 interactions (stored entries of their row) holds out
    round(test_fraction * n) of them, at least one and at most n - 1; users with fewer stay
    entirely in train. Both results have the shape of ``user_items`` (users x items) and keep
    its play counts. Deterministic for a given ``random_state``.

    Parameters
    ----------
    user_items : scipy.sparse matrix of shape (n_users, n_items)
        Play counts, users x items.
    test_fraction : float, default 0.2
        Share of each user's interactions to hold out, strictly between 0 and 1.
    random_state : int or None, default None
        Non-negative seed of the split; None draws a fresh one.

    Returns
    -------
    train : scipy.sparse.csr_matrix of float32, shape (n_users, n_items)
        The interactions kept for training.
    test : scipy.sparse.csr_matrix of float32, shape (n_users, n_items)
        The held-out interactions; ``train + test`` is ``user_items``.

    Raises
    ------
    TypeError
        If ``user_items`` is not a scipy.sparse matrix (dense arrays are refused) or does not
        hold real numbers.
    ValueError
        If ``test_fraction`` is not a number strictly between 0 and 1, or ``random_state`` is
        neither None nor a non-negative integer.

    See Also
    --------
    ranking_metrics : Evaluate a model fitted on ``train`` against ``test``.

    Notes
    -----
    The number held out is rounded half away from zero (1.5 becomes 2, 2.5 becomes 3).

    Examples
    --------
    >>> from musrec.metrics import train_test_split
    >>> from musrec.synthetic import listening
    >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
    >>> train, test = train_test_split(plays, test_fraction=0.2, random_state=0)
    >>> train.shape == test.shape == plays.shape
    True
    >>> train.nnz, test.nnz
    (6157, 1539)
    >>> (train + test - plays).nnz
    0
    """
    if not isinstance(test_fraction, (float, int)) or not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")
    csr = to_csr(user_items, "user_items")
    train, test = _musrec.train_test_split(csr_tuple(csr), float(test_fraction), _seed(random_state))
    return from_parts(train), from_parts(test)


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
    """Compute the paper's Table 1 errors of predicted vs true (WMF) song vectors, over all values.

    The errors are taken over every component of every song. MSLE = mean (log(1 + p) -
    log(1 + t))^2 is undefined for values <= -1 and latent factors can be negative: every
    value (predicted and true) below -1 + 1e-6 is raised to it first, and ``msle_clipped``
    says how many of the values that touched.

    Parameters
    ----------
    predicted : array_like of shape (n_songs, n_factors) or (n_factors,)
        Predicted song vectors (a 1-D array is one song); converted to float32.
    actual : array_like of the same shape as ``predicted``
        The true (WMF) song vectors.

    Returns
    -------
    dict of str to float or int
        ``mse``, ``rmse``, ``mae`` and ``msle`` (floats); ``msle_clipped``, the number of
        values (predicted or true) raised for MSLE, and ``n_values``, the number of
        components compared (ints).

    Raises
    ------
    ValueError
        If the arrays are not 1-D or 2-D, their shapes differ, they are empty, or they hold
        NaN or infinite values.

    See Also
    --------
    training_mean_errors : The same errors for the training-mean baseline.

    Examples
    --------
    >>> from musrec.metrics import vector_errors
    >>> errors = vector_errors([[0.0, 1.0], [2.0, 3.0]], [[0.0, 1.0], [2.0, 2.0]])
    >>> errors["mse"], errors["rmse"], errors["mae"], errors["n_values"]
    (0.25, 0.5, 0.25, 4)
    >>> vector_errors([-2.0, 1.0], [0.0, 1.0])["msle_clipped"]
    1
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
    """Compute precision, recall, F1, NDCG, MAP at N and AUC of a factor model on a held-out split.

    Each user's train items are excluded from their ranking. The definitions are in the
    module's documentation (:mod:`musrec.metrics`).

    Parameters
    ----------
    model : musrec.WMF or object
        A fitted :class:`musrec.WMF`, or anything with ``user_factors`` (n_users x k) and
        ``item_factors`` (n_items x k) arrays.
    train : scipy.sparse matrix of shape (n_users, n_items)
        The training interactions, users x items.
    test : scipy.sparse matrix of shape (n_users, n_items)
        The held-out interactions, of the same shape as ``train``.
    N : int, default 10
        The cut-off of the ranking (a positive integer).
    num_threads : int, default 0
        Threads of the Rust core (0 = one per core).

    Returns
    -------
    dict of str to float or int
        ``precision``, ``recall``, ``f1``, ``ndcg``, ``map`` and ``auc`` (floats), and
        ``users_evaluated``, the number of users with at least one held-out item.

    Raises
    ------
    TypeError
        If ``train`` or ``test`` is not a scipy.sparse matrix of real numbers.
    musrec.NotFittedError
        If ``model`` has no ``user_factors``/``item_factors`` (is not fitted); a subclass
        of ValueError.
    ValueError
        If the factors' numbers of columns differ, their rows do not match ``train`` (it must be users x items),
        ``train`` and ``test`` differ in shape, or ``N`` is not a positive integer.

    See Also
    --------
    popularity_ranking_metrics : The same metrics for the popularity baseline.
    random_ranking_metrics : The same metrics for a random ranking.

    Examples
    --------
    >>> from musrec import WMF
    >>> from musrec.metrics import ranking_metrics, train_test_split
    >>> from musrec.synthetic import listening
    >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
    >>> train, test = train_test_split(plays, random_state=0)
    >>> model = WMF(factors=8, iterations=5, random_state=0).fit(train, show_progress=False)
    >>> scores = ranking_metrics(model, train, test, N=10)
    >>> sorted(scores)
    ['auc', 'f1', 'map', 'ndcg', 'precision', 'recall', 'users_evaluated']
    >>> scores["users_evaluated"]
    197
    """
    train, test = _pair(train, test)
    users = getattr(model, "user_factors", None)
    items = getattr(model, "item_factors", None)
    if users is None or items is None:
        raise NotFittedError("model has no user_factors/item_factors; fit it first")
    users = np.ascontiguousarray(users, dtype=np.float32)
    items = np.ascontiguousarray(items, dtype=np.float32)
    if users.shape[0] != train.shape[0] or items.shape[0] != train.shape[1]:
        raise ValueError(
            f"the model has {users.shape[0]} users x {items.shape[0]} items but train is "
            f"{train.shape[0]} x {train.shape[1]} (it must be users x items)"
        )
    return _musrec.ranking_metrics(users, items, csr_tuple(train), csr_tuple(test), _n(N), num_threads=num_threads)


def popularity_ranking_metrics(train: Any, test: Any, N: int = 10, num_threads: int = 0) -> dict[str, float]:
    """Compute the ranking metrics of the popularity baseline.

    Every user is offered the items most training users played (minus their own), and the
    result is scored as :func:`ranking_metrics` scores a model.

    Parameters
    ----------
    train : scipy.sparse matrix of shape (n_users, n_items)
        The training interactions, users x items; an item's popularity is the number of
        users who played it here.
    test : scipy.sparse matrix of shape (n_users, n_items)
        The held-out interactions, of the same shape as ``train``.
    N : int, default 10
        The cut-off of the ranking (a positive integer).
    num_threads : int, default 0
        Threads of the Rust core (0 = one per core).

    Returns
    -------
    dict of str to float or int
        ``precision``, ``recall``, ``f1``, ``ndcg``, ``map``, ``auc`` and
        ``users_evaluated``, as :func:`ranking_metrics` returns them.

    Raises
    ------
    TypeError
        If ``train`` or ``test`` is not a scipy.sparse matrix of real numbers.
    ValueError
        If ``train`` and ``test`` differ in shape, or ``N`` is not a positive integer.

    See Also
    --------
    ranking_metrics : The same metrics for a factor model.

    Examples
    --------
    >>> from musrec.metrics import popularity_ranking_metrics, train_test_split
    >>> from musrec.synthetic import listening
    >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
    >>> train, test = train_test_split(plays, random_state=0)
    >>> scores = popularity_ranking_metrics(train, test, N=10)
    >>> scores["users_evaluated"]
    197
    """
    train, test = _pair(train, test)
    return _musrec.popularity_ranking_metrics(csr_tuple(train), csr_tuple(test), _n(N), num_threads=num_threads)


def random_ranking_metrics(
    train: Any, test: Any, N: int = 10, random_state: int | None = None, num_threads: int = 0
) -> dict[str, float]:
    """Compute the ranking metrics of a random ranking (the floor any recommender must clear).

    Each user's items outside their training items are ranked in a seeded random order, and
    the result is scored as :func:`ranking_metrics` scores a model.

    Parameters
    ----------
    train : scipy.sparse matrix of shape (n_users, n_items)
        The training interactions, users x items.
    test : scipy.sparse matrix of shape (n_users, n_items)
        The held-out interactions, of the same shape as ``train``.
    N : int, default 10
        The cut-off of the ranking (a positive integer).
    random_state : int or None, default None
        Non-negative seed of the ranking; None draws a fresh one.
    num_threads : int, default 0
        Threads of the Rust core (0 = one per core).

    Returns
    -------
    dict of str to float or int
        ``precision``, ``recall``, ``f1``, ``ndcg``, ``map``, ``auc`` and
        ``users_evaluated``, as :func:`ranking_metrics` returns them.

    Raises
    ------
    TypeError
        If ``train`` or ``test`` is not a scipy.sparse matrix of real numbers.
    ValueError
        If ``train`` and ``test`` differ in shape, ``N`` is not a positive integer, or
        ``random_state`` is neither None nor a non-negative integer.

    See Also
    --------
    ranking_metrics : The same metrics for a factor model.

    Examples
    --------
    >>> from musrec.metrics import random_ranking_metrics, train_test_split
    >>> from musrec.synthetic import listening
    >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
    >>> train, test = train_test_split(plays, random_state=0)
    >>> scores = random_ranking_metrics(train, test, N=10, random_state=0)
    >>> bool(0.4 < scores["auc"] < 0.6)
    True
    """
    train, test = _pair(train, test)
    return _musrec.random_ranking_metrics(
        csr_tuple(train), csr_tuple(test), _n(N), _seed(random_state), num_threads=num_threads
    )


def _indices(a: Any) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def artist_popularity(
    plays: Any, artist_ids: list[str], known: Any, new: Any, tie_break: int | None = None
) -> np.ndarray:
    """Score new songs by the listeners of their artist's known songs (a cold-start baseline).

    A cold-start popularity score for each of the ``new`` songs: the mean number of listeners
    of the ``known`` songs by the same artist (the mean over all known songs for an unknown
    ("") or new artist; 0 when ``known`` is empty). Uses nothing of the new songs but their
    artist.

    Parameters
    ----------
    plays : scipy.sparse matrix of shape (n_users, n_songs)
        Play counts, users x songs; a song's listeners are the users with an entry in its
        column.
    artist_ids : list of str
        The artist of every song (column of ``plays``); "" for an unknown artist.
    known : array_like of int
        Indices of the songs whose listeners count.
    new : array_like of int
        Indices of the songs to score.
    tie_break : int or None, optional
        A seed: adds a seeded random amount below a millionth of the largest score (of 1 if
        all are smaller) to each, so songs with the same score are not ranked by their order.
        None adds nothing.

    Returns
    -------
    numpy.ndarray of float64, shape (len(new),)
        The score of each of the ``new`` songs.

    Raises
    ------
    TypeError
        If ``plays`` is not a scipy.sparse matrix of real numbers.
    ValueError
        If ``artist_ids`` does not have one entry per song, or a song index is negative or
        out of range.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from musrec.metrics import artist_popularity
    >>> plays = sp.csr_matrix(np.array([[1, 1, 0, 1, 1], [1, 0, 0, 1, 0], [1, 0, 1, 0, 1]], dtype=np.float32))
    >>> artist_popularity(plays, ["a", "a", "b", "", "c"], known=[0, 1, 2], new=[3, 4, 1, 2])
    array([1.66666667, 1.66666667, 2.        , 1.        ])
    """
    return _musrec.artist_popularity(
        csr_tuple(to_csr(plays)), list(artist_ids), _indices(known), _indices(new), tie_break=tie_break
    )


def training_mean_errors(vectors: Any, train: Any, test: Any) -> dict[str, float]:
    """Compute :func:`vector_errors` of the training-mean baseline, which knows nothing of a song.

    Every ``test`` song's vector is predicted as the mean of the ``train`` songs' vectors
    (rows of ``vectors``).

    Parameters
    ----------
    vectors : array_like of shape (n_songs, n_factors)
        The true (WMF) song vectors; converted to float32.
    train : array_like of int
        Indices (rows of ``vectors``) of the training songs.
    test : array_like of int
        Indices of the songs to predict.

    Returns
    -------
    dict of str to float or int
        ``mse``, ``rmse``, ``mae``, ``msle``, ``msle_clipped`` and ``n_values``, as
        :func:`vector_errors` returns them.

    Raises
    ------
    ValueError
        If ``train`` is empty, an index is negative or out of range, or a vector holds NaN or
        infinite values.

    See Also
    --------
    vector_errors : The errors of any prediction.

    Examples
    --------
    >>> import numpy as np
    >>> from musrec.metrics import training_mean_errors
    >>> vectors = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 10.0]])
    >>> errors = training_mean_errors(vectors, train=[0, 1], test=[2])
    >>> errors["mse"], errors["mae"]
    (56.5, 7.5)
    """
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    return _musrec.training_mean_errors(v, _indices(train), _indices(test))
