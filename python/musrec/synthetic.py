"""The embedded default data: a synthetic music world.

Songs belong to genres and carry a latent *style* vector; users have tastes in the same
style space; listening follows taste (and long-tailed song popularity), and play counts
are mostly 1 with a heavy tail, like the Echo Nest Taste Profile. Later stages attach audio
and metadata generated from the same styles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import _musrec

__all__ = ["Listening", "listening"]


@dataclass
class Listening:
    """Synthetic listening data and the latent structure that generated it."""

    #: users x songs play counts (float32 CSR).
    plays: sp.csr_matrix
    #: genre of each song.
    song_genre: np.ndarray
    #: latent style of each song (n_songs x style_dim).
    song_style: np.ndarray
    #: popularity weight of each song.
    song_popularity: np.ndarray
    #: latent taste of each user (n_users x style_dim).
    user_taste: np.ndarray
    #: centre of each genre in style space (n_genres x style_dim).
    genre_centre: np.ndarray


def listening(
    n_users: int = 2000,
    n_songs: int = 5000,
    mean_songs_per_user: float = 40.0,
    n_genres: int = 24,
    style_dim: int = 16,
    taste_strength: float = 10.0,
    popularity_exponent: float = 0.8,
    seed: int = 0,
) -> Listening:
    """Generate a users x songs play-count matrix with planted taste structure.

    Deterministic for a given ``seed`` (and independent of the number of threads). The
    paper's size is ``n_users=10_000, n_songs=50_000`` (about 40 distinct songs per user).
    """
    for name, value in (("n_users", n_users), ("n_songs", n_songs), ("n_genres", n_genres), ("style_dim", style_dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    config = {
        "n_users": int(n_users),
        "n_songs": int(n_songs),
        "mean_songs_per_user": float(mean_songs_per_user),
        "n_genres": int(n_genres),
        "style_dim": int(style_dim),
        "taste_strength": float(taste_strength),
        "popularity_exponent": float(popularity_exponent),
        "seed": int(seed),
    }
    out = _musrec.generate_listening(json.dumps(config))
    indptr, indices, data, rows, cols = out["plays"]
    return Listening(
        plays=sp.csr_matrix((data, indices, indptr), shape=(rows, cols)),
        song_genre=out["song_genre"],
        song_style=out["song_style"],
        song_popularity=out["song_popularity"],
        user_taste=out["user_taste"],
        genre_centre=out["genre_centre"],
    )
