"""The paper's two-stage experiment on a dataset directory, stage by stage, with caching.

WMF on all listening of all songs -> a seeded split of the songs into training and
cold-start test songs -> log-Mel features of every song (an on-disk cache) -> each network
kind trained on the training songs' WMF vectors -> the test songs' predicted vectors ->
Table 1 (MSE, RMSE, MAE, MSLE of predicted vs WMF vectors), Figure 2 (precision, recall,
F1, NDCG and AUC @N of ranking the test songs for every user who played one) and Figure 3
(training and validation loss of the fusion model for several learning rates). Next to the
models: the WMF "oracle" (the test songs' true vectors: the ceiling), a popularity ranking
that only uses what is known of a new song (its artist's popularity among the training
songs) and a random ranking.

Every stage's output is cached under ``work_dir`` keyed by the settings and data it depends
on, so a re-run after a change redoes only what changed. The compute is the Rust core's;
this module only wires the stages together.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from . import _compat, _musrec, audio, data, metrics
from .fusion import KINDS, FusionModel
from .metrics import artist_popularity
from .recommender import Recommender
from .report import PipelineResult
from .wmf import WMF

#: The learning rates of the paper's Figure 3.
PAPER_LEARNING_RATES = (0.1, 0.01, 0.001, 0.0001)


def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


class _Vectors:
    """Users' vectors against any song vectors: what ``metrics.ranking_metrics`` ranks."""

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray):
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)


def check_settings(
    kinds: tuple[str, ...] = KINDS,
    test_fraction: float = 0.2,
    learning_rates: tuple[float, ...] = (),
    N: tuple[int, ...] = (10,),
    **_: Any,
) -> None:
    """Raise ValueError for Pipeline settings that cannot work (before any long stage runs)."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown model kinds {sorted(unknown)}; expected some of {KINDS}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if any(not (isinstance(lr, (int, float)) and lr > 0) for lr in learning_rates):
        raise ValueError(f"learning_rates must be positive numbers, got {learning_rates!r}")
    if not N or any(int(n) < 1 for n in N):
        raise ValueError(f"N must be a non-empty list of positive list lengths, got {N!r}")


class Pipeline:
    """The two-stage experiment on the dataset directory ``data_dir`` (layout: ``musrec.data``).

    ``wmf`` and ``model`` are keyword arguments for :class:`musrec.WMF` and
    :class:`musrec.FusionModel`; ``features`` is the :class:`musrec.audio.FeatureConfig`
    (default: the paper's, 8 kHz, 3 s excerpts). ``excerpts`` (3) of each song are taken,
    spread evenly over it; the networks train on a random one of them each epoch and predict
    from their average, the linear models read statistics over all of them (see
    :meth:`musrec.FusionModel.fit`). On real sound three beat the paper's one random excerpt
    for every audio model (README); ``excerpts=1`` is the paper's front end. ``test_fraction``
    of the songs (seeded by ``random_state``, which also seeds WMF and the networks; ``seed``
    is its deprecated old name) are the cold-start test songs (the paper: 10,000 of 50,000);
    ``split="artists"`` holds out whole artists instead, so no test song's artist was seen
    in training (see :meth:`split`). ``n_users``/``n_songs``
    de-sparsify the data first (the paper: 10,000 x 50,000). ``learning_rates`` are the
    Figure 3 study of the fusion model (empty: skip it). ``log`` receives one line per stage
    (default: print when ``show_progress``). ``executor="ray"`` runs WMF and the audio
    features on a Ray cluster (:mod:`musrec.distributed`; ``ray_address`` for ``ray.init``,
    None: the running or a new local cluster), with the same results as locally.

    :meth:`run` does everything and returns a :class:`musrec.report.PipelineResult`;
    :meth:`recommender` serves cold-start recommendations from the trained stages.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        work_dir: str | os.PathLike,
        *,
        n_users: int | None = None,
        n_songs: int | None = None,
        n_factors: int = 100,
        wmf: dict | None = None,
        features: audio.FeatureConfig | None = None,
        excerpts: int = 3,
        model: dict | None = None,
        kinds: tuple[str, ...] = KINDS,
        learning_rates: tuple[float, ...] = PAPER_LEARNING_RATES,
        test_fraction: float = 0.2,
        split: str = "songs",
        N: tuple[int, ...] = (5, 10, 20, 50),
        random_state: int | None = None,
        num_threads: int = 0,
        show_progress: bool = True,
        log: Callable[[str], None] | None = None,
        seed: int | None = None,
        executor: str = "local",
        ray_address: str | None = None,
    ):
        check_settings(kinds=kinds, test_fraction=test_fraction, learning_rates=learning_rates, N=N)
        seed = _compat.random_state(random_state, seed, "Pipeline")
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"no dataset directory at {os.fspath(data_dir)!r}")
        self.data_dir = os.fspath(data_dir)
        self.work_dir = os.fspath(work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        self.n_users, self.n_songs = n_users, n_songs
        self.wmf_args = {"factors": n_factors, "iterations": 15, "random_state": seed, **(wmf or {})}
        self.features_config = features or audio.FeatureConfig.paper()
        if isinstance(excerpts, bool) or not isinstance(excerpts, int) or excerpts < 1:
            raise ValueError(f"excerpts must be a positive integer, got {excerpts!r}")
        self.excerpts = excerpts
        self.model_args = {"random_state": seed, **(model or {})}
        self.kinds = tuple(kinds)
        self.learning_rates = tuple(float(lr) for lr in learning_rates)
        self.test_fraction = test_fraction
        if split not in ("songs", "artists"):
            raise ValueError(f"split must be 'songs' or 'artists', got {split!r}")
        self.split_by = split
        self.N = tuple(int(n) for n in N)
        self.random_state = seed
        self.num_threads = num_threads
        self.show_progress = show_progress
        self.log = log if log is not None else (print if show_progress else lambda line: None)
        if executor not in ("local", "ray"):
            raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
        self.executor, self.ray_address = executor, ray_address
        self._dataset: data.Dataset | None = None
        self._stages: list[dict] = []

    # ---- bookkeeping --------------------------------------------------------------------
    @contextmanager
    def _stage(self, name: str) -> Iterator[dict]:
        record = {"stage": name, "cached": False}
        self.log(f"[{name}]")
        start = time.perf_counter()
        yield record
        record["seconds"] = time.perf_counter() - start
        record["peak_rss_mb"] = _peak_rss_mb()
        self._stages.append(record)
        note = " (cached)" if record["cached"] else ""
        self.log(f"[{name}] {record['seconds']:.1f} s{note}, peak memory {record['peak_rss_mb']:,.0f} MB")

    def _distributed(self) -> Any:
        """musrec.distributed, connected to ``ray_address`` (None: the running or a local cluster)."""
        import ray

        from . import distributed

        if not ray.is_initialized():
            ray.init(address=self.ray_address)
        return distributed

    # ---- stages -------------------------------------------------------------------------
    def dataset(self) -> data.Dataset:
        """The de-sparsified dataset (read once per Pipeline)."""
        if self._dataset is None:
            with self._stage("load data"):
                self._dataset = data.load(
                    self.data_dir, n_users=self.n_users, n_songs=self.n_songs, show_progress=self.show_progress
                )
                for line in self._dataset.summary().splitlines():
                    self.log("  " + line)
                if self._dataset.plays.shape[1] < 2:
                    raise ValueError(f"{self.data_dir}: {self._dataset.plays.shape[1]} usable songs, need several")
        return self._dataset

    def _data_key(self) -> str:
        ds = self.dataset()
        plays = ds.plays
        return _key(plays.shape, int(plays.nnz), float(plays.data.sum()), ds.songs.song_id, ds.user_ids[:100])

    def song_vectors(self) -> WMF:
        """WMF on all listening of all songs (cached)."""
        path = os.path.join(self.work_dir, f"wmf-{_key(self._data_key(), self.wmf_args)}.safetensors")
        with self._stage("WMF") as record:
            if os.path.exists(path):
                record["cached"] = True
                return WMF.load(path)
            if self.executor == "ray":
                model = self._distributed().fit_wmf(
                    self.dataset().plays,
                    num_threads=self.num_threads,
                    checkpoint_dir=os.path.join(self.work_dir, "wmf-checkpoint"),
                    **self.wmf_args,
                )
            else:
                model = WMF(num_threads=self.num_threads, **self.wmf_args)
                model.fit(self.dataset().plays, show_progress=self.show_progress)
            model.save(path)
            return model

    def spectrograms(self) -> tuple[np.ndarray, np.ndarray]:
        """(log-Mel features of every song, which songs' audio could be used); the features
        live in an on-disk cache, so a re-run only reads them."""
        paths = self.dataset().songs.audio_path
        with self._stage("audio features") as record:
            cache_dir = os.path.join(self.work_dir, "features")
            if self.executor == "ray":
                result = self._distributed().extract(
                    paths, self.features_config, cache_dir=cache_dir, excerpts=self.excerpts
                )
            else:
                result = audio.extract(
                    paths,
                    self.features_config,
                    num_threads=self.num_threads,
                    show_progress=self.show_progress,
                    cache_dir=cache_dir,
                    excerpts=self.excerpts,
                )
            record["cached"] = bool(len(result.cached)) and bool(np.all(result.cached | ~result.ok))
            ok = np.asarray(result.ok, bool)
            if result.failures:
                reasons: dict[str, int] = {}
                for f in result.failures:
                    reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
                self.log(
                    f"  {len(result.failures):,} of {len(paths):,} songs have no usable audio and are left out "
                    f"({', '.join(f'{n:,} {r}' for r, n in sorted(reasons.items()))}); first: "
                    f"{result.failures[0]['path']}: {result.failures[0]['message']}"
                )
            if int(result.padded.sum()):
                self.log(f"  {int(result.padded.sum()):,} clips were shorter than the excerpt and zero-padded")
        return result.features, ok

    def metadata(self) -> list[dict]:
        """Each song's tags (with Last.fm strengths), artist and year, for FusionModel."""
        songs = self.dataset().songs
        tags = songs.tags
        out = []
        for i in range(len(songs)):
            lo, hi = tags.indptr[i], tags.indptr[i + 1]
            weights = {songs.tag_names[j]: float(v) for j, v in zip(tags.indices[lo:hi], tags.data[lo:hi])}
            out.append({"tags": weights, "artist": songs.artist_id[i] or None, "year": int(songs.year[i]) or None})
        return out

    def split(self, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Seeded (training songs, cold-start test songs) among the usable ones, sorted.

        ``split="songs"``: a random ``test_fraction`` of the songs. ``split="artists"``: whole
        artists, drawn at random until their songs make ``test_fraction`` of all, so every
        test song is by an artist that training never saw (a song without an artist is its
        own group). The core draws the split (``src/eval/songs.rs``) from numpy's generator,
        so a seed gives the split numpy gave."""
        artists = self.dataset().songs.artist_id
        return _musrec.split_songs(
            np.ascontiguousarray(usable, dtype=bool), artists, self.test_fraction, self.split_by, self.random_state
        )

    def _validation(self, train_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(songs to fit on, validation songs or None for FusionModel's own random tenth).
        With ``split="artists"`` the validation songs are whole artists too, so early
        stopping and the ridge penalties are chosen for artists the model has not seen,
        as the test songs are."""
        artists = self.dataset().songs.artist_id
        return _musrec.validation_songs(
            np.ascontiguousarray(train_idx, dtype=np.int64), artists, self.split_by, self.random_state
        )

    def train(self, kind: str, spec, meta, targets, train_idx, *, users=None, **overrides: Any) -> FusionModel:
        """One network kind on the training songs (cached). ``overrides`` change model settings;
        ``users``, the fitted WMF (or its user vectors), let validation rank the songs (see
        ``stop_metric``), and give ``objective="wpe"`` its metric with the songs' plays."""
        args = {**self.model_args, **overrides}
        settings = FusionModel(kind, **args).config_  # every setting resolved, defaults included
        key = _key(
            self._data_key(),
            self.wmf_args,
            self.features_config.to_json(),
            self.excerpts,
            self.split_by,  # also decides the validation songs (see _validation)
            self.test_fraction,
            settings,
            self.random_state,
            _musrec.FusionCore.REVISION,  # code changes that change what training gives
        )
        path = os.path.join(self.work_dir, "models", f"{kind}-{key}.safetensors")
        label = kind + "".join(f" {k}={v:g}" if isinstance(v, float) else f" {k}={v}" for k, v in overrides.items())
        with self._stage(f"train {label}") as record:
            if os.path.exists(path):
                record["cached"] = True
                return FusionModel.load(path, num_threads=self.num_threads)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            model = FusionModel(kind, num_threads=self.num_threads, **args)
            fit_idx, val_idx = self._validation(train_idx)
            validation = 0.1 if val_idx is None else (spec[val_idx], [meta[i] for i in val_idx], targets[val_idx])
            wpe = settings["train"]["objective"] == "wpe"
            model.fit(
                spec[fit_idx],
                [meta[i] for i in fit_idx],
                targets[fit_idx],
                validation=validation,
                users=users,
                plays=self.dataset().plays[:, fit_idx] if wpe else None,
                show_progress=self.show_progress,
            )
            model.save(path)
            h = model.history_
            ridge = model.ridge_
            if ridge is not None:
                mse = ridge["validation_mse"]
                artist = "" if ridge.get("lambda_artist") is None else f", {ridge['lambda_artist']:g} (artists)"
                self.log(
                    f"  linear part: penalties {ridge['lambda_audio']:g} (audio), {ridge['lambda_metadata']:g} "
                    f"(metadata){artist}, validation loss {float('nan') if mse is None else mse:.4g}"
                )
            stacking = model.stacking_
            if stacking is not None:
                self.log(
                    f"  stacked: {stacking['audio_weight']:.3g} x audio network + {stacking['metadata_weight']:.3g} x "
                    f"metadata ridge (penalty {stacking['lambda_metadata']:g})"
                )
            if h["train_loss"]:
                best = min(h["validation_loss"], default=float("nan"))
                early = " (stopped early)" if model.stopped_early_ else ""
                at = "the linear start" if model.best_epoch_ is None else f"epoch {model.best_epoch_}"
                self.log(f"  {len(h['train_loss'])} epochs, best validation loss {best:.4g} at {at}{early}")
            return model

    def _prepared(self) -> tuple:
        ds = self.dataset()
        wmf = self.song_vectors()
        spec, usable = self.spectrograms()
        meta = self.metadata()
        train_idx, test_idx = self.split(usable)
        return ds, wmf, spec, usable, meta, train_idx, test_idx

    # ---- the whole experiment -----------------------------------------------------------
    def run(self) -> PipelineResult:
        """Every stage; cached stages are read back. Returns Table 1 and Figures 2 and 3."""
        self._stages = []
        ds, wmf, spec, usable, meta, train_idx, test_idx = self._prepared()
        vectors = wmf.item_factors
        test_plays = ds.plays[:, test_idx].tocsr()
        no_train = sp.csr_matrix(test_plays.shape, dtype=np.float32)

        predicted, histories = {}, {}
        for kind in self.kinds:
            model = self.train(kind, spec, meta, vectors, train_idx, users=wmf)
            predicted[kind] = model.predict(spec[test_idx], [meta[i] for i in test_idx])
            histories[kind] = model.history_

        figure3 = []
        for lr in self.learning_rates:
            try:
                model = self.train("fusion", spec, meta, vectors, train_idx, users=wmf, learning_rate=lr)
            except ValueError as e:
                if "diverged" not in str(e):
                    raise
                # A learning rate too large for the network is one of the study's findings.
                self.log(f"  learning rate {lr:g}: {e}")
                continue
            h = model.history_
            figure3 += [
                {"learning_rate": lr, "epoch": e + 1, "train_loss": t, "validation_loss": v}
                for e, (t, v) in enumerate(zip(h["train_loss"], h["validation_loss"]))
            ]

        with self._stage("evaluate"):
            table1 = [{"model": k, **metrics.vector_errors(p, vectors[test_idx])} for k, p in predicted.items()]
            # the error of knowing nothing of a song: every test song gets the training songs' mean vector
            table1.append({"model": "training mean", **metrics.training_mean_errors(vectors, train_idx, test_idx)})
            # Songs of new or unknown artists all get the same fallback score: their ties are
            # broken at random (seeded) rather than by song order, which may follow popularity.
            popularity = artist_popularity(
                ds.plays, ds.songs.artist_id, train_idx, test_idx, tie_break=self.random_state
            )
            rankers = {
                **{k: _Vectors(wmf.user_factors, p) for k, p in predicted.items()},
                "popularity": _Vectors(np.ones((ds.plays.shape[0], 1)), popularity[:, None]),
                "WMF oracle": _Vectors(wmf.user_factors, vectors[test_idx]),
            }
            figure2 = []
            for n in self.N:
                for name, ranker in rankers.items():
                    m = metrics.ranking_metrics(ranker, no_train, test_plays, N=n, num_threads=self.num_threads)
                    figure2.append({"model": name, "N": n, **m})
                m = metrics.random_ranking_metrics(
                    no_train, test_plays, N=n, random_state=self.random_state, num_threads=self.num_threads
                )
                figure2.append({"model": "random", "N": n, **m})
        join = ds.report.get("join", {})
        summary = {
            "users": ds.plays.shape[0],
            "songs": ds.plays.shape[1],
            "plays": int(ds.plays.nnz),
            "songs_without_usable_audio": int((~usable).sum()),
            "songs_without_tags": int(join.get("songs_without_tags", 0)),
            "songs_with_unknown_year": int(join.get("songs_with_unknown_year", 0)),
            "split": self.split_by,
            "training_songs": len(train_idx),
            "test_songs": len(test_idx),
            "test_users": int(np.diff(test_plays.indptr).astype(bool).sum()),
            "stages": list(self._stages),
        }
        return PipelineResult(table1, figure2, figure3, histories, summary)

    # ---- cold start and serving --------------------------------------------------------
    def recommender(self, kind: str = "fusion") -> Recommender:
        """A :class:`musrec.Recommender` over every song of the dataset (their WMF vectors)
        that predicts new songs' vectors with the ``kind`` model trained by this pipeline."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
        ds, wmf, spec, _, meta, train_idx, _ = self._prepared()
        model = self.train(kind, spec, meta, wmf.item_factors, train_idx, users=wmf)
        return Recommender(
            wmf,
            model,
            user_ids=ds.user_ids,
            song_ids=ds.songs.song_id,
            plays=ds.plays,
            features=self.features_config,
            excerpts=self.excerpts,
            num_threads=self.num_threads,
        )

    def export_bundle(
        self,
        path: str | os.PathLike,
        kind: str = "fusion",
        *,
        encoding: str = "f32",
        model_version: str | None = None,
        edge_offsets: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Write the trained stages as a model bundle directory for the edge service: the
        WMF vectors of every user and song, the play counts, the ids, the ``kind`` content
        model and the feature settings (see :meth:`musrec.Recommender.export_bundle` for
        ``encoding``, ``model_version`` and ``edge_offsets``). Returns the manifest."""
        return self.recommender(kind).export_bundle(
            path, encoding=encoding, model_version=model_version, edge_offsets=edge_offsets
        )
