"""Cold-start recommendation: Top-N over a catalogue that mixes songs with listening history
(their WMF vectors) and new songs nobody has played (vectors predicted from audio and
metadata by a :class:`musrec.FusionModel`).

The catalogue and every ranking live in the Rust serving core (``_musrec.ServingCore``), the
same code the edge service (:mod:`musrec.edge`) runs, so a notebook result and a served
result cannot differ; this module only handles Python arguments."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _musrec, audio
from ._musrec import NotFittedError
from ._sparse import csr_tuple, to_csr
from .fusion import _AUDIO_KINDS, _METADATA_KINDS, FusionModel, _tags, _year
from .wmf import WMF, _positive_int

Ranked = tuple[np.ndarray, np.ndarray]


def _ranked(result: tuple[list[str], np.ndarray]) -> Ranked:
    ids, scores = result
    return np.array(ids, dtype=object), scores


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
        song_names = self._names(song_ids, n_songs, "song_ids")
        if len(set(self.user_ids)) != n_users or len(set(song_names)) != n_songs:
            raise ValueError("user_ids and song_ids must be unique")
        self.plays = None if plays is None else to_csr(plays, "plays")
        if self.plays is not None and self.plays.shape != (n_users, n_songs):
            raise ValueError(f"plays has shape {self.plays.shape}, the WMF model {(n_users, n_songs)}")
        self._core = _musrec.ServingCore.from_parts(
            wmf.params,
            self.features,
            self.excerpts,
            [str(u) for u in self.user_ids],
            [str(s) for s in song_names],
            np.ascontiguousarray(wmf.user_factors, dtype=np.float32),
            np.ascontiguousarray(wmf.item_factors, dtype=np.float32),
            plays=None if self.plays is None else csr_tuple(self.plays),
            fusion=model._core.to_bytes(),
            num_threads=self.num_threads,
        )
        self._song_ids: np.ndarray | None = None

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
        if self._song_ids is None:
            self._song_ids = np.array(self._core.song_ids, dtype=object)
        return self._song_ids

    @property
    def n_songs(self) -> int:
        return self._core.n_songs

    @property
    def n_known(self) -> int:
        """Songs with listening history; the rest were added from content."""
        return self._core.n_known

    @property
    def model_version(self) -> str:
        return self._core.model_version

    def is_new(self, song_id: str) -> bool:
        """Whether ``song_id`` was added from content (no listening history)."""
        return self._core.is_new(str(song_id))

    def song_vector(
        self, audio_input: Any = None, *, tags: Any = None, artist: Any = None, year: Any = None
    ) -> np.ndarray:
        """The predicted WMF vector of a song from its content (what the model kind reads)."""
        path, log_mel = None, None
        if self.model.kind in _AUDIO_KINDS:
            path, log_mel = self._audio(audio_input)
        return self._core.song_vector(
            audio_path=path,
            log_mel=log_mel,
            tags=_tags(tags, 0) if self.model.kind in _METADATA_KINDS else [],
            artist=None if artist is None else str(artist),
            year=_year(year, 0),
        )

    def _audio(self, audio_input: Any) -> tuple[str | None, np.ndarray | None]:
        if audio_input is None:
            raise ValueError(f"a {self.model.kind!r} model needs the song's audio (a file path or a log-Mel array)")
        if isinstance(audio_input, (str, os.PathLike)):
            path = os.fspath(audio_input)
            if not os.path.exists(path):
                raise FileNotFoundError(f"no audio file at {path!r}")
            return path, None
        spec = np.asarray(audio_input, dtype=np.float32)
        shape = self.features.shape if self.excerpts == 1 else (self.excerpts, *self.features.shape)
        if spec.shape != shape:
            raise ValueError(
                f"a log-Mel array must have shape {shape} ({'' if self.excerpts == 1 else 'excerpts, '}n_mels, "
                f"frames) for these features, got {spec.shape}; pass the audio file's path to have it extracted"
            )
        return None, np.ascontiguousarray(spec)

    def add_song(
        self, song_id: str, audio_input: Any = None, *, tags: Any = None, artist: Any = None, year: Any = None
    ) -> np.ndarray:
        """Put a new song into the catalogue from its content; returns its predicted vector.
        From then on it is recommendable to every user and findable by :meth:`similar_songs`."""
        song_id = str(song_id)
        try:
            self._core.is_new(song_id)
        except KeyError:
            pass
        else:
            raise ValueError(f"song {song_id!r} is already in the catalogue")
        vector = self.song_vector(audio_input, tags=tags, artist=artist, year=year)
        self._core.add_song(song_id, vector)
        self._song_ids = None
        return vector

    # ---- rankings -----------------------------------------------------------------------
    def recommend_new_song(
        self, audio_input: Any = None, *, tags: Any = None, artist: Any = None, year: Any = None, N: int = 10
    ) -> Ranked:
        """The N users to push a new song to: (user ids, predicted preference), best first."""
        N = _positive_int(N, "N")
        vector = self.song_vector(audio_input, tags=tags, artist=artist, year=year)
        return _ranked(self._core.audience_of_vector(vector, N))

    def audience(self, song_id: Any, N: int = 100) -> Ranked:
        """The N users to push a catalogue song to: (user ids, predicted preference)."""
        return _ranked(self._core.audience(str(song_id), _positive_int(N, "N")))

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
        N = _positive_int(N, "N")
        if song_id is not None:
            return _ranked(self._core.similar(str(song_id), N))
        vector = self.song_vector(audio_input, tags=tags, artist=artist, year=year)
        return _ranked(self._core.similar_to_vector(vector, N))

    def recommend(self, user_id: Any, N: int = 10, filter_listened: bool = True, only_new: bool = False) -> Ranked:
        """Top-N songs of the catalogue, known and new alike, for a known user: (song ids,
        scores). ``filter_listened`` leaves out what the user played (needs ``plays``);
        ``only_new`` ranks only the songs added from content."""
        N = _positive_int(N, "N")
        if filter_listened and self.plays is None:
            raise ValueError("filter_listened needs the plays matrix: Recommender(..., plays=...)")
        return _ranked(self._core.recommend(str(user_id), N, bool(filter_listened), bool(only_new)))

    def recommend_for_plays(self, plays: dict[str, float], N: int = 10, only_new: bool = False) -> Ranked:
        """Top-N for a user the model has never seen, from a few plays ``{song id: count}``
        of known songs (their vector is folded in exactly, without refitting)."""
        N = _positive_int(N, "N")
        if not plays:
            raise ValueError("plays must name at least one known song")
        counts = [(str(s), float(c)) for s, c in plays.items()]
        return _ranked(self._core.recommend_for_plays(counts, N, bool(only_new)))

    # ---- bundles ------------------------------------------------------------------------
    def export_bundle(
        self,
        path: str | os.PathLike,
        *,
        encoding: str = "f32",
        model_version: str | None = None,
        edge_offsets: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Write the catalogue as a model bundle directory for the edge service (see
        :func:`musrec.edge.serve`); returns its manifest. ``encoding`` stores the song
        vectors as ``"f32"``, ``"f16"`` or ``"int8"`` (per-row scales; rescored in f32 on
        load); the manifest records the compact encoding's measured top-10 overlap with f32.
        ``path`` must not exist: the bundle is written to a temporary directory, fsynced and
        renamed, so it appears whole or not at all."""
        return self._core.write_bundle(os.fspath(path), encoding, model_version, edge_offsets)

    # ---- pickling: the core is rebuilt from the models and the added songs ----------------
    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_core", "_song_ids")}
        n_known, song_ids = self._core.n_known, self._core.song_ids
        state["_known_song_ids"] = song_ids[:n_known]
        state["_added"] = (song_ids[n_known:], self._core.song_factors[n_known:])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        added_ids, added_vectors = state.pop("_added")
        known_ids = state.pop("_known_song_ids")
        fresh = Recommender(
            state["wmf"],
            state["model"],
            user_ids=state["user_ids"],
            song_ids=known_ids,
            plays=state["plays"],
            features=state["features"],
            excerpts=state["excerpts"],
            num_threads=state["num_threads"],
        )
        self.__dict__.update(fresh.__dict__)
        for song_id, vector in zip(added_ids, added_vectors):
            self._core.add_song(song_id, np.ascontiguousarray(vector))

    def __repr__(self) -> str:
        new = self.n_songs - self.n_known
        return f"Recommender({len(self.user_ids):,} users, {self.n_known:,} known + {new:,} new songs, {self.model!r})"
