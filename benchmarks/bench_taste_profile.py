"""The full Echo Nest Taste Profile on one machine: musrec vs implicit, stage by stage.

    python3 -m pip install ".[bench]"                       # implicit, threadpoolctl
    python3 benchmarks/bench_taste_profile.py                # full size, CG
    python3 benchmarks/bench_taste_profile.py --scale 0.1 --solvers cg cholesky

The real file cannot be downloaded here, so the file of ``bench_triplets.py`` stands in: the
real one's size and shape (48,373,586 lines, 1,019,318 users, 384,546 songs, grouped by
user, long-tailed popularity and counts), written once to ``--file``.

Each (library, solver) runs in a child process of its own, so the peak resident memory of
each stage is its own (VmHWM, reset before every stage):

* load: ``musrec.data.read_triplets`` (implicit has no loader: its side reuses musrec's,
  untimed; ``bench_triplets.py`` compares loaders, pandas included);
* WMF: 100 factors, 15 iterations, regularization 0.01, CG with 3 steps or Cholesky, the
  same thread count; implicit gets 1 + alpha r as its data (its confidence), musrec r with
  ``confidence="linear"``, as in ``bench_wmf.py``;
* recommend-all: top-10 with played songs filtered, timed on ``--recommend-users`` users
  drawn at random and **projected** to every user linearly (labelled so): the whole run
  is about 1M x 384k x 100 multiply-adds, the stage the issue says needs a cluster;
* similar songs: the 10 nearest songs by cosine for ``--similar-songs`` songs, projected
  to the whole catalogue the same way.

Prints the CPU, seconds and peak memory per stage and side, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _timing import machine_line
from bench_triplets import write_file
from bench_wmf import implicit_als, reset_peak, rss_mib


def stage(results: dict, name: str, fn):
    """Run ``fn`` as one stage: seconds and peak RSS above the start (MiB)."""
    base = rss_mib("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    results[name] = {"s": seconds, "peak_mib": rss_mib("VmHWM") - base, "hwm_mib": rss_mib("VmHWM")}
    print(f"    {name}: {results[name]['s']:.1f} s", file=sys.stderr, flush=True)
    return out


def worker(lib: str, solver: str, args: argparse.Namespace) -> dict:
    import musrec
    import numpy as np

    results: dict = {"lib": lib, "solver": solver}
    if lib == "musrec":
        data = stage(results, "load", lambda: musrec.data.read_triplets(args.file, show_progress=False))
    else:
        data = musrec.data.read_triplets(args.file, show_progress=False)
    plays = data.plays
    n_users, n_songs = plays.shape
    results.update(users=n_users, songs=n_songs, plays=int(plays.nnz))
    rng = np.random.default_rng(0)
    some_users = np.sort(rng.choice(n_users, min(args.recommend_users, n_users), replace=False))
    some_songs = np.sort(rng.choice(n_songs, min(args.similar_songs, n_songs), replace=False))
    if lib == "musrec":
        model = musrec.WMF(
            factors=args.factors,
            regularization=0.01,
            alpha=args.alpha,
            iterations=args.iterations,
            solver=solver,
            cg_steps=3,
            random_state=0,
            num_threads=args.threads,
        )
        stage(results, "fit", lambda: model.fit(plays, show_progress=False))
        stage(results, "recommend", lambda: model.recommend(some_users, plays[some_users], N=10))
        stage(results, "similar", lambda: model.similar_items(some_songs, N=10))
    else:
        from threadpoolctl import threadpool_limits

        confidence = plays.copy()
        confidence.data = 1.0 + args.alpha * confidence.data
        with threadpool_limits(1, "blas"):
            model = implicit_als(args.factors, 0.01, args.iterations, solver, args.threads)
            stage(results, "fit", lambda: model.fit(confidence, show_progress=False))
            stage(
                results,
                "recommend",
                lambda: model.recommend(some_users, plays[some_users], N=10, filter_already_liked_items=True),
            )
            stage(results, "similar", lambda: model.similar_items(some_songs, N=10))
    results["recommend"]["projected_all_s"] = results["recommend"]["s"] * n_users / len(some_users)
    results["similar"]["projected_all_s"] = results["similar"]["s"] * n_songs / len(some_songs)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the real file's size")
    p.add_argument("--file", help="the generated triplets (default: /tmp/train_triplets-<scale>.txt)")
    p.add_argument("--libs", nargs="+", default=["musrec", "implicit"], choices=["musrec", "implicit"])
    p.add_argument("--solvers", nargs="+", default=["cg"], choices=["cg", "cholesky"])
    p.add_argument("--factors", type=int, default=100)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--recommend-users", type=int, default=20_000, help="users timed for recommend-all")
    p.add_argument("--similar-songs", type=int, default=20_000, help="songs timed for the similar-songs table")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--worker", nargs=2, metavar=("LIB", "SOLVER"), help=argparse.SUPPRESS)
    args = p.parse_args()
    args.file = args.file or f"/tmp/train_triplets-{args.scale:g}.txt"
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return 0
    if not os.path.exists(args.file):
        start = time.perf_counter()
        write_file(args.file, args.scale)
        print(f"wrote {args.file} in {time.perf_counter() - start:.0f} s")
    print(f"{args.file}: {os.path.getsize(args.file) / 1e9:.2f} GB; {machine_line()}; {args.threads} threads each")
    runs = []
    for solver in args.solvers:
        for lib in args.libs:
            print(f"  {lib} {solver} ...", flush=True)
            cmd = [sys.executable, __file__, "--worker", lib, solver] + sys.argv[1:]
            out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            if out.returncode:
                print(f"  {lib} {solver}: failed (exit {out.returncode})")
                continue
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if not runs:
        return 1
    r0 = runs[0]
    print(f"\n{r0['users']:,} users x {r0['songs']:,} songs, {r0['plays']:,} plays\n")
    print(
        "| side | load s (peak MiB) | WMF fit s (peak MiB) | s/iteration | recommend-all s, projected "
        "| similar songs s, projected | process peak, load + fit, MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        peak = max(r.get("load", r["fit"])["hwm_mib"], r["fit"]["hwm_mib"])
        load = f"{r['load']['s']:.1f} ({r['load']['peak_mib']:,.0f})" if "load" in r else "musrec's loader"
        print(
            f"| {r['lib']} {r['solver']} | {load} | {r['fit']['s']:.1f} ({r['fit']['peak_mib']:,.0f}) | "
            f"{r['fit']['s'] / args.iterations:.2f} | {r['recommend']['projected_all_s']:,.0f} | "
            f"{r['similar']['projected_all_s']:,.0f} | {peak:,.0f} |"
        )
    for solver in args.solvers:
        by = {r["lib"]: r for r in runs if r["solver"] == solver}
        if {"musrec", "implicit"} <= by.keys():
            m, i = by["musrec"], by["implicit"]
            print(
                f"{solver}: WMF fit {i['fit']['s'] / m['fit']['s']:.2f}x implicit, recommend-all "
                f"{i['recommend']['s'] / m['recommend']['s']:.2f}x, "
                f"similar songs {i['similar']['s'] / m['similar']['s']:.2f}x"
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(runs, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
