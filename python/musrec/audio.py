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
    """Decode an audio file to mono float32, like ``librosa.load``.

    The format (WAV, MP3, FLAC or Ogg Vorbis) is detected from the file's content and decoded
    in pure Rust, without system codecs; the channels are averaged to mono and the result is
    resampled with a band-limited (windowed-sinc) filter.

    Parameters
    ----------
    path : str or os.PathLike
        The audio file.
    sr : int or None, default 22050
        Sample rate to resample to, in Hz. ``None`` keeps the file's native rate.
    mono : bool, default True
        Must be True: the function returns mono audio only.
    offset : float or None, optional
        Start of the span to read, in seconds (None: the start of the file).
    duration : float or None, optional
        Length of the span to read, in seconds (None: to the end of the file). ``offset`` and
        ``duration`` select a span without decoding the rest where the format allows seeking.

    Returns
    -------
    y : numpy.ndarray of shape (n_samples,)
        The mono samples, float32.
    sr : int
        Their sample rate: ``sr``, or the file's native rate when ``sr`` is None.

    Raises
    ------
    ValueError
        If ``mono`` is False, ``sr`` is 0, ``offset`` is negative or not finite or lies at or
        beyond the end of the audio, or ``duration`` is not a positive finite number.
    FileNotFoundError
        If ``path`` does not exist.
    musrec.FormatError
        If the file is not a recognised audio file (or is a directory), has no audio track or
        an unsupported codec, or holds no decodable audio.

    See Also
    --------
    melspectrogram : Mel power spectrogram of the decoded signal.
    extract : Features of many files at once.

    Notes
    -----
    Corrupt packets are skipped (up to a bound); a stream that ends early after some audio
    gives what could be decoded.

    Examples
    --------
    >>> from musrec import audio
    >>> y, sr = audio.load("song.mp3")  # doctest: +SKIP
    >>> y, sr = audio.load("song.mp3", sr=8000, offset=10.0, duration=3.0)  # doctest: +SKIP
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
    """Compute the power spectrogram ``np.abs(librosa.stft(y, ...)) ** power``.

    The parameters and defaults are librosa's, and the result agrees with librosa 0.11 to
    float32 precision.

    Parameters
    ----------
    y : array_like of shape (n_samples,)
        The mono signal, of floating-point samples (converted to float32).
    n_fft : int, default 2048
        Length of the FFT, at least 2.
    hop_length : int or None, optional
        Samples between successive frames (None: ``n_fft // 4``).
    win_length : int or None, optional
        Length of the window, between 1 and ``n_fft`` (None: ``n_fft``); a shorter window is
        zero-padded to ``n_fft``, centred.
    window : {"hann", "hamming"}, default "hann"
        The window function (periodic, as librosa's).
    center : bool, default True
        Pad the signal by ``n_fft // 2`` on both sides so that frame ``t`` is centred on
        sample ``t * hop_length``.
    pad_mode : {"constant", "reflect"}, default "constant"
        The padding of ``center=True``: zeros, or numpy's ``reflect``.
    power : {2.0, 1.0}, default 2.0
        Exponent of the magnitude: 2.0 for power, 1.0 for magnitude.

    Returns
    -------
    numpy.ndarray of shape (1 + n_fft // 2, n_frames)
        The spectrogram, float32.

    Raises
    ------
    ValueError
        If ``y`` is not 1-D or holds NaN or infinities, a setting is out of range or unknown,
        or the signal is shorter than ``n_fft`` with ``center=False``.
    TypeError
        If ``y`` does not hold floating-point samples, or a setting has the wrong type.

    See Also
    --------
    melspectrogram : The same spectrogram on the Mel scale.

    Examples
    --------
    >>> import numpy as np
    >>> from musrec import audio
    >>> y = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050).astype(np.float32)
    >>> audio.stft_power(y).shape
    (1025, 44)
    >>> audio.stft_power(y, n_fft=512, hop_length=256).shape
    (257, 87)
    """
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
    """Compute a Mel power spectrogram, as ``librosa.feature.melspectrogram``.

    The parameters and defaults are librosa's (Slaney Mel scale and area normalisation,
    periodic windows, zero padding for ``center=True``), and the result agrees with librosa
    0.11 to float32 precision. For torchaudio's defaults, pass ``htk=True, norm=None,
    pad_mode="reflect"``. The FFT plan and the filterbank are built once per configuration
    and reused by later calls.

    Parameters
    ----------
    y : array_like of shape (n_samples,)
        The mono signal, of floating-point samples (converted to float32).
    sr : int, default 22050
        Sample rate of ``y``, in Hz.
    n_fft : int, default 2048
        Length of the FFT, at least 2.
    hop_length : int, default 512
        Samples between successive frames.
    win_length : int or None, optional
        Length of the window, between 1 and ``n_fft`` (None: ``n_fft``).
    window : {"hann", "hamming"}, default "hann"
        The window function (periodic, as librosa's).
    center : bool, default True
        Pad the signal by ``n_fft // 2`` on both sides so that frames are centred.
    pad_mode : {"constant", "reflect"}, default "constant"
        The padding of ``center=True``: zeros, or numpy's ``reflect``.
    power : {2.0, 1.0}, default 2.0
        Exponent of the magnitude: 2.0 for power, 1.0 for magnitude.
    n_mels : int, default 128
        Number of Mel bands.
    fmin : float, default 0.0
        Lowest frequency, in Hz.
    fmax : float or None, optional
        Highest frequency, in Hz, at most the Nyquist frequency ``sr / 2`` (None: ``sr / 2``).
    htk : bool, default False
        Use the HTK Mel scale instead of Slaney's.
    norm : {"slaney", None}, default "slaney"
        Slaney's area normalisation of the filters, or None for none.

    Returns
    -------
    numpy.ndarray of shape (n_mels, n_frames)
        The Mel spectrogram, float32.

    Raises
    ------
    ValueError
        If ``y`` is not 1-D or holds NaN or infinities, ``norm`` is neither "slaney" nor None,
        or a setting is out of range or unknown (``fmax`` above ``sr / 2``, ``fmin`` not below
        ``fmax``, ...).
    TypeError
        If ``y`` does not hold floating-point samples, or a setting has the wrong type.

    See Also
    --------
    power_to_db : Convert the result to decibels.
    mel_filters : The filterbank applied to the power spectrogram.
    log_mel : The whole feature of a :class:`FeatureConfig`.

    Examples
    --------
    >>> import numpy as np
    >>> from musrec import audio
    >>> y = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050).astype(np.float32)
    >>> audio.melspectrogram(y, sr=22050).shape
    (128, 44)
    >>> audio.melspectrogram(y, sr=22050, n_mels=64, htk=True, norm=None, pad_mode="reflect").shape
    (64, 44)
    """
    stft = _stft(n_fft, hop_length, win_length, window, center, pad_mode, power)
    mel = _mel(sr, n_fft, n_mels, fmin, fmax, htk, norm)
    return _plan(tuple(stft.items()), tuple(mel.items())).compute(_signal(y))


@lru_cache(maxsize=32)
def _plan(stft: tuple, mel: tuple) -> _musrec.LogMelPlan:
    """Build the FFT plan and filterbank once per configuration (librosa rebuilds them per call)."""
    return _musrec.LogMelPlan(dict(stft), dict(mel), {"kind": "none"})


def _reference(ref: Any) -> dict:
    if ref is np.max or ref == "max":
        return {"kind": "max"}
    if callable(ref):
        raise ValueError("ref must be a number, np.max or 'max'")
    return {"kind": "value", "value": float(ref)}


def power_to_db(S: Any, ref: Any = 1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    """Convert a power spectrogram to decibels, as ``librosa.power_to_db``.

    Computes ``10 log10(max(amin, S) / ref)`` (precisely ``10 log10(max(amin, S)) - 10
    log10(max(amin, |ref|))``), floored at ``max - top_db``, where ``max`` is the largest value
    of the whole array: pass one clip at a time for a per-clip floor.

    Parameters
    ----------
    S : array_like
        Power values, of any shape (converted to float32).
    ref : float or numpy.max or "max", default 1.0
        The reference level: a number, or ``np.max`` (or ``"max"``) for the largest value of
        ``S``, which then reads 0 dB.
    amin : float, default 1e-10
        Floor of ``S`` and of ``ref`` before the logarithm; must be positive.
    top_db : float or None, default 80.0
        Dynamic range kept below the maximum, non-negative (None: no floor).

    Returns
    -------
    numpy.ndarray
        A new float32 array of ``S``'s shape, in dB.

    Raises
    ------
    ValueError
        If ``amin`` is not positive, ``top_db`` is negative, ``ref`` is a callable other than
        ``np.max`` or is not a finite number, or ``S`` holds NaN.

    See Also
    --------
    melspectrogram : The power spectrogram usually converted.

    Examples
    --------
    >>> import numpy as np
    >>> from musrec import audio
    >>> audio.power_to_db(np.array([1.0, 10.0, 100.0]))
    array([ 0., 10., 20.], dtype=float32)
    >>> audio.power_to_db(np.array([1.0, 10.0, 100.0]), ref=np.max).round(2)
    array([-20., -10.,   0.], dtype=float32)
    >>> audio.power_to_db(np.array([1.0, 1e-3, 1e-12]), top_db=60.0)
    array([  0., -30., -60.], dtype=float32)
    >>> audio.power_to_db(np.array([1.0, 1e-12]), top_db=None)
    array([   0., -100.], dtype=float32)
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
    """Compute the Mel filterbank, as ``librosa.filters.mel``.

    The parameters and defaults are librosa's, and the weights agree with librosa 0.11 to
    float32 precision.

    Parameters
    ----------
    sr : int
        Sample rate, in Hz.
    n_fft : int
        Length of the FFT, at least 2.
    n_mels : int, default 128
        Number of Mel bands.
    fmin : float, default 0.0
        Lowest frequency, in Hz.
    fmax : float or None, optional
        Highest frequency, in Hz, at most the Nyquist frequency ``sr / 2`` (None: ``sr / 2``).
    htk : bool, default False
        Use the HTK Mel scale instead of Slaney's.
    norm : {"slaney", None}, default "slaney"
        Slaney's area normalisation of the filters, or None for none.

    Returns
    -------
    numpy.ndarray of shape (n_mels, 1 + n_fft // 2)
        The filter weights, float32.

    Raises
    ------
    ValueError
        If ``norm`` is neither "slaney" nor None, or a setting is out of range (``sr`` not
        positive, ``fmin`` negative or not below ``fmax``, ``fmax`` above ``sr / 2``, ...).

    See Also
    --------
    melspectrogram : Applies these filters to a power spectrogram.

    Examples
    --------
    >>> from musrec import audio
    >>> audio.mel_filters(sr=22050, n_fft=2048).shape
    (128, 1025)
    >>> audio.mel_filters(sr=8000, n_fft=512, n_mels=40).shape
    (40, 257)
    """
    weights, _empty = _musrec.mel_filters(_mel(sr, n_fft, n_mels, fmin, fmax, htk, norm))
    return weights


FeatureConfig = _musrec.FeatureConfig
FeatureConfig.__module__ = __name__


def log_mel(y: Any, config: FeatureConfig | None = None, num_threads: int = 0) -> np.ndarray:
    """Compute the log-Mel features of signals already at ``config``'s sample rate.

    The signal is transformed as it is, without clipping. A 2-D batch of equal-length
    signals is transformed in parallel. The transform of a configuration is planned once and
    reused by later calls.

    Parameters
    ----------
    y : array_like of shape (n_samples,) or (n_clips, n_samples)
        One signal, or a batch of equal-length signals, of floating-point samples (converted
        to float32).
    config : FeatureConfig or None, optional
        The feature configuration (None: ``FeatureConfig.paper()``); its clip settings are
        not used.
    num_threads : int, default 0
        Threads for a 2-D batch (0: one per core).

    Returns
    -------
    numpy.ndarray of shape (n_mels, n_frames) or (n_clips, n_mels, n_frames)
        The features, float32.

    Raises
    ------
    ValueError
        If ``y`` is neither 1-D nor 2-D, or holds NaN or infinities.
    TypeError
        If ``y`` does not hold floating-point samples.

    See Also
    --------
    extract : Decode, clip and transform audio files.

    Examples
    --------
    >>> import numpy as np
    >>> from musrec import audio
    >>> config = audio.FeatureConfig.paper()
    >>> y = np.random.default_rng(0).standard_normal(3 * config.sample_rate).astype(np.float32)
    >>> audio.log_mel(y, config).shape
    (128, 47)
    >>> audio.log_mel(np.stack([y, y, y]), config, num_threads=2).shape
    (3, 128, 47)
    """
    plan = _config_plan(config if config is not None else FeatureConfig.paper())
    y = np.asarray(y)
    if y.ndim == 2:
        if not np.issubdtype(y.dtype, np.floating):
            raise TypeError(f"y must hold floating-point samples, got dtype {y.dtype}")
        return plan.compute_batch(np.ascontiguousarray(y, dtype=np.float32), num_threads=num_threads)
    return plan.compute(_signal(y))


@lru_cache(maxsize=32)
def _config_plan(config: FeatureConfig) -> _musrec.LogMelPlan:
    """Plan the transform of a configuration once: repeated calls pay only a dict lookup."""
    return _musrec.LogMelPlan.from_config(config)


@dataclass
class ExtractResult:
    """Features of a batch of files, as :func:`extract` returns them; row i belongs to the i-th path.

    Attributes
    ----------
    features : numpy.ndarray of shape (n_files, n_mels, n_frames) or (n_files, excerpts, n_mels, n_frames)
        The features, float32; rows of failed files are zero.
    ok : numpy.ndarray of shape (n_files,)
        Per file, bool: features were extracted.
    padded : numpy.ndarray of shape (n_files,)
        Per file, bool: shorter than the clip, zero-padded.
    truncated : numpy.ndarray of shape (n_files,)
        Per file, bool: the stream ended early; the decodable part was used.
    failures : list of dict
        One dict per failed file, with keys ``index``, ``path``, ``reason`` (``"missing"``,
        ``"unreadable"``, ``"corrupt"``, ``"silent"`` or ``"too_short"``) and ``message``.
    cached : numpy.ndarray of shape (n_files,)
        Per file, bool: read from the on-disk cache (``cache_dir``) instead of extracted
        (empty by default).

    See Also
    --------
    extract : Makes these results.
    CachedFeatures : The same for features kept on disk.

    Examples
    --------
    >>> from musrec import audio
    >>> result = audio.extract(["a.wav", "missing.wav"], show_progress=False)  # doctest: +SKIP
    >>> result.features.shape  # doctest: +SKIP
    (2, 128, 47)
    >>> [f["reason"] for f in result.failures]  # doctest: +SKIP
    ['missing']
    """

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

    A file that cannot be used never stops the batch: it is listed in ``failures`` with
    the reason, and its row is zero. Only the excerpt's span of each file is decoded when
    the file's header states its length (WAV, FLAC, Ogg, MP3 with a Xing/LAME header).

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        The audio files (a list of paths, not a single path).
    config : FeatureConfig or None, optional
        The feature configuration (None: ``FeatureConfig.paper()``).
    num_threads : int, default 0
        Threads to decode and transform on (0: one per core).
    show_progress : bool, default True
        Show a progress bar (plain log lines when stderr is not a terminal).
    callback : callable or None, optional
        Called as ``callback(done, total, loss)`` as files complete (``loss`` is None); an
        exception it raises stops the extraction and propagates.
    cache_dir : str or os.PathLike or None, optional
        Keep the features in a :class:`FeatureCache` there: files already extracted with
        this configuration (same path, size and modification time) are read back instead
        (``result.cached``).
    excerpts : int, default 1
        With ``excerpts`` > 1, each file gives that many excerpts spread evenly from its start
        to its end (:meth:`FeatureConfig.excerpts`; ``config``'s position is then not used) and
        ``features`` is (files, excerpts, n_mels, frames); a file fails if any excerpt does.

    Returns
    -------
    ExtractResult
        The features of every file, with per-file flags and the failures.

    Raises
    ------
    TypeError
        If ``paths`` is a single path rather than a list of paths.
    ValueError
        If ``excerpts`` is not a positive integer.
    KeyboardInterrupt
        On Ctrl-C, after the current chunk of files (with a cache, the finished chunks are
        kept).

    See Also
    --------
    FeatureCache : For more files than fit in memory.
    log_mel : Features of signals already in memory.

    Notes
    -----
    With ``excerpts`` > 1 the files are read once per excerpt, each pass with its own
    progress bar; the failure kept for a file is that of its first failing excerpt.

    Examples
    --------
    >>> from musrec import audio
    >>> result = audio.extract(["a.mp3", "b.mp3"])  # doctest: +SKIP
    >>> result.features.shape  # doctest: +SKIP
    (2, 128, 47)
    >>> result = audio.extract(["a.mp3", "b.mp3"], excerpts=3, cache_dir="features")  # doctest: +SKIP
    >>> result.features.shape  # doctest: +SKIP
    (2, 3, 128, 47)
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
    """Log-Mel features of audio files kept on disk.

    A second pass over the same files only reads them back, and a directory of any size
    streams through bounded memory.

    ``FeatureCache(directory, config)`` uses ``directory/<fingerprint of config>/``:
    ``config.json`` and safetensors shards of up to 64 clips (tensor ``features``, metadata
    ``entries`` naming each row's file), in its ``shards/`` folder. A file is found again when
    its canonical path, size and modification time match (a random excerpt is seeded by the
    file's name, so it does not depend on where the files live); otherwise it is extracted
    and a new shard written, atomically under a unique name, so several processes can fill
    one cache at once. Failed files are not stored. Shards found damaged on opening are
    deleted (listed in ``removed``) and their files extracted again.

    Parameters
    ----------
    directory : str or os.PathLike
        The cache's root directory (created if needed); each configuration has its own folder
        in it.
    config : FeatureConfig or None, optional
        The feature configuration (None: ``FeatureConfig.paper()``).

    Attributes
    ----------
    config : FeatureConfig
        The feature configuration.
    path : str
        This configuration's directory, ``directory/<fingerprint>``.
    removed : list of (str, str)
        Damaged shards deleted on opening, as (path, reason).

    Raises
    ------
    musrec.FormatError
        If the configuration's folder holds a different configuration with the same
        fingerprint (use another directory).
    OSError
        If the directory cannot be created or read.

    See Also
    --------
    extract : Extraction in memory, optionally through a cache (``cache_dir``).

    Notes
    -----
    One ``extract`` at a time per object: a second call from another thread, or
    ``len(cache)`` from the progress callback, raises RuntimeError (open one FeatureCache per
    thread; they can share the directory).

    Examples
    --------
    >>> from musrec import audio
    >>> cache = audio.FeatureCache("features", audio.FeatureConfig.paper())  # doctest: +SKIP
    >>> features = cache.extract(["a.mp3", "b.mp3"])  # doctest: +SKIP
    >>> len(cache)  # doctest: +SKIP
    2
    """

    def __init__(self, directory: str | os.PathLike, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig.paper()
        self._inner = _musrec.FeatureCache(os.fspath(directory), self.config)

    @property
    def path(self) -> str:
        """Directory of this configuration, ``directory/<fingerprint>``.

        Returns
        -------
        str
            The path of the configuration's folder.

        Examples
        --------
        >>> from musrec import audio
        >>> audio.FeatureCache("features").path  # doctest: +SKIP
        """
        return os.fspath(self._inner.path)

    @property
    def removed(self) -> list[tuple[str, str]]:
        """Damaged shards deleted on opening, as (path, reason).

        Returns
        -------
        list of (str, str)
            The path of each deleted shard and why it was deleted.

        Examples
        --------
        >>> from musrec import audio
        >>> audio.FeatureCache("features").removed  # doctest: +SKIP
        []
        """
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
        """Get the features of ``paths``, extracting only the files not in the cache.

        Cached files are found, the others extracted (as :func:`extract`) 64 at a time, each
        chunk written to the cache before the next, so memory does not grow with the number
        of files.

        Parameters
        ----------
        paths : sequence of str or os.PathLike
            The audio files (a list of paths, not a single path).
        num_threads : int, default 0
            Threads to decode and transform on (0: one per core).
        show_progress : bool, default True
            Show a progress bar (plain log lines when stderr is not a terminal).
        callback : callable or None, optional
            Called as ``callback(done, total, loss)`` as files complete (``loss`` is None);
            an exception it raises stops the extraction and propagates.

        Returns
        -------
        CachedFeatures
            The features of ``paths``, whose rows are read from the cache on demand.

        Raises
        ------
        TypeError
            If ``paths`` is a single path rather than a list of paths.
        RuntimeError
            If another ``extract`` call on this object is running (from another thread or
            from the progress callback).
        KeyboardInterrupt
            On Ctrl-C, after the current chunk of files; the finished chunks stay in the
            cache.

        Examples
        --------
        >>> from musrec import audio
        >>> cache = audio.FeatureCache("features")  # doctest: +SKIP
        >>> features = cache.extract(["a.mp3", "b.mp3"], show_progress=False)  # doctest: +SKIP
        >>> features.shape  # doctest: +SKIP
        (2, 128, 47)
        """
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

    Returned by :meth:`FeatureCache.extract`. ``features[i]`` is file i's (n_mels, frames)
    array (negative indices count from the end); ``features[a:b]``, ``features[[i, j]]`` or a
    boolean mask give a (k, n_mels, frames) stack; ``iter_batches(n)`` walks the batch ``n``
    files at a time; ``to_array()`` reads everything at once. Rows of failed files are zeros.

    Parameters
    ----------
    inner : object
        The core's batch, as ``musrec._musrec.FeatureCache.extract`` returns it.
    failures : list of dict
        One dict per failed file, as in :class:`ExtractResult`.

    Attributes
    ----------
    ok : numpy.ndarray of shape (n_files,)
        Per file, bool: features were extracted or read back (as in :class:`ExtractResult`).
    padded : numpy.ndarray of shape (n_files,)
        Per file, bool: shorter than the clip, zero-padded.
    truncated : numpy.ndarray of shape (n_files,)
        Per file, bool: the stream ended early; the decodable part was used.
    cached : numpy.ndarray of shape (n_files,)
        Per file, bool: read back from the cache rather than extracted.
    failures : list of dict
        One dict per failed file: ``index``, ``path``, ``reason`` and ``message``.
    extracted : int
        The number of files not read back from the cache.
    shape : tuple of int
        (files, n_mels, frames).

    Raises
    ------
    IndexError
        When indexed out of range, with a boolean mask of the wrong shape, or with anything
        but an int, a slice, a 1-D array of ints or a boolean mask.

    See Also
    --------
    FeatureCache.extract : Makes these batches.

    Examples
    --------
    >>> from musrec import audio
    >>> features = audio.FeatureCache("features").extract(["a.mp3", "b.mp3", "c.mp3"])  # doctest: +SKIP
    >>> features[0].shape  # doctest: +SKIP
    (128, 47)
    >>> features[1:].shape  # doctest: +SKIP
    (2, 128, 47)
    >>> features[features.ok].shape[1:]  # doctest: +SKIP
    (128, 47)
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
        """Shape of the whole batch, (files, n_mels, frames).

        Returns
        -------
        tuple of int
            The number of files, of Mel bands and of frames.

        Examples
        --------
        >>> from musrec import audio
        >>> audio.FeatureCache("features").extract(["a.mp3", "b.mp3"]).shape  # doctest: +SKIP
        (2, 128, 47)
        """
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
        """Walk the batch ``batch_size`` files at a time.

        Parameters
        ----------
        batch_size : int, default 256
            Files per batch, at least 1 (the last batch may be smaller).

        Yields
        ------
        start : int
            Index of the batch's first file.
        features : numpy.ndarray of shape (k, n_mels, n_frames)
            The features of files ``start`` to ``start + k - 1``, float32.

        Raises
        ------
        ValueError
            If ``batch_size`` is less than 1 (when the iteration starts).

        Examples
        --------
        >>> from musrec import audio
        >>> features = audio.FeatureCache("features").extract(["a.mp3", "b.mp3", "c.mp3"])  # doctest: +SKIP
        >>> [(start, batch.shape) for start, batch in features.iter_batches(2)]  # doctest: +SKIP
        [(0, (2, 128, 47)), (2, (1, 128, 47))]
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield start, self[start : start + batch_size]

    def to_array(self) -> np.ndarray:
        """Read all the features at once.

        Returns
        -------
        numpy.ndarray of shape (n_files, n_mels, n_frames)
            Every file's features, float32; rows of failed files are zeros.

        Examples
        --------
        >>> from musrec import audio
        >>> audio.FeatureCache("features").extract(["a.mp3", "b.mp3"]).to_array().shape  # doctest: +SKIP
        (2, 128, 47)
        """
        return self[:]
