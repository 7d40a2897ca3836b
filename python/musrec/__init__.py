"""musrec: music recommendation from listening logs and raw audio.

Stage 1 of the two-stage recommender: :class:`WMF` (implicit-feedback ALS) turns a users x
songs play-count matrix into user and song vectors; :mod:`musrec.metrics` evaluates Top-N
rankings on a held-out split; :mod:`musrec.synthetic` generates the embedded default data
(in memory, or written to disk in the real formats); :mod:`musrec.data` reads the real
datasets (Taste Profile, MSD metadata, Last.fm tags, audio previews) and de-sparsifies them.
Stage 2's audio front end: :mod:`musrec.audio` (decoding, resampling, log-Mel like librosa).
The compute runs in a Rust core (``musrec._musrec``).
"""

from . import audio, data, metrics, synthetic
from ._musrec import FormatError, MusrecError, __version__
from .wmf import WMF

__all__ = ["WMF", "audio", "data", "metrics", "synthetic", "MusrecError", "FormatError", "__version__"]
