r"""Real datasets, read as they come (the reading runs in the Rust core).

The formats are those of the Million Song Dataset family; the synthetic world
(:func:`musrec.synthetic.write_world`) writes the same ones, in the same layout::

    DIR/
      train_triplets.txt   Echo Nest Taste Profile: user_id \t song_id \t play_count (required)
      track_metadata.db    MSD SQLite: songs(track_id, title, song_id, release, artist_id,
                           artist_mbid, artist_name, duration, artist_familiarity,
                           artist_hotttnesss, year); year 0 = unknown
      unique_tracks.txt    track_id<SEP>song_id<SEP>artist_name<SEP>title
                           (at least one of these two maps songs to tracks)
      lastfm_tags.db       Last.fm SQLite: tids(tid), tags(tag), tid_tag(tid, tag, val)  (optional)
      audio/               one file per track, <track_id>.mp3/.wav/.flac/.ogg, nested folders allowed

:func:`load` reads it all, joins songs to tracks (a song with several tracks uses the first,
by track id, that has audio), counts every miss, and applies the paper's de-sparsification
(:func:`desparsify`). Bad input never stops a long run with a traceback: malformed lines and
dangling references are counted in the report (the first few quoted with line numbers); a
missing required file raises ``FileNotFoundError`` naming it, a corrupt SQLite file
``musrec.FormatError`` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from . import _musrec, _progress
from ._sparse import csr_tuple, to_csr
from ._sparse import from_parts as _csr

__all__ = [
    "Dataset",
    "SongTable",
    "desparsify",
    "index_audio",
    "load",
    "read_tags",
    "read_track_metadata",
    "read_triplets",
    "read_unique_tracks",
]

Callback = Callable[[int, int, Any], None]


def _bytes_bar(desc: str, show: bool) -> Any:
    bar = _progress.bar(0, desc, show)
    if hasattr(bar, "unit"):
        bar.unit, bar.unit_scale, bar.unit_divisor = "B", True, 1024
    return bar


@dataclass
class Triplets:
    """A Taste Profile file as a users x songs matrix (float32 play counts).

    Returned by :func:`read_triplets`.

    Attributes
    ----------
    plays : scipy.sparse.csr_matrix of shape (n_users, n_songs)
        The play counts, float32.
    user_ids : list of str
        The user id of each row, in order of first appearance in the file.
    song_ids : list of str
        The song id of each column, in order of first appearance in the file.
    report : dict
        What was read besides the plays: ``lines``, ``records``, ``blank_lines``,
        ``malformed`` (``{count, first}``) and ``duplicates`` (summed pairs).

    See Also
    --------
    read_triplets : Reads a Taste Profile file.

    Examples
    --------
    >>> from musrec import data
    >>> triplets = data.read_triplets("train_triplets.txt")  # doctest: +SKIP
    >>> triplets.plays.shape == (len(triplets.user_ids), len(triplets.song_ids))  # doctest: +SKIP
    True
    """

    plays: sp.csr_matrix
    user_ids: list[str]
    song_ids: list[str]
    #: lines, records, blank_lines, malformed {count, first}, duplicates (summed pairs).
    report: dict


def read_triplets(
    path: str | os.PathLike,
    strict: bool = False,
    show_progress: bool = True,
    callback: Callback | None = None,
) -> Triplets:
    r"""Stream ``train_triplets.txt`` (``user \t song \t count`` lines) into a sparse matrix.

    Ids are numbered in order of first appearance. Malformed lines (wrong field count, empty
    id, count not a positive integer, not UTF-8) are skipped and counted, or raise
    ``musrec.FormatError`` with the line number when ``strict``. A repeated (user, song) pair
    has its counts summed.

    Parameters
    ----------
    path : str or os.PathLike
        The Taste Profile file.
    strict : bool, default False
        Raise on the first malformed line instead of counting it.
    show_progress : bool, default True
        Show a progress bar over the file's bytes (plain log lines when stderr is not a
        terminal).
    callback : callable or None, optional
        Called as ``callback(done, total, loss)`` with the bytes read and the file's size
        (``loss`` is None); an exception it raises stops the reading and propagates.

    Returns
    -------
    Triplets
        The users x songs play counts, the ids of the rows and columns, and a report of the
        lines read (``lines``, ``records``, ``blank_lines``, ``malformed`` with the first few
        quoted with their line numbers, ``duplicates``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    musrec.FormatError
        If ``strict`` and a line is malformed, or if the file has no well-formed line at all.
    KeyboardInterrupt
        On Ctrl-C.

    See Also
    --------
    load : Reads a whole dataset directory.

    Notes
    -----
    The full 48M-line file needs about 1.5 GB of memory at peak.

    Examples
    --------
    >>> from musrec import data
    >>> triplets = data.read_triplets("train_triplets.txt")  # doctest: +SKIP
    >>> triplets.report["malformed"]["count"]  # doctest: +SKIP
    0
    """
    bar = _bytes_bar("triplets", show_progress)
    try:
        plays, users, songs, report = _musrec.read_triplets(
            os.fspath(path), strict=strict, callback=_progress.callback_with_total(bar, callback)
        )
    finally:
        bar.close()
    return Triplets(_csr(plays), users, songs, report)


def read_track_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read every track of an MSD ``track_metadata.db``, as columns (lists / numpy arrays).

    Parameters
    ----------
    path : str or os.PathLike
        The SQLite file.

    Returns
    -------
    dict
        The ``songs`` table's columns, sorted by ``track_id``: ``track_id``, ``title``,
        ``song_id``, ``release``, ``artist_id``, ``artist_mbid`` and ``artist_name`` (lists
        of str; NULL reads as ``""``), ``duration``, ``artist_familiarity`` and
        ``artist_hotttnesss`` (float32 arrays) and ``year`` (int32 array, 0 when unknown);
        ``report`` counts rows skipped for an empty track or song id (``{count, first}``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is a directory.
    musrec.FormatError
        If the file is not a readable SQLite database, or has no ``songs`` table with the
        MSD's columns.

    See Also
    --------
    read_unique_tracks : The song to track map without SQLite.

    Examples
    --------
    >>> from musrec import data
    >>> tracks = data.read_track_metadata("track_metadata.db")  # doctest: +SKIP
    >>> tracks["track_id"][:2], tracks["year"][:2]  # doctest: +SKIP
    """
    return _musrec.read_track_metadata(os.fspath(path))


def read_tags(path: str | os.PathLike) -> dict[str, Any]:
    """Read a Last.fm ``lastfm_tags.db`` as a tracks x tags matrix of tag strengths.

    Parameters
    ----------
    path : str or os.PathLike
        The SQLite file (tables ``tids(tid)``, ``tags(tag)`` and ``tid_tag(tid, tag, val)``).

    Returns
    -------
    dict
        ``track_id`` (list of str), ``tag_names`` (list of str) and ``matrix``, a tracks x
        tags ``scipy.sparse.csr_matrix`` of tag strengths (0-100, float32); ``report``
        counts ``rows``, ``dangling`` rowids (``{count, first}``), ``duplicates`` and
        ``tracks_without_tags``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is a directory.
    musrec.FormatError
        If the file is not a readable SQLite database, or lacks one of the Last.fm tables or
        columns.

    Notes
    -----
    Rows of ``tid_tag`` pointing at a rowid that does not exist are counted and skipped; a
    (track, tag) pair given twice keeps its larger strength.

    Examples
    --------
    >>> from musrec import data
    >>> tags = data.read_tags("lastfm_tags.db")  # doctest: +SKIP
    >>> tags["matrix"].shape == (len(tags["track_id"]), len(tags["tag_names"]))  # doctest: +SKIP
    True
    """
    out = _musrec.read_tags(os.fspath(path))
    out["matrix"] = _csr(out["matrix"])
    return out


def read_unique_tracks(path: str | os.PathLike) -> dict[str, Any]:
    """Read the MSD ``unique_tracks.txt`` (``track_id<SEP>song_id<SEP>artist_name<SEP>title``).

    A line is split at its first three separators only (titles may contain ``<SEP>``);
    bytes that are not UTF-8 are replaced.

    Parameters
    ----------
    path : str or os.PathLike
        The text file.

    Returns
    -------
    dict
        ``track_id``, ``song_id``, ``artist_name`` and ``title`` (lists of str, one entry
        per line), and ``report``, the malformed lines skipped (without four fields or with
        an empty track or song id) as ``{count, first}``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.

    See Also
    --------
    read_track_metadata : The same map with the rest of the MSD metadata.

    Examples
    --------
    >>> from musrec import data
    >>> tracks = data.read_unique_tracks("unique_tracks.txt")  # doctest: +SKIP
    >>> tracks["report"]["count"]  # doctest: +SKIP
    0
    """
    return _musrec.read_unique_tracks(os.fspath(path))


def index_audio(path: str | os.PathLike) -> tuple[list[str], list[str], dict]:
    """Find the audio files under ``path`` (recursively) named by track id.

    Files are ``<track_id>.mp3``, ``.wav``, ``.flac`` or ``.ogg``, flat or in nested folders
    (only the file's stem matters). Nothing is decoded; empty files, duplicates (mp3
    preferred, then wav, flac, ogg) and other files are counted in the report.

    Parameters
    ----------
    path : str or os.PathLike
        The audio directory.

    Returns
    -------
    track_ids : list of str
        The track ids, sorted.
    paths : list of str
        The audio file of each track.
    report : dict
        ``files`` (audio files found), ``duplicates``, ``empty`` (``{count, first}``),
        ``ignored`` (other files, and hidden ones) and ``unreadable`` folders
        (``{count, first}``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not a directory.

    Examples
    --------
    >>> from musrec import data
    >>> track_ids, paths, report = data.index_audio("audio")  # doctest: +SKIP
    >>> len(track_ids) == len(paths)  # doctest: +SKIP
    True
    """
    tracks, paths, report = _musrec.index_audio(os.fspath(path))
    return tracks, [os.fspath(p) for p in paths], report


def desparsify(
    plays: Any, eligible: Any, n_users: int, n_songs: int, rounds: int = 1
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, dict]:
    """Apply the paper's de-sparsification to a users x songs matrix.

    Songs: among those with ``eligible`` true (e.g. with audio) and at least one play, the
    ``n_songs`` with the most plays (ties: more listeners, then lower index). Users: among
    those who played a kept song, the ``n_users`` with the most distinct kept songs (ties:
    more plays of them, then lower index). With ``rounds > 1`` the songs are re-ranked over
    the users kept by the previous round.

    Parameters
    ----------
    plays : scipy.sparse matrix of shape (n_users_before, n_songs_before)
        The play counts.
    eligible : array_like of bool of shape (n_songs_before,)
        Whether each song may be kept.
    n_users : int
        Users to keep at most, at least 1.
    n_songs : int
        Songs to keep at most, at least 1.
    rounds : int, default 1
        Rounds of song and user ranking, at least 1.

    Returns
    -------
    plays : scipy.sparse.csr_matrix of shape (users_kept, songs_kept)
        The sub-matrix, float32, rows and columns in ascending original order.
    users : numpy.ndarray of shape (users_kept,)
        The original row index of each kept user, int64.
    songs : numpy.ndarray of shape (songs_kept,)
        The original column index of each kept song, int64.
    report : dict
        ``users_before``, ``songs_before``, ``eligible_songs``, ``users_kept``,
        ``songs_kept``, ``plays_kept`` and ``songs_without_plays`` (kept songs that no kept
        user played).

    Raises
    ------
    TypeError
        If ``plays`` is not a scipy.sparse matrix (a dense array is refused too).
    ValueError
        If ``eligible`` does not have one entry per song, or ``n_users``, ``n_songs`` or
        ``rounds`` is less than 1.

    Examples
    --------
    >>> import numpy as np
    >>> from musrec import data, synthetic
    >>> plays = synthetic.listening(n_users=100, n_songs=200, mean_songs_per_user=10).plays
    >>> sub, users, songs, report = data.desparsify(plays, np.ones(200, bool), n_users=50, n_songs=80)
    >>> sub.shape
    (50, 80)
    >>> report["users_kept"], report["songs_kept"]
    (50, 80)
    """
    m = to_csr(plays, "plays")
    flags = np.ascontiguousarray(eligible, dtype=bool).reshape(-1)
    out, users, songs, report = _musrec.desparsify(csr_tuple(m), flags, int(n_users), int(n_songs), int(rounds))
    return _csr(out), np.asarray(users, np.int64), np.asarray(songs, np.int64), report


@dataclass
class SongTable:
    """What is known of each kept song (one entry per column of ``Dataset.plays``).

    Unknown text is ``""``, an unknown year 0, a missing audio file ``None``.

    Attributes
    ----------
    song_id : list of str
        The Taste Profile song id.
    track_id : list of str
        The track chosen for the song.
    audio_path : list of str or None
        The track's audio file.
    artist_id : list of str
        The MSD artist id.
    artist_name : list of str
        The artist's name.
    title : list of str
        The title.
    release : list of str
        The release (album).
    year : numpy.ndarray of shape (n_songs,)
        The year, int32.
    duration : numpy.ndarray of shape (n_songs,)
        The duration in seconds from the metadata, float32.
    tag_names : list of str
        The names of the columns of ``tags``.
    tags : scipy.sparse.csr_matrix of shape (n_songs, n_tags)
        Last.fm strengths (0-100).

    Examples
    --------
    >>> from musrec import data
    >>> songs = data.load("msd").songs  # doctest: +SKIP
    >>> len(songs) == len(songs.song_id)  # doctest: +SKIP
    True
    """

    song_id: list[str]
    track_id: list[str]
    audio_path: list[str | None]
    artist_id: list[str]
    artist_name: list[str]
    title: list[str]
    release: list[str]
    year: np.ndarray
    duration: np.ndarray
    tag_names: list[str]
    #: songs x tags CSR matrix of Last.fm strengths (0-100).
    tags: sp.csr_matrix

    def __len__(self) -> int:
        return len(self.song_id)

    def metadata(self) -> list[dict]:
        """List each song's tags (with Last.fm strengths), artist and year, for FusionModel.

        Returns
        -------
        list of dict
            One dict per song: ``"tags"`` (``{tag: strength}``, empty without tags),
            ``"artist"`` (the artist id, None when unknown) and ``"year"`` (None when
            unknown).

        Examples
        --------
        >>> from musrec import data
        >>> meta = data.load("msd").songs.metadata()  # doctest: +SKIP
        >>> sorted(meta[0])  # doctest: +SKIP
        ['artist', 'tags', 'year']
        """
        tags = self.tags
        out = []
        for i in range(len(self)):
            lo, hi = tags.indptr[i], tags.indptr[i + 1]
            weights = {self.tag_names[j]: float(v) for j, v in zip(tags.indices[lo:hi], tags.data[lo:hi])}
            out.append({"tags": weights, "artist": self.artist_id[i] or None, "year": int(self.year[i]) or None})
        return out


@dataclass
class Dataset:
    """A loaded dataset: kept users x kept songs play counts and their song table.

    Returned by :func:`load`.

    Attributes
    ----------
    plays : scipy.sparse.csr_matrix of shape (n_users, n_songs)
        The play counts of the kept users and songs, float32.
    user_ids : list of str
        The user id of each row.
    songs : SongTable
        What is known of each column's song.
    report : dict
        Every count of what was skipped or missing: ``triplets``, ``metadata_rows_skipped``,
        ``unique_tracks_malformed``, ``tags``, ``audio``, ``join``, ``desparsify``,
        ``notes``.

    Examples
    --------
    >>> from musrec import data
    >>> ds = data.load("msd")  # doctest: +SKIP
    >>> ds.plays.shape == (len(ds.user_ids), len(ds.songs))  # doctest: +SKIP
    True
    """

    plays: sp.csr_matrix
    user_ids: list[str]
    songs: SongTable
    #: every count of what was skipped or missing: triplets, metadata_rows_skipped,
    #: unique_tracks_malformed, tags, audio, join, desparsify, notes.
    report: dict = field(default_factory=dict)

    def summary(self) -> str:
        """Describe in a few lines what was loaded and what was missing.

        Returns
        -------
        str
            The sizes kept and before de-sparsification, the triplets' counts, and the songs
            without a track, audio, tags or year, one topic per line, then the report's notes.

        Examples
        --------
        >>> from musrec import data
        >>> print(data.load("msd").summary())  # doctest: +SKIP
        """
        r = self.report
        j, d, t = r["join"], r["desparsify"], r["triplets"]
        lines = [
            f"{d['users_kept']:,} users x {d['songs_kept']:,} songs, {d['plays_kept']:,} (user, song) pairs "
            f"(from {d['users_before']:,} x {d['songs_before']:,})",
            f"triplets: {t['records']:,} records, {t['malformed']['count']:,} malformed lines, "
            f"{t['duplicates']:,} duplicate pairs summed",
            f"songs: {j['songs_without_track']:,} without a track, {j['songs_without_audio']:,} without audio, "
            f"{j['songs_without_tags']:,} without tags, {j['songs_with_unknown_year']:,} with unknown year, "
            f"{j['songs_with_several_tracks']:,} with several tracks",
        ]
        if d["songs_without_plays"]:
            lines.append(f"{d['songs_without_plays']:,} kept songs have no play from a kept user")
        lines.extend(r.get("notes", []))
        return "\n".join(lines)


def load(
    path: str | os.PathLike,
    n_users: int | None = None,
    n_songs: int | None = None,
    rounds: int = 1,
    require_audio: bool = True,
    strict: bool = False,
    min_tag_value: float = 0.0,
    show_progress: bool = True,
    callback: Callback | None = None,
) -> Dataset:
    """Load a dataset directory (layout in this module's docstring) and de-sparsify it.

    Parameters
    ----------
    path : str or os.PathLike
        The dataset directory.
    n_users : int or None, optional
        Users to keep at most (None: all). The paper's size is ``n_users=10_000,
        n_songs=50_000``.
    n_songs : int or None, optional
        Songs to keep at most (None: all; with ``require_audio``, every song that has audio).
    rounds : int, default 1
        De-sparsification rounds (see :func:`desparsify`).
    require_audio : bool, default True
        Drop the songs without audio.
    strict : bool, default False
        A malformed triplet line raises instead of being counted.
    min_tag_value : float, default 0.0
        Tags weaker than this (0-100) are dropped.
    show_progress : bool, default True
        Show a progress bar, which follows the triplets file in bytes.
    callback : callable or None, optional
        Called as ``callback(done, total, loss)`` with the bytes of the triplets file read
        and its size (``loss`` is None); an exception it raises stops the loading and
        propagates.

    Returns
    -------
    Dataset
        The kept users x kept songs play counts, their ids, the song table and the report.

    Raises
    ------
    ValueError
        If ``n_users`` or ``n_songs`` is not a positive integer or None, ``rounds`` is less
        than 1, ``path`` is not a directory, or no song is left (with audio).
    FileNotFoundError
        If ``path``, ``train_triplets.txt``, both ``track_metadata.db`` and
        ``unique_tracks.txt``, or ``audio/`` is missing (the message names it).
    musrec.FormatError
        If an SQLite file is corrupt (the message names the file), the triplets file has no
        well-formed line, or ``strict`` and a triplet line is malformed.
    KeyboardInterrupt
        On Ctrl-C.

    See Also
    --------
    desparsify : The de-sparsification applied.
    musrec.synthetic.write_world : Writes a synthetic dataset directory.

    Examples
    --------
    >>> from musrec import data
    >>> ds = data.load("msd", n_users=10_000, n_songs=50_000)  # doctest: +SKIP
    >>> print(ds.summary())  # doctest: +SKIP
    """
    for name, value in (("n_users", n_users), ("n_songs", n_songs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    options = {
        "n_users": None if n_users is None else int(n_users),
        "n_songs": None if n_songs is None else int(n_songs),
        "rounds": int(rounds),
        "require_audio": bool(require_audio),
        "strict": bool(strict),
        "min_tag_value": float(min_tag_value),
    }
    bar = _bytes_bar("triplets", show_progress)
    try:
        report = _progress.callback_with_total(bar, callback)
        out = _musrec.load_dataset(os.fspath(path), options, callback=report)
    finally:
        bar.close()
    s = out["songs"]
    songs = SongTable(
        song_id=s["song_id"],
        track_id=s["track_id"],
        audio_path=[None if p is None else os.fspath(p) for p in s["audio_path"]],
        artist_id=s["artist_id"],
        artist_name=s["artist_name"],
        title=s["title"],
        release=s["release"],
        year=s["year"],
        duration=s["duration"],
        tag_names=s["tag_names"],
        tags=_csr(s["tags"]),
    )
    return Dataset(_csr(out["plays"]), out["user_ids"], songs, out["report"])
