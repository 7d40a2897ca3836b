"""The edge side in process, at the paper's size: rankings, fold-in, bundles, the event log.

    python3 benchmarks/bench_edge.py                      # 10,000 users x 50,000 songs, 100 factors
    python3 benchmarks/bench_edge.py --users 2000 --songs 5000 --queries 500

What it measures, on the Rust serving core that ``musrec.Recommender`` and the edge service
share (``_musrec.ServingCore``), one query at a time as a service answers them:

* Top-10 by inner product for a known user (played songs left out), 10 songs similar by
  cosine, the 100-user audience of a song, and the fold-in of a new user from 20 plays:
  p50 / p99 latency over ``--queries`` random ids, on ``--threads`` threads per query;
* bundles: size on disk and load time (checksums verified) for f32, f16 and int8 song
  vectors, with the compact encodings' top-10 overlap with exact f32 as the export measured it;
* the event log: acknowledgement latency of single-event appends (p50 / p99) and the
  throughput of 1,000-event batches, in buffered and fsync mode.

With ``--http``, the same Top-10 query over loopback against the edge service (``musrec
serve``) and, in the same run, against what a user would otherwise build: a FastAPI + uvicorn
app serving ``implicit``'s ``recommend`` on the same vectors and plays. The load generator is
wrk (Debian package ``wrk``), closed loop at a fixed number of connections, each request for a
random user; its percentiles are of the requests it sent (closed loop: no coordinated-omission
correction). Needs ``pip install fastapi uvicorn implicit``.

The catalogue is random (Gaussian factors scaled like a WMF fit's, about 40 plays per user
drawn by popularity): latency and size depend on the shapes, not on the values; the top-10
overlap of a compact encoding does depend on the values, so treat that row as indicative and
see the tests for the overlap on a trained model. No content model is included in the bundle
(its size is that of the fusion model file, independent of the catalogue's size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import scipy.sparse as sp
from musrec import _musrec, audio, edge
from musrec._sparse import csr_tuple

WMF_PARAMS = (
    '{"factors": %d, "regularization": 0.01, "alpha": 1.0, "confidence": {"kind": "linear"}, '
    '"iterations": 15, "solver": {"kind": "cg", "steps": 3}, "seed": 0, "compute_loss": false}'
)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timed(fn, args_list) -> list[float]:
    out = []
    for args in args_list:
        start = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - start) * 1e3)
    return out


def catalogue(n_users: int, n_songs: int, k: int, rng: np.random.Generator):
    users = (rng.standard_normal((n_users, k)) * 0.1).astype(np.float32)
    songs = (rng.standard_normal((n_songs, k)) * 0.1).astype(np.float32)
    popularity = 1.0 / np.arange(1, n_songs + 1) ** 0.8
    popularity /= popularity.sum()
    rows, cols = [], []
    for u in range(n_users):
        picked = np.unique(rng.choice(n_songs, size=40, p=popularity))
        rows.extend([u] * len(picked))
        cols.extend(picked)
    plays = sp.csr_matrix((np.ones(len(rows), np.float32) * 2, (rows, cols)), shape=(n_users, n_songs))
    plays.sort_indices()
    return users, songs, plays


def event(user: str, song: str, i: int) -> dict:
    return {"user_id": user, "song_id": song, "plays": 1.0, "timestamp": float(i)}


def row(name: str, values: list[float]) -> str:
    return f"| {name} | {percentile(values, 50):.3f} | {percentile(values, 99):.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--songs", type=int, default=50_000)
    parser.add_argument("--factors", type=int, default=100)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="threads per query (the service uses 1)")
    parser.add_argument("--events", type=int, default=2000, help="single-event appends timed per mode")
    parser.add_argument("--http", action="store_true", help="also load both HTTP services with wrk")
    parser.add_argument("--connections", default="1,8,32", help="wrk connection counts (--http)")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per row (--http)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    k = args.factors
    users, songs, plays = catalogue(args.users, args.songs, k, rng)
    user_ids = [f"U{i}" for i in range(args.users)]
    song_ids = [f"S{i}" for i in range(args.songs)]
    core = _musrec.ServingCore.from_parts(
        WMF_PARAMS % k,
        audio.FeatureConfig.paper().to_json(),
        1,
        user_ids,
        song_ids,
        users,
        songs,
        plays=csr_tuple(plays),
        num_threads=args.threads,
    )
    print(f"{args.users:,} users x {args.songs:,} songs, {k} factors, {plays.nnz:,} plays; {args.threads} thread(s)")
    q_users = [(user_ids[i], 10) for i in rng.integers(0, args.users, args.queries)]
    q_songs = [song_ids[i] for i in rng.integers(0, args.songs, args.queries)]
    for u, n in q_users[:50]:  # warm up
        core.recommend(u, n)
    print("\n| in process, ms | p50 | p99 |\n|---|---|---|")
    print(row("Top-10 for a known user", timed(core.recommend, q_users)))
    print(row("10 similar songs (cosine)", timed(core.similar, [(s, 10) for s in q_songs])))
    print(row("audience of a song (100 users)", timed(core.audience, [(s, 100) for s in q_songs])))
    folds = [
        ([(song_ids[j], 2.0) for j in rng.choice(args.songs, 20, replace=False)],) for _ in range(args.queries // 4)
    ]
    print(row("fold-in of a new user (20 plays)", timed(core.fold_in_plays, folds)))

    tmp = tempfile.mkdtemp(prefix="bench-edge-")
    try:
        print("\n| bundle | MiB on disk | load, ms (median of 5) | top-10 overlap with f32 |\n|---|---|---|---|")
        for encoding in ("f32", "f16", "int8"):
            path = os.path.join(tmp, encoding)
            manifest = json_loads(core.write_bundle(path, encoding))
            size = sum(f["bytes"] for f in manifest["files"].values()) + os.path.getsize(
                os.path.join(path, "manifest.json")
            )
            loads = timed(_musrec.ServingCore.open, [(path, 1)] * 5)
            print(
                f"| {encoding} | {size / 2**20:.1f} | {statistics.median(loads):.0f} | "
                f"{manifest['song_encoding_top10_overlap']:.3f} |"
            )

        print("\n| event log | append p50, ms | append p99, ms | events/s in 1,000-event batches |\n|---|---|---|---|")
        for durability in ("buffered", "fsync"):
            log = edge.EventLog(os.path.join(tmp, f"log-{durability}"), "bench", durability)
            one = [
                [{"user_id": "U1", "song_id": "S1", "plays": 1.0, "timestamp": float(i)}] for i in range(args.events)
            ]
            lat = timed(log.append, [(e,) for e in one])
            batch = [
                {"user_id": f"U{i % 97}", "song_id": f"S{i % 89}", "plays": 1.0, "timestamp": float(i)}
                for i in range(1000)
            ]
            start = time.perf_counter()
            rounds = 50
            for _ in range(rounds):
                log.append(batch)
            rate = rounds * len(batch) / (time.perf_counter() - start)
            print(f"| {durability} | {percentile(lat, 50):.3f} | {percentile(lat, 99):.3f} | {rate:,.0f} |")
        if args.http:
            http_rows(tmp, os.path.join(tmp, "f32"), users, songs, plays, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


PEER_APP = """
import json, os, sys
import numpy as np, scipy.sparse as sp
from threadpoolctl import threadpool_limits
threadpool_limits(1)
from implicit.cpu.als import AlternatingLeastSquares
from fastapi import FastAPI, HTTPException

data = np.load(os.environ["PEER_DATA"])
model = AlternatingLeastSquares(factors=data["users"].shape[1])
model.user_factors, model.item_factors = data["users"], data["songs"]
plays = sp.csr_matrix((data["data"], data["indices"], data["indptr"]), shape=(len(data["users"]), len(data["songs"])))
app = FastAPI()

@app.get("/v1/users/{user_id}/recommendations")
def recommendations(user_id: str, n: int = 10):
    try:
        u = int(user_id[1:])
    except ValueError:
        raise HTTPException(404, "unknown user")
    if not 0 <= u < plays.shape[0]:
        raise HTTPException(404, "unknown user")
    ids, scores = model.recommend(u, plays[u], N=n, filter_already_liked_items=True)
    return {"user_id": user_id, "items": [{"song_id": f"S{i}", "score": float(s)} for i, s in zip(ids, scores)]}
"""

WRK_SCRIPT = """
math.randomseed(1)
request = function()
  return wrk.format("GET", "/v1/users/U" .. math.random(0, %d) .. "/recommendations?n=10")
end
"""


def wrk(url: str, script: str, connections: int, seconds: int) -> dict[str, float]:
    import re
    import subprocess

    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        value, u = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()
        result[pct] = float(value) * unit[u]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    return result


def http_rows(tmp: str, bundle: str, users, songs, plays, args) -> None:
    import shutil as sh
    import subprocess
    import sys
    import urllib.request

    if sh.which("wrk") is None:
        raise SystemExit("--http needs wrk (apt-get install wrk)")
    np.savez(
        os.path.join(tmp, "peer.npz"),
        users=users,
        songs=songs,
        data=plays.data,
        indices=plays.indices,
        indptr=plays.indptr,
    )
    with open(os.path.join(tmp, "peer_app.py"), "w") as f:
        f.write(PEER_APP)
    script = os.path.join(tmp, "wrk.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % (len(users) - 1))
    server = edge.serve(bundle, port=0, workers=1)
    env = {**os.environ, "PEER_DATA": os.path.join(tmp, "peer.npz"), "PYTHONPATH": tmp, "OPENBLAS_NUM_THREADS": "1"}
    peer = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "peer_app:app", "--port", "18731", "--log-level", "warning"],
        env=env,
        cwd=tmp,
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen("http://127.0.0.1:18731/v1/users/U0/recommendations", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        print(
            "\n| over HTTP (wrk, closed loop) | connections | requests/s | p50, ms | p99, ms | errors |"
            "\n|---|---|---|---|---|---|"
        )
        for c in [int(x) for x in args.connections.split(",")]:
            for name, url in (("musrec serve", server.url), ("FastAPI + implicit", "http://127.0.0.1:18731")):
                r = wrk(url, script, c, args.seconds)
                print(f"| {name} | {c} | {r['rps']:,.0f} | {r['50']:.2f} | {r['99']:.2f} | {r['errors']:.0f} |")
    finally:
        peer.terminate()
        peer.wait()
        server.stop()


def json_loads(text: str) -> dict:
    import json

    return json.loads(text)


if __name__ == "__main__":
    main()
