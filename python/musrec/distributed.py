"""Run musrec's stages on a Ray cluster.

musrec on a Ray cluster: WMF fitting, recommend-all, feature extraction and cold-start
inference spread over Ray actors, each running musrec's Rust core on its share.

Ray is the engine because it installs from pip alone (``pip install "musrec[ray]"``), runs
in Jupyter, and its local mode and fake multi-node clusters run the same code as a real
cluster. ``import musrec`` never imports Ray; each function here imports it when called and
uses the cluster ``ray.init()`` connected to (or starts a local one).

Every actor sizes musrec's thread pool from the CPUs Ray gave it (``num_cpus_per_actor``),
so actors never oversubscribe the cores Ray schedules them on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from typing import Any, Callable

import numpy as np

from . import _musrec, audio
from ._sparse import csr_tuple, to_csr
from .audio import ExtractResult, FeatureConfig
from .wmf import WMF, _positive_int

__all__ = ["fit_wmf", "recommend_all", "extract_features", "extract", "predict_songs"]

#: The checkpoint file :func:`fit_wmf` keeps in ``checkpoint_dir``.
CHECKPOINT = "wmf-checkpoint.npz"


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('musrec.distributed needs Ray: pip install "musrec[ray]"') from e
    if not ray.is_initialized():
        ray.init()
    return ray


def _assigned_cpus() -> int:
    """Return the CPUs Ray reserved for the calling actor (at least 1): the size of its thread pool."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return max(1, int(cpus))


def _actor_count(ray: Any, n_actors: int | None, num_cpus_per_actor: int) -> tuple[int, int]:
    """Validate the actor settings; ``n_actors`` None: as many as the cluster's CPUs hold.

    Parameters
    ----------
    ray : module
        The initialised ``ray`` module.
    n_actors : int or None
        How many actors; None: ``cluster CPUs // num_cpus_per_actor`` (at least 1).
    num_cpus_per_actor : int
        The CPUs Ray reserves for each actor.

    Returns
    -------
    n_actors : int
        The number of actors.
    num_cpus_per_actor : int
        The validated CPUs per actor.

    Raises
    ------
    TypeError
        For a count that is not an integer.
    ValueError
        For a count below 1.

    Examples
    --------
    >>> import ray  # doctest: +SKIP
    >>> _actor_count(ray, None, 1)  # doctest: +SKIP
    (2, 1)
    """
    num_cpus_per_actor = _positive_int(num_cpus_per_actor, "num_cpus_per_actor")
    if n_actors is None:
        cpus = ray.cluster_resources().get("CPU", 0)
        return max(1, int(cpus // num_cpus_per_actor)), num_cpus_per_actor
    return _positive_int(n_actors, "n_actors"), num_cpus_per_actor


def balanced_bounds(indptr: np.ndarray, parts: int) -> np.ndarray:
    """Cut a CSR matrix's rows into contiguous ranges of about equal plays (stored entries).

    Used by :func:`fit_wmf` to give each actor a shard of users and one of songs. A range
    may be empty when rows are fewer than parts.

    Parameters
    ----------
    indptr : numpy.ndarray
        The CSR matrix's ``indptr`` (n_rows + 1 entries).
    parts : int
        How many ranges.

    Returns
    -------
    numpy.ndarray
        The ``parts + 1`` row bounds (int64): range j is rows ``bounds[j]:bounds[j + 1]``,
        from 0 to n_rows.

    Examples
    --------
    >>> import numpy as np
    >>> from musrec.distributed import balanced_bounds
    >>> balanced_bounds(np.array([0, 3, 5, 9, 10]), 2)
    array([0, 2, 4])
    >>> balanced_bounds(np.array([0, 3, 5, 9, 10]), 6)
    array([0, 1, 2, 2, 3, 3, 4])
    """
    nnz = int(indptr[-1])
    targets = np.arange(1, parts) * nnz / parts
    cuts = np.searchsorted(indptr, targets, side="left")
    return np.concatenate([[0], cuts, [len(indptr) - 1]]).astype(np.int64)


class _WmfWorker:
    """A Ray actor's share of a WMF fit.

    Its users and its songs (each shard's plays with the columns renumbered to the rows of the
    other side that they touch), their current factors (the conjugate-gradient warm start of
    the next half-sweep), and which of its rows each other actor needs.
    """

    def __init__(self, params: Any, plan: dict) -> None:
        self._threads = _assigned_cpus()
        self._shards = {side: _musrec.WmfShard(params, plan["rows"][side]) for side in _SIDES}
        self._first_row = plan["first_row"]
        self._send = plan["send"]
        self._factors: dict[str, np.ndarray] = {}
        self._traffic = {"sent": 0, "received": 0, "half_sweeps": 0}

    def threads(self) -> int:
        """Return the size of this actor's thread pool (also a liveness probe for restarts).

        Returns
        -------
        int
            The CPUs Ray reserved for this actor, at least 1.

        Examples
        --------
        >>> worker = ray.remote(num_cpus=1)(_WmfWorker).remote(params, plan)  # doctest: +SKIP
        >>> ray.get(worker.threads.remote())  # doctest: +SKIP
        """
        return self._threads

    def set_factors(self, users: np.ndarray, items: np.ndarray) -> None:
        """Set the current factors of this actor's users and songs (copies are kept).

        Parameters
        ----------
        users : numpy.ndarray
            The factors of this actor's users, (shard users, factors).
        items : numpy.ndarray
            The factors of this actor's songs, (shard songs, factors).

        Examples
        --------
        >>> ray.get(worker.set_factors.remote(x[:n_users], y[:n_songs]))  # doctest: +SKIP
        """
        self._factors = {"users": np.array(users), "items": np.array(items)}

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the current factors of this actor's users and songs.

        Returns
        -------
        tuple of numpy.ndarray
            ``(users, items)``, each (shard rows, factors).

        Examples
        --------
        >>> users, items = ray.get(worker.factors.remote())  # doctest: +SKIP
        """
        return self._factors["users"], self._factors["items"]

    def share(self, side: str) -> list:
        """Hand out this actor's rows of ``side`` for the other side's half-step.

        Parameters
        ----------
        side : {"users", "items"}
            The side that is fixed in the coming half-step.

        Returns
        -------
        list
            One array per actor (the rows of this shard that actor's plays touch, in order),
            then this shard's part of the Gram matrix (``_musrec.wmf_gram_part``): a Ray call
            with ``num_returns = n_actors + 1`` gives each its own object, so every actor
            fetches its rows from here and the coordinator only the Gram parts.

        Examples
        --------
        >>> *pieces, part = worker.share.options(num_returns=3).remote("items")  # doctest: +SKIP
        """
        own = self._factors[side]
        pieces = [own[idx] for idx in self._send[side]]
        part = _musrec.wmf_gram_part(own, self._first_row[side], num_threads=self._threads)
        # Counted when the next share replaces it: the last one is never fetched.
        self._traffic["sent"] += self._traffic.pop("pending", 0)
        self._traffic["pending"] = sum(p.nbytes for p in pieces) + sum(a.nbytes for a in part[2:])
        return [*pieces, part]

    def solve(self, side: str, gram: np.ndarray, *pieces: np.ndarray) -> list:
        """Solve one half-step for this actor's shard of ``side``, warm-started from its factors.

        Parameters
        ----------
        side : {"users", "items"}
            Which shard to solve.
        gram : numpy.ndarray
            ``Y^T Y + regularization I`` of the other side's factors, all rows.
        *pieces : numpy.ndarray
            From each actor in order, the rows of the other side that this shard's plays touch
            (what :meth:`share` or the other actors' previous :meth:`solve` handed out for
            this actor).

        Returns
        -------
        list
            :meth:`share` of the new rows of ``side``, for the next half-step (in which they
            are fixed), so a half-sweep is one round of calls.

        Examples
        --------
        >>> *pieces, part = worker.solve.options(num_returns=3).remote("users", gram_ref, *piece_refs)  # doctest: +SKIP
        """
        fixed = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        self._factors[side] = self._shards[side].solve(self._factors[side], fixed, gram, num_threads=self._threads)
        self._traffic["received"] += fixed.nbytes + gram.nbytes
        self._traffic["half_sweeps"] += 1
        return self.share(side)

    def traffic(self) -> dict:
        """Return the bytes of factors and Gram parts this actor sent and received, and its half-sweeps.

        Returns
        -------
        dict
            ``sent``, ``received`` (bytes of the arrays, since the actor started; rows handed
            out for a half-sweep that never came are not counted) and ``half_sweeps`` (how
            many it solved).

        Examples
        --------
        >>> ray.get(worker.traffic.remote())["half_sweeps"]  # doctest: +SKIP
        10
        """
        return {key: self._traffic[key] for key in ("sent", "received", "half_sweeps")}


_SIDES = ("users", "items")


def _shard_plans(csr: Any, items: Any, bounds: dict, n_actors: int) -> list[dict]:
    """Cut the plays into each actor's shards and work out which rows each actor needs.

    Each shard keeps only the columns its plays touch, renumbered in order, so the actor
    receives and holds only those rows of the other side's factors; for every pair of actors
    the positions (inside the sender's range) of the rows the receiver needs.

    Parameters
    ----------
    csr : scipy.sparse.csr_matrix
        The plays, users x songs.
    items : scipy.sparse.csr_matrix
        The same plays, songs x users.
    bounds : dict
        The shards' row bounds of ``"users"`` and ``"items"`` (:func:`balanced_bounds`).
    n_actors : int
        How many actors.

    Returns
    -------
    list of dict
        Per actor: ``rows`` (the shards' renumbered plays, per side), ``first_row`` (of its
        ranges), ``send`` (per side, one index array per receiving actor) and ``touched``
        (per side, how many rows of the other side its shard's plays touch).

    Examples
    --------
    >>> plans = _shard_plans(csr, csr.T.tocsr(), bounds, 2)  # doctest: +SKIP
    """
    import scipy.sparse as sp

    matrices = {"users": csr, "items": items}
    other = {"users": "items", "items": "users"}
    plans = [{"rows": {}, "first_row": {}, "send": {}, "touched": {}} for _ in range(n_actors)]
    for side in _SIDES:
        b = bounds[side]
        for j in range(n_actors):
            sub = matrices[side][b[j] : b[j + 1]]
            used = np.unique(sub.indices)
            local = sp.csr_matrix(
                (sub.data, np.searchsorted(used, sub.indices), sub.indptr), shape=(sub.shape[0], len(used))
            )
            plans[j]["rows"][side] = csr_tuple(local)
            plans[j]["first_row"][side] = int(b[j])
            plans[j]["touched"][side] = len(used)
            # What each owner of the other side's rows sends actor j for this side's half-step.
            ob = bounds[other[side]]
            cuts = np.searchsorted(used, ob)
            for o in range(n_actors):
                send = plans[o]["send"].setdefault(other[side], [None] * n_actors)
                send[j] = (used[cuts[o] : cuts[o + 1]] - ob[o]).astype(np.int64)
    return plans


class _Checkpoint:
    """The factors (and the training losses so far) after a completed iteration.

    Kept in memory always, and in ``directory`` (written to a temporary file, then renamed
    over the previous one) when given.
    """

    def __init__(self, directory: str | os.PathLike | None, fingerprint: str) -> None:
        self.path = None if directory is None else os.path.join(os.fspath(directory), CHECKPOINT)
        self.fingerprint = fingerprint
        self.state: tuple[int, np.ndarray, np.ndarray, list] | None = None

    def load(self) -> tuple[int, np.ndarray, np.ndarray, list] | None:
        """Read the checkpoint on disk if it belongs to this fit (same data, settings and seed).

        Returns
        -------
        tuple or None
            ``(iteration, user_factors, item_factors, losses)``, also kept as ``state``
            (``losses``: the training loss of each iteration so far, empty when not
            computed); None without a directory, without a file, or for another fit's file.

        Examples
        --------
        >>> from musrec.distributed import _Checkpoint
        >>> _Checkpoint(None, "fingerprint").load() is None
        True
        """
        if self.path is None or not os.path.exists(self.path):
            return None
        with np.load(self.path) as f:
            if str(f["fingerprint"]) != self.fingerprint:
                return None
            losses = [float(v) for v in f["losses"]] if "losses" in f.files else []
            self.state = (int(f["iteration"]), f["user_factors"], f["item_factors"], losses)
        return self.state

    def save(self, iteration: int, x: np.ndarray, y: np.ndarray, losses: list) -> None:
        """Keep the factors after ``iteration`` in memory, and write them when there is a directory.

        Parameters
        ----------
        iteration : int
            The completed iterations.
        x : numpy.ndarray
            The user factors.
        y : numpy.ndarray
            The song factors.
        losses : list of float
            The training loss of each completed iteration (empty when not computed).

        Examples
        --------
        >>> import numpy as np
        >>> from musrec.distributed import _Checkpoint
        >>> checkpoint = _Checkpoint(None, "fingerprint")
        >>> checkpoint.save(5, np.zeros((3, 2), np.float32), np.zeros((4, 2), np.float32), [])
        >>> checkpoint.state[0]
        5
        """
        self.state = (iteration, x, y, list(losses))
        if self.path is None:
            return
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".wmf-checkpoint-", suffix=".npz", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    fingerprint=self.fingerprint,
                    iteration=iteration,
                    user_factors=x,
                    item_factors=y,
                    losses=np.asarray(losses, np.float64),
                )
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


def _fingerprint(params: Any, seed: int, csr: Any) -> str:
    h = hashlib.sha256(json.dumps([params.to_dict(), seed, list(csr.shape)], sort_keys=True).encode())
    for a in (csr.indptr, csr.indices, csr.data):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def fit_wmf(
    plays: Any,
    params: Any = None,
    *,
    n_actors: int | None = None,
    num_cpus_per_actor: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 5,
    max_restarts: int = 3,
    callback: Callable[[int, int, float | None], None] | None = None,
    _after_iteration: Callable[[int, list], None] | None = None,
    **settings: Any,
) -> WMF:
    """Fit WMF on a Ray cluster; returns a fitted :class:`musrec.WMF` like ``WMF(...).fit(plays)``.

    ``n_actors`` actors each own a contiguous shard of users and one of songs, balanced by
    plays (:func:`balanced_bounds`), and run musrec's half-step solver on it with
    ``num_cpus_per_actor`` threads (scheduled with Ray's ``"SPREAD"`` strategy, one per node
    where it can). The factors stay on the actors (block partitioning, as MLlib's ALS does):
    each shard keeps only the columns its plays touch, and in each half-sweep every actor
    hands each other actor just the rows of the fixed side that actor's plays touch, as Ray
    objects fetched straight from the sender's object store. The coordinator receives only
    each shard's part of the Gram matrix ``Y^T Y + regularization I`` (the products of the
    4,096-row chunks inside it and the rows of the chunks it shares with its neighbours),
    sums them and puts the result in the object store once; it collects the factors only to
    checkpoint them, for the training loss, and at the end.

    Parameters
    ----------
    plays : scipy.sparse matrix of shape (n_users, n_songs)
        The play counts.
    params : musrec.WMFParams or None, optional
        The hyperparameters; None: give :class:`musrec.WMF`'s keywords in ``settings``.
    n_actors : int or None, optional
        How many actors (and shards of users and of songs); None: as many as the cluster's
        CPUs hold (``cluster CPUs // num_cpus_per_actor``).
    num_cpus_per_actor : int, default 1
        The CPUs Ray reserves for each actor: the size of its thread pool.
    checkpoint_dir : str or os.PathLike or None, optional
        Where the checkpoint file ``wmf-checkpoint.npz`` is kept (written atomically); None:
        checkpoints in memory only.
    checkpoint_every : int, default 5
        Checkpoint the factors every this many iterations (and after the last).
    max_restarts : int, default 3
        How many actor failures are recovered from before the error propagates.
    callback : callable or None, optional
        Called as ``callback(iteration, total, loss)`` after each iteration (``loss`` is
        None unless ``calculate_training_loss``).
    _after_iteration : callable or None, optional
        A test hook, called as ``_after_iteration(iteration, actors)`` after each iteration
        (e.g. to kill an actor); not for general use.
    **settings : Any
        :class:`musrec.WMF`'s keywords (``factors``, ``iterations``, ``regularization``,
        ``alpha``, ``solver``, ``random_state``, ...); with ``params`` only ``num_threads``
        (the coordinator's threads, for the Gram matrix and the loss).

    Returns
    -------
    musrec.WMF
        The fitted model (``user_factors``, ``item_factors``, ``loss_history``), with
        ``model.distributed_`` reporting the shards, restarts and bytes moved:
        ``n_actors``, ``users_per_actor``, ``songs_per_actor``, ``plays_per_actor``,
        ``songs_touched_per_actor`` and ``users_touched_per_actor`` (the rows of the other
        side each shard's plays touch: what the actor receives and holds in a half-sweep),
        ``restarts``, ``resumed_from_iteration``, ``bytes_sent_per_actor_per_iteration``,
        ``bytes_received_per_actor_per_iteration`` and their sum
        ``bytes_per_actor_per_iteration`` (measured by the actors from the arrays they
        handed out and received), and ``coordinator_bytes_per_iteration`` (``received``: the
        Gram parts; ``sent``: the Gram matrices, one per actor).

    Raises
    ------
    ImportError
        When Ray is not installed.
    TypeError
        When both ``params`` and WMF's keywords are given, for an unknown keyword, a count
        that is not an integer, or ``plays`` that is not a scipy.sparse matrix.
    ValueError
        For a count below 1, an empty ``plays``, an invalid hyperparameter, or more CPUs
        asked for (``n_actors * num_cpus_per_actor``) than the cluster has (Ray would keep the
        actors waiting for ever; on an autoscaling cluster, add the nodes first).
    ray.exceptions.RayActorError
        When actors died more than ``max_restarts`` times.

    See Also
    --------
    musrec.WMF.fit : The local fit, with the same factors.

    Notes
    -----
    The factors equal those of the local fit with the same ``random_state``, bit for bit:
    a row's solution depends only on its own plays, the fixed factors it touches (the same
    values whatever their numbering), the Gram matrix and its warm start (never on the
    threads, nor on the rows it shares a block with), and the Gram matrix is the local fit's
    sum of the same fixed chunks, in the same order.

    Every ``checkpoint_every`` iterations the factors are checkpointed: in memory, and with
    ``checkpoint_dir`` in ``checkpoint_dir/wmf-checkpoint.npz`` (written atomically). A fit
    started with a checkpoint of the same data, settings and seed there resumes from it
    (with ``random_state=None`` every fit draws a new seed, so none resumes). When an actor
    dies (``ray.exceptions.RayActorError``) it is restarted and the fit resumes from the last
    checkpoint, giving the same model; after ``max_restarts`` such failures the error
    propagates. The actors are killed when the fit ends.

    Examples
    --------
    >>> import musrec
    >>> from musrec import distributed
    >>> plays = musrec.synthetic.listening(n_users=500, n_songs=1000).plays
    >>> model = distributed.fit_wmf(plays, factors=32, iterations=10, random_state=0, n_actors=2)  # doctest: +SKIP
    >>> report = model.distributed_  # doctest: +SKIP
    """
    ray = _ray()
    from ray.exceptions import RayActorError

    n_actors, num_cpus_per_actor = _actor_count(ray, n_actors, num_cpus_per_actor)
    checkpoint_every = _positive_int(checkpoint_every, "checkpoint_every")
    if params is not None:
        if settings.keys() - {"num_threads"}:
            raise TypeError("give either params or WMF's keywords, not both")
        settings = {**params.to_dict(), **settings}
    model = WMF(**settings)
    params = model.params
    need, have = n_actors * num_cpus_per_actor, ray.cluster_resources().get("CPU", 0)
    if have < need:
        # Ray would keep the actors pending for ever.
        raise ValueError(
            f"fit_wmf needs {need} CPUs (n_actors={n_actors} x num_cpus_per_actor={num_cpus_per_actor}) "
            f"but the Ray cluster has {have:g}; use fewer actors or fewer CPUs per actor"
        )
    csr = to_csr(plays, "plays")
    if csr.shape[0] == 0 or csr.shape[1] == 0:
        raise ValueError(f"plays is empty (shape {csr.shape})")
    items = to_csr(csr.T, "plays")
    seed = model.random_state
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
    n_users, n_items = csr.shape

    bounds = {"users": balanced_bounds(csr.indptr, n_actors), "items": balanced_bounds(items.indptr, n_actors)}
    plans = _shard_plans(csr, items, bounds, n_actors)
    # The plans go to the object store once, so a restarted actor gets them from there.
    plan_refs = [ray.put(plan) for plan in plans]
    # SPREAD: on a cluster, one worker per node where it can, so the nodes' cores all work.
    worker_class = ray.remote(num_cpus=num_cpus_per_actor, scheduling_strategy="SPREAD")(_WmfWorker)
    coordinator = {"received": 0, "sent": 0, "half_sweeps": 0}

    def start(j: int) -> Any:
        """Start the actor of shard ``j``.

        Parameters
        ----------
        j : int
            The shard.

        Returns
        -------
        ray.actor.ActorHandle
            The new actor, holding the shard's plays.

        Examples
        --------
        >>> workers = [start(j) for j in range(n_actors)]  # doctest: +SKIP
        """
        return worker_class.remote(params, plan_refs[j])

    def load(workers: list, x: np.ndarray, y: np.ndarray) -> None:
        """Give every actor its rows of the factors ``x`` and ``y``, and wait until they have them.

        Parameters
        ----------
        workers : list
            The actors, one per shard.
        x : numpy.ndarray
            All user factors.
        y : numpy.ndarray
            All song factors.

        Examples
        --------
        >>> load(workers, x, y)  # doctest: +SKIP
        """
        ray.get(
            [
                w.set_factors.remote(
                    x[bounds["users"][j] : bounds["users"][j + 1]], y[bounds["items"][j] : bounds["items"][j + 1]]
                )
                for j, w in enumerate(workers)
            ]
        )

    def gather(workers: list) -> tuple[np.ndarray, np.ndarray]:
        """Collect every actor's current factors.

        Parameters
        ----------
        workers : list
            The actors, one per shard.

        Returns
        -------
        tuple of numpy.ndarray
            All user factors and all song factors, rows in order.

        Examples
        --------
        >>> x, y = gather(workers)  # doctest: +SKIP
        """
        got = ray.get([w.factors.remote() for w in workers])
        return np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])

    def half_sweep(workers: list, side: str, shared: list) -> list:
        """Solve every row of ``side`` on the actors, the other side fixed where the actors hold it.

        Each actor handed out its rows of the fixed side as one object per receiving actor
        (``shared``), which that actor fetches from the sender's object store; the coordinator
        gets only the shards' Gram parts and puts their sum in the object store once.

        Parameters
        ----------
        workers : list
            The actors, one per shard.
        side : {"users", "items"}
            The side to solve.
        shared : list
            Per actor, the object references of its rows of the fixed side (one per receiving
            actor) and of its Gram part, from ``share`` or the previous ``solve``.

        Returns
        -------
        list
            The same for the new rows of ``side``, for the next half-sweep.

        Examples
        --------
        >>> shared = half_sweep(workers, "users", shared)  # doctest: +SKIP
        """
        fixed = "items" if side == "users" else "users"
        parts = ray.get([refs[n_actors] for refs in shared])
        gram = _musrec.wmf_gram_from_parts(params, int(bounds[fixed][-1]), parts)
        coordinator["received"] += sum(a.nbytes for part in parts for a in part[2:])
        coordinator["sent"] += n_actors * gram.nbytes
        coordinator["half_sweeps"] += 1
        gram_ref = ray.put(gram)
        return [
            w.solve.options(num_returns=n_actors + 1).remote(side, gram_ref, *[refs[i] for refs in shared])
            for i, w in enumerate(workers)
        ]

    checkpoint = _Checkpoint(checkpoint_dir, _fingerprint(params, seed, csr))
    resumed = checkpoint.load()
    if resumed is None:
        x, y = _musrec.wmf_initial_factors(params, n_users, n_items, seed=seed)
        checkpoint.state = (0, x, y, [])
    iteration, x, y, losses = checkpoint.state
    # The losses of the iterations before a resume come from the checkpoint, so the history
    # is the whole fit's.
    losses = list(losses)
    resumed_from = iteration
    workers = [start(j) for j in range(n_actors)]
    load(workers, x, y)
    shared = [w.share.options(num_returns=n_actors + 1).remote("items") for w in workers]
    restarts = 0
    while iteration < model.iterations:
        try:
            shared = half_sweep(workers, "users", shared)
            shared = half_sweep(workers, "items", shared)
            done = iteration + 1
            wanted = model.calculate_training_loss or done % checkpoint_every == 0 or done == model.iterations
            if wanted:
                x, y = gather(workers)
        except RayActorError:
            restarts += 1
            if restarts > max_restarts:
                raise
            for j, w in enumerate(workers):
                try:
                    ray.get(w.threads.remote())
                except RayActorError:
                    workers[j] = start(j)
            iteration, x, y, losses = checkpoint.state
            losses = list(losses)
            load(workers, x, y)
            shared = [w.share.options(num_returns=n_actors + 1).remote("items") for w in workers]
            continue
        iteration = done
        loss = None
        if model.calculate_training_loss:
            loss = _musrec.wmf_loss(params, csr_tuple(csr), x, y, num_threads=model.num_threads)
            losses.append(loss)
        if iteration % checkpoint_every == 0 or iteration == model.iterations:
            checkpoint.save(iteration, x, y, losses)
        if callback is not None:
            callback(iteration, model.iterations, loss)
        if _after_iteration is not None:
            _after_iteration(iteration, workers)
    traffic = ray.get([w.traffic.remote() for w in workers])
    for w in workers:
        ray.kill(w)

    model.user_factors, model.item_factors = x, y
    model.loss_history = losses
    model._user_items = csr
    sizes = {side: np.diff(b) for side, b in bounds.items()}

    def per_iteration(count: int, half_sweeps: int) -> int:
        """Return bytes per iteration (two half-sweeps) from a total over ``half_sweeps``.

        Parameters
        ----------
        count : int
            The bytes counted.
        half_sweeps : int
            Over how many half-sweeps.

        Returns
        -------
        int
            ``2 count / half_sweeps``, rounded; 0 without a half-sweep.

        Examples
        --------
        >>> per_iteration(300, 6)  # doctest: +SKIP
        100
        """
        return 0 if half_sweeps == 0 else round(2 * count / half_sweeps)

    # Measured by the actors from the arrays they handed out and received (an iteration is
    # two half-sweeps); an actor restarted mid-fit counts from its start.
    sent = [per_iteration(t["sent"], t["half_sweeps"]) for t in traffic]
    received = [per_iteration(t["received"], t["half_sweeps"]) for t in traffic]
    model.distributed_ = {
        "n_actors": n_actors,
        "users_per_actor": sizes["users"].tolist(),
        "songs_per_actor": sizes["items"].tolist(),
        "plays_per_actor": [
            int(csr.indptr[bounds["users"][j + 1]] - csr.indptr[bounds["users"][j]]) for j in range(n_actors)
        ],
        "songs_touched_per_actor": [plan["touched"]["users"] for plan in plans],
        "users_touched_per_actor": [plan["touched"]["items"] for plan in plans],
        "restarts": restarts,
        "resumed_from_iteration": resumed_from,
        "bytes_sent_per_actor_per_iteration": sent,
        "bytes_received_per_actor_per_iteration": received,
        "bytes_per_actor_per_iteration": [a + b for a, b in zip(sent, received, strict=True)],
        "coordinator_bytes_per_iteration": {
            side: per_iteration(coordinator[side], coordinator["half_sweeps"]) for side in ("received", "sent")
        },
    }
    return model


class _Ranker:
    """A Ray Data actor holding the song factors (and the plays to exclude) for top-N."""

    def __init__(self, shared: list, N: int) -> None:
        import ray

        params, users, items, exclude = ray.get(shared[0])
        self._model = WMF(**params.to_dict(), num_threads=_assigned_cpus())
        self._model.user_factors, self._model.item_factors = users, items
        self._exclude, self._N = exclude, N

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        users = np.concatenate([np.arange(s, e) for s, e in zip(batch["start"], batch["stop"])])
        liked = None
        if self._exclude is not None:
            liked = self._exclude[users]
        ids, scores = self._model.recommend(
            users, user_items=liked, N=self._N, filter_already_liked=self._exclude is not None
        )
        return {"user": users.astype(np.int64), "items": ids, "scores": scores}


def recommend_all(
    model: WMF,
    N: int = 10,
    *,
    exclude: Any = None,
    n_actors: int | None = None,
    num_cpus_per_actor: int = 1,
    batch_users: int = 4096,
) -> Any:
    """Rank the Top-N songs for every user of a fitted WMF on a Ray cluster.

    The result equals ``model.recommend(users, exclude, N, filter_already_liked=exclude is
    not None)``. Blocks of ``batch_users`` users are ranked by musrec's top-N on
    ``n_actors`` actors, which get the factors (and ``exclude``) once through the object
    store. The rows come in no particular order; sort by ``user`` where order matters.

    Parameters
    ----------
    model : musrec.WMF
        A fitted model.
    N : int, default 10
        How many songs per user.
    exclude : scipy.sparse matrix of shape (n_users, n_songs) or None, optional
        A users x songs matrix (the plays) whose stored entries are never recommended, or None.
    n_actors : int or None, optional
        How many actors rank (at most one per block); None: as many as the cluster's CPUs
        hold.
    num_cpus_per_actor : int, default 1
        The CPUs Ray reserves for each actor: the size of its thread pool.
    batch_users : int, default 4096
        Users per block.

    Returns
    -------
    ray.data.Dataset
        Rows ``user`` (int64), ``items`` (N int32 song ids) and ``scores`` (N float32), best
        first.

    Raises
    ------
    ImportError
        When Ray is not installed.
    musrec.NotFittedError
        When ``model`` is not fitted.
    TypeError
        For a count that is not an integer, or ``exclude`` that is not a scipy.sparse matrix.
    ValueError
        For a count below 1, or ``exclude`` of the wrong shape.

    See Also
    --------
    musrec.WMF.recommend_all : The same, locally.

    Examples
    --------
    >>> import musrec
    >>> from musrec import distributed
    >>> plays = musrec.synthetic.listening(n_users=500, n_songs=1000).plays
    >>> model = musrec.WMF(factors=32, random_state=0).fit(plays, show_progress=False)
    >>> ranked = distributed.recommend_all(model, N=10, exclude=plays)  # doctest: +SKIP
    >>> rows = sorted(ranked.take_all(), key=lambda row: row["user"])  # doctest: +SKIP
    """
    ray = _ray()
    model._require_fitted()
    N = _positive_int(N, "N")
    batch_users = _positive_int(batch_users, "batch_users")
    n_actors, num_cpus_per_actor = _actor_count(ray, n_actors, num_cpus_per_actor)
    if exclude is not None:
        exclude = model._check_matrix(exclude, model.n_users)
    shared = ray.put((model.params, model.user_factors, model.item_factors, exclude))
    starts = np.arange(0, model.n_users, batch_users)
    blocks = [{"start": int(s), "stop": int(min(s + batch_users, model.n_users))} for s in starts]
    return ray.data.from_items(blocks, override_num_blocks=len(blocks)).map_batches(
        _Ranker,
        fn_constructor_kwargs={"shared": [shared], "N": N},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(n_actors, len(blocks))),
        num_cpus=num_cpus_per_actor,
    )


class _Extractor:
    """A Ray Data actor holding musrec's extractor settings and its share of the cache."""

    def __init__(self, config: FeatureConfig, excerpts: int, cache_dir: str | None) -> None:
        self._config, self._excerpts, self._cache_dir = config, excerpts, cache_dir
        self._threads = _assigned_cpus()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        paths = [str(p) for p in batch["path"]]
        result = audio.extract(
            paths,
            self._config,
            num_threads=self._threads,
            show_progress=False,
            cache_dir=self._cache_dir,
            excerpts=self._excerpts,
        )
        errors: list = [None] * len(paths)
        for f in result.failures:
            errors[f["index"]] = f"{f['reason']}: {f['message']}"
        return {
            "path": np.array(paths, dtype=object),
            "features": result.features,
            "ok": result.ok,
            "padded": result.padded,
            "truncated": result.truncated,
            "cached": result.cached,
            "error": np.array(errors, dtype=object),
        }


def extract_features(
    paths: Any,
    config: FeatureConfig | None = None,
    *,
    excerpts: int = 1,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    n_actors: int | None = None,
    num_cpus_per_actor: int = 1,
) -> Any:
    """Extract log-Mel features of audio files as a Ray Data pipeline.

    The files are streamed in batches of ``batch_size`` through ``n_actors`` actors running
    :func:`musrec.audio.extract`. A file that cannot be used is a row with ``ok`` False, zero
    features and ``error`` ``"reason: message"``; it never raises. The features are bit for
    bit those of :func:`musrec.audio.extract`. With ``cache_dir`` each batch is written to
    (and read from) the same on-disk :class:`musrec.audio.FeatureCache` a local extraction
    uses, so either finds what the other extracted; with ``batch_size`` 64 (the local chunk)
    each shard holds the same files as a local extraction's. The rows come in no particular
    order.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        The audio files (a list, not a single path).
    config : musrec.audio.FeatureConfig or None, optional
        The log-Mel configuration; None: the paper's (:meth:`musrec.audio.FeatureConfig.paper`).
    excerpts : int, default 1
        Excerpts per file, spread evenly over it (see :func:`musrec.audio.extract`).
    batch_size : int, default 64
        Files per batch.
    cache_dir : str or os.PathLike or None, optional
        The directory of a :class:`musrec.audio.FeatureCache`; None: no cache.
    n_actors : int or None, optional
        How many actors extract (at most one per batch); None: as many as the cluster's
        CPUs hold.
    num_cpus_per_actor : int, default 1
        The CPUs Ray reserves for each actor: the size of its thread pool.

    Returns
    -------
    ray.data.Dataset
        Rows ``path``, ``features`` (float32 (n_mels, frames), or (excerpts, n_mels, frames)),
        ``ok``, ``padded``, ``truncated``, ``cached`` and ``error`` (None, or
        ``"reason: message"``).

    Raises
    ------
    ImportError
        When Ray is not installed.
    TypeError
        When ``paths`` is a single path, or a count is not an integer.
    ValueError
        For a count below 1.

    See Also
    --------
    extract : The same, gathered into a :class:`musrec.audio.ExtractResult` in order.

    Examples
    --------
    >>> import glob
    >>> from musrec import distributed
    >>> paths = sorted(glob.glob("world/audio/*.wav"))
    >>> songs = distributed.extract_features(paths, excerpts=3, cache_dir="features")  # doctest: +SKIP
    >>> failed = [row["error"] for row in songs.take_all() if not row["ok"]]  # doctest: +SKIP
    """
    ray = _ray()
    paths = [os.fspath(p) for p in paths] if not isinstance(paths, (str, os.PathLike)) else None
    if paths is None:
        raise TypeError("paths must be a list of paths, not a single path")
    config = config or FeatureConfig.paper()
    batch_size = _positive_int(batch_size, "batch_size")
    excerpts = _positive_int(excerpts, "excerpts")
    n_actors, num_cpus_per_actor = _actor_count(ray, n_actors, num_cpus_per_actor)
    n_blocks = max(1, math.ceil(len(paths) / batch_size))
    return ray.data.from_items([{"path": p} for p in paths], override_num_blocks=n_blocks).map_batches(
        _Extractor,
        fn_constructor_kwargs={
            "config": config,
            "excerpts": excerpts,
            "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
        },
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=min(n_actors, n_blocks)),
        num_cpus=num_cpus_per_actor,
    )


def extract(paths: Any, config: FeatureConfig | None = None, **options: Any) -> ExtractResult:
    """Extract log-Mel features on a Ray cluster into :func:`musrec.audio.extract`'s result.

    Computed on the cluster by :func:`extract_features`, then gathered with rows in the
    order of ``paths``; the features are bit for bit the local ones.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        The audio files (a list, not a single path).
    config : musrec.audio.FeatureConfig or None, optional
        The log-Mel configuration; None: the paper's.
    **options : Any
        :func:`extract_features`'s keywords (``excerpts``, ``batch_size``, ``cache_dir``,
        ``n_actors``, ``num_cpus_per_actor``).

    Returns
    -------
    musrec.audio.ExtractResult
        ``features``, ``ok``, ``padded``, ``truncated``, ``failures`` (index, path, reason and
        message of each file that could not be used) and ``cached``, row i for ``paths[i]``.

    Raises
    ------
    ImportError
        When Ray is not installed.
    TypeError
        When ``paths`` is a single path, or a count is not an integer.
    ValueError
        For a count below 1.

    See Also
    --------
    musrec.audio.extract : The same, locally.

    Examples
    --------
    >>> import glob
    >>> from musrec import distributed
    >>> paths = sorted(glob.glob("world/audio/*.wav"))
    >>> result = distributed.extract(paths, excerpts=3, cache_dir="features")  # doctest: +SKIP
    >>> usable = result.ok  # doctest: +SKIP
    """
    paths = audio._path_list(paths)
    rows = extract_features(paths, config, **options).take_all()
    by_path = {r["path"]: r for r in rows}
    ordered = [by_path[p] for p in paths]
    failures = []
    for i, r in enumerate(ordered):
        if r["error"] is not None:
            reason, message = r["error"].split(": ", 1)
            failures.append({"index": i, "path": paths[i], "reason": reason, "message": message})
    column = lambda name: np.array([bool(r[name]) for r in ordered], bool)  # noqa: E731
    features = np.stack([r["features"] for r in ordered]) if ordered else np.zeros((0,), np.float32)
    return ExtractResult(features, column("ok"), column("padded"), column("truncated"), failures, column("cached"))


class _Predictor:
    """A Ray Data actor holding a fitted FusionModel (sent once, through its safetensors bytes)."""

    def __init__(self, shared: list, column: str, batch_size: int) -> None:
        import ray

        self._model = ray.get(shared[0])
        self._model.num_threads = _assigned_cpus()
        self._column, self._batch_size = column, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        meta = {c: list(batch[c]) for c in ("tags", "artist", "year") if c in batch}
        spec = batch.get(self._column)
        vectors = self._model.predict(spec, meta or None, batch_size=self._batch_size)
        return {**batch, "vector": vectors}


def predict_songs(
    fusion_model: Any,
    dataset: Any,
    *,
    column: str = "features",
    n_actors: int | None = None,
    num_cpus_per_actor: int = 1,
    batch_size: int = 256,
) -> Any:
    """Predict cold-start song vectors for a catalogue on a Ray cluster.

    The model goes to the ``n_actors`` actors once through the object store; each predicts
    its batches with ``fusion_model.predict``.

    Parameters
    ----------
    fusion_model : musrec.FusionModel
        A fitted model.
    dataset : ray.data.Dataset
        The songs (e.g. from :func:`extract_features`): a ``column`` of spectrograms and/or
        metadata columns ``tags``, ``artist``, ``year``, as the model's kind needs.
    column : str, default "features"
        The column of spectrograms.
    n_actors : int or None, optional
        How many actors predict; None: as many as the cluster's CPUs hold.
    num_cpus_per_actor : int, default 1
        The CPUs Ray reserves for each actor: the size of its thread pool.
    batch_size : int, default 256
        Rows per batch (and the model's prediction batch size).

    Returns
    -------
    ray.data.Dataset
        ``dataset`` with a column ``vector`` equal to ``fusion_model.predict`` on those rows.

    Raises
    ------
    ImportError
        When Ray is not installed.
    musrec.NotFittedError
        When ``fusion_model`` is not fitted (before any work is scheduled).
    TypeError
        For a count that is not an integer.
    ValueError
        For a count below 1.

    See Also
    --------
    musrec.FusionModel.predict : The same, locally.

    Notes
    -----
    Rows of files :func:`extract_features` could not use (``ok`` False, zero features) are
    predicted too; filter them out first where that matters.

    Examples
    --------
    >>> import glob
    >>> import musrec
    >>> from musrec import distributed
    >>> model = musrec.FusionModel.load("fusion.safetensors")  # doctest: +SKIP
    >>> songs = distributed.extract_features(sorted(glob.glob("new-songs/*.mp3")), excerpts=3)  # doctest: +SKIP
    >>> songs = songs.filter(lambda row: row["ok"])  # doctest: +SKIP
    >>> rows = distributed.predict_songs(model, songs, column="features").take_all()  # doctest: +SKIP
    """
    ray = _ray()
    fusion_model._state()  # NotFittedError before any work is scheduled
    n_actors, num_cpus_per_actor = _actor_count(ray, n_actors, num_cpus_per_actor)
    shared = ray.put(fusion_model)
    return dataset.map_batches(
        _Predictor,
        fn_constructor_kwargs={"shared": [shared], "column": column, "batch_size": int(batch_size)},
        batch_size=int(batch_size),
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_cpus=num_cpus_per_actor,
    )
