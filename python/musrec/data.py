"""Real datasets, read as they come (the reading runs in the Rust core).

The formats are those of the Million Song Dataset family; the synthetic world
(:func:`musrec.synthetic.write_world`) writes the same ones, in the same layout::

    DIR/
      train_triplets.txt   Echo Nest Taste Profile: user_id \\t song_id \\t play_count (required)
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


def _csr(parts: tuple) -> sp.csr_matrix:
    indptr, indices, data, rows, cols = parts
    return sp.csr_matrix((data, indices, indptr), shape=(rows, cols))


def _bytes_bar(desc: str, show: bool) -> Any:
    bar = _progress.bar(0, desc, show)
    if hasattr(bar, "unit"):
        bar.unit, bar.unit_scale, bar.unit_divisor = "B", True, 1024
    return bar


@dataclass
class Triplets:
    """A Taste Profile file as a users x songs matrix (float32 play counts)."""

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
    """Stream ``train_triplets.txt`` (``user \\t song \\t count`` lines) into a sparse matrix.

    Ids are numbered in order of first appearance. Malformed lines (wrong field count, empty
    id, count not a positive integer) are skipped and counted, or raise ``musrec.FormatError``
    with the line number when ``strict``. A repeated (user, song) pair has its counts summed.
    The full 48M-line file needs about 1.5 GB of memory at peak.
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
    """Every track of an MSD ``track_metadata.db``, as columns (lists / numpy arrays).

    Keys: the ``songs`` table's columns, sorted by ``track_id``; ``year`` is 0 when unknown;
    ``report`` counts rows skipped for an empty track or song id.
    """
    return _musrec.read_track_metadata(os.fspath(path))


def read_tags(path: str | os.PathLike) -> dict[str, Any]:
    """A Last.fm ``lastfm_tags.db``: ``track_id``, ``tag_names`` and ``matrix``, a tracks x
    tags CSR matrix of tag strengths (0-100); ``report`` counts rows, dangling rowids,
    duplicates and tracks without tags."""
    out = _musrec.read_tags(os.fspath(path))
    out["matrix"] = _csr(out["matrix"])
    return out


def read_unique_tracks(path: str | os.PathLike) -> dict[str, Any]:
    """The MSD ``unique_tracks.txt`` (``track_id<SEP>song_id<SEP>artist_name<SEP>title``)."""
    return _musrec.read_unique_tracks(os.fspath(path))


def index_audio(path: str | os.PathLike) -> tuple[list[str], list[str], dict]:
    """Audio files under ``path`` (recursively) named by track id: ``(track_ids, paths, report)``,
    sorted by track id. Nothing is decoded; empty files, duplicates (mp3 preferred, then wav,
    flac, ogg) and other files are counted in the report."""
    tracks, paths, report = _musrec.index_audio(os.fspath(path))
    return tracks, [os.fspath(p) for p in paths], report


def desparsify(
    plays: Any, eligible: Any, n_users: int, n_songs: int, rounds: int = 1
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, dict]:
    """The paper's de-sparsification of a users x songs matrix.

    Songs: among those with ``eligible`` true (e.g. with audio) and at least one play, the
    ``n_songs`` with the most plays (ties: more listeners, then lower index). Users: among
    those who played a kept song, the ``n_users`` with the most distinct kept songs (ties:
    more plays of them, then lower index). With ``rounds > 1`` the songs are re-ranked over
    the users kept by the previous round. Returns the sub-matrix (rows and columns in
    ascending original order), the kept user and song indices, and a report.
    """
    m = to_csr(plays, "plays")
    flags = np.ascontiguousarray(eligible, dtype=bool).reshape(-1)
    out, users, songs, report = _musrec.desparsify(csr_tuple(m), flags, int(n_users), int(n_songs), int(rounds))
    return _csr(out), np.asarray(users, np.int64), np.asarray(songs, np.int64), report


@dataclass
class SongTable:
    """What is known of each kept song (one entry per column of ``Dataset.plays``).

    Unknown text is ``""``, an unknown year 0, a missing audio file ``None``.
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


@dataclass
class Dataset:
    """A loaded dataset: kept users x kept songs play counts and their song table."""

    plays: sp.csr_matrix
    user_ids: list[str]
    songs: SongTable
    #: every count of what was skipped or missing: triplets, metadata_rows_skipped,
    #: unique_tracks_malformed, tags, audio, join, desparsify, notes.
    report: dict = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines on what was loaded and what was missing."""
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

    The paper's size is ``n_users=10_000, n_songs=50_000``; ``None`` keeps everything (with
    ``require_audio``, every song that has audio). Songs without audio are dropped when
    ``require_audio``. Tags weaker than ``min_tag_value`` (0-100) are dropped.
    Progress follows the triplets file in bytes; Ctrl-C raises KeyboardInterrupt.
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
