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

    Unplayed pairs have ``c_ui = 1``. After :meth:`fit`, ``user_factors`` (n_users x factors)
    and ``item_factors`` (n_items x factors) are float32 numpy arrays and the predicted
    preference of user u for item i is ``user_factors[u] @ item_factors[i]``.

    Parameters
    ----------
    factors : int, default 100
        Number of latent factors of every user and item (at least 1).
    regularization : float, default 0.01
        Weight of the L2 penalty ``regularization * (|X|^2 + |Y|^2)`` (finite, >= 0).
    alpha : float, default 1.0
        Scale of the confidence given to plays (finite, >= 0).
    confidence : {"linear", "log"}, default "linear"
        How a play count ``r_ui`` becomes a confidence ``c_ui`` (see above).
    eps : float, default 1.0
        The ``eps`` of ``confidence="log"`` (finite, > 0; checked whatever the confidence).
    iterations : int, default 15
        Number of alternating least squares iterations (sweeps over users then items; >= 0).
    solver : {"cg", "cholesky"}, default "cg"
        How each half-sweep solves every user (then every item): exactly (``"cholesky"``)
        or by ``cg_steps`` steps of conjugate gradient warm-started from the previous
        factors (``"cg"``, Takacs et al. 2011). With ``"cg"``, a row with so few plays
        that an exact solve by the Woodbury identity costs less than the CG steps (at 100
        factors and 3 steps: up to 22) is solved exactly instead.
    cg_steps : int, default 3
        Conjugate gradient steps per row and half-sweep with ``solver="cg"`` (at least 1).
    random_state : int or None, default None
        Non-negative seed of the initial factors. None draws a fresh seed at every
        :meth:`fit`.
    num_threads : int, default 0
        Threads the Rust core runs rows on (0 = one per core).
    calculate_training_loss : bool, default False
        Compute the training loss after each iteration (into ``loss_history`` and the
        ``callback`` of :meth:`fit`).

    Attributes
    ----------
    params : musrec.WMFParams
        The hyperparameters, validated by the Rust core. Each also reads as an attribute of
        the model (``model.factors``, ``model.alpha``, ...); setting one
        (``model.alpha = 10.0``) replaces ``params`` after the same validation.
    num_threads : int
        Threads the Rust core runs on (0 = one per core).
    user_factors : numpy.ndarray of float32, shape (n_users, factors), or None
        The users' factors; None before :meth:`fit` or :meth:`load`.
    item_factors : numpy.ndarray of float32, shape (n_items, factors), or None
        The items' factors; None before :meth:`fit` or :meth:`load`.
    loss_history : list of float
        Training loss after each iteration (when ``calculate_training_loss``); empty
        otherwise and for a model read by :meth:`load`.
    n_users : int
        Number of users of the fitted model (0 before fitting).
    n_items : int
        Number of items of the fitted model (0 before fitting).

    Raises
    ------
    TypeError
        If ``factors``, ``iterations``, ``cg_steps``, ``random_state`` or ``num_threads`` is
        not an integer, or ``regularization``, ``alpha`` or ``eps`` not a number.
    ValueError
        If a setting is out of its range, or ``confidence`` or ``solver`` is none of the
        values above.

    See Also
    --------
    musrec.WMFParams : The validated hyperparameters.
    musrec.metrics.ranking_metrics : Ranking quality of a fitted model on a held-out split.

    Notes
    -----
    The ``implicit`` library instead uses the matrix value itself as the confidence:
    ``implicit`` with data ``1 + alpha * r`` equals musrec with ``confidence="linear"``.

    Solved by alternating least squares: each half-sweep solves every user (then every item)
    exactly (``solver="cholesky"``) or by ``cg_steps`` steps of conjugate gradient warm-started
    from the previous factors (``solver="cg"``, Takacs et al. 2011). Cost per sweep is linear in
    the number of plays; the Rust core runs rows in parallel on ``num_threads`` threads
    (0 = one per core) with the GIL released.

    Results are deterministic for a fixed ``random_state`` (and independent of the number of
    threads).

    Examples
    --------
    >>> from musrec import WMF
    >>> from musrec.synthetic import listening
    >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
    >>> model = WMF(factors=8, iterations=5, random_state=0)
    >>> model.fit(plays, show_progress=False)  # doctest: +ELLIPSIS
    WMF(factors=8, ...; 200 users x 300 items)
    >>> model.user_factors.shape, model.item_factors.shape, model.item_factors.dtype
    ((200, 8), (300, 8), dtype('float32'))
    >>> model.alpha = 5.0
    >>> model.params.alpha
    5.0
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
        """Return the constructor's settings (scikit-learn's convention).

        Returns
        -------
        dict of str to object
            The hyperparameters of ``params`` and ``num_threads``, by constructor argument name.

        See Also
        --------
        musrec.WMFParams.to_dict : The hyperparameters alone.

        Examples
        --------
        >>> from musrec import WMF
        >>> params = WMF(factors=8, random_state=0).get_params()
        >>> params["factors"], params["random_state"], params["num_threads"]
        (8, 0, 0)
        """
        return {**self.params.to_dict(), "num_threads": self.num_threads}

    @property
    def n_users(self) -> int:
        """Number of users of the fitted model.

        Returns
        -------
        int
            The number of rows of ``user_factors``; 0 before :meth:`fit` or :meth:`load`.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0)
        >>> model.n_users
        0
        >>> model.fit(plays, show_progress=False).n_users
        200
        """
        return 0 if self.user_factors is None else self.user_factors.shape[0]

    @property
    def n_items(self) -> int:
        """Number of items of the fitted model.

        Returns
        -------
        int
            The number of rows of ``item_factors``; 0 before :meth:`fit` or :meth:`load`.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0)
        >>> model.n_items
        0
        >>> model.fit(plays, show_progress=False).n_items
        300
        """
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
        """Fit the factors to a users x items matrix of play counts.

        The model keeps ``user_items`` as the default matrix of already-played items for
        :meth:`recommend`. Each fit starts afresh from initial factors drawn with
        ``random_state`` (a fresh seed when it is None).

        Parameters
        ----------
        user_items : scipy.sparse matrix of shape (n_users, n_items)
            Non-negative, finite play counts (users x items).
        show_progress : bool, default True
            Show a progress bar (plain log lines when stderr is not a terminal).
        callback : callable or None, optional
            ``callback(iteration, total, loss)`` is called after each iteration; ``loss`` is
            None unless ``calculate_training_loss``.

        Returns
        -------
        WMF
            The model itself, fitted: ``user_factors``, ``item_factors`` and ``loss_history`` are
            set.

        Raises
        ------
        TypeError
            If ``user_items`` is not a scipy.sparse matrix (dense arrays are refused) or does not
            hold real numbers.
        ValueError
            If ``user_items`` is empty or holds a negative or infinite play count, or if, with
            ``solver="cholesky"``, a least-squares system is not positive definite (use
            ``regularization > 0``).
        KeyboardInterrupt
            On Ctrl-C, once the current half-sweep is done (see Notes).

        See Also
        --------
        recommend : Top-N items of fitted users.
        musrec.metrics.train_test_split : Hold out part of each user's plays.

        Notes
        -----
        Ctrl-C (KeyboardInterrupt), or an exception raised by ``callback``, stops after the
        current half-sweep; the model keeps the factors of the last complete iteration, then the
        KeyboardInterrupt (or the exception) propagates.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0, calculate_training_loss=True)
        >>> model.fit(plays, show_progress=False)  # doctest: +ELLIPSIS
        WMF(factors=8, ...; 200 users x 300 items)
        >>> len(model.loss_history)
        5
        >>> done = []
        >>> _ = model.fit(plays, show_progress=False, callback=lambda i, total, loss: done.append(i))
        >>> done
        [1, 2, 3, 4, 5]
        """
        csr = to_csr(user_items, "user_items")
        if csr.shape[0] == 0 or csr.shape[1] == 0:
            raise ValueError(f"user_items is empty (shape {csr.shape})")
        seed = self.random_state
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
        self._user_items, self._normalized, self._fit_seed = csr, {}, seed
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
        """Compute the training objective of the current factors, normalised by the confidences.

        The objective (weighted squared error plus regularisation) is divided by the total
        confidence weight ``n_users * n_items + sum(c_ui - 1)``.

        Parameters
        ----------
        user_items : scipy.sparse matrix of shape (n_users, n_items)
            Play counts over the model's users and items.

        Returns
        -------
        float
            The objective divided by the total confidence weight.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        TypeError
            If ``user_items`` is not a scipy.sparse matrix of real numbers.
        ValueError
            If ``user_items`` does not have n_users rows and n_items columns, or holds a negative
            or infinite play count.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0).fit(plays, show_progress=False)
        >>> loss = model.training_loss(plays)
        >>> bool(0.0 < loss < 1.0)
        True
        """
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
        """Return the rows of already-played items for the queried users."""
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
        """Rank the top-N items for one user or a batch of users by predicted preference.

        Rows with fewer than N eligible items are padded with id -1 and score -inf; N is capped at
        the number of candidate items.

        Parameters
        ----------
        user_ids : int or array_like of int
            One user id (a row of ``user_factors``) or several. With ``recalculate_user=True``
            the ids are not looked up: only whether one or several are given, and how many,
            matters.
        user_items : scipy.sparse matrix or None, optional
            The users x items play matrix: all users (n_users rows) or one row per requested
            user. It defaults to the matrix given to :meth:`fit`.
        N : int, default 10
            Number of items per user (at least 1).
        filter_already_liked : bool, default True
            Leave out the items the user played in ``user_items``.
        filter_items : array_like of int or None, optional
            Item ids never to recommend.
        items : array_like of int or None, optional
            Candidate item ids: the ranking is restricted to them.
        recalculate_user : bool, default False
            Compute the users' factors from ``user_items`` (one row per requested user) by
            fold-in (:meth:`recalculate_user`), so brand-new users can be served.

        Returns
        -------
        item_ids : numpy.ndarray of int32
            The recommended items, best first: 1-D for a single user id (padding left out), 2-D
            (n_users_requested x N) for a batch.
        scores : numpy.ndarray of float32
            The predicted preferences of ``item_ids``, of the same shape.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        TypeError
            If ``N`` or an id is not an integer, or ``user_items`` is not a scipy.sparse matrix.
        IndexError
            If an id is out of range.
        ValueError
            If ``N`` is below 1; if ``user_items`` has neither n_items columns nor a row count
            that fits (for example an items x users matrix); if ``filter_already_liked`` needs
            the training matrix of a model read by :meth:`load`, which does not hold it; or if
            ``recalculate_user=True`` is given no ``user_items`` or not one row per requested user.

        See Also
        --------
        recommend_all : The same for every user.
        similar_items : Items close to given items.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0).fit(plays, show_progress=False)
        >>> ids, scores = model.recommend(0, N=5)
        >>> ids.shape, ids.dtype, scores.dtype
        ((5,), dtype('int32'), dtype('float32'))
        >>> plays[0, ids].nnz  # nothing user 0 already played
        0
        >>> ids, scores = model.recommend([0, 1, 2], N=5)
        >>> ids.shape
        (3, 5)

        A new user, from their plays over the model's items:

        >>> new_user = plays[:1]
        >>> ids, scores = model.recommend(0, new_user, N=5, recalculate_user=True)
        >>> ids.shape
        (5,)
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
        """Rank the top-N items for every user.

        Parameters
        ----------
        user_items : scipy.sparse matrix or None, optional
            The users x items play matrix (n_users rows); it defaults to the matrix given to
            :meth:`fit`.
        N : int, default 10
            Number of items per user (at least 1).
        filter_already_liked : bool, default True
            Leave out the items each user played in ``user_items``.
        filter_items : array_like of int or None, optional
            Item ids never to recommend.
        items : array_like of int or None, optional
            Candidate item ids: the ranking is restricted to them.

        Returns
        -------
        item_ids : numpy.ndarray of int32, shape (n_users, N)
            The recommended items, best first, as :meth:`recommend` returns them for a batch
            (padded with -1).
        scores : numpy.ndarray of float32, shape (n_users, N)
            Their predicted preferences (padding: -inf).

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        TypeError
            If ``N`` or an id is not an integer, or ``user_items`` is not a scipy.sparse matrix.
        IndexError
            If an id in ``filter_items`` or ``items`` is out of range.
        ValueError
            If ``N`` is below 1, ``user_items`` does not match the model's shape, or
            ``filter_already_liked`` needs the training matrix of a model read by :meth:`load`.

        See Also
        --------
        recommend : The same for chosen users.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0).fit(plays, show_progress=False)
        >>> ids, scores = model.recommend_all(N=5)
        >>> ids.shape, scores.shape
        ((200, 5), (200, 5))
        """
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
        """Find the N items most similar to each given item by cosine similarity of item factors.

        Parameters
        ----------
        item_ids : int or array_like of int
            One item id or several.
        N : int, default 10
            Number of similar items per query (at least 1; capped at the number of candidates).
        filter_items : array_like of int or None, optional
            Item ids never to return.
        items : array_like of int or None, optional
            Candidate item ids: only these are ranked.
        include_self : bool, default False
            Keep the query item itself among the results (``implicit`` includes it).

        Returns
        -------
        ids : numpy.ndarray of int32
            The similar items, most similar first: 1-D for a single item id (padding left out),
            2-D (n_queries x N) for several, padded with -1 where fewer items are eligible.
        scores : numpy.ndarray of float32
            Their cosine similarities, of the same shape (padding: -inf).

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        TypeError
            If ``N`` or an id is not an integer.
        IndexError
            If an id is out of range.
        ValueError
            If ``N`` is below 1.

        See Also
        --------
        similar_users : The same for users.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0).fit(plays, show_progress=False)
        >>> ids, scores = model.similar_items(0, N=3)
        >>> ids.shape, bool(0 in ids)
        ((3,), False)
        >>> ids, scores = model.similar_items(0, N=3, include_self=True)
        >>> int(ids[0])
        0
        >>> model.similar_items([0, 1], N=3)[0].shape
        (2, 3)
        """
        return self._cosine_neighbours(self.item_factors, "items", item_ids, N, filter_items, items, include_self)

    def similar_users(
        self, user_ids: IdsLike, N: int = 10, filter_users: Any = None, users: Any = None, include_self: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Find the N users most similar to each given user by cosine similarity of user factors.

        Parameters
        ----------
        user_ids : int or array_like of int
            One user id or several.
        N : int, default 10
            Number of similar users per query (at least 1; capped at the number of candidates).
        filter_users : array_like of int or None, optional
            User ids never to return.
        users : array_like of int or None, optional
            Candidate user ids: only these are ranked.
        include_self : bool, default False
            Keep the query user itself among the results.

        Returns
        -------
        ids : numpy.ndarray of int32
            The similar users, most similar first: 1-D for a single user id (padding left out),
            2-D (n_queries x N) for several, padded with -1 where fewer users are eligible.
        scores : numpy.ndarray of float32
            Their cosine similarities, of the same shape (padding: -inf).

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        TypeError
            If ``N`` or an id is not an integer.
        IndexError
            If an id is out of range.
        ValueError
            If ``N`` is below 1.

        See Also
        --------
        similar_items : The same for items.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0).fit(plays, show_progress=False)
        >>> ids, scores = model.similar_users(0, N=3, users=[1, 2, 3, 4])
        >>> ids.shape, bool(set(ids.tolist()) <= {1, 2, 3, 4})
        ((3,), True)
        """
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
        """Compute the factors of new users from their plays, without refitting (exact fold-in).

        Parameters
        ----------
        user_items_row : array_like or scipy.sparse matrix
            Play counts over the model's items: a 1-D array of length n_items, a 1 x n_items
            sparse row, or several rows (a 2-D array or sparse matrix with n_items columns). An
            n_items x 1 column is read as one row.

        Returns
        -------
        numpy.ndarray of float32
            The factors: shape (factors,) for a 1-D array or a single row, (n_rows, factors)
            for several rows.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        ValueError
            If the array is not 1-D or 2-D, its rows do not have n_items entries, or a play count
            is negative or infinite.

        See Also
        --------
        recalculate_item : The same for new songs.

        Examples
        --------
        >>> import numpy as np
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0).fit(plays, show_progress=False)
        >>> counts = np.zeros(model.n_items, dtype=np.float32)
        >>> counts[[3, 17, 42]] = [1, 4, 2]
        >>> model.recalculate_user(counts).shape
        (8,)
        >>> model.recalculate_user(plays[:3]).shape
        (3, 8)
        """
        self._require_fitted()
        return self._fold_in(self.item_factors, user_items_row, "items")

    def recalculate_item(self, item_users_col: Any) -> np.ndarray:
        """Compute the factors of a new song from the plays of the model's users (exact fold-in).

        Parameters
        ----------
        item_users_col : array_like or scipy.sparse matrix
            Play counts over the model's users: a 1-D array of length n_users, or an n_users x 1
            (or 1 x n_users) sparse matrix. Several columns (an n_users x k matrix, or k rows of
            n_users) give one vector per song.

        Returns
        -------
        numpy.ndarray of float32
            The factors: shape (factors,) for a single song, (n_songs, factors) for several.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        ValueError
            If the array is not 1-D or 2-D, it does not have n_users entries per song, or a play
            count is negative or infinite.

        See Also
        --------
        recalculate_user : The same for new users.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0).fit(plays, show_progress=False)
        >>> model.recalculate_item(plays[:, 0]).shape
        (8,)
        """
        self._require_fitted()
        return self._fold_in(self.user_factors, item_users_col, "users")

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model as a safetensors file, atomically.

        The file holds the tensors ``user_factors`` and ``item_factors``, and the
        hyperparameters as JSON in its metadata, ``random_state`` as the seed the fit used
        (the drawn one when it was None, so the file says how to fit it again). It is
        written atomically: a crash leaves any previous file intact. The training matrix is
        not saved.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.

        Raises
        ------
        musrec.NotFittedError
            If the model is neither fitted nor loaded.
        FileNotFoundError
            If the file's directory does not exist.
        OSError
            If the file cannot be written otherwise (for example PermissionError).

        See Also
        --------
        load : Read the file back.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> model = WMF(factors=8, iterations=5, random_state=0).fit(plays, show_progress=False)
        >>> model.save("wmf.safetensors")  # doctest: +SKIP
        >>> WMF.load("wmf.safetensors").n_items  # doctest: +SKIP
        300
        """
        self._require_fitted()
        seed = getattr(self, "_fit_seed", None)
        _musrec.wmf_save(os.fspath(path), self.params, self.user_factors, self.item_factors, seed=seed)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WMF:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            The safetensors file.

        Returns
        -------
        WMF
            The fitted model, with the saved hyperparameters (``random_state`` is the seed the
            fit used: the drawn one for a model fitted with None) and ``num_threads=0``. It does not hold its training
            matrix: :meth:`recommend` with ``filter_already_liked`` then needs ``user_items``.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        musrec.FormatError
            If the file is not a valid WMF model file.

        See Also
        --------
        save : Write a model.

        Examples
        --------
        >>> from musrec import WMF
        >>> from musrec.synthetic import listening
        >>> plays = listening(n_users=200, n_songs=300, seed=0).plays
        >>> fitted = WMF(factors=8, iterations=5, random_state=0).fit(plays, show_progress=False)
        >>> fitted.save("wmf.safetensors")  # doctest: +SKIP
        >>> model = WMF.load("wmf.safetensors")  # doctest: +SKIP
        >>> ids, scores = model.recommend(0, user_items=plays, N=5)  # doctest: +SKIP
        """
        params, users, items = _musrec.wmf_load(os.fspath(path))
        model = cls(**params.to_dict())
        model.user_factors, model.item_factors = users, items
        return model
