"""Audio front end: audio files to log-Mel spectrograms, matching librosa.

``load`` decodes WAV, MP3, FLAC and Ogg Vorbis (pure Rust, no system codecs) to mono float32
and resamples with a band-limited (windowed-sinc) filter. ``melspectrogram``,
``power_to_db`` and ``mel_filters`` take librosa's parameters and defaults and agree with
librosa 0.11 to float32 precision (tests compare against reference arrays made by
``tests/fixtures/make_librosa_fixtures.py``). ``extract`` turns many files into one
(files, n_mels, frames) array in parallel with the GIL released, reporting the files that
failed instead of stopping.

Defaults follow librosa: Slaney Mel scale and area normalisation, periodic windows,
zero (``"constant"``) padding for ``center=True``, ``power_to_db(ref=1.0, amin=1e-10,
top_db=80.0)``. torchaudio's defaults differ (HTK scale, no norm, reflect padding, no
top_db); pass ``htk=True, norm=None, pad_mode="reflect"`` for those.
"""

from __future__ import annotations

import json
import os
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
]


def _stft(
    n_fft: int, hop_length: int | None, win_length: int | None, window: str, center: bool, pad_mode: str, power: float
) -> dict:
    if window not in ("hann", "hamming"):
        raise ValueError(f"window must be 'hann' or 'hamming', got {window!r}")
    if pad_mode not in ("constant", "reflect"):
        raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
    return {
        "n_fft": int(n_fft),
        "hop_length": int(hop_length if hop_length is not None else n_fft // 4),
        "win_length": int(win_length if win_length is not None else n_fft),
        "window": window,
        "center": bool(center),
        "pad_mode": pad_mode,
        "power": float(power),
    }


def _mel(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, htk: bool, norm: str | None) -> dict:
    if norm not in ("slaney", None):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    return {
        "sample_rate": int(sr),
        "n_fft": int(n_fft),
        "n_mels": int(n_mels),
        "fmin": float(fmin),
        "fmax": None if fmax is None else float(fmax),
        "scale": "htk" if htk else "slaney",
        "norm": "slaney" if norm == "slaney" else "none",
    }


def _signal(y: Any) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D (mono) signal, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        raise TypeError(f"y must hold floating-point samples, got dtype {y.dtype}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinite samples")
    return y


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
    return _musrec.stft_power(
        _signal(y), json.dumps(_stft(n_fft, hop_length, win_length, window, center, pad_mode, power))
    )


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
    return _plan(json.dumps(stft), json.dumps(mel), json.dumps({"kind": "none"})).compute(_signal(y))


@lru_cache(maxsize=32)
def _plan(stft_json: str, mel_json: str, log_json: str) -> _musrec.LogMelPlan:
    """FFT plan and filterbank, built once per configuration (librosa rebuilds them per call)."""
    return _musrec.LogMelPlan(stft_json, mel_json, log_json)


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
    return _musrec.db(S, json.dumps(_reference(ref)), float(amin), None if top_db is None else float(top_db))


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
    weights, _empty = _musrec.mel_filters(json.dumps(_mel(sr, n_fft, n_mels, fmin, fmax, htk, norm)))
    return weights


@dataclass
class FeatureConfig:
    """Everything that defines a clip's log-Mel feature.

    ``FeatureConfig.paper()`` is the paper's front end — 8 kHz, a random 3 s excerpt,
    1024-sample Hamming window, hop 512, 128 Slaney Mel bands, log energy in dB (ref 1,
    amin 1e-10, top_db 80); ``FeatureConfig.common()`` is the same at 22,050 Hz. Keyword
    overrides apply to any field, e.g. ``FeatureConfig.paper(n_mels=64, clip_seconds=5)``;
    ``position`` is ``"random"`` (with ``seed``), ``"centre"`` or an offset in seconds.
    """

    values: dict = field(default_factory=dict)

    @classmethod
    def _preset(cls, name: str, **overrides: Any) -> FeatureConfig:
        cfg = cls(json.loads(_musrec.feature_preset(name)))
        return cfg.replace(**overrides) if overrides else cfg

    @classmethod
    def paper(cls, **overrides: Any) -> FeatureConfig:
        return cls._preset("paper", **overrides)

    @classmethod
    def common(cls, **overrides: Any) -> FeatureConfig:
        return cls._preset("common", **overrides)

    def replace(self, **overrides: Any) -> FeatureConfig:
        v = json.loads(json.dumps(self.values))
        stft_keys = {"n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "power"}
        seed = overrides.pop("seed", None)
        for key, value in overrides.items():
            if key in stft_keys:
                v["stft"][key] = value
            elif key == "position":
                if value == "random":
                    v["position"] = {"kind": "random", "seed": v["position"].get("seed", 0)}
                elif value in ("centre", "center"):
                    v["position"] = {"kind": "centre"}
                elif isinstance(value, (int, float)):
                    v["position"] = {"kind": "offset", "seconds": float(value)}
                else:
                    raise ValueError(f"position must be 'random', 'centre' or seconds, got {value!r}")
            elif key == "htk":
                v["mel_scale"] = "htk" if value else "slaney"
            elif key == "norm":
                v["mel_norm"] = "slaney" if value == "slaney" else "none"
            elif key in v:
                v[key] = value
            else:
                raise TypeError(f"unknown feature setting {key!r}")
        if seed is not None:
            if v["position"]["kind"] != "random":
                raise ValueError("seed only applies to position='random'")
            v["position"]["seed"] = int(seed)
        cfg = FeatureConfig(v)
        _ = cfg.shape  # the core validates every field here
        return cfg

    def to_json(self) -> str:
        return json.dumps(self.values)

    @property
    def shape(self) -> tuple[int, int]:
        """(n_mels, frames) of one clip's features."""
        _, n_mels, frames = _musrec.feature_shape(self.to_json())
        return n_mels, frames


def log_mel(y: Any, config: FeatureConfig | None = None, num_threads: int = 0) -> np.ndarray:
    """Features of a signal already at ``config``'s sample rate (no clipping): (n_mels, frames)
    for a 1-D signal, (clips, n_mels, frames) for a 2-D batch of equal-length signals, which
    are transformed in parallel on ``num_threads`` threads (0 = one per core)."""
    v = (config or FeatureConfig.paper()).values
    mel = {
        "sample_rate": v["sample_rate"],
        "n_fft": v["stft"]["n_fft"],
        "n_mels": v["n_mels"],
        "fmin": v["fmin"],
        "fmax": v["fmax"],
        "scale": v["mel_scale"],
        "norm": v["mel_norm"],
    }
    plan = _plan(json.dumps(v["stft"]), json.dumps(mel), json.dumps(v["log"]))
    y = np.asarray(y)
    if y.ndim == 2:
        batch = np.ascontiguousarray(y, dtype=np.float32)
        if not np.isfinite(batch).all():
            raise ValueError("y contains NaN or infinite samples")
        return plan.compute_batch(batch, num_threads=num_threads)
    return plan.compute(_signal(y))


@dataclass
class ExtractResult:
    """Features of a batch of files; row i belongs to the i-th path."""

    #: (files, n_mels, frames) float32; rows of failed files are zero.
    features: np.ndarray
    #: per file: features were extracted.
    ok: np.ndarray
    #: per file: shorter than the clip, zero-padded.
    padded: np.ndarray
    #: per file: the stream ended early; the decodable part was used.
    truncated: np.ndarray
    #: one dict per failed file: index, path, reason (missing, unreadable, corrupt, silent, too_short), message.
    failures: list


def extract(
    paths: Any,
    config: FeatureConfig | None = None,
    num_threads: int = 0,
    show_progress: bool = True,
    callback: Callable[[int, int, Any], None] | None = None,
) -> ExtractResult:
    """Decode, clip, resample and transform many files in parallel (GIL released).

    A file that cannot be used never stops the batch: it is listed in ``failures`` with
    the reason, and its row is zero. Ctrl-C stops after the current chunk of files and
    raises KeyboardInterrupt.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError("paths must be a list of paths, not a single path")
    paths = [os.fspath(p) for p in paths]
    config = config or FeatureConfig.paper()
    bar = _progress.bar(len(paths), "log-Mel", show_progress)
    try:
        features, ok, padded, truncated, failures, raised = _musrec.audio_extract(
            paths, config.to_json(), num_threads=num_threads, callback=_progress.callback(bar, callback)
        )
    finally:
        bar.close()
    if raised is not None:
        raise raised
    return ExtractResult(features, np.array(ok, bool), np.array(padded, bool), np.array(truncated, bool), failures)
