"""The edge side: model bundles, the serving core behind musrec.Recommender, the durable event
log, and the HTTP service (every endpoint and error over loopback, and a kill -9 restart)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import musrec
import numpy as np
import pytest
from musrec import cli, edge

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def trained(tiny_experiment):
    pipe = tiny_experiment[3]
    ds = pipe.dataset()
    _, usable = pipe.spectrograms()
    _, test_idx = pipe.split(usable)
    return pipe, ds, test_idx, pipe.metadata()


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):
    pipe = trained[0]
    path = tmp_path_factory.mktemp("bundles") / "v1"
    manifest = pipe.export_bundle(path, model_version="v1", edge_offsets={"other-edge": 7})
    return path, manifest


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secrets") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def server(bundle, token_file, tmp_path_factory):
    events = tmp_path_factory.mktemp("events")
    with edge.serve(bundle[0], port=0, events=events, edge_id="edge-a", token_file=token_file) as s:
        yield s, events


@pytest.fixture
def client(server):
    return edge.Client(server[0].url, token=TOKEN)


def _content(ds, meta, song):
    m = meta[song]
    return dict(audio_input=ds.songs.audio_path[song], tags=m["tags"], artist=m["artist"], year=m["year"])


# ---- bundles ----------------------------------------------------------------------------------
def test_the_bundle_holds_every_part_with_its_checksum(bundle, trained):
    path, manifest = bundle
    pipe, ds, *_ = trained
    assert manifest["format"] == "musrec.bundle" and manifest["format_version"] == 1
    assert manifest["model_version"] == "v1" and manifest["created"].endswith("Z")
    assert manifest["n_users"] == len(ds.user_ids) and manifest["n_songs"] == len(ds.songs.song_id)
    assert manifest["wmf"]["factors"] == manifest["factors"] == pipe.wmf_args["factors"]
    assert manifest["features"] == json.loads(pipe.features_config.to_json())
    assert manifest["excerpts"] == pipe.excerpts
    assert manifest["edge_offsets"] == {"other-edge": 7}
    assert set(manifest["files"]) == {
        "vectors.safetensors",
        "plays.safetensors",
        "ids.safetensors",
        "fusion.safetensors",
    }
    import hashlib

    for name, entry in manifest["files"].items():
        data = (path / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    assert sorted(os.listdir(path.parent)) == ["v1"]  # no temporary directory left behind
    with pytest.raises(ValueError, match="already exists"):
        pipe.export_bundle(path)


def test_a_corrupt_bundle_is_refused(bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle[0], copy)
    data = bytearray((copy / "vectors.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "vectors.safetensors").write_bytes(bytes(data))
    with pytest.raises(musrec.FormatError, match="checksum mismatch"):
        edge.serve(copy, port=0)
    with pytest.raises(musrec.FormatError, match="no manifest.json"):
        edge.serve(tmp_path, port=0)
    with pytest.raises(FileNotFoundError):
        edge.serve(tmp_path / "nowhere", port=0)


def test_compact_song_vectors_measure_their_overlap(trained, tmp_path):
    rec = trained[0].recommender("fusion")
    full = rec.export_bundle(tmp_path / "f32")
    size = {name: entry["bytes"] for name, entry in full["files"].items()}
    assert full["song_encoding_top10_overlap"] == 1.0
    for encoding, floor in (("f16", 0.95), ("int8", 0.8)):
        m = rec.export_bundle(tmp_path / encoding, encoding=encoding)
        assert m["song_encoding"] == encoding
        assert floor <= m["song_encoding_top10_overlap"] <= 1.0, m["song_encoding_top10_overlap"]
        assert m["files"]["vectors.safetensors"]["bytes"] < size["vectors.safetensors"]
    with pytest.raises(ValueError, match="unknown song vector encoding"):
        rec.export_bundle(tmp_path / "bad", encoding="int4")


def test_cli_export_writes_a_bundle(tiny_experiment, tmp_path, capsys):
    work = tiny_experiment[2]
    out = tmp_path / "cli-bundle"
    assert cli.main(["export", "--preset", "tiny", "--work", str(work), "--out", str(out), "--quiet"]) == 0
    assert "musrec export: wrote" in capsys.readouterr().out
    assert (out / "manifest.json").exists()
    assert cli.main(["export", "--preset", "tiny", "--work", str(work), "--out", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


# ---- the service ----------------------------------------------------------------------------
def test_served_rankings_are_the_recommenders(server, client, trained):
    pipe, ds, *_ = trained
    rec = pipe.recommender("fusion")
    user = ds.user_ids[3]
    got = client.recommend(user, n=7)
    assert got["model_version"] == "v1" and got["user_id"] == user
    songs, scores = rec.recommend(user, N=7)
    assert [i["song_id"] for i in got["items"]] == list(songs)
    np.testing.assert_allclose([i["score"] for i in got["items"]], scores, rtol=1e-6)
    assert len(client.recommend(user, n=5, exclude_played=False)["items"]) == 5
    song = ds.songs.song_id[5]
    similar = client.similar(song, n=4)
    assert [i["song_id"] for i in similar["items"]] == list(rec.similar_songs(song, N=4)[0])
    audience = client.audience(song, n=6)
    assert [i["user_id"] for i in audience["items"]] == list(rec.audience(song, N=6)[0])


def test_probes_metrics_and_the_api_description(server, client, trained):
    assert client.health()["status"] == "ok"
    ready = client.ready()
    assert ready["status"] == "ready" and ready["event_log"]["edge_id"] == "edge-a"
    assert ready["users"] >= len(trained[1].user_ids) and ready["model_version"] == "v1"
    client.recommend(trained[1].user_ids[0], n=3)
    text = client.metrics()
    count = [
        line
        for line in text.splitlines()
        if line.startswith('musrec_request_duration_seconds_count{endpoint="recommendations"}')
    ]
    assert count and int(count[0].split()[-1]) >= 1
    assert 'musrec_model_info{model_version="v1"} 1' in text
    api = client.openapi()
    assert api["openapi"].startswith("3.") and "/v1/users/{user_id}/recommendations" in api["paths"]


def test_bad_requests_get_json_errors(server, client, trained):
    ds = trained[1]
    user = ds.user_ids[0]
    cases = [
        (lambda: client.recommend("nobody"), 404, "unknown user"),
        (lambda: client.similar("NOSUCHSONG"), 404, "unknown song"),
        (lambda: client.audience("NOSUCHSONG"), 404, "unknown song"),
        (lambda: client.recommend(user, n=0), 400, "n must be between"),
        (lambda: client.recommend(user, n=10_001), 400, "n must be between"),
        (lambda: client._request("GET", f"/v1/users/{user}/recommendations?n=ten"), 400, "bad query string"),
        (lambda: client.recommend(user, only_new=True), 400, "no new songs"),
        (lambda: client._request("GET", "/v2/nothing"), 404, "no such endpoint"),
        (lambda: client._request("DELETE", "/v1/events"), 405, "method not allowed"),
        (lambda: client._request("POST", "/v1/events", b"[{not json", "application/json"), 400, "expected a JSON list"),
        (lambda: client._request("POST", "/v1/events", b"{}", "application/json"), 422, "expected a JSON list"),
        (lambda: client.events([]), 400, "empty"),
        (
            lambda: client.events([{"user_id": user, "song_id": "NOSUCHSONG", "plays": 1, "timestamp": 0}]),
            404,
            "event 0",
        ),
        (
            lambda: client.events([{"user_id": user, "song_id": ds.songs.song_id[0], "plays": -1, "timestamp": 0}]),
            400,
            "plays",
        ),
        (lambda: client.reload("/nonexistent/bundle"), 400, "nonexistent"),
        (lambda: client._request("POST", "/v1/songs", b"plain", "text/plain"), 400, "multipart"),
    ]
    for call, status, text in cases:
        with pytest.raises(edge.EdgeError) as info:
            call()
        assert info.value.status == status and text in info.value.message, (status, text, info.value)


def test_write_endpoints_need_the_token(server, trained):
    ds = trained[1]
    event = [{"user_id": ds.user_ids[0], "song_id": ds.songs.song_id[0], "plays": 1, "timestamp": 1.0}]
    for token in (None, "wrong", TOKEN + "x", ""):
        anonymous = edge.Client(server[0].url, token=token)
        for name, args in (("events", (event,)), ("reload", ("x",)), ("add_song", (b"x",))):
            with pytest.raises(edge.EdgeError) as info:
                getattr(anonymous, name)(*args)
            assert info.value.status == 401, (name, token, info.value)


def test_events_are_logged_acknowledged_and_folded_in(server, client, trained):
    s, events_dir = server
    ds = trained[1]
    songs = ds.songs.song_id
    batch = [
        {"user_id": "edge-newcomer", "song_id": songs[i], "plays": 2.0, "timestamp": 1_700_000_000.0 + i}
        for i in range(5)
    ]
    before = edge.read_events(events_dir)
    ack = client.events(batch)
    assert ack["accepted"] == 5 and ack["last_offset"] - ack["first_offset"] == 4
    logged = edge.read_events(events_dir, after=ack["first_offset"] - 1)
    assert [(e["user_id"], e["song_id"], e["plays"], e["edge_id"]) for e in logged] == [
        ("edge-newcomer", songs[i], 2.0, "edge-a") for i in range(5)
    ]
    assert len(edge.read_events(events_dir)) == len(before) + 5
    # the new user is recommendable at once, without what they played
    recs = client.recommend("edge-newcomer", n=10)["items"]
    assert len(recs) == 10 and not {r["song_id"] for r in recs} & set(songs[:5])
    # and their vector is the exact fold-in of those plays
    rec = trained[0].recommender("fusion")
    expected = rec.recommend_for_plays({songs[i]: 2.0 for i in range(5)}, N=10)[0]
    assert [r["song_id"] for r in recs] == list(expected)


def test_a_new_song_is_recommendable_when_the_upload_returns(server, client, trained):
    _, ds, test_idx, meta = trained
    song = int(test_idx[0])
    m = meta[song]
    path = ds.songs.audio_path[song]
    tags = m["tags"]
    added = client.add_song(path, song_id="UPLOADED-1", tags=tags, artist=m["artist"], year=m["year"])
    assert added["song_id"] == "UPLOADED-1" and added["model_version"] == "v1"
    user = ds.user_ids[0]
    new = client.recommend(user, n=5, only_new=True)["items"]
    assert "UPLOADED-1" in [i["song_id"] for i in new]
    # the served vector is the Recommender's for the same file and metadata
    rec = trained[0].recommender("fusion")
    vector = rec.add_song("UPLOADED-1", **_content(ds, meta, song))
    ours = rec.recommend(user, N=5, only_new=True)
    assert [i["song_id"] for i in new] == list(ours[0])
    assert np.isfinite(vector).all()
    audience = client.audience("UPLOADED-1", n=3)["items"]
    assert [a["user_id"] for a in audience] == list(rec.audience("UPLOADED-1", N=3)[0])
    # an id from the audio's digest when none is given
    with open(ds.songs.audio_path[int(test_idx[1])], "rb") as f:
        data = f.read()
    auto = client.add_song(data, tags=["rock"], filename=os.path.basename(ds.songs.audio_path[int(test_idx[1])]))
    assert auto["song_id"].startswith("sha256:")
    # (tag, weight) pairs, as the Recommender takes them, are sent as the service's mapping
    pairs = client.add_song(data, song_id="UPLOADED-PAIRS", tags=[("rock", 1.0), ("jazz", 0.5)], filename="a.wav")
    assert pairs["song_id"] == "UPLOADED-PAIRS"
    for call, status, text in [
        (lambda: client.add_song(path, song_id="UPLOADED-1", tags=tags), 409, "already in the catalogue"),
        (lambda: client.add_song(data, tags=["rock"], filename="x.wav"), 409, "already in the catalogue"),
        (
            lambda: client.add_song(b"this is not audio at all" * 50, song_id="junk", filename="junk.mp3"),
            422,
            "cannot use",
        ),
        (lambda: client.add_song(data[: len(data) // 50], song_id="cut", filename="cut.wav"), 422, "cannot use"),
        (lambda: client.add_song(None, song_id="silent-meta", tags=["rock"]), 400, "needs the song's audio"),
        (lambda: client.add_song(None, tags=["rock"]), 400, "song_id"),
    ]:
        with pytest.raises(edge.EdgeError) as info:
            call()
        assert info.value.status == status and text in info.value.message, (status, text, info.value)
    with pytest.raises(edge.EdgeError) as info:
        client._request(
            "POST",
            "/v1/songs",
            b'--b\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{"tags": 5}\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        )
    assert info.value.status == 400 and "not valid song JSON" in info.value.message


def test_uploads_over_the_limit_get_413(server, client, bundle, token_file, trained):
    _, ds, test_idx, _ = trained
    with edge.serve(bundle[0], port=0, token_file=token_file, max_upload_bytes=4096) as small:
        c = edge.Client(small.url, token=TOKEN)
        with pytest.raises(edge.EdgeError) as info:
            c.add_song(ds.songs.audio_path[int(test_idx[0])], song_id="big")
        assert info.value.status == 413 and "size limit" in info.value.message
        # without an event log, events are refused rather than silently not kept
        with pytest.raises(edge.EdgeError) as info:
            c.events([{"user_id": "u", "song_id": ds.songs.song_id[0], "plays": 1, "timestamp": 0}])
        assert info.value.status == 503 and "--events" in info.value.message
    assert not small.running
    # stopping one service leaves another's uploads working
    added = client.add_song(ds.songs.audio_path[int(test_idx[2])], song_id="AFTER-OTHER-STOPPED", tags=["rock"])
    assert added["song_id"] == "AFTER-OTHER-STOPPED"


def test_hot_swap_under_load_fails_no_request(server, client, trained, bundle, tmp_path):
    pipe, ds, *_ = trained
    v2 = tmp_path / "v2"
    pipe.export_bundle(v2, model_version="v2", encoding="f16")
    failures, versions = [], set()
    stop = threading.Event()

    def load():
        c = edge.Client(server[0].url)
        i = 0
        while not stop.is_set():
            try:
                versions.add(c.recommend(ds.user_ids[i % len(ds.user_ids)], n=5)["model_version"])
            except Exception as e:  # noqa: BLE001 - any failure is what this test counts
                failures.append(e)
            i += 1

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    swapped = client.reload(v2)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert swapped["model_version"] == "v2" and swapped["previous_model_version"] == "v1"
    assert not failures and versions == {"v1", "v2"}
    # the events this edge logged are folded into the new model too
    assert swapped["replayed_events"] >= 5
    assert len(client.recommend("edge-newcomer", n=3)["items"]) == 3
    assert client.reload(bundle[0])["model_version"] == "v1"


# ---- the event log --------------------------------------------------------------------------
def test_event_log_reads_after_an_offset_and_repairs_a_torn_tail(tmp_path):
    log = edge.EventLog(tmp_path, edge_id="e1", segment_bytes=4096)
    events = [{"user_id": f"u{i}", "song_id": f"s{i % 3}", "plays": 1.0, "timestamp": float(i)} for i in range(200)]
    for i in range(0, 200, 20):
        log.append(events[i : i + 20])
    assert log.last_offset == 200
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".seg")]) > 1
    back = edge.read_events(tmp_path)
    assert [e["offset"] for e in back] == list(range(1, 201))
    assert [e["user_id"] for e in back] == [e["user_id"] for e in events]
    assert [e["offset"] for e in edge.read_events(tmp_path, after=150, limit=10)] == list(range(151, 161))
    del log
    last = sorted(f for f in os.listdir(tmp_path) if f.endswith(".seg"))[-1]
    with open(tmp_path / last, "ab") as f:
        f.write(b"\x40\x00\x00\x00garbage-of-a-torn-write")
    assert len(edge.read_events(tmp_path)) == 200  # the torn frame is never read
    reopened = edge.EventLog(tmp_path, edge_id="e1", segment_bytes=4096)
    assert reopened.truncated_bytes == 27 and reopened.last_offset == 200
    assert reopened.append(events[:1]) == (201, 201)
    for bad in ({"plays": float("nan")}, {"plays": -1.0}, {"timestamp": float("inf")}, {"user_id": ""}):
        with pytest.raises(ValueError, match="event 1: (plays|timestamp|user_id)"):
            reopened.append([events[0], {**events[1], **bad}])
    assert reopened.last_offset == 201  # a batch with an invalid event writes nothing
    with pytest.raises(ValueError, match="after"):
        edge.read_events(tmp_path, after=-1)
    with pytest.raises(FileNotFoundError):
        edge.read_events(tmp_path / "missing")
    with pytest.raises(ValueError, match="durability"):
        edge.EventLog(tmp_path / "x", durability="sometimes")


def _start_service(bundle, events, token_file):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "musrec.cli",
            "serve",
            str(bundle),
            "--port",
            "0",
            "--events",
            str(events),
            "--edge-id",
            "edge-k",
            "--token-file",
            str(token_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert "listening on" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, line.split("listening on ")[1].split()[0]


def test_kill_9_loses_no_acknowledged_event(bundle, token_file, trained, tmp_path):
    ds = trained[1]
    songs = ds.songs.song_id
    events_dir = tmp_path / "events"
    acknowledged: list[float] = []
    # CI runs 3 trials; MUSREC_KILL_TRIALS=200 runs the issue's full count.
    for trial in range(int(os.environ.get("MUSREC_KILL_TRIALS", "3"))):
        proc, url = _start_service(bundle[0], events_dir, token_file)
        c = edge.Client(url, token=TOKEN, timeout=5)
        stop = threading.Event()

        def send(worker, c=c, stop=stop, trial=trial):
            i = 0
            while not stop.is_set():
                stamp = trial * 1e7 + worker * 1e6 + i
                batch = [
                    {"user_id": f"k{worker}", "song_id": songs[(i + j) % 50], "plays": 1.0, "timestamp": stamp + j / 10}
                    for j in range(5)
                ]
                try:
                    c.events(batch)
                except Exception:  # noqa: BLE001 - the service was killed mid-request
                    return
                acknowledged.extend(e["timestamp"] for e in batch)
                i += 1

        threads = [threading.Thread(target=send, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3 + 0.1 * (trial % 5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join()
        proc.stdout.close()
        proc.stderr.close()
    logged = edge.read_events(events_dir)
    stamps = [e["timestamp"] for e in logged]
    assert len(acknowledged) > 50
    assert len(stamps) == len(set(stamps)), "an event was logged twice"
    assert set(acknowledged) <= set(stamps), "an acknowledged event was lost"
    assert [e["offset"] for e in logged] == list(range(1, len(logged) + 1))
    # a restart folds every logged event in again
    proc, url = _start_service(bundle[0], events_dir, token_file)
    try:
        ready = edge.Client(url).ready()
        assert ready["event_log"]["last_offset"] == len(logged)
        assert len(edge.Client(url).recommend("k0", n=3)["items"]) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


# ---- the cloud round ------------------------------------------------------------------------
def _plays(bundle_dir) -> dict[str, dict[str, float]]:
    core, _ = musrec._musrec.ServingCore.open(str(bundle_dir))
    return {u: dict(core.plays_of(u)) for u in core.user_ids}


def test_a_two_edge_cloud_round_merges_every_event_exactly_once(bundle, trained, tmp_path, capsys):
    from musrec import cloud

    ds = trained[1]
    songs, users = ds.songs.song_id, ds.user_ids
    north_dir, south_dir = tmp_path / "north", tmp_path / "south"
    north, south = edge.EventLog(north_dir, "north"), edge.EventLog(south_dir, "south")
    north_events = [
        {"user_id": users[0], "song_id": songs[1], "plays": 2.0, "timestamp": 1.0},
        {"user_id": "north-new", "song_id": songs[2], "plays": 1.0, "timestamp": 2.0},
        {"user_id": users[1], "song_id": songs[3], "plays": 4.0, "timestamp": 3.0},
    ]
    south_events = [
        {"user_id": users[0], "song_id": songs[1], "plays": 3.0, "timestamp": 4.0},
        {"user_id": users[1], "song_id": "INGESTED-AT-SOUTH", "plays": 1.0, "timestamp": 5.0},
        {"user_id": "south-new", "song_id": songs[4], "plays": 2.0, "timestamp": 6.0},
    ]
    north.append(north_events)
    south.append(south_events)
    before = _plays(bundle[0])
    report = cloud.update(bundle[0], [north_dir, south_dir], tmp_path / "v2", model_version="v2")
    assert report["merged"] == {"north": 3, "south": 3} and report["skipped"] == {"south": 1}
    assert report["offsets"] == {"other-edge": 7, "north": 3, "south": 3}
    assert report["manifest"]["edge_offsets"] == report["offsets"]
    # the merged plays are the old ones plus the union of both edges' events
    expected = {u: dict(p) for u, p in before.items()}
    for e in north_events + south_events:
        if e["song_id"] in set(songs):
            row = expected.setdefault(e["user_id"], {})
            row[e["song_id"]] = row.get(e["song_id"], 0.0) + e["plays"]
    assert _plays(tmp_path / "v2") == expected
    # a second round over the same logs merges nothing; new events only are merged next time
    again = cloud.update(tmp_path / "v2", [north_dir, south_dir], tmp_path / "v3")
    assert again["merged"] == {} and _plays(tmp_path / "v3") == expected
    north.append([{"user_id": users[2], "song_id": songs[5], "plays": 1.0, "timestamp": 7.0}])
    third = cloud.update(tmp_path / "v3", [north_dir, south_dir], tmp_path / "v4")
    assert third["merged"] == {"north": 1} and third["offsets"]["north"] == 4
    # a refit keeps the plays and moves the vectors; the edges serve it after a reload
    refit = cloud.update(tmp_path / "v4", [north_dir], tmp_path / "v5", refit=True, iterations=2)
    old, _ = musrec._musrec.ServingCore.open(str(tmp_path / "v4"))
    new, _ = musrec._musrec.ServingCore.open(str(tmp_path / "v5"))
    assert refit["refit"] and new.n_users == old.n_users and new.song_ids == old.song_ids
    assert not np.allclose(new.song_factors, old.song_factors)
    assert len(new.recommend("north-new", 5)[0]) == 5
    assert (
        cli.main(
            [
                "cloud",
                "update",
                "--bundle",
                str(tmp_path / "v5"),
                "--events",
                str(north_dir),
                "--out",
                str(tmp_path / "v6"),
            ]
        )
        == 0
    )
    assert "musrec cloud update: merged no new events" in capsys.readouterr().out
    with pytest.raises(ValueError, match="iterations"):
        cloud.update(tmp_path / "v5", [north_dir], tmp_path / "v7", refit=True, iterations=0)


def test_added_songs_survive_a_restart_and_a_new_model(bundle, trained, tmp_path):
    """With an event log, a song added from content is durable: its record and audio are
    kept, a restart adds it back with its vector, and a new model version embeds it again."""
    from musrec import cloud

    _, ds, test_idx, meta = trained
    song = int(test_idx[2])
    events = tmp_path / "events"
    with edge.serve(bundle[0], port=0, events=events, edge_id="edge-d", token=TOKEN) as s:
        client = edge.Client(s.url, token=TOKEN)
        m = meta[song]
        client.add_song(
            ds.songs.audio_path[song], song_id="DURABLE-1", tags=m["tags"], artist=m["artist"], year=m["year"]
        )
        client.events([{"user_id": ds.user_ids[0], "song_id": "DURABLE-1", "plays": 3.0, "timestamp": 1.0}])
        similar = client.similar("DURABLE-1", n=5)["items"]
    assert len(os.listdir(events / "songs")) == 1
    # the song record is not a listening event
    assert [e["song_id"] for e in edge.read_events(events)] == ["DURABLE-1"]
    with edge.serve(bundle[0], port=0, events=events, edge_id="edge-d", token=TOKEN) as s:
        assert s.restored_songs == {"restored": 1, "reembedded": 0, "lost": 0} and s.replayed_events == 1
        client = edge.Client(s.url, token=TOKEN)
        assert client.similar("DURABLE-1", n=5)["items"] == similar
        # A bundle of another model version that lacks the song: the edge embeds it again
        # with that bundle's content model (here the same model, so the same vector).
        trained[0].export_bundle(tmp_path / "v9", model_version="v9")
        reloaded = client.reload(tmp_path / "v9")
        assert reloaded["reembedded_songs"] == 1 and reloaded["lost_songs"] == 0
        again = client.similar("DURABLE-1", n=5)
        assert again["model_version"] == "v9"
        assert [i["song_id"] for i in again["items"]] == [i["song_id"] for i in similar]
        np.testing.assert_allclose([i["score"] for i in again["items"]], [i["score"] for i in similar], rtol=1e-5)
    # The cloud round takes the edge's song into the next bundle, and the plays on it.
    report = cloud.update(bundle[0], [events], tmp_path / "v2", model_version="v2")
    assert report["songs_added"] == {"edge-d": 1} and report["songs_failed"] == [] and report["skipped"] == {}
    assert _plays(tmp_path / "v2")[ds.user_ids[0]]["DURABLE-1"] == 3.0
    with edge.serve(tmp_path / "v2", port=0, events=events, edge_id="edge-d", token=TOKEN) as s:
        assert s.restored_songs == {"restored": 0, "reembedded": 0, "lost": 0} and s.replayed_events == 0
        assert [i["song_id"] for i in edge.Client(s.url).similar("DURABLE-1", n=5)["items"]] == [
            i["song_id"] for i in similar
        ]
    # A WMF refit moves every vector: the edge's song and the content model follow the map
    # that carries the known songs' old vectors onto their new ones (numpy's lstsq as the
    # reference), so the refitted bundle embeds the song's audio where it put the song.
    cloud.update(tmp_path / "v2", [events], tmp_path / "v3", refit=True, iterations=2)
    old, _ = musrec._musrec.ServingCore.open(str(tmp_path / "v2"))
    new, _ = musrec._musrec.ServingCore.open(str(tmp_path / "v3"))
    k = old.n_known
    assert new.n_known == k == new.n_songs - 1 and new.song_ids[k] == "DURABLE-1"
    reference = np.linalg.lstsq(old.song_factors[:k].astype(np.float64), new.song_factors[:k], rcond=None)[0]
    np.testing.assert_allclose(new.song_factors[k], old.song_factors[k] @ reference, rtol=1e-3, atol=1e-5)
    m = meta[song]
    content = dict(
        audio_path=ds.songs.audio_path[song], tags=list(m["tags"].items()), artist=m["artist"], year=m["year"]
    )
    np.testing.assert_allclose(new.song_vector(**content), new.song_factors[k], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(new.song_vector(**content), old.song_vector(**content) @ reference, rtol=1e-3, atol=1e-5)


def test_a_refit_with_the_dataset_trains_the_content_model_again(bundle, trained, tmp_path, capsys):
    """``cloud.update(refit=True, data=DIR)``: the content model is trained again, with the old
    one's kind and settings, on the known songs against their refitted vectors (a clone fitted
    here on the same inputs is the reference), and the songs the edges added are embedded
    again by it, so an edge that embeds the same upload puts it where the bundle has it."""
    from musrec import audio, cloud
    from musrec.fusion import FusionModel

    pipe, ds, test_idx, meta = trained
    song = int(test_idx[3])
    events = tmp_path / "events"
    m = meta[song]
    with edge.serve(bundle[0], port=0, events=events, edge_id="edge-r", token=TOKEN) as s:
        edge.Client(s.url, token=TOKEN).add_song(
            ds.songs.audio_path[song], song_id="UPLOAD-R", tags=m["tags"], artist=m["artist"], year=m["year"]
        )
    mapped = cloud.update(bundle[0], [events], tmp_path / "mapped", refit=True, iterations=2)
    report = cloud.update(
        bundle[0], [events], tmp_path / "retrained", refit=True, iterations=2, data=pipe.data_dir, work=tmp_path
    )
    assert mapped["content"] is None and report["songs_failed"] == []
    old, _ = musrec._musrec.ServingCore.open(str(bundle[0]))
    by_map, _ = musrec._musrec.ServingCore.open(str(tmp_path / "mapped"))
    new, _ = musrec._musrec.ServingCore.open(str(tmp_path / "retrained"))
    k = new.n_known
    assert k == old.n_known == new.n_songs - 1 and new.song_ids[k] == "UPLOAD-R"
    # the same WMF refit either way; only the content model and the added song differ
    np.testing.assert_array_equal(new.song_factors[:k], by_map.song_factors[:k])
    np.testing.assert_array_equal(new.user_factors, by_map.user_factors)
    content = report["content"]
    spec, usable = pipe.spectrograms()  # the bundle's songs are the dataset's, in its order
    rows = np.flatnonzero(usable)
    assert content["kind"] == "fusion" and content["songs_reembedded"] == 1
    assert content["training_songs"] == len(rows) and content["songs_missing"] == k - len(rows)
    assert os.listdir(tmp_path / "features")  # the feature cache
    reference = FusionModel._from_core(musrec._musrec.FusionCore.from_bytes(old.content_model_bytes())).clone()
    reference.fit(
        spec[rows],
        [meta[i] for i in rows],
        new.song_factors[rows],
        users=new.user_factors,
        wmf_params=new.params,
        show_progress=False,
    )
    clip = audio.extract([ds.songs.audio_path[song]], new.features, excerpts=new.log_mel_shape[0], show_progress=False)
    expected = reference.predict(clip.features, [m])[0]
    np.testing.assert_allclose(new.song_factors[k], expected, rtol=1e-4, atol=1e-5)
    upload = dict(
        audio_path=ds.songs.audio_path[song], tags=list(m["tags"].items()), artist=m["artist"], year=m["year"]
    )
    np.testing.assert_allclose(new.song_vector(**upload), new.song_factors[k], rtol=1e-5, atol=1e-6)
    assert not np.allclose(new.song_vector(**upload), by_map.song_vector(**upload), rtol=1e-3, atol=1e-4)
    # the command line, and what it refuses
    out = tmp_path / "by-cli"
    argv = ["cloud", "update", "--bundle", str(bundle[0]), "--events", str(events), "--out", str(out)]
    assert cli.main([*argv, "--refit", "--iterations", "2", "--data", pipe.data_dir, "--work", str(tmp_path)]) == 0
    assert f"fusion content model trained again on {len(rows):,} songs" in capsys.readouterr().out
    assert cli.main([*argv, "--data", pipe.data_dir]) == 2
    assert "needs refit=True" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no dataset directory"):
        cloud.update(bundle[0], [events], tmp_path / "x", refit=True, data=tmp_path / "nowhere")
