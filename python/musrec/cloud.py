"""The cloud's update round: fold the events that edges logged into the next model bundle.

:func:`update` reads each edge's event log (:func:`musrec.edge.read_events`) after the offset
that the old bundle's manifest records for that edge, so every event is merged exactly once
however often a round runs; adds the new plays to the users' histories; then either folds
each changed user in again against the fixed song vectors (the default), or refits WMF on
all plays warm-started from the old vectors (``refit=True``); and writes the new bundle with
the advanced offsets, which an edge then hot-swaps (``POST /admin/reload``). The songs that
edges added from content (:func:`musrec.edge.read_songs`) join the new bundle first, embedded
again from their kept audio and metadata by the bundle's content model, so the plays on them
are merged too. A WMF refit moves every vector. Given the training songs' dataset
(``data``: their audio and metadata), the content model is trained again, with the old
model's kind and settings, on the known songs against their refitted vectors, and every song
that edges added from content is embedded again by it; without ``data``, the songs added
from content and the content model are carried into the new space by the linear map that
best takes the known songs' old vectors onto their new ones.
"""

from __future__ import annotations

import os
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import _musrec, audio
from . import data as _data
from ._sparse import from_parts
from .edge import read_events, read_songs
from .fusion import _AUDIO_KINDS, FusionModel


def update(
    bundle: str | os.PathLike,
    events: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    refit: bool = False,
    iterations: int = 5,
    data: str | os.PathLike | None = None,
    work: str | os.PathLike | None = None,
    encoding: str | None = None,
    model_version: str | None = None,
    num_threads: int = 0,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Merge the new events of the edge logs in ``events`` into ``bundle`` and write ``out``.

    Each edge's events after the offset that ``bundle``'s manifest records for it are merged,
    so every event is merged exactly once however often a round runs. The songs the edges
    added from content join first, embedded again by the bundle's content model; the new
    plays are added to the users' histories (an unknown user id adds the user), and the
    changed users are folded in again against the fixed song vectors, or WMF is refitted
    on all plays (``refit=True``), and with ``data`` the content model is trained again on
    the refitted vectors. The new bundle records the advanced offsets; an edge hot-swaps to
    it with ``POST /admin/reload``.

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
        the changed users. Without ``data``, the songs added from content and the content
        model are carried into the new space by the linear map that best takes the known
        songs' old vectors onto their new ones.
    iterations : int, default 5
        The refit's iterations (a positive integer); read only with ``refit=True``.
    data : str or os.PathLike or None, optional
        The dataset directory the bundle was trained from (layout: :mod:`musrec.data`), for
        its songs' audio and metadata; needs ``refit=True``. A content model of the old
        one's kind and settings is trained on the bundle's known songs found there with
        usable audio, against their refitted vectors (validation and early stopping as
        :meth:`musrec.FusionModel.fit` does them, with the refitted user vectors), and
        every song that the edges added from content (found in ``events``) is embedded
        again by it.
    work : str or os.PathLike or None, optional
        A directory for the log-Mel feature cache of ``data``'s songs
        (:class:`musrec.audio.FeatureCache`), so a later round reads them back; None: no
        cache.
    encoding : {"f32", "f16", "int8"} or None, optional
        How the new bundle stores the song vectors. Default: the old bundle's encoding.
    model_version : str or None, optional
        The new bundle's model version. Default: a digest of its files.
    num_threads : int, default 0
        Threads of the fold-ins, the refit and the content model (0 = one per core).
    show_progress : bool, default False
        Show progress bars of the dataset's loading, the features and the training.

    Returns
    -------
    dict
        A report: ``merged`` (events merged per edge, the skipped ones included),
        ``songs_added`` (songs an edge added from content that join the bundle, per edge),
        ``songs_failed`` (those that could not be embedded again, each a dict of
        ``edge_id``, ``song_id`` and ``error``, the reason), ``skipped`` (events naming a
        song the bundle does not have, per edge), ``offsets`` (the new per-edge offsets, as
        written to the manifest), ``users_changed`` (how many users got new plays),
        ``refit``, ``content`` (None unless the content model was trained again: then its
        ``kind``, ``training_songs``, ``songs_missing`` (known songs not in ``data`` or
        without usable audio), ``epochs``, ``validation_loss`` (the best, None for the
        linear kinds) and ``songs_reembedded``) and the new bundle's ``manifest``. With
        ``data``, ``songs_failed`` also holds the songs added from content that could not be
        embedded again by the new model (they keep the old vector, carried by the map).

    Raises
    ------
    FileNotFoundError
        If there is no directory at ``bundle``, at one of ``events`` or at ``data`` (or a
        required file of ``data`` is missing), or the directory that is to hold ``out`` does
        not exist.
    musrec.FormatError
        If ``bundle`` is not a valid musrec bundle, or a log record holds neither an event
        nor a song.
    ValueError
        If an edge has logs in two of the directories, ``out`` already exists, ``encoding``
        is unknown, ``iterations`` is not a positive integer (with ``refit=True``), an
        event to merge has an empty or too long user id or a play count that is not a
        positive number, ``data`` is given without ``refit=True`` or to a bundle without a
        content model, or fewer than two of the known songs have usable audio in ``data``.

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

    A refit of WMF and of the content model, from the dataset the bundle was trained on:

    >>> report = cloud.update("bundles/v2", logs, "bundles/v3", refit=True, data="world")  # doctest: +SKIP
    >>> report["content"]["training_songs"]  # doctest: +SKIP
    """
    if data is not None:
        if not refit:
            raise ValueError("data= trains the content model again on refitted vectors: it needs refit=True")
        if not os.path.isdir(data):
            raise FileNotFoundError(f"no dataset directory at {os.fspath(data)!r}")
    core, manifest = _musrec.ServingCore.open(os.fspath(bundle), num_threads=num_threads)
    if data is not None and core.content_model_bytes() is None:
        raise ValueError("the bundle has no content model to train again; leave out data=")
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
    content_songs: dict[str, dict[str, Any]] = {}  # every song an edge added, by id: its last record
    for directory in events:
        for song in read_songs(directory):
            content_songs[song["song_id"]] = song
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
    content = None
    if refit:
        core = _refit(core, iterations, num_threads)
        if data is not None:
            core, content, failed = _retrain_content(core, data, work, content_songs, num_threads, show_progress)
            songs_failed += failed
    new_manifest = core.write_bundle(os.fspath(out), encoding or manifest["song_encoding"], model_version, offsets)
    return {
        "merged": merged,
        "songs_added": songs_added,
        "songs_failed": songs_failed,
        "skipped": skipped,
        "offsets": offsets,
        "users_changed": len(per_user),
        "refit": bool(refit),
        "content": content,
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
    return _rebuilt(core, params, users, songs, plays, fusion, num_threads)


def _rebuilt(
    core: _musrec.ServingCore,
    params: Any,
    users: np.ndarray,
    songs: np.ndarray,
    plays: Any,
    fusion: Any,
    num_threads: int,
) -> _musrec.ServingCore:
    """Build a serving core of ``core``'s ids, features and known songs from these parts."""
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
        n_known=core.n_known,
    )


def _retrain_content(
    core: _musrec.ServingCore,
    data_dir: str | os.PathLike,
    work: str | os.PathLike | None,
    content_songs: dict[str, dict[str, Any]],
    num_threads: int,
    show_progress: bool,
) -> tuple[_musrec.ServingCore, dict[str, Any], list[dict[str, str]]]:
    """Train the content model again on the known songs' refitted vectors; embed the added songs.

    ``core`` is the refitted core. The new model has the old one's kind and settings (seed
    included) and is fitted as :meth:`musrec.Pipeline.train` fits one: on the known songs of
    ``data_dir`` with usable audio, a random tenth held out for validation, the refitted user
    vectors and WMF settings for the ranking metric (and the plays, for ``objective="wpe"``).
    """
    old = FusionModel._from_core(_musrec.FusionCore.from_bytes(core.content_model_bytes()), num_threads)
    model = old.clone()
    known = core.n_known
    ds = _data.load(data_dir, show_progress=show_progress)
    position = {song_id: i for i, song_id in enumerate(ds.songs.song_id)}
    ids = core.song_ids[:known]
    found = np.array([position.get(s, -1) for s in ids], dtype=np.int64)
    rows = np.flatnonzero(found >= 0)  # bundle positions of the known songs the dataset has
    spec = None
    if model.kind in _AUDIO_KINDS:
        cache = None if work is None else os.path.join(os.fspath(work), "features")
        paths = [ds.songs.audio_path[i] for i in found[rows]]
        result = audio.extract(
            paths,
            core.features,
            num_threads=num_threads,
            show_progress=show_progress,
            cache_dir=cache,
            excerpts=core.log_mel_shape[0],
        )
        ok = np.asarray(result.ok, bool)
        rows, spec = rows[ok], result.features[ok]
    if len(rows) < 2:
        raise ValueError(
            f"{os.fspath(data_dir)}: {len(rows)} of the bundle's {known:,} known songs have usable audio "
            "and metadata there; the content model needs several"
        )
    meta_all = ds.songs.metadata()
    meta = [meta_all[i] for i in found[rows]]
    users = np.ascontiguousarray(core.user_factors, dtype=np.float32)
    songs = np.array(core.song_factors, dtype=np.float32)
    wpe = model.config_["train"]["objective"] == "wpe"
    model.fit(
        spec,
        meta,
        songs[rows],
        users=users,
        wmf_params=core.params,
        plays=from_parts(core.plays_csr())[:, rows] if wpe else None,
        show_progress=show_progress,
    )
    fusion = model._core.to_bytes()
    fresh = _rebuilt(core, core.params, users, songs, core.plays_csr(), fusion, num_threads)
    failed: list[dict[str, str]] = []
    reembedded = 0
    for i, song_id in enumerate(core.song_ids[known:], start=known):
        song = content_songs.get(song_id)
        try:
            if song is None:
                raise ValueError("its record is not in the event logs given")
            songs[i] = fresh.song_vector(
                audio_path=song["audio_path"],
                tags=[tuple(t) for t in song["tags"]],
                artist=song["artist"],
                year=song["year"],
            )
            reembedded += 1
        except (ValueError, OSError) as e:  # reported; it keeps its vector carried by the map
            edge_id = "" if song is None else song["edge_id"]
            failed.append({"edge_id": edge_id, "song_id": song_id, "error": f"not embedded again: {e}"})
    if reembedded:
        fresh = _rebuilt(core, core.params, users, songs, core.plays_csr(), fusion, num_threads)
    history = model.history_
    content = {
        "kind": model.kind,
        "training_songs": int(len(rows)),
        "songs_missing": int(known - len(rows)),
        "epochs": len(history["train_loss"]),
        "validation_loss": min(history["validation_loss"], default=None),
        "songs_reembedded": reembedded,
    }
    return fresh, content, failed
