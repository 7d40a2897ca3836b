"""Weighted Matrix Factorization for implicit feedback (Hu, Koren & Volinsky 2008)."""

from __future__ import annotations

import numbers
import os
from typing import Any, Callable, Union

import numpy as np
import scipy.sparse as sp

from . import _musrec, _progress
from ._musrec import NotFittedError
from ._sparse import csr_tuple, ids, sorted_ids, to_csr

IdsLike = Union[int, np.integer, "np.typing.ArrayLike"]

#: The hyperparameters kept in :attr:`WMF.params` (their names come from the Rust class).
_PARAMS = tuple(_musrec.WMFParams.SETTINGS)


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


class WMF:
    """Weighted Matrix Factorization of a users x items matrix of play counts.

    Minimises ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + regularization * (|X|^2 + |Y|^2)``
    over all user-item pairs, where ``p_ui = 1`` if user u played item i (r_ui > 0) and 0
    otherwise, and the confidence is

    * ``confidence="linear"``: ``c_ui = 1 + alpha * r_ui`` (Hu et al.'s original), or
    * ``confidence="log"``: ``c_ui = 1 + alpha * log(1 + r_ui / eps)``.

    Unplayed pairs have ``c_ui = 1``. Note that the ``implicit`` library instead uses the
    matrix value itself as the confidence: ``implicit`` with data ``1 + alpha * r`` equals
    musrec with ``confidence="linear"``.

    Solved by alternating least squares: each half-sweep solves every user (then every item)
    exactly (``solver="cholesky"``) or by ``cg_steps`` steps of conjugate gradient warm-started
    from the previous factors (``solver="cg"``, Takacs et al. 2011). Cost per sweep is linear in
    the number of plays; the Rust core runs rows in parallel on ``num_threads`` threads
    (0 = one per core) with the GIL released.

    Results are deterministic for a fixed ``random_state`` (and independent of the number of
    threads). After :meth:`fit`, ``user_factors`` (n_users x factors) and ``item_factors``
    (n_items x factors) are float32 numpy arrays and the predicted preference of user u for
    item i is ``user_factors[u] @ item_factors[i]``.
    """

    def __init__(
        self,
        factors: int = 100,
        regularization: float = 0.01,
        alpha: float = 1.0,
        confidence: str = "linear",
        eps: float = 1.0,
        iterations: int = 15,
        solver: str = "cg",
        cg_steps: int = 3,
        random_state: int | None = None,
        num_threads: int = 0,
        calculate_training_loss: bool = False,
    ) -> None:
        #: The hyperparameters, validated by the Rust core (:class:`musrec.WMFParams`).
        self.params = _musrec.WMFParams(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            confidence=confidence,
            eps=eps,
            iterations=iterations,
            solver=solver,
            cg_steps=cg_steps,
            random_state=random_state,
            calculate_training_loss=calculate_training_loss,
        )
        self.num_threads = _positive_int(num_threads, "num_threads", minimum=0)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        #: Training loss after each iteration (when ``calculate_training_loss``).
        self.loss_history: list = []
        self._user_items: sp.csr_matrix | None = None
        self._normalized: dict = {}

    def __repr__(self) -> str:
        state = "unfitted" if self.user_factors is None else f"{self.n_users} users x {self.n_items} items"
        return (
            f"WMF(factors={self.factors}, regularization={self.regularization}, alpha={self.alpha}, "
            f"confidence={self.confidence!r}, iterations={self.iterations}, solver={self.solver!r}; {state})"
        )

    # -- parameters ---------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # The hyperparameters read as attributes (model.factors, model.alpha, ...).
        if name in _PARAMS and "params" in self.__dict__:
            return getattr(self.__dict__["params"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        # Setting a hyperparameter goes through the core's validation too.
        if name in _PARAMS:
            self.params = self.params.replace(**{name: value})
        else:
            super().__setattr__(name, value)

    def get_params(self) -> dict[str, Any]:
        """The constructor's settings (scikit-learn's convention)."""
        return {**self.params.to_dict(), "num_threads": self.num_threads}

    @property
    def n_users(self) -> int:
        return 0 if self.user_factors is None else self.user_factors.shape[0]

    @property
    def n_items(self) -> int:
        return 0 if self.item_factors is None else self.item_factors.shape[0]

    def _require_fitted(self) -> None:
        if self.user_factors is None or self.item_factors is None:
            raise NotFittedError("this WMF model is not fitted yet; call fit() or WMF.load() first")

    # -- fitting ------------------------------------------------------------------------
    def fit(
        self,
        user_items: Any,
        show_progress: bool = True,
        callback: Callable[[int, int, float | None], None] | None = None,
    ) -> WMF:
        """Fit to ``user_items``, a users x items scipy.sparse matrix of non-negative play counts.

        ``callback(iteration, total, loss)`` is called after each iteration (loss is None
        unless ``calculate_training_loss``). Ctrl-C (KeyboardInterrupt) stops after the current
        half-sweep; the model keeps the factors of the last complete iteration, then the
        KeyboardInterrupt propagates.
        """
        csr = to_csr(user_items, "user_items")
        if csr.shape[0] == 0 or csr.shape[1] == 0:
            raise ValueError(f"user_items is empty (shape {csr.shape})")
        seed = self.random_state
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
        self._user_items, self._normalized = csr, {}
        bar = _progress.bar(self.iterations, "WMF", show_progress)
        try:
            # Stores user_factors, item_factors and loss_history here, also when Ctrl-C stops it.
            _musrec.wmf_fit(
                self,
                self.params,
                csr_tuple(csr),
                seed=seed,
                num_threads=self.num_threads,
                callback=_progress.callback(bar, callback),
            )
        finally:
            bar.close()
        return self

    def training_loss(self, user_items: Any) -> float:
        """The objective (weighted squared error plus regularisation) divided by the total
        confidence weight ``n_users * n_items + sum(c_ui - 1)``, for the current factors."""
        self._require_fitted()
        csr = self._check_matrix(user_items, self.n_users)
        return _musrec.wmf_loss(
            self.params, csr_tuple(csr), self.user_factors, self.item_factors, num_threads=self.num_threads
        )

    # -- ranking --------------------------------------------------------------------------
    def _check_matrix(self, user_items: Any, rows: int) -> sp.csr_matrix:
        csr = to_csr(user_items, "user_items")
        if csr.shape[1] != self.n_items:
            hint = " (is it items x users? pass users x items)" if csr.shape[0] == self.n_items else ""
            raise ValueError(f"user_items has {csr.shape[1]} columns but the model has {self.n_items} items{hint}")
        if csr.shape[0] != rows:
            raise ValueError(f"user_items has {csr.shape[0]} rows, expected {rows}")
        return csr

    def _liked_rows(self, user_items: Any, user_ids: np.ndarray) -> sp.csr_matrix:
        """The rows of already-played items for the queried users."""
        if user_items is None:
            if self._user_items is None:
                raise ValueError(
                    "filter_already_liked needs user_items: this model was loaded from disk and "
                    "does not hold its training matrix"
                )
            return self._user_items[user_ids]
        csr = to_csr(user_items, "user_items")
        if csr.shape[1] != self.n_items:
            hint = " (is it items x users? pass users x items)" if csr.shape[0] == self.n_items else ""
            raise ValueError(f"user_items has {csr.shape[1]} columns but the model has {self.n_items} items{hint}")
        if csr.shape[0] == self.n_users:
            return csr[user_ids]
        if csr.shape[0] == len(user_ids):
            return csr
        raise ValueError(
            f"user_items has {csr.shape[0]} rows: pass the full users x items matrix "
            f"({self.n_users} rows) or one row per requested user ({len(user_ids)} rows)"
        )

    def recommend(
        self,
        user_ids: IdsLike,
        user_items: Any = None,
        N: int = 10,
        filter_already_liked: bool = True,
        filter_items: Any = None,
        items: Any = None,
        recalculate_user: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N items for one user or a batch of users, by predicted preference.

        Returns ``(item_ids, scores)``: 1-D arrays for a single user id, 2-D
        (n_users_requested x N) for a batch, where rows with fewer than N eligible items are
        padded with id -1 and score -inf (N is capped at the number of candidate items).

        ``user_items`` is the users x items play matrix (all users, or one row per requested
        user); it defaults to the matrix given to :meth:`fit`. With
        ``filter_already_liked`` the user's played items are left out. ``filter_items`` lists
        items never to recommend; ``items`` restricts the ranking to those candidates. With
        ``recalculate_user=True`` the users' factors are computed from ``user_items`` (one row
        per requested user) by fold-in, so brand-new users can be served.
        """
        self._require_fitted()
        single = np.ndim(user_ids) == 0
        N = _positive_int(N, "N")
        if recalculate_user:
            if user_items is None:
                raise ValueError("recalculate_user=True needs user_items with one row per requested user")
            rows = to_csr(user_items, "user_items")
            if rows.shape[0] != np.size(user_ids):
                raise ValueError(f"user_items has {rows.shape[0]} rows for {np.size(user_ids)} users")
            queries = self.recalculate_user(rows)
            queries = queries.reshape(-1, self.factors)
            liked = rows if filter_already_liked else None
        else:
            uids = ids(user_ids, self.n_users, "user_ids")
            queries = self.user_factors[uids]
            liked = self._liked_rows(user_items, uids) if filter_already_liked else None
        if liked is not None:
            liked = to_csr(liked, "user_items")
        item_ids, scores = _musrec.top_n(
            np.ascontiguousarray(queries, dtype=np.float32),
            self.item_factors,
            N,
            exclude=None if liked is None else csr_tuple(liked),
            filter_items=None if filter_items is None else sorted_ids(filter_items, self.n_items, "filter_items"),
            candidates=None if items is None else ids(items, self.n_items, "items"),
            num_threads=self.num_threads,
        )
        if single:
            keep = item_ids[0] >= 0
            return item_ids[0][keep], scores[0][keep]
        return item_ids, scores

    def recommend_all(
        self,
        user_items: Any = None,
        N: int = 10,
        filter_already_liked: bool = True,
        filter_items: Any = None,
        items: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N for every user: (n_users x N) ids and scores, as :meth:`recommend` returns."""
        self._require_fitted()
        return self.recommend(np.arange(self.n_users), user_items, N, filter_already_liked, filter_items, items)

    def _cosine_neighbours(
        self,
        factors: np.ndarray,
        key: str,
        query_ids: IdsLike,
        N: int,
        filter_ids: Any,
        candidates: Any,
        include_self: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        self._require_fitted()
        N = _positive_int(N, "N")
        n = factors.shape[0]
        single = np.ndim(query_ids) == 0
        qids = ids(query_ids, n, "ids")
        if key not in self._normalized:
            self._normalized[key] = _musrec.unit_rows(np.ascontiguousarray(factors, dtype=np.float32))
        normalized = self._normalized[key]
        exclude = None
        if not include_self:
            rows = sp.csr_matrix((np.ones(len(qids), np.float32), (np.arange(len(qids)), qids)), shape=(len(qids), n))
            exclude = csr_tuple(to_csr(rows))
        out_ids, scores = _musrec.top_n(
            normalized[qids],
            normalized,
            N,
            exclude=exclude,
            filter_items=None if filter_ids is None else sorted_ids(filter_ids, n, "filter_items"),
            candidates=None if candidates is None else ids(candidates, n, "items"),
            num_threads=self.num_threads,
        )
        if single:
            keep = out_ids[0] >= 0
            return out_ids[0][keep], scores[0][keep]
        return out_ids, scores

    def similar_items(
        self, item_ids: IdsLike, N: int = 10, filter_items: Any = None, items: Any = None, include_self: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The N items most similar to each given item by cosine similarity of item factors.

        The query item itself is left out unless ``include_self`` (``implicit`` includes it).
        """
        return self._cosine_neighbours(self.item_factors, "items", item_ids, N, filter_items, items, include_self)

    def similar_users(
        self, user_ids: IdsLike, N: int = 10, filter_users: Any = None, users: Any = None, include_self: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The N users most similar to each given user by cosine similarity of user factors."""
        return self._cosine_neighbours(self.user_factors, "users", user_ids, N, filter_users, users, include_self)

    # -- fold-in --------------------------------------------------------------------------
    def _fold_in(self, fixed: np.ndarray, plays: Any, other: str) -> np.ndarray:
        n_other = fixed.shape[0]
        if sp.issparse(plays):
            rows = to_csr(plays, "plays")
            if rows.shape[1] != n_other and rows.shape[0] == n_other:
                rows = to_csr(rows.T, "plays")
        else:
            dense = np.asarray(plays, dtype=np.float32)
            if dense.ndim not in (1, 2):
                raise ValueError(f"plays must be 1-D or 2-D, got shape {dense.shape}")
            dense = np.atleast_2d(dense)
            if dense.shape[1] != n_other and dense.shape[0] == n_other:
                dense = dense.T  # a column of counts
            rows = to_csr(sp.csr_matrix(dense), "plays")
        if rows.shape[1] != n_other:
            raise ValueError(f"plays have {rows.shape[1]} entries but the model has {n_other} {other}")
        out = _musrec.wmf_fold_in(self.params, fixed, csr_tuple(rows), num_threads=self.num_threads)
        single = (not sp.issparse(plays) and np.ndim(plays) == 1) or rows.shape[0] == 1
        return out[0] if single else out

    def recalculate_user(self, user_items_row: Any) -> np.ndarray:
        """Factors of a new user from their plays, without refitting (exact fold-in).

        ``user_items_row`` holds play counts over the model's items: a 1-D array of length
        n_items, a 1 x n_items sparse row, or several rows (returns one vector per row).
        """
        self._require_fitted()
        return self._fold_in(self.item_factors, user_items_row, "items")

    def recalculate_item(self, item_users_col: Any) -> np.ndarray:
        """Factors of a new song from the plays of the model's users (exact fold-in).

        ``item_users_col`` holds play counts over the model's users: a 1-D array of length
        n_users, or an n_users x 1 (or 1 x n_users) sparse matrix.
        """
        self._require_fitted()
        return self._fold_in(self.user_factors, item_users_col, "users")

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model as a safetensors file (tensors ``user_factors``, ``item_factors``;
        hyperparameters as JSON in the metadata), atomically: a crash leaves any previous
        file intact."""
        self._require_fitted()
        _musrec.wmf_save(os.fspath(path), self.params, self.user_factors, self.item_factors)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WMF:
        """Read a model written by :meth:`save`. Raises FileNotFoundError or
        musrec.FormatError for a missing or invalid file."""
        params, users, items = _musrec.wmf_load(os.fspath(path))
        model = cls(**params.to_dict())
        model.user_factors, model.item_factors = users, items
        return model
