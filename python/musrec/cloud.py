"""The cloud's update round: fold the events that edges logged into the next model bundle.

:func:`update` reads each edge's event log (:func:`musrec.edge.read_events`) after the offset
that the old bundle's manifest records for that edge, so every event is merged exactly once
however often a round runs; adds the new plays to the users' histories; then either folds
each changed user in again against the fixed song vectors (the default), or refits WMF on
all plays warm-started from the old vectors (``refit=True``); and writes the new bundle with
the advanced offsets, which an edge then hot-swaps (``POST /admin/reload``). The songs that
edges added from content (:func:`musrec.edge.read_songs`) join the new bundle first, embedded
again from their kept audio and metadata by the bundle's content model, so the plays on them
are merged too. A WMF refit moves every vector: the songs added from content and the
content model are carried into the new space by the linear map that best takes the known
songs' old vectors onto their new ones. Retraining the content model itself needs the
training audio and is not done here.
"""

from __future__ import annotations

import os
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import _musrec
from .edge import read_events, read_songs


def update(
    bundle: str | os.PathLike,
    events: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    refit: bool = False,
    iterations: int = 5,
    encoding: str | None = None,
    model_version: str | None = None,
    num_threads: int = 0,
) -> dict[str, Any]:
    """Merge the new events of the edge logs in ``events`` into ``bundle`` and write ``out``.

    Each edge's events after the offset that ``bundle``'s manifest records for it are merged,
    so every event is merged exactly once however often a round runs. The songs the edges
    added from content join first, embedded again by the bundle's content model; the new
    plays are added to the users' histories (an unknown user id adds the user), and the
    changed users are folded in again against the fixed song vectors, or WMF is refitted
    on all plays (``refit=True``). The new bundle records the advanced offsets; an edge
    hot-swaps to it with ``POST /admin/reload``.

    Parameters
    ----------
    bundle : str or os.PathLike
        The old bundle's directory.
    events : list of str or os.PathLike
        The directories of the edges' event logs (one path is taken as a list of one). An
        edge's records must all be in one of them; one directory may hold several edges'.
    out : str or os.PathLike
        The new bundle's directory; it must not exist.
    refit : bool, default False
        Refit WMF on all plays, warm-started from the old vectors, instead of folding in
        the changed users. The songs added from content and the content model are carried
        into the new space by the linear map that best takes the known songs' old vectors
        onto their new ones.
    iterations : int, default 5
        The refit's iterations (a positive integer); read only with ``refit=True``.
    encoding : {"f32", "f16", "int8"} or None, optional
        How the new bundle stores the song vectors. Default: the old bundle's encoding.
    model_version : str or None, optional
        The new bundle's model version. Default: a digest of its files.
    num_threads : int, default 0
        Threads of the fold-ins and the refit (0 = one per core).

    Returns
    -------
    dict
        A report: ``merged`` (events merged per edge, the skipped ones included),
        ``songs_added`` (songs an edge added from content that join the bundle, per edge),
        ``songs_failed`` (those that could not be embedded again, each a dict of
        ``edge_id``, ``song_id`` and ``error``, the reason), ``skipped`` (events naming a
        song the bundle does not have, per edge), ``offsets`` (the new per-edge offsets, as
        written to the manifest), ``users_changed`` (how many users got new plays),
        ``refit`` and the new bundle's ``manifest``.

    Raises
    ------
    FileNotFoundError
        If there is no directory at ``bundle`` or at one of ``events``, or the directory that
        is to hold ``out`` does not exist.
    musrec.FormatError
        If ``bundle`` is not a valid musrec bundle, or a log record holds neither an event
        nor a song.
    ValueError
        If an edge has logs in two of the directories, ``out`` already exists, ``encoding``
        is unknown, ``iterations`` is not a positive integer (with ``refit=True``), or an
        event to merge has an empty or too long user id or a play count that is not a
        positive number.

    See Also
    --------
    musrec.edge.read_events : Read an edge's events.
    musrec.edge.read_songs : Read the songs an edge added from content.
    musrec.edge.Client.reload : Hot-swap an edge to the new bundle.

    Examples
    --------
    >>> from musrec import cloud
    >>> logs = ["logs/edge-a", "logs/edge-b"]
    >>> report = cloud.update("bundles/v1", logs, "bundles/v2", model_version="v2")  # doctest: +SKIP
    >>> report["merged"], report["offsets"]  # doctest: +SKIP
    """
    core, manifest = _musrec.ServingCore.open(os.fspath(bundle), num_threads=num_threads)
    offsets: dict[str, int] = dict(manifest["edge_offsets"])
    if isinstance(events, (str, os.PathLike)):
        events = [events]
    seen_edges: dict[str, str] = {}
    merged: dict[str, int] = {}
    skipped: dict[str, int] = {}
    per_user: dict[str, list[tuple[str, float]]] = defaultdict(list)
    known_songs = set(core.song_ids)
    songs_added: dict[str, int] = {}
    songs_failed: list[dict[str, str]] = []
    for directory in events:
        for song in read_songs(directory):
            if song["song_id"] in known_songs:
                continue
            try:
                vector = core.song_vector(
                    audio_path=song["audio_path"],
                    tags=[tuple(t) for t in song["tags"]],
                    artist=song["artist"],
                    year=song["year"],
                )
                core.add_song(song["song_id"], vector)
            except (ValueError, OSError) as e:  # reported; the rest of the round goes on
                songs_failed.append({"edge_id": song["edge_id"], "song_id": song["song_id"], "error": str(e)})
                continue
            known_songs.add(song["song_id"])
            songs_added[song["edge_id"]] = songs_added.get(song["edge_id"], 0) + 1
    for directory in events:
        directory = os.fspath(directory)
        records = read_events(directory)
        edges = {r["edge_id"] for r in records}
        for edge_id in edges:
            if edge_id in seen_edges and seen_edges[edge_id] != directory:
                raise ValueError(f"edge {edge_id!r} has logs in both {seen_edges[edge_id]!r} and {directory!r}")
            seen_edges[edge_id] = directory
        last: dict[str, int] = {}
        for r in records:
            edge_id = r["edge_id"]
            last[edge_id] = r["offset"]
            if r["offset"] <= offsets.get(edge_id, 0):
                continue  # merged by an earlier round
            merged[edge_id] = merged.get(edge_id, 0) + 1
            if r["song_id"] in known_songs:
                per_user[r["user_id"]].append((r["song_id"], r["plays"]))
            else:
                skipped[edge_id] = skipped.get(edge_id, 0) + 1
        for edge_id, offset in last.items():
            offsets[edge_id] = max(offsets.get(edge_id, 0), offset)
    for user, plays in per_user.items():
        core.record_plays(user, plays)
    if refit:
        core = _refit(core, iterations, num_threads)
    new_manifest = core.write_bundle(os.fspath(out), encoding or manifest["song_encoding"], model_version, offsets)
    return {
        "merged": merged,
        "songs_added": songs_added,
        "songs_failed": songs_failed,
        "skipped": skipped,
        "offsets": offsets,
        "users_changed": len(per_user),
        "refit": bool(refit),
        "manifest": new_manifest,
    }


def _refit(core: _musrec.ServingCore, iterations: int, num_threads: int) -> _musrec.ServingCore:
    """WMF on every play of the merged catalogue, warm-started from its vectors.

    A refit moves every vector. The songs added from content keep content vectors, carried
    into the new space by the linear map that best takes the known songs' old vectors onto
    their new ones (:func:`musrec._musrec.output_alignment`), and the content model's
    predictions are carried by the same map, so later uploads land in the new space too.
    """
    if isinstance(iterations, bool) or int(iterations) < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    params = core.params.replace(iterations=iterations)
    plays = core.plays_csr()
    fitted = SimpleNamespace()  # wmf_fit stores the factors here
    _musrec.wmf_fit(
        fitted, params, plays, user_init=core.user_factors, item_init=core.song_factors, num_threads=num_threads
    )
    users, songs = fitted.user_factors, fitted.item_factors
    known, fusion = core.n_known, core.content_model_bytes()
    if known < core.n_songs or fusion is not None:
        old = np.ascontiguousarray(core.song_factors, dtype=np.float32)
        align = _musrec.output_alignment(old[:known], np.ascontiguousarray(songs[:known]))
        songs = np.ascontiguousarray(songs, dtype=np.float32)
        songs[known:] = old[known:] @ align
        if fusion is not None:
            fusion = _musrec.FusionCore.from_bytes(fusion).aligned(align).to_bytes()
    return _musrec.ServingCore.from_parts(
        params,
        core.features,
        core.log_mel_shape[0],  # excerpts per song
        core.user_ids,
        core.song_ids,
        users,
        songs,
        plays=plays,
        fusion=fusion,
        num_threads=num_threads,
        n_known=known,
    )
