"""Cold-start Top-N recommendation over a catalogue of known and new songs.

Cold-start recommendation: Top-N over a catalogue that mixes songs with listening history
(their WMF vectors) and new songs nobody has played (vectors predicted from audio and
metadata by a :class:`musrec.FusionModel`).

The catalogue and every ranking live in the Rust serving core (``_musrec.ServingCore``), the
same code the edge service (:mod:`musrec.edge`) runs, so a notebook result and a served
result cannot differ; this module only handles Python arguments.
"""

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

    The catalogue starts with the WMF model's songs (the known songs, with listening
    history); :meth:`add_song` puts new songs into it from their content. Every ranking runs
    in the Rust serving core, the same code as the edge service (:mod:`musrec.edge`).

    New songs are given as an audio file path (or an already computed log-Mel array,
    n_mels x frames, or excerpts x n_mels x frames) plus tags (a list, or ``{tag: weight}``),
    an artist id and a year; the model's kind decides which of them it reads. Results are
    ``(ids, scores)`` arrays, best first. :meth:`musrec.Pipeline.recommender` builds one from
    a trained pipeline.

    Parameters
    ----------
    wmf : musrec.WMF
        A fitted WMF model (fitted, or read with ``WMF.load()``): its user and song vectors
        and hyperparameters.
    model : musrec.FusionModel
        A fitted content model that predicts a new song's WMF vector. It must predict
        vectors of the WMF model's number of factors.
    user_ids : sequence or None, optional
        Names of the WMF model's users, one per row of its user factors (each converted to
        ``str``, all unique). Default: their indices as strings.
    song_ids : sequence or None, optional
        Names of the WMF model's songs, one per row of its item factors (each converted to
        ``str``, all unique). Default: their indices as strings.
    plays : scipy.sparse matrix of shape (n_users, n_songs) or None, optional
        The play counts (users x songs) that let :meth:`recommend` leave out what a user
        already played. Without it, :meth:`recommend` needs ``filter_listened=False``.
    features : musrec.audio.FeatureConfig or None, optional
        The log-Mel configuration the model was trained on, used to read new songs' audio.
        Default: the paper's (``FeatureConfig.paper()``).
    excerpts : int, default 1
        How many excerpts of each song the model reads (see :func:`musrec.audio.extract`):
        with more than one, they are spread over the audio file.
    num_threads : int, default 0
        Threads of the rankings and fold-ins (0 = one per core).

    Attributes
    ----------
    wmf : musrec.WMF
        The WMF model given.
    model : musrec.FusionModel
        The content model given.
    features : musrec.audio.FeatureConfig
        The log-Mel configuration new songs' audio is read with.
    excerpts : int
        Excerpts of each song the content model reads.
    num_threads : int
        Threads of the rankings (0 = one per core).
    user_ids : numpy.ndarray of str
        The users' ids (object array), in the WMF model's order.
    plays : scipy.sparse.csr_matrix or None
        The play counts as a float32 CSR matrix, or None when none were given.
    song_ids : numpy.ndarray of str
        Every song of the catalogue: the known ones, then the added new ones.
    n_songs : int
        Number of songs in the catalogue.
    n_known : int
        Number of songs with listening history.
    model_version : str
        The catalogue's model version.

    Raises
    ------
    TypeError
        If ``wmf`` is not a :class:`musrec.WMF` or ``model`` not a
        :class:`musrec.FusionModel`, or ``plays`` is not a scipy.sparse matrix of real numbers.
    musrec.NotFittedError
        If ``wmf`` or ``model`` is not fitted.
    ValueError
        If ``user_ids`` or ``song_ids`` has the wrong length or repeats an id, if ``plays``
        does not have the WMF model's shape, or if the parts do not fit together (for example
        a content model that predicts vectors of another width than the WMF factors).

    See Also
    --------
    musrec.Pipeline.recommender : Build one from a trained pipeline.
    musrec.edge.serve : Serve a bundle written by :meth:`export_bundle` over HTTP.

    Examples
    --------
    >>> import musrec
    >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
    >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
    >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
    >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
    >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
    >>> rec
    Recommender(50 users, 40 known + 0 new songs, FusionModel(kind='ridge_metadata', fitted))
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
        """Every song of the catalogue: the known ones, then the added new ones.

        Returns
        -------
        numpy.ndarray of str
            The song ids (an object array), in catalogue order.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> _ = rec.add_song("new-1", tags=["genre3"])
        >>> rec.song_ids[-3:]
        array(['38', '39', 'new-1'], dtype=object)
        """
        if self._song_ids is None:
            self._song_ids = np.array(self._core.song_ids, dtype=object)
        return self._song_ids

    @property
    def n_songs(self) -> int:
        """Number of songs in the catalogue, the known and the added ones.

        Returns
        -------
        int
            The catalogue's size.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> _ = rec.add_song("new-1", tags=["genre3"])
        >>> rec.n_songs
        41
        """
        return self._core.n_songs

    @property
    def n_known(self) -> int:
        """Number of songs with listening history; the rest were added from content.

        Returns
        -------
        int
            The known songs' count: they come first in :attr:`song_ids`.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> _ = rec.add_song("new-1", tags=["genre3"])
        >>> rec.n_known, rec.n_songs
        (40, 41)
        """
        return self._core.n_known

    @property
    def model_version(self) -> str:
        """The serving core's model version.

        A recommender built from its models is ``"unversioned"``; a bundle written by
        :meth:`export_bundle` records the version given there (by default a digest of its
        files).

        Returns
        -------
        str
            The model version.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> rec.model_version
        'unversioned'
        """
        return self._core.model_version

    def is_new(self, song_id: str) -> bool:
        """Tell whether ``song_id`` was added from content (no listening history).

        Parameters
        ----------
        song_id : str
            A song of the catalogue (converted to ``str``).

        Returns
        -------
        bool
            True for a song added with :meth:`add_song`, False for a known song.

        Raises
        ------
        KeyError
            If the catalogue has no song ``song_id``.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> _ = rec.add_song("new-1", tags=["genre3"])
        >>> rec.is_new("new-1"), rec.is_new("5")
        (True, False)
        """
        return self._core.is_new(str(song_id))

    def song_vector(
        self, audio_input: Any = None, *, tags: Any = None, artist: Any = None, year: Any = None
    ) -> np.ndarray:
        """Predict the WMF vector of a song from its content.

        The model's kind decides what it reads: the audio, the metadata (tags, artist, year)
        or both; the other inputs are ignored. The song is not added to the catalogue (see
        :meth:`add_song`).

        Parameters
        ----------
        audio_input : str, os.PathLike, array_like or None, optional
            The song's audio, required by the kinds that read audio: the path of an audio
            file (decoded and read as ``features`` and ``excerpts`` say) or its log-Mel
            features already computed, of shape (n_mels, frames) (``features.shape``) with
            one excerpt, or (excerpts, n_mels, frames).
        tags : list, dict or None, optional
            The song's tags: a list of tag names (weight 1 each) or of ``(tag, weight)``
            pairs, or a ``{tag: weight}`` mapping. None for no tags.
        artist : str or None, optional
            The song's artist id (converted to ``str``); None for unknown.
        year : int or None, optional
            The song's release year; None, NaN and 0 mean unknown.

        Returns
        -------
        numpy.ndarray of float32, shape (factors,)
            The predicted vector, in the WMF model's space.

        Raises
        ------
        ValueError
            If a kind that reads audio gets no ``audio_input``, a log-Mel array of another
            shape or with NaN or infinite values, or a file it cannot use (the message says
            "cannot use the audio").
        FileNotFoundError
            If ``audio_input`` is a path with no file there.
        TypeError
            If ``tags`` is a string, or ``year`` is not an integer or None.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> vector = rec.song_vector(tags={"genre3": 1.0, "genre5": 0.5}, artist="AR1", year=2011)
        >>> vector.shape, vector.dtype
        ((8,), dtype('float32'))

        A model that reads audio takes the file (or its log-Mel features):

        >>> rec.song_vector("new_song.mp3", tags=["rock"], year=2011)  # doctest: +SKIP
        """
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
        """Put a new song into the catalogue from its content.

        The song's vector is predicted as :meth:`song_vector` does. From then on it is
        recommendable to every user and findable by :meth:`similar_songs`.

        Parameters
        ----------
        song_id : str
            The new song's id (converted to ``str``; 1-256 characters), not yet in the
            catalogue.
        audio_input : str, os.PathLike, array_like or None, optional
            The song's audio, required by the kinds that read audio: the path of an audio
            file or its log-Mel features, of shape (n_mels, frames) with one excerpt, or
            (excerpts, n_mels, frames).
        tags : list, dict or None, optional
            The song's tags: a list of tag names (weight 1 each) or of ``(tag, weight)``
            pairs, or a ``{tag: weight}`` mapping. None for no tags.
        artist : str or None, optional
            The song's artist id (converted to ``str``); None for unknown.
        year : int or None, optional
            The song's release year; None, NaN and 0 mean unknown.

        Returns
        -------
        numpy.ndarray of float32, shape (factors,)
            The song's predicted vector.

        Raises
        ------
        ValueError
            If the song is already in the catalogue, its id is empty or longer than 256
            characters, or its content cannot be read (see :meth:`song_vector`).
        FileNotFoundError
            If ``audio_input`` is a path with no file there.
        TypeError
            If ``tags`` is a string, or ``year`` is not an integer or None.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> vector = rec.add_song("new-1", tags=["genre3"], artist="AR1", year=2011)
        >>> vector.shape, rec.is_new("new-1"), rec.n_songs
        ((8,), True, 41)
        """
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
        """Find the N users to push a new song to, from its content.

        The song's vector is predicted as :meth:`song_vector` does (the song is not added to
        the catalogue); the users are ranked by their predicted preference, the inner product
        of their vector and the song's.

        Parameters
        ----------
        audio_input : str, os.PathLike, array_like or None, optional
            The song's audio, required by the kinds that read audio: the path of an audio
            file or its log-Mel features, of shape (n_mels, frames) with one excerpt, or
            (excerpts, n_mels, frames).
        tags : list, dict or None, optional
            The song's tags: a list of tag names (weight 1 each) or of ``(tag, weight)``
            pairs, or a ``{tag: weight}`` mapping. None for no tags.
        artist : str or None, optional
            The song's artist id (converted to ``str``); None for unknown.
        year : int or None, optional
            The song's release year; None, NaN and 0 mean unknown.
        N : int, default 10
            How many users to return (at most; fewer when there are fewer users).

        Returns
        -------
        user_ids : numpy.ndarray of str
            The users' ids (an object array), best first.
        scores : numpy.ndarray of float32
            Their predicted preference for the song.

        Raises
        ------
        TypeError
            If ``N`` is not an integer, ``tags`` is a string, or ``year`` is not an integer
            or None.
        ValueError
            If ``N`` is below 1, or the content cannot be read (see :meth:`song_vector`).
        FileNotFoundError
            If ``audio_input`` is a path with no file there.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> users, scores = rec.recommend_new_song(tags=["genre3"], N=3)
        >>> users
        array(['6', '32', '49'], dtype=object)
        """
        N = _positive_int(N, "N")
        vector = self.song_vector(audio_input, tags=tags, artist=artist, year=year)
        return _ranked(self._core.audience_of_vector(vector, N))

    def audience(self, song_id: Any, N: int = 100) -> Ranked:
        """Find the N users to push a catalogue song to.

        The users are ranked by their predicted preference, the inner product of their vector
        and the song's; users who already played the song are not left out.

        Parameters
        ----------
        song_id : str
            A song of the catalogue, known or added (converted to ``str``).
        N : int, default 100
            How many users to return (at most; fewer when there are fewer users).

        Returns
        -------
        user_ids : numpy.ndarray of str
            The users' ids (an object array), best first.
        scores : numpy.ndarray of float32
            Their predicted preference for the song.

        Raises
        ------
        KeyError
            If the catalogue has no song ``song_id``.
        TypeError
            If ``N`` is not an integer.
        ValueError
            If ``N`` is below 1.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> users, scores = rec.audience("5", N=3)
        >>> users
        array(['19', '31', '48'], dtype=object)
        """
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
        """Find the N catalogue songs most similar to a catalogue song or to a new song.

        Similarity is the cosine of the song vectors. With ``song_id``, the query is that
        catalogue song (left out of its own list) and the content arguments are ignored;
        without it, the query is a new song given by its content, its vector predicted as
        :meth:`song_vector` does (the song is not added to the catalogue).

        Parameters
        ----------
        song_id : str or None, optional
            A song of the catalogue, known or added (converted to ``str``).
        audio_input : str, os.PathLike, array_like or None, optional
            The new song's audio, required by the kinds that read audio when ``song_id`` is
            None: the path of an audio file or its log-Mel features, of shape
            (n_mels, frames) with one excerpt, or (excerpts, n_mels, frames).
        tags : list, dict or None, optional
            The new song's tags: a list of tag names (weight 1 each) or of ``(tag, weight)``
            pairs, or a ``{tag: weight}`` mapping. None for no tags.
        artist : str or None, optional
            The new song's artist id (converted to ``str``); None for unknown.
        year : int or None, optional
            The new song's release year; None, NaN and 0 mean unknown.
        N : int, default 10
            How many songs to return (at most; fewer when the catalogue is smaller).

        Returns
        -------
        song_ids : numpy.ndarray of str
            The songs' ids (an object array), known and added alike, most similar first.
        scores : numpy.ndarray of float32
            Their cosine similarity to the query.

        Raises
        ------
        KeyError
            If the catalogue has no song ``song_id``.
        TypeError
            If ``N`` is not an integer, ``tags`` is a string, or ``year`` is not an integer
            or None.
        ValueError
            If ``N`` is below 1, or the new song's content cannot be read (see
            :meth:`song_vector`).
        FileNotFoundError
            If ``audio_input`` is a path with no file there.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> songs, scores = rec.similar_songs("5", N=3)
        >>> songs
        array(['7', '10', '26'], dtype=object)
        >>> songs, scores = rec.similar_songs(tags=["genre3"], N=3)
        >>> songs
        array(['29', '33', '10'], dtype=object)
        """
        N = _positive_int(N, "N")
        if song_id is not None:
            return _ranked(self._core.similar(str(song_id), N))
        vector = self.song_vector(audio_input, tags=tags, artist=artist, year=year)
        return _ranked(self._core.similar_to_vector(vector, N))

    def recommend(self, user_id: Any, N: int = 10, filter_listened: bool = True, only_new: bool = False) -> Ranked:
        """Rank the catalogue's top N songs, known and new alike, for a known user.

        The score of a song is the inner product of the user's vector and the song's.

        Parameters
        ----------
        user_id : str
            One of the users (converted to ``str``).
        N : int, default 10
            How many songs to return (at most; fewer when fewer songs are left to rank).
        filter_listened : bool, default True
            Leave out what the user played (needs ``plays``).
        only_new : bool, default False
            Rank only the songs added from content.

        Returns
        -------
        song_ids : numpy.ndarray of str
            The songs' ids (an object array), best first.
        scores : numpy.ndarray of float32
            Their scores.

        Raises
        ------
        ValueError
            If ``filter_listened`` is true but the recommender was built without ``plays``,
            ``N`` is below 1, or ``only_new`` is true and no song was added from content yet.
        KeyError
            If there is no user ``user_id``.
        TypeError
            If ``N`` is not an integer.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> songs, scores = rec.recommend("0", N=3)
        >>> songs
        array(['8', '32', '28'], dtype=object)
        >>> _ = rec.add_song("new-1", tags=["genre3"])
        >>> rec.recommend("0", N=3, only_new=True)[0]
        array(['new-1'], dtype=object)
        """
        N = _positive_int(N, "N")
        if filter_listened and self.plays is None:
            raise ValueError("filter_listened needs the plays matrix: Recommender(..., plays=...)")
        return _ranked(self._core.recommend(str(user_id), N, bool(filter_listened), bool(only_new)))

    def recommend_for_plays(self, plays: dict[str, float], N: int = 10, only_new: bool = False) -> Ranked:
        """Rank the top N songs for a user the model has never seen, from a few plays.

        The user's vector is folded in exactly from the plays of known songs, against the
        known songs' vectors, without refitting; the songs played are left out of the list.

        Parameters
        ----------
        plays : dict of str to float
            ``{song id: count}`` of known songs (not songs added from content), each count a
            positive number.
        N : int, default 10
            How many songs to return (at most; fewer when fewer songs are left to rank).
        only_new : bool, default False
            Rank only the songs added from content.

        Returns
        -------
        song_ids : numpy.ndarray of str
            The songs' ids (an object array), best first.
        scores : numpy.ndarray of float32
            Their scores for the folded-in user.

        Raises
        ------
        ValueError
            If ``plays`` is empty, names a song added from content or has a count that is
            not a positive finite number, ``N`` is below 1, or ``only_new`` is true and no
            song was added from content yet.
        KeyError
            If ``plays`` names a song the catalogue does not have.
        TypeError
            If ``N`` is not an integer.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> songs, scores = rec.recommend_for_plays({"5": 3, "7": 1}, N=3)
        >>> songs
        array(['26', '34', '10'], dtype=object)
        """
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
        """Write the catalogue as a model bundle directory for the edge service.

        The bundle holds every user's vector and plays, the song vectors (the known songs,
        then the ones added from content), the ids, the content model and the feature
        settings: what :func:`musrec.edge.serve` serves. The bundle is written to a temporary
        directory, fsynced and renamed, so it appears whole or not at all.

        Parameters
        ----------
        path : str or os.PathLike
            The bundle's directory; it must not exist.
        encoding : {"f32", "f16", "int8"}, default "f32"
            How the song vectors are stored: ``"int8"`` with per-row scales. They are
            rescored in f32 on load; the manifest records the compact encoding's measured
            top-10 overlap with f32.
        model_version : str or None, optional
            The version that names the model in every served response. Default: a digest of
            the bundle's files.
        edge_offsets : dict of str to int or None, optional
            For each edge id, the offset of the last event of its log that the model has
            consumed; an edge serving the bundle folds in its logged events after it.
            Default: none.

        Returns
        -------
        dict
            The manifest: ``format``, ``format_version``, ``model_version``, ``created``,
            ``n_users``, ``n_songs``, ``factors``, ``n_known``, ``wmf``, ``features``,
            ``excerpts``, ``song_encoding``, ``song_encoding_top10_overlap``,
            ``edge_offsets`` and ``files`` (the sha256 and size of every file).

        Raises
        ------
        ValueError
            If ``path`` already exists or ``encoding`` is unknown.
        FileNotFoundError
            If the directory that is to hold ``path`` does not exist.
        OSError
            If writing the files fails.

        See Also
        --------
        musrec.Pipeline.export_bundle : Write a bundle from a trained pipeline.
        musrec.edge.serve : Serve a bundle over HTTP.

        Examples
        --------
        >>> import musrec
        >>> world = musrec.synthetic.listening(n_users=50, n_songs=40, mean_songs_per_user=8)
        >>> wmf = musrec.WMF(factors=8, random_state=0).fit(world.plays, show_progress=False)
        >>> tags = [{"tags": [f"genre{g}"]} for g in world.song_genre]
        >>> model = musrec.FusionModel("ridge_metadata").fit(None, tags, wmf.item_factors, show_progress=False)
        >>> rec = musrec.Recommender(wmf, model, plays=world.plays)
        >>> manifest = rec.export_bundle("bundles/v1", encoding="int8", model_version="v1")  # doctest: +SKIP
        """
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
