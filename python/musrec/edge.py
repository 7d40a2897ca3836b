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
    """An error answer of the edge service: ``status`` is the HTTP status, ``message`` the
    service's explanation."""

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
    """A running edge service; stop it with :meth:`stop` (or use it as a context manager)."""

    def __init__(self, core: _musrec.EdgeServer):
        self._core = core

    @property
    def host(self) -> str:
        return self._core.host

    @property
    def port(self) -> int:
        return self._core.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def model_version(self) -> str:
        """The version of the bundle the service started with (a reload may change it)."""
        return self._core.model_version

    @property
    def replayed_events(self) -> int:
        """Logged events folded in at start: those after the bundle's offset for this edge."""
        return self._core.replayed_events

    @property
    def restored_songs(self) -> dict[str, int]:
        """The songs this edge had added from content (kept in its event log) that the
        bundle lacked, taken back at start: ``restored`` with their logged vectors (same
        model version), ``reembedded`` from their kept audio and metadata (a new model), and
        ``lost`` (the bundle has no content model, or the audio no longer decodes)."""
        restored, reembedded, lost = self._core.restored_songs
        return {"restored": restored, "reembedded": reembedded, "lost": lost}

    @property
    def running(self) -> bool:
        return self._core.is_running

    def stop(self) -> None:
        """Stop accepting connections, finish the requests in flight, and return."""
        self._core.stop()

    def wait(self) -> None:
        """Block until the service stops or Ctrl-C (which stops it)."""
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

    ``port=0`` picks a free port (see :attr:`Server.port`). ``events`` is the directory of
    this edge's durable event log (without it ``POST /v1/events`` answers 503);
    ``durability`` is ``"buffered"`` (an acknowledged event survives the process being
    killed) or ``"fsync"`` (it survives power loss; concurrent appends share one fsync).
    On start, the logged events after the bundle's offset for ``edge_id`` are folded in
    again. ``token`` (or the first line of ``token_file``) opens the write and admin
    endpoints; without one they answer 401. Uploads over ``max_upload_bytes`` get 413.
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
    """The events of the log in ``path`` with an offset above ``after``, in order: dicts of
    ``offset``, ``edge_id``, ``user_id``, ``song_id``, ``plays``, ``timestamp``. Reading
    stops at the first torn or corrupt record, so nothing corrupt is returned."""
    if isinstance(after, bool) or int(after) < 0:
        raise ValueError(f"after must be an offset >= 0, got {after!r}")
    rows = _musrec.read_events(os.fspath(path), int(after), None if limit is None else int(limit))
    keys = ("offset", "edge_id", "user_id", "song_id", "plays", "timestamp")
    return [dict(zip(keys, row)) for row in rows]


def read_songs(path: str | os.PathLike, after: int = 0) -> list[dict[str, Any]]:
    """The songs an edge added from content, as its log at ``path`` recorded them with an
    offset above ``after``, in order: dicts of ``offset``, ``edge_id``, ``song_id``, ``tags``
    (``[tag, weight]`` pairs), ``artist``, ``year``, ``model_version`` and ``vector`` (what
    that model predicted), ``timestamp``, and ``audio_path``, the kept upload (None when the
    song came with metadata only). :func:`read_events` leaves these records out."""
    if isinstance(after, bool) or int(after) < 0:
        raise ValueError(f"after must be an offset >= 0, got {after!r}")
    return _musrec.read_songs(os.fspath(path), int(after))


class EventLog:
    """An edge's event log opened for appending (what the service writes to). Opening
    truncates a torn tail left by a crash; :attr:`truncated_bytes` says how much."""

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
        return self._core.last_offset

    def append(self, events: list[dict[str, Any]]) -> tuple[int, int]:
        """Append events (dicts of user_id, song_id, plays, timestamp); returns the (first,
        last) offsets once they are as durable as the log's mode promises."""
        rows = [(str(e["user_id"]), str(e["song_id"]), float(e["plays"]), float(e["timestamp"])) for e in events]
        return self._core.append(rows)


class Client:
    """A small client of an edge service at ``url`` (e.g. ``Server.url``). Error answers
    raise :class:`EdgeError`; successful ones return the decoded JSON."""

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
        q = urllib.parse.urlencode(
            {"n": int(n), "exclude_played": str(bool(exclude_played)).lower(), "only_new": str(bool(only_new)).lower()}
        )
        return self._request("GET", f"/v1/users/{self._id(user_id)}/recommendations?{q}")

    def similar(self, song_id: Any, n: int = 10) -> dict:
        return self._request("GET", f"/v1/songs/{self._id(song_id)}/similar?n={int(n)}")

    def audience(self, song_id: Any, n: int = 100) -> dict:
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
        """Upload a new song: ``audio`` is a file path or the file's bytes (``filename``
        then names its format, e.g. ``"song.mp3"``)."""
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
        """Send listening events; acknowledged once appended to the edge's log."""
        return self._request("POST", "/v1/events", json.dumps(events).encode(), "application/json")

    def reload(self, bundle: str | os.PathLike) -> dict:
        """Hot-swap the service to another bundle."""
        body = json.dumps({"path": os.fspath(bundle)}).encode()
        return self._request("POST", "/admin/reload", body, "application/json")

    def health(self) -> dict:
        return self._request("GET", "/healthz")

    def ready(self) -> dict:
        return self._request("GET", "/readyz")

    def metrics(self) -> str:
        return self._request("GET", "/metrics")

    def openapi(self) -> dict:
        return self._request("GET", "/openapi.json")
