"""musrec on a Ray cluster: WMF fitting, recommend-all, feature extraction and cold-start
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
    """The CPUs Ray reserved for the calling actor (at least 1): the size of its thread pool."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return max(1, int(cpus))


def balanced_bounds(indptr: np.ndarray, parts: int) -> np.ndarray:
    """Row bounds (parts + 1 of them) cutting a CSR matrix into contiguous ranges of about
    equal plays (stored entries); a range may be empty when rows are fewer than parts."""
    nnz = int(indptr[-1])
    targets = np.arange(1, parts) * nnz / parts
    cuts = np.searchsorted(indptr, targets, side="left")
    return np.concatenate([[0], cuts, [len(indptr) - 1]]).astype(np.int64)


class _WmfWorker:
    """A Ray actor's share of a WMF fit: its users and its songs, and their current factors
    (the conjugate-gradient warm start of the next half-sweep)."""

    def __init__(self, params: Any, user_rows: tuple, item_rows: tuple) -> None:
        self._threads = _assigned_cpus()
        self._shards = {"users": _musrec.WmfShard(params, user_rows), "items": _musrec.WmfShard(params, item_rows)}
        self._factors: dict[str, np.ndarray] = {}

    def threads(self) -> int:
        return self._threads

    def set_factors(self, users: np.ndarray, items: np.ndarray) -> None:
        self._factors = {"users": np.array(users), "items": np.array(items)}

    def solve(self, side: str, fixed: np.ndarray, gram: np.ndarray) -> np.ndarray:
        solved = self._shards[side].solve(self._factors[side], fixed, gram, num_threads=self._threads)
        self._factors[side] = solved
        return solved


class _Checkpoint:
    """The factors after a completed iteration: in memory always, and in ``directory``
    (written to a temporary file, then renamed over the previous one) when given."""

    def __init__(self, directory: str | os.PathLike | None, fingerprint: str) -> None:
        self.path = None if directory is None else os.path.join(os.fspath(directory), CHECKPOINT)
        self.fingerprint = fingerprint
        self.state: tuple[int, np.ndarray, np.ndarray] | None = None

    def load(self) -> tuple[int, np.ndarray, np.ndarray] | None:
        """The checkpoint on disk if it belongs to this fit (same data, settings and seed)."""
        if self.path is None or not os.path.exists(self.path):
            return None
        with np.load(self.path) as f:
            if str(f["fingerprint"]) != self.fingerprint:
                return None
            self.state = (int(f["iteration"]), f["user_factors"], f["item_factors"])
        return self.state

    def save(self, iteration: int, x: np.ndarray, y: np.ndarray) -> None:
        self.state = (iteration, x, y)
        if self.path is None:
            return
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".wmf-checkpoint-", suffix=".npz", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, fingerprint=self.fingerprint, iteration=iteration, user_factors=x, item_factors=y)
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
    n_actors: int = 2,
    num_cpus_per_actor: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 5,
    max_restarts: int = 3,
    callback: Callable[[int, int, float | None], None] | None = None,
    _after_iteration: Callable[[int, list], None] | None = None,
    **settings: Any,
) -> WMF:
    """Fit WMF on a Ray cluster; returns a fitted :class:`musrec.WMF` like ``WMF(...).fit(plays)``.

    ``params`` is a :class:`musrec.WMFParams`, or give :class:`musrec.WMF`'s keywords
    (``factors``, ``iterations``, ``regularization``, ``alpha``, ``solver``,
    ``random_state``, ...). ``n_actors`` actors each own a contiguous shard of users and
    one of songs, balanced by plays, and run musrec's half-step solver on it with
    ``num_cpus_per_actor`` threads. Once per half-sweep the coordinator computes the Gram
    matrix ``Y^T Y + regularization I`` of the fixed side and puts it and the fixed factors
    in Ray's object store once for every actor; each actor returns its shard's new factors.

    The factors equal those of the local fit with the same ``random_state``, bit for bit:
    a row's solution depends only on its own plays, the fixed factors, the Gram matrix and
    its warm start (never on the threads, nor on the rows it shares a block with), and the
    Gram matrix is summed in fixed chunks on the coordinator as the local fit sums it.

    Every ``checkpoint_every`` iterations the factors are checkpointed: in memory, and with
    ``checkpoint_dir`` in ``checkpoint_dir/wmf-checkpoint.npz`` (written atomically). A fit
    started with a checkpoint of the same data, settings and seed there resumes from it. When
    an actor dies (``ray.exceptions.RayActorError``) it is restarted and the fit resumes from
    the last checkpoint, giving the same model; after ``max_restarts`` such failures the
    error propagates. ``callback(iteration, total, loss)`` is called after each iteration.
    ``model.distributed_`` reports the shards, restarts and bytes moved.
    """
    ray = _ray()
    from ray.exceptions import RayActorError

    n_actors = _positive_int(n_actors, "n_actors")
    num_cpus_per_actor = _positive_int(num_cpus_per_actor, "num_cpus_per_actor")
    checkpoint_every = _positive_int(checkpoint_every, "checkpoint_every")
    if params is not None:
        if settings.keys() - {"num_threads"}:
            raise TypeError("give either params or WMF's keywords, not both")
        settings = {**params.to_dict(), **settings}
    model = WMF(**settings)
    params = model.params
    csr = to_csr(plays, "plays")
    if csr.shape[0] == 0 or csr.shape[1] == 0:
        raise ValueError(f"plays is empty (shape {csr.shape})")
    items = to_csr(csr.T, "plays")
    seed = model.random_state
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
    n_users, n_items = csr.shape
    k = model.factors

    bounds = {"users": balanced_bounds(csr.indptr, n_actors), "items": balanced_bounds(items.indptr, n_actors)}
    # The shards' plays go to the object store once, so a restarted actor gets them from there.
    shard_refs = [
        (
            ray.put(csr_tuple(csr[bounds["users"][j] : bounds["users"][j + 1]])),
            ray.put(csr_tuple(items[bounds["items"][j] : bounds["items"][j + 1]])),
        )
        for j in range(n_actors)
    ]
    # SPREAD: on a cluster, one worker per node where it can, so the nodes' cores all work.
    worker_class = ray.remote(num_cpus=num_cpus_per_actor, scheduling_strategy="SPREAD")(_WmfWorker)

    def start(j: int) -> Any:
        return worker_class.remote(params, *shard_refs[j])

    def load(workers: list, x: np.ndarray, y: np.ndarray) -> None:
        ray.get(
            [
                w.set_factors.remote(
                    x[bounds["users"][j] : bounds["users"][j + 1]], y[bounds["items"][j] : bounds["items"][j + 1]]
                )
                for j, w in enumerate(workers)
            ]
        )

    def half_sweep(workers: list, side: str, fixed: np.ndarray) -> np.ndarray:
        gram = _musrec.wmf_gram(params, fixed, num_threads=model.num_threads)
        fixed_ref, gram_ref = ray.put(fixed), ray.put(gram)
        return np.concatenate(ray.get([w.solve.remote(side, fixed_ref, gram_ref) for w in workers]))

    checkpoint = _Checkpoint(checkpoint_dir, _fingerprint(params, seed, csr))
    resumed = checkpoint.load()
    if resumed is None:
        x, y = _musrec.wmf_initial_factors(params, n_users, n_items, seed=seed)
        checkpoint.state = (0, x, y)
    iteration, x, y = checkpoint.state
    resumed_from = iteration
    workers = [start(j) for j in range(n_actors)]
    load(workers, x, y)
    restarts = 0
    losses: list = []
    while iteration < model.iterations:
        try:
            x = half_sweep(workers, "users", y)
            y = half_sweep(workers, "items", x)
        except RayActorError:
            restarts += 1
            if restarts > max_restarts:
                raise
            for j, w in enumerate(workers):
                try:
                    ray.get(w.threads.remote())
                except RayActorError:
                    workers[j] = start(j)
            iteration, x, y = checkpoint.state
            losses = losses[:iteration]
            load(workers, x, y)
            continue
        iteration += 1
        loss = None
        if model.calculate_training_loss:
            loss = _musrec.wmf_loss(params, csr_tuple(csr), x, y, num_threads=model.num_threads)
            losses.append(loss)
        if iteration % checkpoint_every == 0 or iteration == model.iterations:
            checkpoint.save(iteration, x, y)
        if callback is not None:
            callback(iteration, model.iterations, loss)
        if _after_iteration is not None:
            _after_iteration(iteration, workers)
    for w in workers:
        ray.kill(w)

    model.user_factors, model.item_factors = x, y
    model.loss_history = losses
    model._user_items = csr
    sizes = {side: np.diff(b) for side, b in bounds.items()}
    # Per iteration, actor j receives both fixed sides and their Gram matrices and sends
    # back its rows of both sides (bytes of float32).
    moved = [
        4 * ((n_users + n_items) * k + 2 * k * k + (int(sizes["users"][j]) + int(sizes["items"][j])) * k)
        for j in range(n_actors)
    ]
    model.distributed_ = {
        "n_actors": n_actors,
        "users_per_actor": sizes["users"].tolist(),
        "songs_per_actor": sizes["items"].tolist(),
        "plays_per_actor": [
            int(csr.indptr[bounds["users"][j + 1]] - csr.indptr[bounds["users"][j]]) for j in range(n_actors)
        ],
        "restarts": restarts,
        "resumed_from_iteration": resumed_from,
        "bytes_per_actor_per_iteration": moved,
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
    n_actors: int = 2,
    num_cpus_per_actor: int = 1,
    batch_users: int = 4096,
) -> Any:
    """Top-N songs for every user of a fitted WMF, as a Ray Dataset of rows ``user`` (int64),
    ``items`` (N int32 song ids) and ``scores`` (N float32), equal to
    ``model.recommend(users, exclude, N, filter_already_liked=exclude is not None)``.

    ``exclude`` is a users x songs matrix (the plays) whose stored entries are never
    recommended, or None. Blocks of ``batch_users`` users are ranked by musrec's top-N on
    ``n_actors`` actors, which get the factors (and ``exclude``) once through the object
    store. The rows come in no particular order; sort by ``user`` where order matters.
    """
    ray = _ray()
    model._require_fitted()
    N = _positive_int(N, "N")
    batch_users = _positive_int(batch_users, "batch_users")
    n_actors = _positive_int(n_actors, "n_actors")
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
        num_cpus=_positive_int(num_cpus_per_actor, "num_cpus_per_actor"),
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
    n_actors: int = 2,
    num_cpus_per_actor: int = 1,
) -> Any:
    """Log-Mel features of audio files as a Ray Data pipeline: a Ray Dataset of rows ``path``,
    ``features`` ((n_mels, frames), or (excerpts, n_mels, frames)), ``ok``, ``padded``,
    ``truncated``, ``cached`` and ``error``, streamed in batches of ``batch_size`` files
    through ``n_actors`` actors running :func:`musrec.audio.extract`.

    A file that cannot be used is a row with ``ok`` False, zero features and ``error``
    ``"reason: message"``; it never raises. The features are bit for bit those of
    :func:`musrec.audio.extract`. With ``cache_dir`` each batch is written to (and read from)
    the same on-disk :class:`musrec.audio.FeatureCache` a local extraction uses, so either
    finds what the other extracted; with ``batch_size`` 64 (the local chunk) each shard holds
    the same files as a local extraction's. The rows come in no particular order.
    """
    ray = _ray()
    paths = [os.fspath(p) for p in paths] if not isinstance(paths, (str, os.PathLike)) else None
    if paths is None:
        raise TypeError("paths must be a list of paths, not a single path")
    config = config or FeatureConfig.paper()
    batch_size = _positive_int(batch_size, "batch_size")
    excerpts = _positive_int(excerpts, "excerpts")
    n_blocks = max(1, math.ceil(len(paths) / batch_size))
    return ray.data.from_items([{"path": p} for p in paths], override_num_blocks=n_blocks).map_batches(
        _Extractor,
        fn_constructor_kwargs={
            "config": config,
            "excerpts": excerpts,
            "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
        },
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=min(_positive_int(n_actors, "n_actors"), n_blocks)),
        num_cpus=_positive_int(num_cpus_per_actor, "num_cpus_per_actor"),
    )


def extract(paths: Any, config: FeatureConfig | None = None, **options: Any) -> ExtractResult:
    """:func:`musrec.audio.extract`'s result (rows in the order of ``paths``), computed on the
    cluster by :func:`extract_features` with ``options`` (``excerpts``, ``batch_size``,
    ``cache_dir``, ...); the features are bit for bit the local ones."""
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
    n_actors: int = 2,
    num_cpus_per_actor: int = 1,
    batch_size: int = 256,
) -> Any:
    """Cold-start song vectors for a catalogue: ``dataset`` (a Ray Dataset, e.g. from
    :func:`extract_features`) with a ``column`` of spectrograms and/or metadata columns
    ``tags``, ``artist``, ``year``, as the model's kind needs; returns it with a column
    ``vector`` equal to ``fusion_model.predict`` on those rows. The model goes to the
    ``n_actors`` actors once through the object store."""
    ray = _ray()
    fusion_model._state()  # NotFittedError before any work is scheduled
    shared = ray.put(fusion_model)
    return dataset.map_batches(
        _Predictor,
        fn_constructor_kwargs={"shared": [shared], "column": column, "batch_size": int(batch_size)},
        batch_size=int(batch_size),
        compute=ray.data.ActorPoolStrategy(size=_positive_int(n_actors, "n_actors")),
        num_cpus=_positive_int(num_cpus_per_actor, "num_cpus_per_actor"),
    )
