"""Cold-start recommendation: Top-N over a catalogue that mixes songs with listening history
(their WMF vectors) and new songs nobody has played (vectors predicted from audio and
metadata by a :class:`musrec.FusionModel`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import _musrec, audio
from ._musrec import NotFittedError
from ._sparse import csr_tuple, to_csr
from .fusion import _AUDIO_KINDS, _METADATA_KINDS, FusionModel
from .wmf import WMF, _positive_int

Ranked = tuple[np.ndarray, np.ndarray]


class Recommender:
    """Serve Top-N from a fitted :class:`musrec.WMF` and a fitted :class:`musrec.FusionModel`.

    ``user_ids`` / ``song_ids`` name the WMF model's users and songs (default: their
    indices as strings); ``plays`` (users x songs) lets :meth:`recommend` leave out what a
    user already played; ``features`` is the log-Mel configuration the model was trained
    on (default: the paper's) and ``excerpts`` how many excerpts of each song it reads (see
    :func:`musrec.audio.extract`). New songs are given as an audio file path (or an already
    computed log-Mel array, n_mels x frames, or excerpts x n_mels x frames) plus tags (a list, or ``{tag: weight}``), an
    artist id and a year; the model's kind decides which of them it reads. Results are
    ``(ids, scores)`` arrays, best first. :meth:`musrec.Pipeline.recommender` builds one
    from a trained pipeline.
    """

    def __init__(
        self,
        wmf: WMF,
        model: FusionModel,
        *,
        user_ids: Any = None,
        song_ids: Any = None,
        plays: Any = None,
        features: audio.FeatureConfig | None = None,
        excerpts: int = 1,
        num_threads: int = 0,
    ):
        if not isinstance(wmf, WMF):
            raise TypeError(f"wmf must be a fitted musrec.WMF, got {type(wmf).__name__}")
        if not isinstance(model, FusionModel):
            raise TypeError(f"model must be a fitted musrec.FusionModel, got {type(model).__name__}")
        if wmf.user_factors is None:
            raise NotFittedError("wmf is not fitted yet: call its fit() or WMF.load() first")
        _ = model.history_  # raises NotFittedError for a model that is not fitted
        self.wmf, self.model = wmf, model
        self.features = features or audio.FeatureConfig.paper()
        self.excerpts = int(excerpts)
        self.num_threads = int(num_threads)
        n_users, n_songs = wmf.user_factors.shape[0], wmf.item_factors.shape[0]
        self.user_ids = self._names(user_ids, n_users, "user_ids")
        self._song_ids = self._names(song_ids, n_songs, "song_ids")
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self._song_index = {s: i for i, s in enumerate(self._song_ids)}
        if len(self._user_index) != n_users or len(self._song_index) != n_songs:
            raise ValueError("user_ids and song_ids must be unique")
        self.plays = None if plays is None else to_csr(plays, "plays")
        if self.plays is not None and self.plays.shape != (n_users, n_songs):
            raise ValueError(f"plays has shape {self.plays.shape}, the WMF model {(n_users, n_songs)}")
        self._vectors = np.ascontiguousarray(wmf.item_factors, dtype=np.float32)
        self._users = np.ascontiguousarray(wmf.user_factors, dtype=np.float32)
        self._unit: np.ndarray | None = None
        self.n_known = n_songs

    @staticmethod
    def _names(values: Any, n: int, name: str) -> np.ndarray:
        # object arrays: ids come back as plain str
        if values is None:
            return np.array([str(i) for i in range(n)], dtype=object)
        out = np.array([str(v) for v in values], dtype=object)
        if len(out) != n:
            raise ValueError(f"{name} has {len(out)} entries for {n} rows of the WMF model")
        return out

    # ---- the catalogue ------------------------------------------------------------------
    @property
    def song_ids(self) -> np.ndarray:
        """Every song of the catalogue: the known ones, then the added new ones."""
        return self._song_ids

    @property
    def n_songs(self) -> int:
        return len(self._song_ids)

    def is_new(self, song_id: str) -> bool:
        """Whether ``song_id`` was added from content (no listening history)."""
        return self._song(song_id) >= self.n_known

    def _song(self, song_id: Any) -> int:
        try:
            return self._song_index[str(song_id)]
        except KeyError:
            raise KeyError(f"unknown song {song_id!r}") from None

    def _user(self, user_id: Any) -> int:
        try:
            return self._user_index[str(user_id)]
        except KeyError:
            raise KeyError(f"unknown user {user_id!r}") from None

    def song_vector(
        self, audio_input: Any = None, *, tags: Any = None, artist: Any = None, year: Any = None
    ) -> np.ndarray:
        """The predicted WMF vector of a song from its content (what the model kind reads)."""
        spec = None
        if self.model.kind in _AUDIO_KINDS:
            spec = self._log_mel(audio_input)[None]
        meta = [{"tags": tags, "artist": artist, "year": year}] if self.model.kind in _METADATA_KINDS else None
        return self.model.predict(spec, meta)[0]

    def _log_mel(self, audio_input: Any) -> np.ndarray:
        if audio_input is None:
            raise ValueError(f"a {self.model.kind!r} model needs the song's audio (a file path or a log-Mel array)")
        if isinstance(audio_input, (str, os.PathLike)):
            path = os.fspath(audio_input)
            if not os.path.exists(path):
                raise FileNotFoundError(f"no audio file at {path!r}")
            result = audio.extract(
                [path], self.features, num_threads=self.num_threads, show_progress=False, excerpts=self.excerpts
            )
            if not result.ok[0]:
                failure = result.failures[0]
                raise ValueError(f"cannot use the audio of {path!r}: {failure['reason']}: {failure['message']}")
            return result.features[0]
        spec = np.asarray(audio_input, dtype=np.float32)
        shape = self.features.shape if self.excerpts == 1 else (self.excerpts, *self.features.shape)
        if spec.shape != shape:
            raise ValueError(
                f"a log-Mel array must have shape {shape} ({'' if self.excerpts == 1 else 'excerpts, '}n_mels, "
                f"frames) for these features, got {spec.shape}; pass the audio file's path to have it extracted"
            )
        return spec

    def add_song(
        self, song_id: str, audio_input: Any = None, *, tags: Any = None, artist: Any = None, year: Any = None
    ) -> np.ndarray:
        """Put a new song into the catalogue from its content; returns its predicted vector.
        From then on it is recommendable to every user and findable by :meth:`similar_songs`."""
        song_id = str(song_id)
        if song_id in self._song_index:
            raise ValueError(f"song {song_id!r} is already in the catalogue")
        vector = self.song_vector(audio_input, tags=tags, artist=artist, year=year)
        self._song_index[song_id] = len(self._song_ids)
        self._song_ids = np.append(self._song_ids, np.array([song_id], dtype=object))
        self._vectors = np.ascontiguousarray(np.vstack([self._vectors, vector[None]]))
        self._unit = None
        return vector

    # ---- rankings -----------------------------------------------------------------------
    def _top(self, queries: np.ndarray, items: np.ndarray, N: int, exclude: sp.csr_matrix | None = None) -> Ranked:
        ids, scores = _musrec.top_n(
            np.ascontiguousarray(queries, dtype=np.float32).reshape(1, -1),
            items,
            _positive_int(N, "N"),
            exclude=None if exclude is None else csr_tuple(exclude),
            filter_items=None,
            candidates=None,
            num_threads=self.num_threads,
        )
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def recommend_new_song(
        self, audio_input: Any = None, *, tags: Any = None, artist: Any = None, year: Any = None, N: int = 10
    ) -> Ranked:
        """The N users to push a new song to: (user ids, predicted preference), best first."""
        vector = self.song_vector(audio_input, tags=tags, artist=artist, year=year)
        idx, scores = self._top(vector, self._users, N)
        return self.user_ids[idx], scores

    def similar_songs(
        self,
        song_id: Any = None,
        audio_input: Any = None,
        *,
        tags: Any = None,
        artist: Any = None,
        year: Any = None,
        N: int = 10,
    ) -> Ranked:
        """The N catalogue songs most similar (cosine of vectors) to a catalogue song
        ``song_id`` (left out of its own list), or to a new song given by its content."""
        if self._unit is None:
            norms = np.linalg.norm(self._vectors, axis=1, keepdims=True)
            self._unit = np.ascontiguousarray(self._vectors / np.maximum(norms, 1e-12), dtype=np.float32)
        exclude = None
        if song_id is not None:
            i = self._song(song_id)
            query = self._unit[i]
            exclude = sp.csr_matrix((np.ones(1, np.float32), ([0], [i])), shape=(1, self.n_songs))
        else:
            vector = self.song_vector(audio_input, tags=tags, artist=artist, year=year)
            query = vector / max(float(np.linalg.norm(vector)), 1e-12)
        idx, scores = self._top(query, self._unit, N, exclude)
        return self._song_ids[idx], scores

    def _listened(self, row: sp.csr_matrix) -> sp.csr_matrix:
        """A user's played known songs as an exclusion row over the whole catalogue."""
        return sp.csr_matrix((row.data, row.indices, row.indptr), shape=(1, self.n_songs))

    def recommend(self, user_id: Any, N: int = 10, filter_listened: bool = True, only_new: bool = False) -> Ranked:
        """Top-N songs of the catalogue, known and new alike, for a known user: (song ids,
        scores). ``filter_listened`` leaves out what the user played (needs ``plays``);
        ``only_new`` ranks only the songs added from content."""
        u = self._user(user_id)
        exclude = None
        if filter_listened:
            if self.plays is None:
                raise ValueError("filter_listened needs the plays matrix: Recommender(..., plays=...)")
            exclude = self._listened(self.plays[u])
        return self._rank(self._users[u], N, exclude, only_new)

    def recommend_for_plays(self, plays: dict[str, float], N: int = 10, only_new: bool = False) -> Ranked:
        """Top-N for a user the model has never seen, from a few plays ``{song id: count}``
        of known songs (their vector is folded in exactly, without refitting)."""
        if not plays:
            raise ValueError("plays must name at least one known song")
        idx = [self._song(s) for s in plays]
        if any(i >= self.n_known for i in idx):
            raise ValueError("plays can only name songs with listening history (not songs added from content)")
        counts = np.asarray([float(c) for c in plays.values()], dtype=np.float32)
        if not np.all(np.isfinite(counts)) or np.any(counts <= 0):
            raise ValueError("play counts must be positive numbers")
        order = np.argsort(idx)
        row = sp.csr_matrix((counts[order], np.asarray(idx)[order], [0, len(idx)]), shape=(1, self.n_known))
        user = self.wmf.recalculate_user(row)
        return self._rank(user, N, self._listened(row), only_new)

    def _rank(self, user: np.ndarray, N: int, exclude: sp.csr_matrix | None, only_new: bool) -> Ranked:
        if only_new:
            if self.n_songs == self.n_known:
                raise ValueError("no new songs in the catalogue: add some with add_song()")
            idx, scores = self._top(user, self._vectors[self.n_known :], N)
            return self._song_ids[self.n_known + idx], scores
        idx, scores = self._top(user, self._vectors, N, exclude)
        return self._song_ids[idx], scores

    def __repr__(self) -> str:
        new = self.n_songs - self.n_known
        return f"Recommender({len(self.user_ids):,} users, {self.n_known:,} known + {new:,} new songs, {self.model!r})"
