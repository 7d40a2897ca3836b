"""The edge service: serve a model bundle over HTTP, log what the edge collects, read it back.

- :func:`serve` starts the Rust service (axum on tokio, on its own threads: Python's GIL is
  free while it serves) on a bundle written by :meth:`musrec.Pipeline.export_bundle` and
  returns a :class:`Server` handle that a notebook or a test can stop.
- :class:`Client` is a small client of its JSON API (standard library only).
- :func:`read_events` reads an edge's durable event log for the cloud side, and
  :func:`read_songs` the songs it added from content;
  :class:`EventLog` appends to one directly.

The endpoints, all JSON, every response naming the model version (``model_version`` in the
body, ``x-model-version`` header)::

    GET  /v1/users/{user_id}/recommendations?n=10&exclude_played=true&only_new=false
    GET  /v1/songs/{song_id}/similar?n=10
    GET  /v1/songs/{song_id}/audience?n=100
    POST /v1/songs        multipart: 'audio' file + 'metadata' JSON {song_id?, tags, artist, year}
    POST /v1/events       [{user_id, song_id, plays, timestamp}, ...]
    POST /admin/reload    {"path": BUNDLE}
    GET  /healthz  /readyz  /metrics  /openapi.json

The three POSTs need ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from . import _musrec
from ._musrec import MusrecError


class EdgeError(MusrecError):
    """An error answer of the edge service.

    :class:`Client` raises it for every error answer of the service: ``status`` is the HTTP
    status, ``message`` the service's explanation (the ``error`` field of its JSON answer, or
    the answer's text). Its text reads ``"HTTP {status}: {message}"``.

    Parameters
    ----------
    status : int
        The HTTP status of the answer.
    message : str
        The service's explanation.

    Attributes
    ----------
    status : int
        The HTTP status of the answer.
    message : str
        The service's explanation.

    Examples
    --------
    >>> import musrec
    >>> from musrec.edge import EdgeError
    >>> err = EdgeError(404, 'unknown user "nobody"')
    >>> err.status, str(err)
    (404, 'HTTP 404: unknown user "nobody"')
    >>> isinstance(err, musrec.MusrecError)
    True
    """

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _token(token: str | None, token_file: str | os.PathLike | None) -> str | None:
    if token is not None and token_file is not None:
        raise ValueError("give token or token_file, not both")
    if token_file is not None:
        with open(token_file, encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            raise ValueError(f"the token file {os.fspath(token_file)!r} is empty")
    return token


class Server:
    """A running edge service; stop it with :meth:`stop` (or use it as a context manager).

    :func:`serve` starts the service and returns this handle. The service answers on its own
    threads, so Python's GIL is free while it serves; leaving a ``with`` block stops it.

    Parameters
    ----------
    core : musrec._musrec.EdgeServer
        The Rust service's handle, as :func:`serve` makes it.

    Attributes
    ----------
    host : str
        The address the service listens on.
    port : int
        The port the service listens on.
    url : str
        The service's base URL.
    model_version : str
        The version of the bundle the service started with.
    replayed_events : int
        Logged events folded in at start.
    restored_songs : dict of str to int
        The songs the edge had added from content, taken back at start.
    running : bool
        Whether the service is still running.

    See Also
    --------
    serve : Start the service.
    Client : A client of its JSON API.

    Examples
    --------
    >>> from musrec import edge
    >>> with edge.serve("bundles/v1", port=0) as server:  # doctest: +SKIP
    ...     print(server.url, server.model_version)
    """

    def __init__(self, core: _musrec.EdgeServer):
        self._core = core

    @property
    def host(self) -> str:
        """The address the service listens on (``serve``'s ``host``).

        Returns
        -------
        str
            The bound IP address, e.g. ``"127.0.0.1"``.

        Examples
        --------
        >>> from musrec import edge
        >>> server = edge.serve("bundles/v1", port=0)  # doctest: +SKIP
        >>> server.host  # doctest: +SKIP
        """
        return self._core.host

    @property
    def port(self) -> int:
        """The port the service listens on (the free one picked when ``serve`` got ``port=0``).

        Returns
        -------
        int
            The bound port.

        Examples
        --------
        >>> from musrec import edge
        >>> server = edge.serve("bundles/v1", port=0)  # doctest: +SKIP
        >>> server.port  # doctest: +SKIP
        """
        return self._core.port

    @property
    def url(self) -> str:
        """The service's base URL, what a :class:`Client` is given.

        Returns
        -------
        str
            ``"http://{host}:{port}"``.

        Examples
        --------
        >>> from musrec import edge
        >>> server = edge.serve("bundles/v1", port=0)  # doctest: +SKIP
        >>> client = edge.Client(server.url)  # doctest: +SKIP
        """
        return f"http://{self.host}:{self.port}"

    @property
    def model_version(self) -> str:
        """The version of the bundle the service started with (a reload may change it).

        A reload (``POST /admin/reload``) changes the model that is served, not this value;
        every response of the service names the model version that answered it.

        Returns
        -------
        str
            The starting bundle's model version.

        Examples
        --------
        >>> from musrec import edge
        >>> server = edge.serve("bundles/v1", port=0)  # doctest: +SKIP
        >>> server.model_version  # doctest: +SKIP
        """
        return self._core.model_version

    @property
    def replayed_events(self) -> int:
        """Logged events folded in at start: those after the bundle's offset for this edge.

        Returns
        -------
        int
            How many listening events of the edge's log were folded in again (0 without an
            event log).

        Examples
        --------
        >>> from musrec import edge
        >>> server = edge.serve("bundles/v2", port=0, events="events", edge_id="edge-a")  # doctest: +SKIP
        >>> server.replayed_events  # doctest: +SKIP
        """
        return self._core.replayed_events

    @property
    def restored_songs(self) -> dict[str, int]:
        """The songs this edge had added from content that the bundle lacked, taken back at start.

        The songs are kept in the edge's event log: ``restored`` counts those added back with
        their logged vectors (same model version), ``reembedded`` those embedded again from
        their kept audio and metadata (a new model), and ``lost`` those that could not be
        added back (the bundle has no content model, or the audio no longer decodes).

        Returns
        -------
        dict of str to int
            ``{"restored": ..., "reembedded": ..., "lost": ...}``.

        Examples
        --------
        >>> from musrec import edge
        >>> server = edge.serve("bundles/v2", port=0, events="events", edge_id="edge-a")  # doctest: +SKIP
        >>> server.restored_songs["lost"]  # doctest: +SKIP
        """
        restored, reembedded, lost = self._core.restored_songs
        return {"restored": restored, "reembedded": reembedded, "lost": lost}

    @property
    def running(self) -> bool:
        """Whether the service is still running.

        Returns
        -------
        bool
            False once it has stopped.

        Examples
        --------
        >>> from musrec import edge
        >>> server = edge.serve("bundles/v1", port=0)  # doctest: +SKIP
        >>> server.stop()  # doctest: +SKIP
        >>> server.running  # doctest: +SKIP
        """
        return self._core.is_running

    def stop(self) -> None:
        """Stop accepting connections, finish the requests in flight, and return.

        Stopping a service that has stopped does nothing.

        Examples
        --------
        >>> from musrec import edge
        >>> server = edge.serve("bundles/v1", port=0)  # doctest: +SKIP
        >>> server.stop()  # doctest: +SKIP
        """
        self._core.stop()

    def wait(self) -> None:
        """Block until the service stops or Ctrl-C (which stops it).

        Raises
        ------
        KeyboardInterrupt
            On Ctrl-C, once the service has stopped.

        Examples
        --------
        >>> from musrec import edge
        >>> server = edge.serve("bundles/v1", host="0.0.0.0", token_file="token")  # doctest: +SKIP
        >>> server.wait()  # doctest: +SKIP
        """
        try:
            while self._core.is_running:
                time.sleep(0.2)
        finally:
            self.stop()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Server({self.url}, model {self.model_version}, {state})"


def serve(
    bundle: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    events: str | os.PathLike | None = None,
    edge_id: str = "edge",
    durability: str = "buffered",
    token: str | None = None,
    token_file: str | os.PathLike | None = None,
    max_upload_bytes: int = 32 << 20,
    workers: int = 2,
    segment_bytes: int = 64 << 20,
) -> Server:
    """Start the edge service on ``bundle`` and return at once with a :class:`Server`.

    The service (axum on tokio) runs on its own threads until :meth:`Server.stop`. On start,
    the logged events after the bundle's offset for ``edge_id`` are folded in again, and the
    songs the edge had added from content that the bundle lacks are taken back (see
    :attr:`Server.restored_songs`).

    Parameters
    ----------
    bundle : str or os.PathLike
        The model bundle directory, as written by :meth:`musrec.Pipeline.export_bundle`,
        :meth:`musrec.Recommender.export_bundle` or :func:`musrec.cloud.update`.
    host : str, default "127.0.0.1"
        The address to listen on.
    port : int, default 8080
        The port to listen on; ``port=0`` picks a free port (see :attr:`Server.port`).
    events : str, os.PathLike or None, optional
        The directory of this edge's durable event log (created if missing). Without it
        ``POST /v1/events`` answers 503.
    edge_id : str, default "edge"
        The name of this edge in its log's records and in bundles' edge offsets (1-256
        bytes).
    durability : {"buffered", "fsync"}, default "buffered"
        ``"buffered"``: an acknowledged event survives the process being killed;
        ``"fsync"``: it survives power loss (concurrent appends share one fsync).
    token : str or None, optional
        The bearer token that opens the write and admin endpoints (``POST /v1/songs``,
        ``POST /v1/events``, ``POST /admin/reload``); without a token they answer 401.
    token_file : str, os.PathLike or None, optional
        A file holding the token instead: its contents, stripped of surrounding whitespace.
    max_upload_bytes : int, default 32 << 20
        The largest upload (the whole multipart body) accepted; bigger ones get 413.
    workers : int, default 2
        Threads of the runtime that answers requests.
    segment_bytes : int, default 64 << 20
        Size limit of one segment file of the event log (at least 4096): a new segment
        starts when the current one would pass it.

    Returns
    -------
    Server
        The running service's handle.

    Raises
    ------
    ValueError
        If both ``token`` and ``token_file`` are given, the token is empty, ``durability``
        is unknown, ``edge_id`` or ``segment_bytes`` is out of range, or the service cannot
        listen on ``host:port`` (for example when the port is taken).
    FileNotFoundError
        If there is no directory at ``bundle``, or no file at ``token_file``.
    musrec.FormatError
        If ``bundle`` is not a valid musrec bundle (no ``manifest.json``, a file that fails
        its checksum, parts that do not fit together).
    OSError
        If the event log cannot be opened or read.

    See Also
    --------
    Client : A client of the service's JSON API.
    musrec.cloud.update : Fold the logged events into the next bundle.

    Examples
    --------
    >>> from musrec import edge
    >>> server = edge.serve("bundles/v1", port=0, events="events", token_file="token")  # doctest: +SKIP
    >>> edge.Client(server.url).health()  # doctest: +SKIP
    >>> server.stop()  # doctest: +SKIP
    """
    core = _musrec.EdgeServer.start(
        os.fspath(bundle),
        host=host,
        port=int(port),
        events_dir=None if events is None else os.fspath(events),
        edge_id=edge_id,
        durability=durability,
        token=_token(token, token_file),
        max_upload_bytes=int(max_upload_bytes),
        workers=int(workers),
        segment_bytes=int(segment_bytes),
    )
    return Server(core)


def read_events(path: str | os.PathLike, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    """Read the listening events of the log in ``path`` with an offset above ``after``, in order.

    Reading stops at the first torn or corrupt record, so nothing corrupt is returned. The
    records of songs an edge added from content are left out (see :func:`read_songs`).

    Parameters
    ----------
    path : str or os.PathLike
        The event log's directory (``serve``'s ``events``, or an :class:`EventLog`'s path).
    after : int, default 0
        Return only the events with an offset above it (for example an edge's offset in a
        bundle's manifest).
    limit : int or None, optional
        Read at most this many records. Song records count towards it, so fewer events may
        come back.

    Returns
    -------
    list of dict
        One dict per event, with ``offset`` (the record's sequence number in the log, from
        1), ``edge_id``, ``user_id``, ``song_id``, ``plays`` and ``timestamp`` (seconds since
        the Unix epoch).

    Raises
    ------
    ValueError
        If ``after`` is negative (or a bool).
    FileNotFoundError
        If there is no directory at ``path``.
    musrec.FormatError
        If a whole, checksummed record holds neither an event nor a song.

    Examples
    --------
    >>> from musrec import edge
    >>> events = edge.read_events("events", after=120)  # doctest: +SKIP
    >>> sum(e["plays"] for e in events if e["user_id"] == "u1")  # doctest: +SKIP
    """
    if isinstance(after, bool) or int(after) < 0:
        raise ValueError(f"after must be an offset >= 0, got {after!r}")
    rows = _musrec.read_events(os.fspath(path), int(after), None if limit is None else int(limit))
    keys = ("offset", "edge_id", "user_id", "song_id", "plays", "timestamp")
    return [dict(zip(keys, row)) for row in rows]


def read_songs(path: str | os.PathLike, after: int = 0) -> list[dict[str, Any]]:
    """Read the songs an edge added from content, as its log at ``path`` recorded them.

    The records with an offset above ``after`` come back in order. :func:`read_events`
    leaves these records out.

    Parameters
    ----------
    path : str or os.PathLike
        The event log's directory.
    after : int, default 0
        Return only the songs recorded with an offset above it.

    Returns
    -------
    list of dict
        One dict per song: ``offset``, ``edge_id``, ``song_id``, ``tags`` (``[tag, weight]``
        pairs), ``artist``, ``year``, ``model_version`` and ``vector`` (what that model
        predicted), ``timestamp`` (seconds since the Unix epoch, the edge's clock),
        ``audio`` (the kept upload's file name) and ``audio_path``, the kept upload (None
        when the song came with metadata only).

    Raises
    ------
    ValueError
        If ``after`` is negative (or a bool).
    FileNotFoundError
        If there is no directory at ``path``.
    musrec.FormatError
        If a whole, checksummed record holds neither an event nor a song.

    Examples
    --------
    >>> from musrec import edge
    >>> songs = edge.read_songs("events")  # doctest: +SKIP
    >>> [s["song_id"] for s in songs if s["audio_path"] is None]  # doctest: +SKIP
    """
    if isinstance(after, bool) or int(after) < 0:
        raise ValueError(f"after must be an offset >= 0, got {after!r}")
    return _musrec.read_songs(os.fspath(path), int(after))


class EventLog:
    """An edge's event log opened for appending (what the service writes to).

    Opening creates the log's directory if needed, and truncates a torn tail left by a
    crash; :attr:`truncated_bytes` says how much.

    Parameters
    ----------
    path : str or os.PathLike
        The log's directory.
    edge_id : str, default "edge"
        The edge whose records are appended (1-256 bytes).
    durability : {"buffered", "fsync"}, default "buffered"
        ``"buffered"``: an appended event survives the process being killed; ``"fsync"``:
        it survives power loss (concurrent appends share one fsync).
    segment_bytes : int, default 64 << 20
        Size limit of one segment file (at least 4096): a new segment starts when the
        current one would pass it.

    Attributes
    ----------
    path : str
        The log's directory.
    truncated_bytes : int
        Bytes cut from the end of the last segment at opening (a torn write).
    last_offset : int
        The offset of the last record in the log.

    Raises
    ------
    ValueError
        If ``edge_id``, ``durability`` or ``segment_bytes`` is out of range.
    OSError
        If the log cannot be created, read or repaired.

    Examples
    --------
    >>> from musrec import edge
    >>> log = edge.EventLog("events", edge_id="edge-a", durability="fsync")  # doctest: +SKIP
    >>> log.truncated_bytes  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        edge_id: str = "edge",
        durability: str = "buffered",
        segment_bytes: int = 64 << 20,
    ):
        self._core, self.truncated_bytes = _musrec.EventLogCore.open(
            os.fspath(path), edge_id, durability, int(segment_bytes)
        )
        self.path = os.fspath(path)

    @property
    def last_offset(self) -> int:
        """The offset of the last record in the log, events and songs alike.

        Returns
        -------
        int
            The last record's sequence number (0 when the log is empty).

        Examples
        --------
        >>> from musrec import edge
        >>> log = edge.EventLog("events", edge_id="edge-a")  # doctest: +SKIP
        >>> log.last_offset  # doctest: +SKIP
        """
        return self._core.last_offset

    def append(self, events: list[dict[str, Any]]) -> tuple[int, int]:
        """Append events (dicts of user_id, song_id, plays, timestamp) as consecutive records.

        It returns once they are as durable as the log's mode promises.

        Parameters
        ----------
        events : list of dict
            The events: ``user_id`` and ``song_id`` (converted to ``str``), ``plays`` and
            ``timestamp`` (converted to ``float``; seconds since the Unix epoch).

        Returns
        -------
        first : int
            The offset of the first event appended.
        last : int
            The offset of the last one.

        Raises
        ------
        KeyError
            If an event lacks one of the keys.
        ValueError
            If ``events`` is empty, an event is invalid (an empty or over-long id, plays
            not positive and finite, a timestamp not finite: then nothing is written), or
            a record is over the size limit (1 MiB).
        OSError
            If the write fails.

        Examples
        --------
        >>> from musrec import edge
        >>> log = edge.EventLog("events", edge_id="edge-a")  # doctest: +SKIP
        >>> log.append([{"user_id": "u1", "song_id": "s1", "plays": 2, "timestamp": 1.7e9}])  # doctest: +SKIP
        """
        rows = [(str(e["user_id"]), str(e["song_id"]), float(e["plays"]), float(e["timestamp"])) for e in events]
        return self._core.append(rows)


class Client:
    """A small client of an edge service at ``url`` (e.g. ``Server.url``).

    Error answers raise :class:`EdgeError`; successful ones return the decoded JSON. Only the
    standard library is used (:mod:`urllib.request`).

    Parameters
    ----------
    url : str
        The service's base URL (trailing slashes are dropped).
    token : str or None, optional
        The bearer token, sent as ``Authorization: Bearer <token>`` with every request; the
        write and admin endpoints (:meth:`add_song`, :meth:`events`, :meth:`reload`) need it.
    timeout : float, default 30.0
        Seconds to wait for each request.

    Attributes
    ----------
    url : str
        The service's base URL, without a trailing slash.
    token : str or None
        The bearer token.
    timeout : float
        Seconds to wait for each request.

    See Also
    --------
    serve : Start the service.

    Examples
    --------
    >>> from musrec import edge
    >>> client = edge.Client("http://127.0.0.1:8080/", token="s3cret-token")
    >>> client.url
    'http://127.0.0.1:8080'
    >>> client.recommend("u1", n=5)["items"]  # doctest: +SKIP
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = float(timeout)

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode("utf-8", "replace")
            raise EdgeError(e.code, message) from None
        return json.loads(raw) if kind.startswith("application/json") else raw.decode("utf-8")

    @staticmethod
    def _id(value: Any) -> str:
        return urllib.parse.quote(str(value), safe="")

    def recommend(self, user_id: Any, n: int = 10, exclude_played: bool = True, only_new: bool = False) -> dict:
        """Get the top-n songs, known and new, for a user (``GET /v1/users/{user_id}/recommendations``).

        Parameters
        ----------
        user_id : str
            One of the served users (converted to ``str``).
        n : int, default 10
            How many songs (1 to 10,000).
        exclude_played : bool, default True
            Leave out what the user played.
        only_new : bool, default False
            Rank only the songs added from content.

        Returns
        -------
        dict
            ``user_id``, ``items`` (``{"song_id", "score"}`` dicts, best first) and
            ``model_version``.

        Raises
        ------
        EdgeError
            If the service answers with an error: 404 for an unknown user, 400 for a bad ``n``
            or for ``only_new`` without new songs.
        urllib.error.URLError
            If the service cannot be reached.

        Examples
        --------
        >>> from musrec import edge
        >>> client = edge.Client("http://127.0.0.1:8080")
        >>> client.recommend("u1", n=5, only_new=True)["items"]  # doctest: +SKIP
        """
        q = urllib.parse.urlencode(
            {"n": int(n), "exclude_played": str(bool(exclude_played)).lower(), "only_new": str(bool(only_new)).lower()}
        )
        return self._request("GET", f"/v1/users/{self._id(user_id)}/recommendations?{q}")

    def similar(self, song_id: Any, n: int = 10) -> dict:
        """Get the n songs most similar to a catalogue song (``GET /v1/songs/{song_id}/similar``).

        Similarity is the cosine of the song vectors; the song itself is left out.

        Parameters
        ----------
        song_id : str
            A song of the catalogue, known or added (converted to ``str``).
        n : int, default 10
            How many songs (1 to 10,000).

        Returns
        -------
        dict
            ``song_id``, ``items`` (``{"song_id", "score"}`` dicts, most similar first) and
            ``model_version``.

        Raises
        ------
        EdgeError
            If the service answers with an error: 404 for an unknown song, 400 for a bad ``n``.
        urllib.error.URLError
            If the service cannot be reached.

        Examples
        --------
        >>> from musrec import edge
        >>> client = edge.Client("http://127.0.0.1:8080")
        >>> client.similar("SOAAAGQ12A8C1420C8", n=5)["items"]  # doctest: +SKIP
        """
        return self._request("GET", f"/v1/songs/{self._id(song_id)}/similar?n={int(n)}")

    def audience(self, song_id: Any, n: int = 100) -> dict:
        """Get the n users to push a catalogue song to (``GET /v1/songs/{song_id}/audience``).

        Parameters
        ----------
        song_id : str
            A song of the catalogue, known or added (converted to ``str``).
        n : int, default 100
            How many users (1 to 10,000).

        Returns
        -------
        dict
            ``song_id``, ``items`` (``{"user_id", "score"}`` dicts, best first) and
            ``model_version``.

        Raises
        ------
        EdgeError
            If the service answers with an error: 404 for an unknown song, 400 for a bad ``n``.
        urllib.error.URLError
            If the service cannot be reached.

        Examples
        --------
        >>> from musrec import edge
        >>> client = edge.Client("http://127.0.0.1:8080")
        >>> client.audience("SOAAAGQ12A8C1420C8", n=20)["items"]  # doctest: +SKIP
        """
        return self._request("GET", f"/v1/songs/{self._id(song_id)}/audience?n={int(n)}")

    def add_song(
        self,
        audio: str | os.PathLike | bytes | None = None,
        *,
        song_id: str | None = None,
        tags: Any = None,
        artist: str | None = None,
        year: int | None = None,
        filename: str | None = None,
    ) -> dict:
        """Upload a new song (``POST /v1/songs``), which the service adds from its content.

        ``audio`` is a file path or the file's bytes (``filename`` then names its format,
        e.g. ``"song.mp3"``). The service predicts the song's vector with its content model;
        the song is then recommendable to every user. With an event log, the edge keeps the
        audio and logs the song before adding it, so a restart keeps it.

        Parameters
        ----------
        audio : str, os.PathLike, bytes or None, optional
            The audio file's path or its bytes; None for a song given by its metadata only.
        song_id : str or None, optional
            The new song's id. Default: the service names it ``"sha256:"`` followed by the
            first 16 hex digits of the audio's SHA-256 (a song without audio needs an id).
        tags : list, dict or None, optional
            A list of tag names (weight 1 each), a list of ``(tag, weight)`` pairs (as
            :class:`musrec.Recommender` takes them) or a ``{tag: weight}`` mapping (weights
            finite and >= 0); None for no tags.
        artist : str or None, optional
            The artist id (converted to ``str``).
        year : int or None, optional
            The release year (converted to ``int``).
        filename : str or None, optional
            The upload's file name, whose extension tells the service the format. Default:
            the path's base name, or ``"upload.bin"`` for bytes.

        Returns
        -------
        dict
            ``song_id``, ``new`` (True) and ``model_version``.

        Raises
        ------
        EdgeError
            If the service answers with an error: 401 without the right token, 409 for a song
            already in the catalogue, 413 for an upload over the edge's limit, 422 for audio it
            cannot use, 400 for bad metadata or a bundle without a content model.
        urllib.error.URLError
            If the service cannot be reached.
        FileNotFoundError
            If ``audio`` is a path with no file there.

        Examples
        --------
        >>> from musrec import edge
        >>> client = edge.Client("http://127.0.0.1:8080", token="s3cret-token")
        >>> client.add_song("new_song.mp3", tags={"rock": 100, "indie": 40}, year=2011)  # doctest: +SKIP
        >>> client.add_song(song_id="NEW-1", tags=["jazz"], artist="AR123")  # doctest: +SKIP
        """
        if isinstance(tags, (list, tuple)) and tags and all(isinstance(t, (list, tuple)) for t in tags):
            tags = {str(t[0]): t[1] for t in tags}  # (tag, weight) pairs: the service's mapping form
        metadata: dict[str, Any] = {"tags": tags if tags is not None else []}
        if song_id is not None:
            metadata["song_id"] = str(song_id)
        if artist is not None:
            metadata["artist"] = str(artist)
        if year is not None:
            metadata["year"] = int(year)
        parts = [("metadata", "metadata.json", "application/json", json.dumps(metadata).encode())]
        if audio is not None:
            if isinstance(audio, (bytes, bytearray)):
                data, name = bytes(audio), filename or "upload.bin"
            else:
                with open(audio, "rb") as f:
                    data = f.read()
                name = filename or os.path.basename(os.fspath(audio))
            parts.append(("audio", name, "application/octet-stream", data))
        boundary = uuid.uuid4().hex
        body = (
            b"".join(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                f"Content-Type: {kind}\r\n\r\n".encode()
                + data
                + b"\r\n"
                for field, name, kind, data in parts
            )
            + f"--{boundary}--\r\n".encode()
        )
        return self._request("POST", "/v1/songs", body, f"multipart/form-data; boundary={boundary}")

    def events(self, events: list[dict[str, Any]]) -> dict:
        """Send listening events; acknowledged once appended to the edge's log.

        ``POST /v1/events``: the users' vectors are folded in at once (an unknown user id adds
        the user).

        Parameters
        ----------
        events : list of dict
            The events, each with exactly ``user_id``, ``song_id`` (a song of the catalogue),
            ``plays`` (a positive number) and ``timestamp`` (seconds since the Unix epoch).

        Returns
        -------
        dict
            ``accepted`` (how many), ``first_offset`` and ``last_offset`` (their offsets in
            the log) and ``model_version``.

        Raises
        ------
        EdgeError
            If the service answers with an error: 401 without the right token, 404 for an unknown song, 400 for
            an empty list or a bad value, 503 when the edge has no event log.
        urllib.error.URLError
            If the service cannot be reached.

        Examples
        --------
        >>> from musrec import edge
        >>> client = edge.Client("http://127.0.0.1:8080", token="s3cret-token")
        >>> client.events([{"user_id": "u1", "song_id": "NEW-1", "plays": 3, "timestamp": 1.7e9}])  # doctest: +SKIP
        """
        return self._request("POST", "/v1/events", json.dumps(events).encode(), "application/json")

    def reload(self, bundle: str | os.PathLike) -> dict:
        """Hot-swap the service to another bundle.

        ``POST /admin/reload``: requests in flight finish on the model they started with;
        the edge's logged events after the new bundle's offset are folded in again, and the
        songs it added from content that the bundle lacks are taken back.

        Parameters
        ----------
        bundle : str or os.PathLike
            The new bundle's directory, as the service's machine sees it.

        Returns
        -------
        dict
            ``previous_model_version``, ``replayed_events``, ``restored_songs``,
            ``reembedded_songs``, ``lost_songs`` and ``model_version`` (the new one).

        Raises
        ------
        EdgeError
            If the service answers with an error: 401 without the right token, 400 for a missing or invalid bundle.
        urllib.error.URLError
            If the service cannot be reached.

        Examples
        --------
        >>> from musrec import edge
        >>> client = edge.Client("http://127.0.0.1:8080", token="s3cret-token")
        >>> client.reload("/srv/bundles/v2")["model_version"]  # doctest: +SKIP
        """
        body = json.dumps({"path": os.fspath(bundle)}).encode()
        return self._request("POST", "/admin/reload", body, "application/json")

    def health(self) -> dict:
        """Check that the service answers (``GET /healthz``).

        Returns
        -------
        dict
            ``status`` (``"ok"``) and ``model_version``.

        Raises
        ------
        EdgeError
            If the service answers with an error.
        urllib.error.URLError
            If the service cannot be reached.

        Examples
        --------
        >>> from musrec import edge
        >>> edge.Client("http://127.0.0.1:8080").health()  # doctest: +SKIP
        """
        return self._request("GET", "/healthz")

    def ready(self) -> dict:
        """Check that the service is ready and get the catalogue's size (``GET /readyz``).

        Returns
        -------
        dict
            ``status`` (``"ready"``), ``users``, ``songs``, ``new_songs`` (added from
            content), ``event_log`` (``{"edge_id", "last_offset"}``, or None without a log)
            and ``model_version``.

        Raises
        ------
        EdgeError
            If the service answers with an error.
        urllib.error.URLError
            If the service cannot be reached.

        Examples
        --------
        >>> from musrec import edge
        >>> edge.Client("http://127.0.0.1:8080").ready()["songs"]  # doctest: +SKIP
        """
        return self._request("GET", "/readyz")

    def metrics(self) -> str:
        """Get the service's metrics in Prometheus' text format (``GET /metrics``).

        Returns
        -------
        str
            Request latency histograms (``musrec_request_duration_seconds``) and error
            counts (``musrec_request_errors_total``) per endpoint, and the model version
            (``musrec_model_info``).

        Raises
        ------
        EdgeError
            If the service answers with an error.
        urllib.error.URLError
            If the service cannot be reached.

        Examples
        --------
        >>> from musrec import edge
        >>> print(edge.Client("http://127.0.0.1:8080").metrics())  # doctest: +SKIP
        """
        return self._request("GET", "/metrics")

    def openapi(self) -> dict:
        """Get the service's API description (``GET /openapi.json``).

        Returns
        -------
        dict
            The OpenAPI 3.0 document of the endpoints.

        Raises
        ------
        EdgeError
            If the service answers with an error.
        urllib.error.URLError
            If the service cannot be reached.

        Examples
        --------
        >>> from musrec import edge
        >>> sorted(edge.Client("http://127.0.0.1:8080").openapi()["paths"])  # doctest: +SKIP
        """
        return self._request("GET", "/openapi.json")
