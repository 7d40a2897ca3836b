"""musrec: music recommendation from listening logs and raw audio.

Stage 1 of the two-stage recommender: :class:`WMF` (implicit-feedback ALS) turns a users x
songs play-count matrix into user and song vectors; :mod:`musrec.metrics` evaluates Top-N
rankings on a held-out split; :mod:`musrec.synthetic` generates the embedded default data.
The compute runs in a Rust core (``musrec._musrec``).
"""

from . import metrics, synthetic
from ._musrec import FormatError, MusrecError, __version__
from .wmf import WMF

__all__ = ["WMF", "metrics", "synthetic", "MusrecError", "FormatError", "__version__"]
