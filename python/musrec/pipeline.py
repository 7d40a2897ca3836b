"""The paper's two-stage experiment on a dataset directory, stage by stage, with caching.

WMF on all listening of all songs -> a seeded split of the songs into training and
cold-start test songs -> log-Mel features of every song (an on-disk cache) -> each network
kind trained on the training songs' WMF vectors -> the test songs' predicted vectors ->
Table 1 (MSE, RMSE, MAE, MSLE of predicted vs WMF vectors) and Figure 2 (precision, recall,
F1, NDCG and AUC @N of ranking the test songs for every user who played one), with the WMF
"oracle" (the test songs' true vectors: the ceiling) and a random ranking next to the models.

Every stage's output is cached under ``work_dir`` keyed by the settings and data it depends
on, so a re-run after a change redoes only what changed. The compute is the Rust core's;
this module only wires the stages together.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import audio, data, metrics
from .fusion import KINDS, FusionModel
from .wmf import WMF

TABLE1_COLUMNS = ("mse", "rmse", "mae", "msle", "msle_clipped")
FIGURE2_COLUMNS = ("precision", "recall", "f1", "ndcg", "auc")


def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class _Vectors:
    """Users' WMF factors against any song vectors: what ``metrics.ranking_metrics`` ranks."""

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray):
        self.user_factors = user_factors
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)


@dataclass
class PipelineResult:
    """Table 1 and Figure 2 as rows of dicts, the training histories and a run summary."""

    table1: list[dict]
    figure2: list[dict]
    histories: dict[str, dict] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def table1_markdown(self) -> str:
        head = "| model | MSE | RMSE | MAE | MSLE | MSLE clipped values |\n|---|---|---|---|---|---|"
        body = [
            f"| {r['model']} | " + " | ".join(f"{r[c]:.4g}" for c in TABLE1_COLUMNS[:4]) + f" | {r['msle_clipped']} |"
            for r in self.table1
        ]
        return "\n".join([head, *body])

    def figure2_markdown(self) -> str:
        head = "| model | N | precision | recall | F1 | NDCG | AUC |\n|---|---|---|---|---|---|---|"
        body = [
            f"| {r['model']} | {r['N']} | " + " | ".join(f"{r[c]:.4f}" for c in FIGURE2_COLUMNS) + " |"
            for r in self.figure2
        ]
        return "\n".join([head, *body])

    def write(self, out_dir: str | os.PathLike) -> list[str]:
        """Write table1/figure2 as Markdown and CSV, figure2.png when matplotlib is there."""
        os.makedirs(out_dir, exist_ok=True)
        written = []
        for name, rows, cols, md in (
            ("table1", self.table1, ("model", *TABLE1_COLUMNS), self.table1_markdown()),
            ("figure2", self.figure2, ("model", "N", *FIGURE2_COLUMNS), self.figure2_markdown()),
        ):
            path = os.path.join(out_dir, f"{name}.md")
            with open(path, "w") as f:
                f.write(md + "\n")
            written.append(path)
            path = os.path.join(out_dir, f"{name}.csv")
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
            written.append(path)
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return written
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for ax, metric in zip(axes, ("precision", "recall", "f1")):
            for model in dict.fromkeys(r["model"] for r in self.figure2):
                rows = [r for r in self.figure2 if r["model"] == model]
                ax.plot([r["N"] for r in rows], [r[metric] for r in rows], marker="o", label=model)
            ax.set(xlabel="N", ylabel=f"{metric}@N", title=metric)
        axes[-1].legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, "figure2.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return [*written, path]


class Pipeline:
    """The two-stage experiment on the dataset directory ``data_dir`` (layout: ``musrec.data``).

    ``wmf`` and ``model`` are keyword arguments for :class:`musrec.WMF` and
    :class:`musrec.FusionModel`; ``features`` is the :class:`musrec.audio.FeatureConfig`
    (default: the paper's, 8 kHz, random 3 s excerpt). ``test_fraction`` of the songs (seeded)
    are the cold-start test songs (the paper: 10,000 of 50,000). ``n_users``/``n_songs``
    de-sparsify the data first (the paper: 10,000 x 50,000).
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
        model: dict | None = None,
        kinds: tuple[str, ...] = KINDS,
        test_fraction: float = 0.2,
        N: tuple[int, ...] = (5, 10, 20, 50),
        seed: int = 0,
        num_threads: int = 0,
        show_progress: bool = True,
    ):
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown model kinds {sorted(unknown)}; expected some of {KINDS}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"no dataset directory at {os.fspath(data_dir)!r}")
        self.data_dir = os.fspath(data_dir)
        self.work_dir = os.fspath(work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        self.n_users, self.n_songs = n_users, n_songs
        self.wmf_args = {"factors": n_factors, "iterations": 15, "random_state": seed, **(wmf or {})}
        self.features_config = features or audio.FeatureConfig.paper()
        self.model_args = {"seed": seed, **(model or {})}
        self.kinds = tuple(kinds)
        self.test_fraction = test_fraction
        self.N = tuple(int(n) for n in N)
        self.seed = seed
        self.num_threads = num_threads
        self.show_progress = show_progress
        self._dataset: data.Dataset | None = None

    # ---- stages -------------------------------------------------------------------------
    def dataset(self) -> data.Dataset:
        if self._dataset is None:
            self._dataset = data.load(
                self.data_dir, n_users=self.n_users, n_songs=self.n_songs, show_progress=self.show_progress
            )
        return self._dataset

    def _data_key(self) -> str:
        ds = self.dataset()
        plays = ds.plays
        return _key(plays.shape, int(plays.nnz), float(plays.data.sum()), ds.songs.song_id, ds.user_ids[:100])

    def song_vectors(self) -> WMF:
        """WMF on all listening of all songs (cached)."""
        path = os.path.join(self.work_dir, f"wmf-{_key(self._data_key(), self.wmf_args)}.safetensors")
        if os.path.exists(path):
            return WMF.load(path)
        model = WMF(num_threads=self.num_threads, **self.wmf_args)
        model.fit(self.dataset().plays, show_progress=self.show_progress)
        model.save(path)
        return model

    def spectrograms(self) -> tuple[np.ndarray, np.ndarray]:
        """(log-Mel features of every song, which songs' audio could be used), cached."""
        result = audio.extract(
            self.dataset().songs.audio_path,
            self.features_config,
            num_threads=self.num_threads,
            show_progress=self.show_progress,
            cache_dir=os.path.join(self.work_dir, "features"),
        )
        return result.features, np.asarray(result.ok, bool)

    def metadata(self) -> list[dict]:
        songs = self.dataset().songs
        tags = songs.tags
        out = []
        for i in range(len(songs)):
            lo, hi = tags.indptr[i], tags.indptr[i + 1]
            weights = {songs.tag_names[j]: float(v) for j, v in zip(tags.indices[lo:hi], tags.data[lo:hi])}
            out.append({"tags": weights, "artist": songs.artist_id[i] or None, "year": int(songs.year[i]) or None})
        return out

    def split(self, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Seeded (training songs, cold-start test songs) among the usable ones, sorted."""
        candidates = np.flatnonzero(usable)
        order = np.random.default_rng(self.seed).permutation(candidates)
        n_test = max(1, int(round(len(order) * self.test_fraction)))
        if n_test >= len(order):
            raise ValueError(f"{len(order)} usable songs are too few to hold out {self.test_fraction:.0%}")
        return np.sort(order[n_test:]), np.sort(order[:n_test])

    def train(self, kind: str, spec, meta, targets, train_idx) -> FusionModel:
        """One network kind on the training songs (cached)."""
        key = _key(self._data_key(), self.wmf_args, self.features_config.to_json(), self.model_args, kind, self.seed)
        path = os.path.join(self.work_dir, "models", f"{kind}-{key}.safetensors")
        if os.path.exists(path):
            return FusionModel.load(path, num_threads=self.num_threads)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        model = FusionModel(kind, num_threads=self.num_threads, **self.model_args)
        model.fit(spec[train_idx], [meta[i] for i in train_idx], targets[train_idx], show_progress=self.show_progress)
        model.save(path)
        return model

    # ---- the whole experiment -----------------------------------------------------------
    def run(self) -> PipelineResult:
        ds = self.dataset()
        wmf = self.song_vectors()
        spec, usable = self.spectrograms()
        meta = self.metadata()
        train_idx, test_idx = self.split(usable)
        vectors = wmf.item_factors
        test_plays = ds.plays[:, test_idx].tocsr()
        no_train = sp.csr_matrix(test_plays.shape, dtype=np.float32)

        predicted, histories = {}, {}
        for kind in self.kinds:
            model = self.train(kind, spec, meta, vectors, train_idx)
            predicted[kind] = model.predict(spec[test_idx], [meta[i] for i in test_idx])
            histories[kind] = model.history_

        table1 = [{"model": k, **metrics.vector_errors(p, vectors[test_idx])} for k, p in predicted.items()]
        figure2 = []
        for n in self.N:
            rankers = {**predicted, "WMF oracle": vectors[test_idx]}
            for name, items in rankers.items():
                m = metrics.ranking_metrics(_Vectors(wmf.user_factors, items), no_train, test_plays, N=n)
                figure2.append({"model": name, "N": n, **m})
            m = metrics.random_ranking_metrics(no_train, test_plays, N=n, random_state=self.seed)
            figure2.append({"model": "random", "N": n, **m})
        summary = {
            "users": ds.plays.shape[0],
            "songs": ds.plays.shape[1],
            "plays": int(ds.plays.nnz),
            "songs_without_usable_audio": int((~usable).sum()),
            "training_songs": len(train_idx),
            "test_songs": len(test_idx),
            "test_users": int(np.diff(test_plays.indptr).astype(bool).sum()),
        }
        return PipelineResult(table1, figure2, histories, summary)
