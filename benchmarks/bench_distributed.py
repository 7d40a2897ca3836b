"""musrec.distributed.fit_wmf on a local fake Ray cluster: 1, 2 and 4 workers against the
local fit of the same matrix, with the bytes each worker moves per iteration.

    python3 -m pip install ".[ray]"
    python3 benchmarks/bench_distributed.py                       # paper size (10k x 50k)
    python3 benchmarks/bench_distributed.py --users 2000 --songs 5000 --workers 1 2

The fake cluster is ``ray.cluster_utils.Cluster`` with one single-CPU node per worker, so
factors really cross between object stores as on a cluster (all on this machine's cores:
with more workers than cores the time per iteration shows scheduling, not scaling). Each
worker runs musrec's solver on one thread. Bytes per worker and iteration are what the
coordinator sends (both sides' factors and Gram matrices) and receives (the worker's rows),
from ``model.distributed_``; they do not depend on the machine. Every distributed fit is
checked against the local one (bit for bit).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import musrec
import numpy as np
from bench_cold_start import cpu_model  # run from benchmarks/, as every benchmark is


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--songs", type=int, default=50_000)
    ap.add_argument("--songs-per-user", type=float, default=40.0)
    ap.add_argument("--factors", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    import ray
    from musrec import distributed
    from ray.cluster_utils import Cluster

    world = musrec.synthetic.listening(args.users, args.songs, args.songs_per_user, seed=0)
    plays = world.plays
    settings = {"factors": args.factors, "iterations": args.iterations, "random_state": 0}
    t = time.perf_counter()
    local = musrec.WMF(**settings, num_threads=1).fit(plays, show_progress=False)
    local_s = (time.perf_counter() - t) / args.iterations
    results = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "matrix": [plays.shape[0], plays.shape[1], int(plays.nnz)],
        "factors": args.factors,
        "local_1_thread_s_per_iteration": local_s,
        "runs": [],
    }
    print(f"{plays.shape[0]} x {plays.shape[1]}, {plays.nnz} plays, {args.factors} factors; {results['cpu']}")
    print(f"local fit, 1 thread: {local_s:.3f} s/iteration")
    cluster = Cluster()
    for _ in range(max(args.workers)):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        for n in args.workers:
            t = time.perf_counter()
            model = distributed.fit_wmf(plays, n_actors=n, **settings)
            seconds = (time.perf_counter() - t) / args.iterations
            same = np.array_equal(model.user_factors, local.user_factors) and np.array_equal(
                model.item_factors, local.item_factors
            )
            moved = model.distributed_["bytes_per_actor_per_iteration"]
            run = {
                "workers": n,
                "s_per_iteration": seconds,
                "equal_to_local": bool(same),
                "bytes_per_worker_per_iteration": moved,
                "plays_per_worker": model.distributed_["plays_per_actor"],
            }
            results["runs"].append(run)
            print(
                f"{n} workers: {seconds:.3f} s/iteration (setup included), "
                f"{max(moved) / 2**20:.1f} MiB per worker per iteration, equal to local: {same}"
            )
    finally:
        ray.shutdown()
        cluster.shutdown()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
