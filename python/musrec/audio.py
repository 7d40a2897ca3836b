"""Audio front end: audio files to log-Mel spectrograms, matching librosa.

``load`` decodes WAV, MP3, FLAC and Ogg Vorbis (pure Rust, no system codecs) to mono float32
and resamples with a band-limited (windowed-sinc) filter. ``melspectrogram``,
``power_to_db`` and ``mel_filters`` take librosa's parameters and defaults and agree with
librosa 0.11 to float32 precision (tests compare against reference arrays made by
``tests/fixtures/make_librosa_fixtures.py``). ``extract`` turns many files into one
(files, n_mels, frames) array in parallel with the GIL released, reporting the files that
failed instead of stopping; ``FeatureCache`` keeps those features on disk so a second pass
only reads them back, for directories of any size.

Defaults follow librosa: Slaney Mel scale and area normalisation, periodic windows,
zero (``"constant"``) padding for ``center=True``, ``power_to_db(ref=1.0, amin=1e-10,
top_db=80.0)``. torchaudio's defaults differ (HTK scale, no norm, reflect padding, no
top_db); pass ``htk=True, norm=None, pad_mode="reflect"`` for those.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from . import _musrec, _progress

__all__ = [
    "FeatureConfig",
    "ExtractResult",
    "load",
    "melspectrogram",
    "power_to_db",
    "mel_filters",
    "stft_power",
    "log_mel",
    "extract",
    "FeatureCache",
    "CachedFeatures",
]


def _stft(
    n_fft: int, hop_length: int | None, win_length: int | None, window: str, center: bool, pad_mode: str, power: float
) -> dict:
    # The core's StftConfig checks every value (types included); only the defaults are filled here.
    return {
        "n_fft": n_fft,
        "hop_length": hop_length if hop_length is not None else n_fft // 4,
        "win_length": win_length if win_length is not None else n_fft,
        "window": window,
        "center": center,
        "pad_mode": pad_mode,
        "power": power,
    }


def _mel(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, htk: bool, norm: str | None) -> dict:
    if norm not in ("slaney", None):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    return {
        "sample_rate": sr,
        "n_fft": n_fft,
        "n_mels": n_mels,
        "fmin": fmin,
        "fmax": fmax,
        "scale": "htk" if htk else "slaney",
        "norm": "slaney" if norm == "slaney" else "none",
    }


def _signal(y: Any) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D (mono) signal, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        raise TypeError(f"y must hold floating-point samples, got dtype {y.dtype}")
    # NaN and infinities are rejected by the core, which scans the samples anyway.
    return np.ascontiguousarray(y, dtype=np.float32)


def load(
    path: str | os.PathLike,
    sr: int | None = 22050,
    mono: bool = True,
    offset: float | None = None,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode an audio file to mono float32, like ``librosa.load``; returns ``(y, sr)``.

    ``sr=None`` keeps the file's native rate. ``offset`` and ``duration`` (seconds) select
    a span without decoding the rest where the format allows seeking.
    """
    if not mono:
        raise ValueError("musrec.audio.load returns mono audio only (mono=True)")
    y, rate, _ = _musrec.audio_load(os.fspath(path), sr, float(offset or 0.0), duration)
    return y, rate


def stft_power(
    y: Any,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
) -> np.ndarray:
    """``np.abs(librosa.stft(y, ...)) ** power``: (1 + n_fft // 2, frames) float32."""
    return _musrec.stft_power(_signal(y), _stft(n_fft, hop_length, win_length, window, center, pad_mode, power))


def melspectrogram(
    y: Any,
    sr: int = 22050,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """Mel power spectrogram (n_mels, frames), as ``librosa.feature.melspectrogram``."""
    stft = _stft(n_fft, hop_length, win_length, window, center, pad_mode, power)
    mel = _mel(sr, n_fft, n_mels, fmin, fmax, htk, norm)
    return _plan(tuple(stft.items()), tuple(mel.items())).compute(_signal(y))


@lru_cache(maxsize=32)
def _plan(stft: tuple, mel: tuple) -> _musrec.LogMelPlan:
    """FFT plan and filterbank, built once per configuration (librosa rebuilds them per call)."""
    return _musrec.LogMelPlan(dict(stft), dict(mel), {"kind": "none"})


def _reference(ref: Any) -> dict:
    if ref is np.max or ref == "max":
        return {"kind": "max"}
    if callable(ref):
        raise ValueError("ref must be a number, np.max or 'max'")
    return {"kind": "value", "value": float(ref)}


def power_to_db(S: Any, ref: Any = 1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    """``librosa.power_to_db``: 10 log10(max(amin, S) / ref), floored at max - top_db.

    ``ref`` is a number or ``np.max``. Returns a new float32 array of S's shape.
    """
    if amin <= 0:
        raise ValueError(f"amin must be positive, got {amin}")
    if top_db is not None and top_db < 0:
        raise ValueError(f"top_db must be non-negative, got {top_db}")
    S = np.ascontiguousarray(S, dtype=np.float32)
    return _musrec.db(S, _reference(ref), float(amin), None if top_db is None else float(top_db))


def mel_filters(
    sr: int,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """``librosa.filters.mel``: (n_mels, 1 + n_fft // 2) float32 weights."""
    weights, _empty = _musrec.mel_filters(_mel(sr, n_fft, n_mels, fmin, fmax, htk, norm))
    return weights


FeatureConfig = _musrec.FeatureConfig
FeatureConfig.__module__ = __name__


def log_mel(y: Any, config: FeatureConfig | None = None, num_threads: int = 0) -> np.ndarray:
    """Features of a signal already at ``config``'s sample rate (no clipping): (n_mels, frames)
    for a 1-D signal, (clips, n_mels, frames) for a 2-D batch of equal-length signals, which
    are transformed in parallel on ``num_threads`` threads (0 = one per core)."""
    plan = _config_plan(config if config is not None else FeatureConfig.paper())
    y = np.asarray(y)
    if y.ndim == 2:
        if not np.issubdtype(y.dtype, np.floating):
            raise TypeError(f"y must hold floating-point samples, got dtype {y.dtype}")
        return plan.compute_batch(np.ascontiguousarray(y, dtype=np.float32), num_threads=num_threads)
    return plan.compute(_signal(y))


@lru_cache(maxsize=32)
def _config_plan(config: FeatureConfig) -> _musrec.LogMelPlan:
    """The transform of a configuration, planned once: repeated calls pay only a dict lookup."""
    return _musrec.LogMelPlan.from_config(config)


@dataclass
class ExtractResult:
    """Features of a batch of files; row i belongs to the i-th path."""

    #: (files, n_mels, frames) float32, or (files, excerpts, n_mels, frames); rows of failed files are zero.
    features: np.ndarray
    #: per file: features were extracted.
    ok: np.ndarray
    #: per file: shorter than the clip, zero-padded.
    padded: np.ndarray
    #: per file: the stream ended early; the decodable part was used.
    truncated: np.ndarray
    #: one dict per failed file: index, path, reason (missing, unreadable, corrupt, silent, too_short), message.
    failures: list
    #: per file: read from the on-disk cache (``cache_dir``) instead of extracted.
    cached: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def _path_list(paths: Any) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError("paths must be a list of paths, not a single path")
    return [os.fspath(p) for p in paths]


def extract(
    paths: Any,
    config: FeatureConfig | None = None,
    num_threads: int = 0,
    show_progress: bool = True,
    callback: Callable[[int, int, Any], None] | None = None,
    cache_dir: str | os.PathLike | None = None,
    excerpts: int = 1,
) -> ExtractResult:
    """Decode, clip, resample and transform many files in parallel (GIL released).

    With ``excerpts`` > 1, each file gives that many excerpts spread evenly from its start
    to its end (:meth:`FeatureConfig.excerpts`; ``config``'s position is then not used) and
    ``features`` is (files, excerpts, n_mels, frames); a file fails if any excerpt does.

    A file that cannot be used never stops the batch: it is listed in ``failures`` with
    the reason, and its row is zero. Only the excerpt's span of each file is decoded when
    the file's header states its length (WAV, FLAC, Ogg, MP3 with a Xing/LAME header).
    With ``cache_dir``, features are kept in a :class:`FeatureCache` there: files already
    extracted with this configuration (same path, size and modification time) are read
    back instead (``result.cached``). For more files than fit in memory, use
    :class:`FeatureCache` directly. Ctrl-C stops after the current chunk of files and raises
    KeyboardInterrupt (with a cache, the finished chunks are kept).
    """
    paths = _path_list(paths)
    config = config or FeatureConfig.paper()
    if isinstance(excerpts, bool) or not isinstance(excerpts, (int, np.integer)) or excerpts < 1:
        raise ValueError(f"excerpts must be a positive integer, got {excerpts!r}")
    if excerpts > 1:
        parts = [
            extract(paths, c, num_threads, show_progress, callback, cache_dir) for c in config.excerpts(int(excerpts))
        ]
        failures = {f["index"]: f for part in reversed(parts) for f in part.failures}  # the first excerpt's wins
        return ExtractResult(
            np.stack([p.features for p in parts], axis=1),
            np.logical_and.reduce([p.ok for p in parts]),
            np.logical_or.reduce([p.padded for p in parts]),
            np.logical_or.reduce([p.truncated for p in parts]),
            [failures[i] for i in sorted(failures)],
            np.logical_and.reduce([p.cached for p in parts]),
        )
    if cache_dir is not None:
        cached = FeatureCache(cache_dir, config).extract(
            paths, num_threads=num_threads, show_progress=show_progress, callback=callback
        )
        return ExtractResult(
            cached.to_array(), cached.ok, cached.padded, cached.truncated, cached.failures, cached.cached
        )
    bar = _progress.bar(len(paths), "log-Mel", show_progress)
    try:
        features, ok, padded, truncated, failures = _musrec.audio_extract(
            paths, config, num_threads=num_threads, callback=_progress.callback(bar, callback)
        )
    finally:
        bar.close()
    return ExtractResult(
        features,
        np.array(ok, bool),
        np.array(padded, bool),
        np.array(truncated, bool),
        failures,
        np.zeros(len(paths), bool),
    )


class FeatureCache:
    """Log-Mel features of audio files kept on disk, so a second pass over the same files
    only reads them back, and a directory of any size streams through bounded memory.

    ``FeatureCache(directory, config)`` uses ``directory/<fingerprint of config>/``:
    ``config.json`` and safetensors shards of up to 64 clips (tensor ``features``, metadata
    ``entries`` naming each row's file). A file is found again when its canonical path, size
    and modification time match (a random excerpt is seeded by the file's name, so it does not
    depend on where the files live); otherwise it is extracted and a new shard written, atomically under a
    unique name, so several processes can fill one cache at once. Failed files are not
    stored. Shards found damaged on opening are deleted (listed in ``removed``) and their
    files extracted again. One ``extract`` at a time per object: a second call from another
    thread, or ``len(cache)`` from the progress callback, raises RuntimeError (open one
    FeatureCache per thread; they can share the directory).
    """

    def __init__(self, directory: str | os.PathLike, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig.paper()
        self._inner = _musrec.FeatureCache(os.fspath(directory), self.config)

    @property
    def path(self) -> str:
        """This configuration's directory, ``directory/<fingerprint>``."""
        return os.fspath(self._inner.path)

    @property
    def removed(self) -> list[tuple[str, str]]:
        """Damaged shards deleted on opening, as (path, reason)."""
        return [(os.fspath(p), why) for p, why in self._inner.removed]

    def __len__(self) -> int:
        """Files with cached features."""
        return len(self._inner)

    def extract(
        self,
        paths: Any,
        num_threads: int = 0,
        show_progress: bool = True,
        callback: Callable[[int, int, Any], None] | None = None,
    ) -> CachedFeatures:
        """Features of ``paths``: cached files are found, the others extracted (as
        :func:`extract`) 64 at a time, each chunk written to the cache before the next, so
        memory does not grow with the number of files. Returns a :class:`CachedFeatures`
        that reads rows on demand."""
        paths = _path_list(paths)
        bar = _progress.bar(len(paths), "log-Mel (cached)", show_progress)
        try:
            inner, failures = self._inner.extract(
                paths, num_threads=num_threads, callback=_progress.callback(bar, callback)
            )
        finally:
            bar.close()
        return CachedFeatures(inner, failures)


class CachedFeatures:
    """The features of a batch, read from the cache's shards when asked for.

    ``features[i]`` is file i's (n_mels, frames) array; ``features[a:b]``, ``features[[i, j]]``
    or a boolean mask give a (k, n_mels, frames) stack; ``iter_batches(n)`` walks the batch
    ``n`` files at a time; ``to_array()`` reads everything at once. Rows of failed files are
    zeros. ``ok``, ``padded``, ``truncated`` and ``failures`` are as in :class:`ExtractResult`;
    ``cached`` marks the files read back rather than extracted, ``extracted`` counts the
    others.
    """

    def __init__(self, inner: Any, failures: list) -> None:
        self._inner = inner
        ok, padded, truncated, cached = inner.flags()
        self.ok = np.array(ok, bool)
        self.padded = np.array(padded, bool)
        self.truncated = np.array(truncated, bool)
        self.cached = np.array(cached, bool)
        self.failures = failures
        self.extracted: int = inner.extracted

    @property
    def shape(self) -> tuple[int, int, int]:
        """(files, n_mels, frames)."""
        return (len(self), *self._inner.shape)

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, key: Any) -> np.ndarray:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of range for {n} files")
            return self._inner.read([i])[0]
        if isinstance(key, slice):
            return self._inner.read(list(range(*key.indices(n))))
        index = np.asarray(key)
        if index.dtype == bool:
            if index.shape != (n,):
                raise IndexError(f"a boolean mask must have shape ({n},), got {index.shape}")
            index = np.flatnonzero(index)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise IndexError("index with an int, a slice, a 1-D array of ints or a boolean mask")
        index = np.where(index < 0, index + n, index)
        if index.size and not (0 <= index.min() and index.max() < n):
            raise IndexError(f"an index is out of range for {n} files")
        return self._inner.read(index.tolist())

    def iter_batches(self, batch_size: int = 256) -> Iterator[tuple[int, np.ndarray]]:
        """(first index, features) for consecutive batches of ``batch_size`` files."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield start, self[start : start + batch_size]

    def to_array(self) -> np.ndarray:
        """All the features, (files, n_mels, frames) float32."""
        return self[:]
