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
    """Raise ValueError for Pipeline settings that cannot work (before any long stage runs).

    :class:`Pipeline` and :func:`musrec.experiment.pipeline` call it first, so a mistake is
    reported before a world is written or a stage runs.

    Parameters
    ----------
    kinds : tuple of str, default musrec.fusion.KINDS
        The model kinds; each must be one of :data:`musrec.fusion.KINDS`.
    test_fraction : float, default 0.2
        The share of the songs held out as cold-start test songs; must be in (0, 1).
    learning_rates : tuple of float, default ()
        Figure 3's learning rates; each must be a positive number.
    N : tuple of int, default (10,)
        Figure 2's list lengths; must be non-empty, each at least 1.
    **_ : Any
        Any other Pipeline setting, not checked here.

    Raises
    ------
    ValueError
        For an unknown kind, ``test_fraction`` outside (0, 1), a learning rate that is not a
        positive number, or an empty ``N`` or one below 1.

    Examples
    --------
    >>> from musrec.pipeline import check_settings
    >>> check_settings(kinds=("fusion", "ridge"), test_fraction=0.2, N=(5, 10))
    >>> check_settings(test_fraction=1.5)
    Traceback (most recent call last):
        ...
    ValueError: test_fraction must be in (0, 1), got 1.5
    """
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

    :meth:`run` does everything and returns a :class:`musrec.report.PipelineResult`;
    :meth:`recommender` serves cold-start recommendations from the trained stages, and
    :meth:`export_bundle` writes them as a model bundle. Each stage can also be run on its
    own (:meth:`dataset`, :meth:`song_vectors`, :meth:`spectrograms`, :meth:`metadata`,
    :meth:`split`, :meth:`train`); every stage's output is cached under ``work_dir``, keyed by
    the settings and data it depends on, so a re-run after a change redoes only what changed.

    Parameters
    ----------
    data_dir : str or os.PathLike
        The dataset directory, in the layout of :mod:`musrec.data` (for example a world
        written by :func:`musrec.synthetic.write_world`).
    work_dir : str or os.PathLike
        Where the stages' caches go; created when missing.
    n_users : int or None, optional
        De-sparsify the data to this many users first (the paper: 10,000); None keeps every user.
    n_songs : int or None, optional
        De-sparsify the data to this many songs first (the paper: 50,000); None keeps every
        song that has audio.
    n_factors : int, default 100
        WMF's number of factors (a ``factors`` entry of ``wmf`` takes precedence).
    wmf : dict or None, optional
        Keyword arguments for :class:`musrec.WMF`, over the defaults ``factors=n_factors``,
        ``iterations=15`` and ``random_state`` the pipeline's seed.
    features : musrec.audio.FeatureConfig or None, optional
        The log-Mel configuration; None: the paper's
        (:meth:`musrec.audio.FeatureConfig.paper`: 8 kHz, 3 s excerpts).
    excerpts : int, default 3
        How many excerpts of each song are taken, spread evenly over it. The networks train
        on a random one of them each epoch and predict from their average, the linear models
        read statistics over all of them (see :meth:`musrec.FusionModel.fit`). On real sound
        three beat the paper's one random excerpt for every audio model (README);
        ``excerpts=1`` is the paper's front end.
    model : dict or None, optional
        Keyword arguments for :class:`musrec.FusionModel`, every kind's (``random_state``
        defaults to the pipeline's seed).
    kinds : tuple of str, default musrec.fusion.KINDS
        The model kinds :meth:`run` trains and evaluates: all five networks and the three
        linear baselines by default.
    learning_rates : tuple of float, default PAPER_LEARNING_RATES
        The Figure 3 study of the fusion model, (0.1, 0.01, 0.001, 0.0001) by default; empty:
        skip it.
    test_fraction : float, default 0.2
        The share of the (usable) songs held out as cold-start test songs (the paper: 10,000
        of 50,000).
    split : {"songs", "artists"}, default "songs"
        ``"songs"`` holds out random songs; ``"artists"`` holds out whole artists instead, so
        no test song's artist was seen in training (see :meth:`split`).
    N : tuple of int, default (5, 10, 20, 50)
        The list lengths of Figure 2's Top-N metrics.
    random_state : int or None, optional
        Seeds the split, WMF and the networks; None is seed 0.
    num_threads : int, default 0
        Threads of every stage; 0 = one per core.
    show_progress : bool, default True
        Show progress bars (and, without ``log``, print the stage lines).
    log : callable or None, optional
        Receives one line per stage (with its time and peak memory) and the stages' notes;
        None: ``print`` when ``show_progress``, else nothing.
    seed : int or None, optional
        The deprecated old name of ``random_state``.
    executor : {"local", "ray"}, default "local"
        ``"ray"`` runs WMF and the audio features on a Ray cluster (:mod:`musrec.distributed`),
        with the same results as locally.
    ray_address : str or None, optional
        The address for ``ray.init`` with ``executor="ray"``; None: the running or a new local
        cluster.

    Attributes
    ----------
    data_dir : str
        The dataset directory.
    work_dir : str
        The cache directory.
    n_users : int or None
        The de-sparsified number of users, as given.
    n_songs : int or None
        The de-sparsified number of songs, as given.
    wmf_args : dict
        The keyword arguments WMF is built with (defaults and ``wmf`` merged).
    features_config : musrec.audio.FeatureConfig
        The log-Mel configuration.
    excerpts : int
        Excerpts per song.
    model_args : dict
        The keyword arguments every FusionModel is built with.
    kinds : tuple of str
        The model kinds :meth:`run` trains.
    learning_rates : tuple of float
        Figure 3's learning rates.
    test_fraction : float
        The share of test songs.
    split_by : str
        ``"songs"`` or ``"artists"`` (the ``split`` argument).
    N : tuple of int
        Figure 2's list lengths.
    random_state : int
        The seed in use (0 when none was given).
    num_threads : int
        Threads of every stage.
    show_progress : bool
        Whether progress bars are shown.
    log : callable
        The function receiving the stage lines.
    executor : str
        ``"local"`` or ``"ray"``.
    ray_address : str or None
        The Ray cluster's address.

    Raises
    ------
    ValueError
        For settings that cannot work (see :func:`check_settings`), ``excerpts`` that is not
        a positive integer, or an unknown ``split`` or ``executor``.
    FileNotFoundError
        When ``data_dir`` is not a directory.
    TypeError
        When both ``random_state`` and ``seed`` are given.

    Warns
    -----
    DeprecationWarning
        When ``seed`` is given.

    See Also
    --------
    musrec.experiment.pipeline : The Pipeline of a preset.
    musrec.reproduce : Runs a preset's Pipeline and writes its tables and figures.

    Notes
    -----
    The stages: WMF on all listening of all songs, a seeded split of the songs into training
    and cold-start test songs, log-Mel features of every song (an on-disk
    :class:`musrec.audio.FeatureCache` in ``work_dir/features``), each network kind trained
    on the training songs' WMF vectors, the test songs' predicted vectors, then Table 1,
    Figure 2 and Figure 3 (see :meth:`run`). The WMF model is cached as
    ``work_dir/wmf-<key>.safetensors``, the trained models as
    ``work_dir/models/<kind>-<key>.safetensors``.

    Examples
    --------
    >>> import musrec
    >>> musrec.synthetic.write_world("world", "tiny", show_progress=False)  # doctest: +SKIP
    >>> pipe = musrec.Pipeline("world", "musrec-work", n_factors=32, kinds=("fusion", "ridge"))  # doctest: +SKIP
    >>> result = pipe.run()  # doctest: +SKIP
    >>> print(result.table1_markdown(paper=True))  # doctest: +SKIP

    The dataset directory must exist:

    >>> musrec.Pipeline("no-such-directory", "musrec-work")
    Traceback (most recent call last):
        ...
    FileNotFoundError: no dataset directory at 'no-such-directory'
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
        """Load the de-sparsified dataset (read once per Pipeline, then kept in memory).

        Reads ``data_dir`` with :func:`musrec.data.load` (``n_users``, ``n_songs``; songs
        without audio are dropped) and logs its summary.

        Returns
        -------
        musrec.data.Dataset
            The plays (users x songs), the user ids and the song table.

        Raises
        ------
        FileNotFoundError
            When a required file of the dataset is missing.
        musrec.FormatError
            When a SQLite file of the dataset is corrupt.
        ValueError
            When fewer than two usable songs remain.

        Examples
        --------
        >>> import musrec
        >>> pipe = musrec.Pipeline("world", "musrec-work", n_factors=32, kinds=("fusion", "ridge"))  # doctest: +SKIP
        >>> ds = pipe.dataset()  # doctest: +SKIP
        >>> n_users, n_songs = ds.plays.shape  # doctest: +SKIP
        """
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
        """Fit WMF on all listening of all songs (cached).

        The model is cached as ``work_dir/wmf-<key>.safetensors``, keyed by the data, the
        WMF settings and the WMF code's revision, and read back when there. With ``executor="ray"`` it is fitted on the
        Ray cluster by :func:`musrec.distributed.fit_wmf` (checkpoints in
        ``work_dir/wmf-checkpoint``), with the same factors.

        Returns
        -------
        musrec.WMF
            The fitted model: ``user_factors`` (users x factors) and ``item_factors`` (songs x
            factors, the songs' WMF vectors).

        Raises
        ------
        TypeError
            For an unknown WMF keyword in ``wmf``.
        ValueError
            For an invalid WMF setting, or a dataset that cannot be loaded (see :meth:`dataset`).
        ImportError
            With ``executor="ray"`` when Ray is not installed.

        Examples
        --------
        >>> import musrec
        >>> pipe = musrec.Pipeline("world", "musrec-work", n_factors=32, kinds=("fusion", "ridge"))  # doctest: +SKIP
        >>> wmf = pipe.song_vectors()  # doctest: +SKIP
        >>> vectors = wmf.item_factors  # doctest: +SKIP
        """
        # The code revision too: a cached fit from code that gave other factors is not reused.
        key = _key(self._data_key(), self.wmf_args, _musrec.WMF_REVISION)
        path = os.path.join(self.work_dir, f"wmf-{key}.safetensors")
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
        """Compute the log-Mel features of every song, and which songs' audio could be used.

        The features live in an on-disk cache (:class:`musrec.audio.FeatureCache` in
        ``work_dir/features``), so a re-run only reads them. With ``executor="ray"`` they are
        extracted on the Ray cluster (:func:`musrec.distributed.extract`), bit for bit the
        same. Songs without usable audio are logged (how many, by reason, and the first one),
        as are clips shorter than the excerpt (zero-padded).

        Returns
        -------
        features : numpy.ndarray
            The features, float32 of shape (n_songs, excerpts, n_mels, frames), or (n_songs,
            n_mels, frames) with ``excerpts=1``; rows of unusable songs are zero.
        usable : numpy.ndarray
            Bool of shape (n_songs,): the songs whose features were extracted.

        Raises
        ------
        ImportError
            With ``executor="ray"`` when Ray is not installed.

        Examples
        --------
        >>> import musrec
        >>> pipe = musrec.Pipeline("world", "musrec-work", n_factors=32, kinds=("fusion", "ridge"))  # doctest: +SKIP
        >>> spec, usable = pipe.spectrograms()  # doctest: +SKIP
        """
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
        """List each song's tags (with Last.fm strengths), artist and year, for FusionModel.

        Returns
        -------
        list of dict
            One dict per song (column of the plays): ``"tags"`` (``{tag: strength}``, empty
            without tags), ``"artist"`` (the artist id, None when unknown) and ``"year"`` (None
            when unknown).

        Examples
        --------
        >>> import musrec
        >>> pipe = musrec.Pipeline("world", "musrec-work", n_factors=32, kinds=("fusion", "ridge"))  # doctest: +SKIP
        >>> meta = pipe.metadata()  # doctest: +SKIP
        >>> sorted(meta[0])  # doctest: +SKIP
        """
        return self.dataset().songs.metadata()

    def split(self, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split the usable songs into training and cold-start test songs, seeded.

        ``split="songs"``: a random ``test_fraction`` of the songs. ``split="artists"``: whole
        artists, drawn at random until their songs make ``test_fraction`` of all, so every
        test song is by an artist that training never saw (a song without an artist is its
        own group). The number held out is ``test_fraction`` of the usable songs, rounded
        half to even, at least one. The core draws the split (``src/eval/songs.rs``) from
        numpy's generator, so a seed gives the split numpy gave.

        Parameters
        ----------
        usable : numpy.ndarray
            Bool of shape (n_songs,): which songs may be used (the second value of
            :meth:`spectrograms`).

        Returns
        -------
        train : numpy.ndarray
            The training songs' indices (int64), sorted.
        test : numpy.ndarray
            The cold-start test songs' indices (int64), sorted.

        Raises
        ------
        ValueError
            When the usable songs (or, with ``split="artists"``, their artists) are too few to
            hold out ``test_fraction`` and keep some for training.

        Examples
        --------
        >>> import musrec
        >>> pipe = musrec.Pipeline("world", "musrec-work", n_factors=32, kinds=("fusion", "ridge"))  # doctest: +SKIP
        >>> spec, usable = pipe.spectrograms()  # doctest: +SKIP
        >>> train_idx, test_idx = pipe.split(usable)  # doctest: +SKIP
        """
        artists = self.dataset().songs.artist_id
        return _musrec.split_songs(
            np.ascontiguousarray(usable, dtype=bool), artists, self.test_fraction, self.split_by, self.random_state
        )

    def _validation(self, train_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (songs to fit on, validation songs or None for FusionModel's own random tenth).

        With ``split="artists"`` the validation songs are whole artists too, so early
        stopping and the ridge penalties are chosen for artists the model has not seen,
        as the test songs are.
        """
        artists = self.dataset().songs.artist_id
        return _musrec.validation_songs(
            np.ascontiguousarray(train_idx, dtype=np.int64), artists, self.split_by, self.random_state
        )

    def train(self, kind: str, spec, meta, targets, train_idx, *, users=None, **overrides: Any) -> FusionModel:
        """Train one model kind on the training songs (cached).

        The model is cached as ``work_dir/models/<kind>-<key>.safetensors``, keyed by the
        data, the WMF and feature settings, ``excerpts``, ``split``, ``test_fraction``, every
        resolved model setting, the seed and the core's training revision, and read back
        when there. Validation: with ``split="songs"`` the model holds out its own random
        tenth of the songs it is given; with ``split="artists"`` a tenth of them as whole
        artists, so early stopping and the ridge penalties are chosen for artists the model
        has not seen, as the test songs are. The linear part's penalties, the stacking weights
        and the epochs trained are logged.

        Parameters
        ----------
        kind : str
            The model kind, one of :data:`musrec.fusion.KINDS`.
        spec : numpy.ndarray
            Every song's log-Mel features (the first value of :meth:`spectrograms`).
        meta : list of dict
            Every song's metadata (:meth:`metadata`).
        targets : numpy.ndarray
            Every song's WMF vector, (n_songs, factors) (``song_vectors().item_factors``).
        train_idx : numpy.ndarray
            The training songs' indices (the first value of :meth:`split`).
        users : musrec.WMF or numpy.ndarray or None, optional
            The fitted WMF (or its user vectors): lets validation rank the songs (see the
            model's ``stop_metric``), and gives ``objective="wpe"`` its metric with the songs'
            plays.
        **overrides : Any
            :class:`musrec.FusionModel` settings that replace the pipeline's ``model`` ones
            (e.g. ``learning_rate=0.01``).

        Returns
        -------
        musrec.FusionModel
            The fitted model.

        Raises
        ------
        ValueError
            For an unknown kind or an invalid setting, or when training diverged (try a
            smaller ``learning_rate``).
        TypeError
            For an unknown setting in ``overrides``.

        See Also
        --------
        musrec.FusionModel.fit : The training itself.

        Notes
        -----
        The cache key does not include ``spec``, ``meta``, ``targets`` or ``train_idx``: it
        assumes they are this pipeline's own (as :meth:`run` passes them).

        Examples
        --------
        >>> import musrec
        >>> pipe = musrec.Pipeline("world", "musrec-work", n_factors=32, kinds=("fusion", "ridge"))  # doctest: +SKIP
        >>> wmf = pipe.song_vectors()  # doctest: +SKIP
        >>> spec, usable = pipe.spectrograms()  # doctest: +SKIP
        >>> train_idx, test_idx = pipe.split(usable)  # doctest: +SKIP
        >>> model = pipe.train(  # doctest: +SKIP
        ...     "fusion", spec, pipe.metadata(), wmf.item_factors, train_idx, users=wmf, learning_rate=0.01
        ... )
        """
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
        """Run every stage; cached stages are read back. Returns Table 1 and Figures 2 and 3.

        Each of ``kinds`` is trained and predicts the test songs' vectors. Table 1 compares
        them with the test songs' WMF vectors (MSE, RMSE, MAE, MSLE), with a "training mean"
        row (every test song given the training songs' mean vector). Figure 2 ranks the test
        songs for every user who played one, at each of ``N``, by each model's vectors and by
        three references: "popularity" (the popularity of the song's artist among the
        training songs; ties, such as songs of new or unknown artists, broken at random,
        seeded), "WMF oracle" (the test songs' true vectors: the ceiling) and "random". Figure
        3 trains the fusion model at each of ``learning_rates``; a learning rate at which
        training diverges is logged and left out (that is one of the study's findings).

        Returns
        -------
        musrec.report.PipelineResult
            Table 1, Figures 2 and 3, each kind's training history, and a summary: users,
            songs, plays, songs without usable audio, without tags and with unknown year,
            the split, training and test songs, test users (who played a test song) and
            every stage's seconds, cache use and peak memory.

        Raises
        ------
        FileNotFoundError
            When a required file of the dataset is missing.
        musrec.FormatError
            When a SQLite file of the dataset is corrupt.
        ValueError
            For a dataset or settings a stage cannot work with (see the stages).

        See Also
        --------
        musrec.reproduce : Runs a preset's Pipeline and writes the result.

        Examples
        --------
        >>> import musrec
        >>> pipe = musrec.Pipeline("world", "musrec-work", n_factors=32, kinds=("fusion", "ridge"))  # doctest: +SKIP
        >>> result = pipe.run()  # doctest: +SKIP
        >>> print(result.figure2_markdown(10))  # doctest: +SKIP
        """
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
        """Build a Recommender over every song of the dataset, predicting new songs with ``kind``.

        The :class:`musrec.Recommender` ranks the dataset's songs by their WMF vectors and
        predicts new songs' vectors with the ``kind`` model trained by this pipeline; it knows
        the user and song ids, the plays (to leave out what a user played), the feature
        settings and ``excerpts``. The stages it needs run first (cached ones are read back).

        Parameters
        ----------
        kind : str, default "fusion"
            The content model kind, one of :data:`musrec.fusion.KINDS`.

        Returns
        -------
        musrec.Recommender
            The recommender.

        Raises
        ------
        ValueError
            For an unknown ``kind``.

        See Also
        --------
        export_bundle : Writes the same as a model bundle.

        Examples
        --------
        >>> import musrec
        >>> pipe = musrec.Pipeline("world", "musrec-work", n_factors=32, kinds=("fusion", "ridge"))  # doctest: +SKIP
        >>> rec = pipe.recommender("fusion")  # doctest: +SKIP
        >>> ids, scores = rec.recommend(rec.user_ids[0], N=10)  # doctest: +SKIP
        """
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
        """Write the trained stages as a model bundle directory for the edge service.

        The bundle holds the WMF vectors of every user and song, the play counts, the ids,
        the ``kind`` content model and the feature settings (see
        :meth:`musrec.Recommender.export_bundle`). The stages it needs run first (cached ones
        are read back).

        Parameters
        ----------
        path : str or os.PathLike
            The bundle directory; it must not exist (the bundle is written to a temporary
            directory, fsynced and renamed, so it appears whole or not at all).
        kind : str, default "fusion"
            The content model kind, one of :data:`musrec.fusion.KINDS`.
        encoding : {"f32", "f16", "int8"}, default "f32"
            How the song vectors are stored (``"int8"`` with per-row scales; rescored in f32
            on load).
        model_version : str or None, optional
            The model's version (1-128 printable characters); None: a digest of the bundle's
            files.
        edge_offsets : dict of str to int or None, optional
            For each edge, the last event sequence number the model has consumed.

        Returns
        -------
        dict
            The manifest: ``model_version``, ``n_users``, ``n_songs``, ``factors``,
            ``song_encoding``, the compact encoding's measured ``song_encoding_top10_overlap``
            with f32, ``edge_offsets``, ``files`` and more.

        Raises
        ------
        ValueError
            For an unknown ``kind`` or ``encoding``, an invalid ``model_version``, or when
            ``path`` already exists.

        See Also
        --------
        musrec.edge.serve : Serves a bundle over HTTP.

        Examples
        --------
        >>> import musrec
        >>> pipe = musrec.Pipeline("world", "musrec-work", n_factors=32, kinds=("fusion", "ridge"))  # doctest: +SKIP
        >>> manifest = pipe.export_bundle("bundle", "fusion", encoding="int8")  # doctest: +SKIP
        >>> version = manifest["model_version"]  # doctest: +SKIP
        """
        return self.recommender(kind).export_bundle(
            path, encoding=encoding, model_version=model_version, edge_offsets=edge_offsets
        )
