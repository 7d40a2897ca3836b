"""The embedded default data: a synthetic music world.

Songs belong to genres and carry a latent *style* vector; users have tastes in the same
style space; listening follows taste (and long-tailed song popularity), and play counts
are mostly 1 with a heavy tail, like the Echo Nest Taste Profile.

:func:`listening` gives the play counts in memory. :func:`write_world` writes a whole world
to disk in the real datasets' formats (triplets, MSD metadata SQLite, Last.fm tags SQLite,
``unique_tracks.txt``, one audio file per track), readable by :func:`musrec.data.load`. The
audio renders the first three quarters of the style dimensions, the metadata (artist, tags,
year) the last three quarters, each with per-song noise: content predicts listening only
partly, and audio and metadata each carry signal the other lacks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from . import _musrec, _progress

__all__ = ["Listening", "WorldConfig", "audio_formats", "listening", "load_truth", "world_config", "write_world"]

WorldConfig = _musrec.WorldConfig
WorldConfig.__module__ = __name__


@dataclass
class Listening:
    """Synthetic listening data and the latent structure that generated it.

    Returned by :func:`listening`.

    Attributes
    ----------
    plays : scipy.sparse.csr_matrix of shape (n_users, n_songs)
        The play counts, float32.
    song_genre : numpy.ndarray of shape (n_songs,)
        The genre of each song.
    song_style : numpy.ndarray of shape (n_songs, style_dim)
        The latent style of each song, float32.
    song_popularity : numpy.ndarray of shape (n_songs,)
        The popularity weight of each song, float32.
    user_taste : numpy.ndarray of shape (n_users, style_dim)
        The latent taste of each user, float32.
    genre_centre : numpy.ndarray of shape (n_genres, style_dim)
        The centre of each genre in style space, float32.

    Examples
    --------
    >>> from musrec import synthetic
    >>> world = synthetic.listening(n_users=100, n_songs=200, mean_songs_per_user=10)
    >>> world.plays.shape
    (100, 200)
    >>> world.song_style.shape, world.user_taste.shape, world.genre_centre.shape
    ((200, 16), (100, 16), (24, 16))
    """

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

    Parameters
    ----------
    n_users : int, default 2000
        Number of users, at least 1.
    n_songs : int, default 5000
        Number of songs, at least 2.
    mean_songs_per_user : float, default 40.0
        Mean number of distinct songs per user, between 1 and ``n_songs / 2``.
    n_genres : int, default 24
        Number of genres, between 1 and ``n_songs``.
    style_dim : int, default 16
        Dimension of the style space shared by songs and users, at least 1.
    taste_strength : float, default 10.0
        How strongly listening follows taste, non-negative (0: taste-blind).
    popularity_exponent : float, default 0.8
        Zipf exponent of song popularity, non-negative.
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    Listening
        The play counts and the latent structure that generated them.

    Raises
    ------
    ValueError
        If a setting is out of its range.
    TypeError
        If a setting has the wrong type.

    See Also
    --------
    write_world : A whole world, written to disk in the real datasets' formats.

    Examples
    --------
    >>> from musrec import synthetic
    >>> world = synthetic.listening(n_users=100, n_songs=200, mean_songs_per_user=10, seed=0)
    >>> world.plays.shape, world.plays.dtype
    ((100, 200), dtype('float32'))
    >>> bool((world.plays.data >= 1).all())
    True
    """
    config = WorldConfig(
        "small",
        n_users=n_users,
        n_songs=n_songs,
        mean_songs_per_user=mean_songs_per_user,
        n_genres=n_genres,
        style_dim=style_dim,
        taste_strength=taste_strength,
        popularity_exponent=popularity_exponent,
        seed=seed,
    )
    out = _musrec.generate_listening(config)
    indptr, indices, data, rows, cols = out["plays"]
    return Listening(
        plays=sp.csr_matrix((data, indices, indptr), shape=(rows, cols)),
        song_genre=out["song_genre"],
        song_style=out["song_style"],
        song_popularity=out["song_popularity"],
        user_taste=out["user_taste"],
        genre_centre=out["genre_centre"],
    )


def world_config(preset: str = "tiny", **overrides: Any) -> WorldConfig:
    """Return the configuration of a world preset, with ``overrides`` applied.

    The presets: ``"tiny"``: 600 users x 800 songs, seconds; ``"small"``: 2,000 x 5,000;
    ``"paper"``: 10,000 users x 56,000 songs at 80 songs per user, so that the paper's 50,000
    are played and have audio. The result is a :class:`WorldConfig`, the same as
    ``WorldConfig(preset, **overrides)``.

    Listening settings (``n_users``, ``n_songs``, ``mean_songs_per_user``, ``n_genres``,
    ``style_dim``, ``taste_strength``, ``popularity_exponent``, ``seed``) and the files'
    (``sample_rate``, ``duration``, ``audio_format``, ``nested_audio``,
    ``songs_per_artist``, ``content_noise``, ``share_without_track``, ``share_without_audio``,
    ``share_second_track``, ``share_without_tags``, ``share_unknown_year``, ``source_audio``)
    are given and read flat (``WorldConfig.SETTINGS``); ``to_dict()`` is the nested form
    ``world.json`` records. ``audio_format`` is ``"wav"`` (the default), ``"flac"``, ``"ogg"``
    (Ogg Vorbis) or ``"mp3"``. ``source_audio`` (a directory of real recordings, searched
    recursively) cuts the songs from real sound instead of synthesising them: see
    :func:`write_world`. MP3 takes only the MPEG sample rates (8,000, 11,025, 12,000, 16,000,
    22,050, 24,000, 32,000, 44,100, 48,000 Hz) and FLAC at most 96,000 Hz; MP3 needs a build
    with the ``lame`` cargo feature (see :func:`audio_formats`). The Rust core validates every
    value here.

    Parameters
    ----------
    preset : {"tiny", "small", "paper"}, default "tiny"
        The preset's name.
    **overrides
        Settings replacing the preset's, by their flat names (``WorldConfig.SETTINGS``).

    Returns
    -------
    WorldConfig
        The configuration.

    Raises
    ------
    ValueError
        If the preset or a setting is unknown, a value is out of range, or ``audio_format``
        is ``"mp3"`` in a build without the ``lame`` feature.
    TypeError
        If a setting has the wrong type.

    Examples
    --------
    >>> from musrec import synthetic
    >>> config = synthetic.world_config("tiny", n_users=100, seed=3)
    >>> config.n_users, config.n_songs, config.seed
    (100, 800, 3)
    >>> config.to_dict()["listening"]["n_users"]
    100
    >>> synthetic.world_config("paper").n_songs
    56000
    """
    return WorldConfig(preset, **overrides)


def audio_formats() -> list[str]:
    """List the audio formats :func:`write_world` can write in this build.

    ``wav``, ``flac`` and ``ogg`` always; ``mp3`` only when musrec was built with the ``lame``
    cargo feature (LAME is LGPL-3.0, so the default MIT build leaves it out). Every format
    always *reads*.

    Returns
    -------
    list of str
        The writable formats' names (file extensions).

    Examples
    --------
    >>> from musrec import synthetic
    >>> synthetic.audio_formats()[:3]
    ['wav', 'flac', 'ogg']
    """
    return list(_musrec.world_audio_formats())


def write_world(
    path: str | os.PathLike,
    preset: str | WorldConfig = "tiny",
    seed: int = 0,
    num_threads: int = 0,
    show_progress: bool = True,
    callback: Callable[[int, int, Any], None] | None = None,
    **overrides: Any,
) -> dict:
    """Write a synthetic world into directory ``path`` in the real datasets' formats.

    Files: ``train_triplets.txt``, ``track_metadata.db``, ``unique_tracks.txt``,
    ``lastfm_tags.db``, ``audio/<track_id>.wav`` (mono, ``duration`` seconds at
    ``sample_rate``; ``audio_format="flac"``, ``"ogg"`` or ``"mp3"`` writes ``.flac``
    (lossless 16-bit), ``.ogg`` (Ogg Vorbis) or ``.mp3`` instead, all readable by
    :func:`musrec.data.load`), and the ground truth ``world.json`` / ``world.safetensors`` (see
    :func:`load_truth`). Planted like real data: a few songs without a track, some tracks
    without audio, some songs with a duplicate track, tracks without tags, unknown years.
    With ``source_audio=DIR`` the songs are real sound: every recording under ``DIR`` (WAV,
    FLAC, Ogg Vorbis, MP3) is cut into consecutive songs of ``duration`` seconds after a 2 s
    lead-in (silent segments dropped; at most ``n_songs``, a seeded subset when there are
    more), and each song's latent style is derived from its own sound — the mean level,
    spread and spectral flux of 16 coarse bands, onset density, pulse clarity and tempo,
    loudness and dynamics — standardised and mixed through a fixed random projection and a
    tanh into the first three quarters of the style dimensions (the last quarter is random:
    only metadata shows it). Genres are k-means clusters of the styles; listening, artists,
    tags and years then follow the styles as in the synthesised world. ``world.json``'s
    ``real_sound`` names each song's recording and offset. Unreadable recordings are listed
    there and skipped.

    ``preset`` is a preset's name or a :class:`WorldConfig` (``seed`` and ``overrides``
    replace its settings). Deterministic for ``seed`` (independent of ``num_threads``). Audio
    renders in parallel with a progress bar; Ctrl-C stops it (files already written stay
    valid).

    Parameters
    ----------
    path : str or os.PathLike
        The directory to write (created if needed).
    preset : str or WorldConfig, default "tiny"
        A preset's name (``"tiny"``, ``"small"`` or ``"paper"``, see :func:`world_config`)
        or a configuration.
    seed : int, default 0
        Seed of the world; replaces the configuration's.
    num_threads : int, default 0
        Threads to render the audio on (0: one per core).
    show_progress : bool, default True
        Show a progress bar (plain log lines when stderr is not a terminal).
    callback : callable or None, optional
        Called as ``callback(done, total, loss)`` as the audio renders (``loss`` is None);
        an exception it raises stops the writing and propagates.
    **overrides
        Settings replacing the preset's, by their flat names (``WorldConfig.SETTINGS``), for
        example ``n_users``, ``duration``, ``audio_format`` or ``source_audio``.

    Returns
    -------
    dict
        A summary of what was written and planted: ``n_users``, ``n_songs``, ``n_tracks``,
        ``n_artists``, ``plays``, ``audio_files``, ``songs_without_track``,
        ``songs_without_audio``, ``songs_with_second_track``, ``songs_without_tags`` and
        ``songs_with_unknown_year``.

    Raises
    ------
    ValueError
        If the preset or a setting is unknown or out of range, ``audio_format`` is
        ``"mp3"`` in a build without the ``lame`` feature, or ``source_audio`` is not a
        directory or gives too few songs.
    TypeError
        If a setting has the wrong type.
    FileNotFoundError
        If ``source_audio`` does not exist.
    KeyboardInterrupt
        On Ctrl-C.

    See Also
    --------
    musrec.data.load : Reads the world back as a dataset.
    load_truth : Reads the world's ground truth.

    Examples
    --------
    >>> from musrec import synthetic
    >>> summary = synthetic.write_world("world", "tiny", seed=1)  # doctest: +SKIP
    >>> summary = synthetic.write_world("world-flac", n_users=100, audio_format="flac")  # doctest: +SKIP
    >>> summary["n_users"]  # doctest: +SKIP
    100
    """
    if isinstance(preset, WorldConfig):
        config = preset.replace(seed=seed, **overrides)
    else:
        config = WorldConfig(preset, seed=seed, **overrides)
    n_songs = config.n_songs
    bar = _progress.bar(n_songs, "audio", show_progress)
    try:
        report = _progress.callback_with_total(bar, callback)
        summary = _musrec.write_world(os.fspath(path), config, num_threads=num_threads, callback=report)
    finally:
        bar.close()
    return summary


def load_truth(path: str | os.PathLike) -> dict:
    """Read the ground truth of a world written by :func:`write_world`.

    ``world.json`` (config, ids, planted flags, per-song genre / artist / year, which style
    dimensions the audio and the metadata render) merged with the arrays of
    ``world.safetensors``: ``song_style``, ``user_taste``, ``genre_centre``,
    ``song_popularity`` and ``sound_params`` (the twelve audible qualities of each song).

    Parameters
    ----------
    path : str or os.PathLike
        The world's directory.

    Returns
    -------
    dict
        The keys of ``world.json`` (``config``, ``user_ids``, ``song_ids``, ``track_id``,
        ``has_audio``, ``has_tags``, ``song_genre``, ``song_artist``, ``year``,
        ``audio_dims``, ``metadata_dims``, ``real_sound``, ...) and the float32 arrays of
        ``world.safetensors``.

    Raises
    ------
    FileNotFoundError
        If ``world.json`` or ``world.safetensors`` is missing.

    Examples
    --------
    >>> from musrec import synthetic
    >>> truth = synthetic.load_truth("world")  # doctest: +SKIP
    >>> truth["song_style"].shape[0] == len(truth["song_ids"])  # doctest: +SKIP
    True
    """
    path = os.fspath(path)
    with open(os.path.join(path, "world.json"), encoding="utf-8") as f:
        truth = json.load(f)
    truth.update(_musrec.read_tensors(os.path.join(path, "world.safetensors")))
    return truth
