"""The musrec package: music recommendation from listening logs and raw audio.

Stage 1 of the two-stage recommender: :class:`WMF` (implicit-feedback ALS) turns a users x
songs play-count matrix into user and song vectors; :mod:`musrec.metrics` evaluates Top-N
rankings on a held-out split; :mod:`musrec.synthetic` generates the embedded default data
(in memory, or written to disk in the real formats); :mod:`musrec.data` reads the real
datasets (Taste Profile, MSD metadata, Last.fm tags, audio previews) and de-sparsifies them.
Stage 2's audio front end: :mod:`musrec.audio` (decoding, resampling, log-Mel like librosa),
and :class:`FusionModel`, the network that predicts a song's WMF vector from its audio and
metadata (the paper's fusion model and its four baselines). :class:`Pipeline` runs the
paper's experiment on a dataset directory (:func:`reproduce` on a preset, as ``musrec
reproduce`` does) and :class:`Recommender` serves cold-start Top-N from its models;
:meth:`Pipeline.export_bundle` writes them as a model bundle that :mod:`musrec.edge` serves
over HTTP.
The compute runs in a Rust core (``musrec._musrec``).
"""

import os

# candle runs large elementwise operations on a spinning thread pool of its own, which
# competes with the pool musrec sizes from ``num_threads`` (measured: ~25% of a training
# step spent spinning on 2 cores). Parallel work goes through musrec's pool instead.
os.environ.setdefault("CANDLE_NUM_THREADS", "1")

from . import audio, data, edge, experiment, metrics, report, synthetic  # noqa: E402
from ._musrec import FormatError, MusrecError, NotFittedError, WMFParams, __version__  # noqa: E402
from .experiment import reproduce  # noqa: E402
from .fusion import FusionModel  # noqa: E402
from .pipeline import Pipeline  # noqa: E402
from .recommender import Recommender  # noqa: E402
from .wmf import WMF  # noqa: E402

__all__ = [
    "WMF",
    "WMFParams",
    "FusionModel",
    "Pipeline",
    "experiment",
    "Recommender",
    "reproduce",
    "report",
    "audio",
    "data",
    "edge",
    "metrics",
    "synthetic",
    "MusrecError",
    "FormatError",
    "NotFittedError",
    "__version__",
]
