"""musrec.distributed.fit_wmf on a local fake Ray cluster: 1, 2 and 4 workers against the
local fit of the same matrix, the bytes each worker moves per iteration, Spark MLlib's ALS
as the peer, and a projection of the 100x Taste Profile from those measured figures.

    python3 -m pip install ".[ray,bench]"                         # pyspark; and Debian's openjdk-17-jre-headless
    python3 benchmarks/bench_distributed.py                       # paper size (10k x 50k), Spark on 5M plays
    python3 benchmarks/bench_distributed.py --users 2000 --songs 5000 --workers 1 2 --spark-plays 0

The fake cluster is ``ray.cluster_utils.Cluster`` with one single-CPU node per worker, so
factors really cross between object stores as on a cluster (all on this machine's cores:
with more workers than cores the time per iteration shows scheduling, not scaling). Each
worker runs musrec's solver on one thread. Each fit is timed at 1 and at ``--iterations``
iterations, ``--repeats`` times alternately; the difference is the **marginal** time per
iteration (without starting actors and shipping shards), the rest is set-up. Bytes per
worker and iteration are what each actor receives (the rows of the other side its shards'
plays touch, fetched from the actors that own them, and two Gram matrices) and sends (its
rows to the actors that touch them, and its Gram parts), measured by the actors from the
arrays they moved, with the coordinator's (Gram parts in, Gram matrices out) beside them;
they do not depend on the machine. Every distributed fit is checked against the local one
(bit for bit).

**Spark** (``--spark-plays``, 5M by default; skipped with 0 or without pyspark and Java):
MLlib's ``ALS(implicitPrefs=True)`` in ``local[2]`` against musrec's local fit on 2 threads
(CG, the default, and Cholesky, the exact per-row solve that MLlib also does), same rank,
alpha and iterations, on a synthetic matrix of that many plays. MLlib scales lambda by each
row's count (ALS-WR), so its ``regParam`` is lambda over the mean count per row of both
sides, which gives the same total penalty weight. Spark's time is ``ALS.fit`` on a cached
DataFrame after one warm-up fit; both models are scored on the same held-out plays.

**Projection** (labelled so): the 100x Taste Profile (``--project-scale``: 100x the users,
songs and plays of the real file) on ``--project-workers`` two-core workers. Compute scales
the measured seconds per play and iteration of musrec's local fit on the full Taste
Profile (``--taste-profile-s-per-iteration``, from ``bench_taste_profile.py`` on this
machine) linearly, perfectly balanced; communication is the bytes this design moves per
worker (the rows its shards touch, their share computed on the Taste Profile's shape cut
into that many shards: ``--project-touched-scale``) and through the coordinator, at the
assumed ``--network-gbit``; memory is what a worker must hold. These are extrapolations,
not measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time

import musrec
import numpy as np
from _timing import machine_line  # run from benchmarks/, as every benchmark is

# The real Taste Profile (the issue's figures); --project-scale multiplies them.
TASTE_PROFILE = {"users": 1_019_318, "songs": 384_546, "plays": 48_373_586}
# The 47,259,774 distinct (user, song) pairs of bench_taste_profile.py's file of that shape.
TASTE_PROFILE_PAIRS = 47_259_774


def spread(xs: list[float], fmt: str = ".3f") -> str:
    """median [min-max]"""
    return f"{statistics.median(xs):{fmt}} [{min(xs):{fmt}}-{max(xs):{fmt}}]"


def marginal(short: list[float], long: list[float], iterations: int) -> list[float]:
    """Per repetition, the seconds an extra iteration costs: (t(n) - t(1)) / (n - 1)."""
    return [(b - a) / (iterations - 1) for a, b in zip(short, long, strict=True)]


def ray_runs(args: argparse.Namespace, plays, local_model, settings: dict) -> list[dict]:
    import ray
    from musrec import distributed
    from ray.cluster_utils import Cluster

    cluster = Cluster()
    for _ in range(max(args.workers)):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    runs = []
    try:
        for n in args.workers:
            short, long = [], []
            same = True
            for rep in range(args.repeats):
                # Alternate which length runs first, so a slow spell hits both.
                for iters in (1, args.iterations) if rep % 2 == 0 else (args.iterations, 1):
                    t = time.perf_counter()
                    model = distributed.fit_wmf(plays, n_actors=n, **{**settings, "iterations": iters})
                    (short if iters == 1 else long).append(time.perf_counter() - t)
                    if iters == args.iterations:
                        same &= np.array_equal(model.user_factors, local_model.user_factors) and np.array_equal(
                            model.item_factors, local_model.item_factors
                        )
                        info = model.distributed_
            per_iter = marginal(short, long, args.iterations)
            setup = [a - m for a, m in zip(short, per_iter, strict=True)]
            moved = info["bytes_per_actor_per_iteration"]
            coordinator = info["coordinator_bytes_per_iteration"]
            run = {
                "workers": n,
                "marginal_s_per_iteration": per_iter,
                "setup_s": setup,
                "total_s": long,
                "equal_to_local": bool(same),
                "bytes_per_worker_per_iteration": moved,
                "bytes_received_per_worker_per_iteration": info["bytes_received_per_actor_per_iteration"],
                "coordinator_bytes_per_iteration": coordinator,
                "songs_touched_per_worker": info["songs_touched_per_actor"],
                "users_touched_per_worker": info["users_touched_per_actor"],
                "plays_per_worker": info["plays_per_actor"],
            }
            runs.append(run)
            print(
                f"{n} workers: {spread(per_iter)} s/iteration marginal, set-up {spread(setup, '.2f')} s, "
                f"{max(moved) / 2**20:.1f} MiB in+out per worker per iteration (coordinator "
                f"{(coordinator['received'] + coordinator['sent']) / 2**20:.2f} MiB), equal to local: {same}",
                flush=True,
            )
    finally:
        ray.shutdown()
        cluster.shutdown()
    return runs


def spark_available() -> str | None:
    """None when pyspark and a Java runtime are there, else why not."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install pyspark)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (apt-get install -y openjdk-17-jre-headless)"
    return None


def spark_peer(args: argparse.Namespace) -> dict:
    """MLlib ALS in local[2] against musrec on 2 threads, same matrix, same settings."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    users = max(1, round(args.spark_plays / args.songs_per_user))
    world = musrec.synthetic.listening(users, args.songs, args.songs_per_user, seed=1)
    train, test = musrec.metrics.train_test_split(world.plays, 0.2, random_state=0)
    train = train.tocsr()
    lam, alpha, k, iters = args.regularization, 1.0, args.factors, args.spark_iterations
    n_rows = train.shape[0] + train.shape[1]
    # MLlib penalises each row's factors by regParam x its count: the mean count per row over
    # both sides is 2 nnz / rows, so this regParam gives musrec's total penalty weight.
    reg_param = lam * n_rows / (2 * train.nnz)
    print(
        f"Spark peer: {train.shape[0]} x {train.shape[1]}, {train.nnz} training plays, rank {k}, "
        f"{iters} iterations, alpha {alpha}; lambda {lam} -> regParam {reg_param:.3g}",
        flush=True,
    )
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("musrec-bench")
        .config("spark.driver.memory", args.spark_memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        import pandas as pd

        coo = train.tocoo()
        frame = pd.DataFrame({"user": coo.row.astype("int32"), "song": coo.col.astype("int32"), "plays": coo.data})
        df = spark.createDataFrame(frame).repartition(4).cache()
        df.count()

        def als(max_iter: int) -> ALS:
            return ALS(
                rank=k,
                maxIter=max_iter,
                regParam=reg_param,
                implicitPrefs=True,
                alpha=alpha,
                userCol="user",
                itemCol="song",
                ratingCol="plays",
                seed=0,
                numUserBlocks=4,
                numItemBlocks=4,
                checkpointInterval=-1,
            )

        als(1).fit(df)  # warm-up: JIT and the first shuffle files

        class Factors:
            pass

        def to_numpy(frame, n: int) -> np.ndarray:
            rows = frame.toPandas()
            out = np.zeros((n, k), dtype=np.float32)
            out[rows["id"].to_numpy()] = np.stack(rows["features"].to_numpy()).astype(np.float32)
            return out

        def spark_fit():
            model = als(iters).fit(df)
            model.userFactors.count()  # the factors are computed by the time fit returns; make sure
            return model

        def musrec_fit(solver: str):
            return musrec.WMF(
                factors=k,
                regularization=lam,
                alpha=alpha,
                iterations=iters,
                solver=solver,
                random_state=0,
                num_threads=2,
            ).fit(train, show_progress=False)

        sides = {
            "spark": spark_fit,
            "musrec_cg": lambda: musrec_fit("cg"),
            "musrec_cholesky": lambda: musrec_fit("cholesky"),
        }
        seconds: dict[str, list[float]] = {n: [] for n in sides}
        models = {}
        names = list(sides)
        for rep in range(args.spark_repeats):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                t = time.perf_counter()
                models[name] = sides[name]()
                seconds[name].append(time.perf_counter() - t)
                print(f"  {name}: {seconds[name][-1]:.1f} s", flush=True)
        spark_model = models["spark"]
        factors = Factors()
        factors.user_factors = to_numpy(spark_model.userFactors, train.shape[0])
        factors.item_factors = to_numpy(spark_model.itemFactors, train.shape[1])
        quality = {
            "spark": musrec.metrics.ranking_metrics(factors, train, test, N=10),
            "musrec_cg": musrec.metrics.ranking_metrics(models["musrec_cg"], train, test, N=10),
            "musrec_cholesky": musrec.metrics.ranking_metrics(models["musrec_cholesky"], train, test, N=10),
        }
    finally:
        spark.stop()
    import pyspark

    result = {
        "pyspark": pyspark.__version__,
        "matrix": [int(train.shape[0]), int(train.shape[1]), int(train.nnz)],
        "iterations": iters,
        "reg_param": reg_param,
        "seconds": seconds,
        "quality": {n: {m: q[m] for m in ("auc", "recall", "ndcg")} for n, q in quality.items()},
    }
    print(
        f"Spark MLlib ALS {pyspark.__version__} local[2] vs musrec 2 threads, {iters} iterations, median [min-max] s:"
    )
    for name in sides:
        q = result["quality"][name]
        ratio = [a / b for a, b in zip(seconds["spark"], seconds[name], strict=True)]
        print(
            f"  {name:16s} fit {spread(seconds[name], '.1f')} s  ({spread(ratio, '.2f')}x Spark's speed)  "
            f"held-out AUC {q['auc']:.4f}, recall@10 {q['recall']:.4f}",
            flush=True,
        )
    return result


def touched_fractions(workers: int, scale: float) -> dict:
    """The share of the other side a worker's shard touches, on a Taste-Profile-shaped matrix.

    Computed (not timed) on bench_triplets.py's shape at ``scale`` of the real file, cut into
    ``workers`` shards balanced by plays as musrec.distributed cuts them. Per user and per song
    (by its rank over the catalogue) that shape is the same at any scale, so the fractions
    carry to the 100x file.
    """
    import scipy.sparse as sp
    from bench_triplets import plays, shape
    from musrec.distributed import balanced_bounds

    rng = np.random.default_rng(0)
    per_user, popularity = shape(scale, rng)
    chunks = list(plays(per_user, popularity, rng))
    users = np.concatenate([c[0] for c in chunks]).astype(np.int32)
    songs = np.concatenate([c[1] for c in chunks]).astype(np.int32)
    del chunks
    m = sp.csr_matrix((np.ones(users.size, np.float32), (users, songs)), shape=(len(per_user), len(popularity)))
    m.sum_duplicates()
    del users, songs
    out = {"scale": scale, "workers": workers, "shape": [m.shape[0], m.shape[1], int(m.nnz)]}
    for side, matrix in (("songs", m), ("users", m.T.tocsr())):
        b = balanced_bounds(matrix.indptr, workers)
        ptr = matrix.indptr
        touched = [np.unique(matrix.indices[ptr[b[j]] : ptr[b[j + 1]]]).size for j in range(workers)]
        n_other = matrix.shape[1]
        out[side] = {"mean": float(np.mean(touched)) / n_other, "max": float(np.max(touched)) / n_other}
    return out


def projection(args: argparse.Namespace) -> dict:
    """The 100x Taste Profile on N two-core workers, from the measured figures (labelled)."""
    scale, n, k = args.project_scale, args.project_workers, args.factors
    users, songs = TASTE_PROFILE["users"] * scale, TASTE_PROFILE["songs"] * scale
    pairs = TASTE_PROFILE_PAIRS * scale
    # Compute: musrec's measured seconds per iteration on the full Taste Profile, 2 threads,
    # as seconds per pair on one two-core machine, scaled linearly and balanced perfectly.
    per_pair = args.taste_profile_s_per_iteration / TASTE_PROFILE_PAIRS
    compute = per_pair * pairs / n
    # Communication (block partitioning): a worker receives, per iteration, the rows of the
    # other side its shards' plays touch (songs in the users half-sweep, users in the songs
    # half-sweep) and two Gram matrices, and sends its own rows to the workers that touch
    # them (as many bytes, summed over workers, as they receive). Touched shares are computed
    # on the Taste Profile's shape (touched_fractions), the worst shard's for a worker.
    f = touched_fractions(n, args.project_touched_scale)
    touched_users, touched_songs = f["users"]["max"] * users, f["songs"]["max"] * songs
    recv = 4 * k * (touched_users + touched_songs) + 8 * k * k
    send = 4 * k * (f["users"]["mean"] * users + f["songs"]["mean"] * songs)
    link = args.network_gbit * 1e9 / 8
    worker_net = (recv + send) / link
    # The coordinator receives each shard's Gram part (a k x k product per 4,096 rows, and
    # at most a head and a tail of rows per shard and side) and sends each worker two Gram
    # matrices; it collects the factors only at checkpoints.
    chunk = musrec._musrec.WMF_GRAM_CHUNK_ROWS
    driver = 4 * k * k * (users + songs) / chunk + 2 * n * 2 * chunk * 4 * k + 2 * n * 4 * k * k
    driver_net = driver / link
    # Memory: in the songs half-sweep a worker holds the factors of the users its songs touch,
    # plus its own rows and its shards of the plays (CSR both ways, 4-byte index and value).
    hold = 4 * k * max(touched_users, touched_songs) + 4 * k * (users + songs) / n + 2 * 8 * pairs / n
    old_hold = 4 * k * max(users, songs) + 4 * k * (users + songs) / n + 2 * 8 * pairs / n
    out = {
        "scale": scale,
        "workers": n,
        "users": users,
        "songs": songs,
        "pairs": pairs,
        "touched": f,
        "measured_s_per_pair_iteration_2_threads": per_pair,
        "compute_s_per_iteration": compute,
        "bytes_in_per_worker_per_iteration": recv,
        "bytes_out_per_worker_per_iteration": send,
        "network_s_per_iteration_worker_link": worker_net,
        "coordinator_bytes_per_iteration": driver,
        "network_s_per_iteration_coordinator_link": driver_net,
        "bytes_held_per_worker": hold,
        "bytes_held_per_worker_without_block_partitioning": old_hold,
    }
    gib = 2**30
    print(
        f"touched (computed on the Taste Profile's shape at scale {f['scale']:g}, {f['shape'][0]:,} x "
        f"{f['shape'][1]:,}, {f['shape'][2]:,} pairs, {n} shards): a user shard touches "
        f"{f['songs']['mean']:.1%} of the songs (worst {f['songs']['max']:.1%}), a song shard "
        f"{f['users']['mean']:.1%} of the users (worst {f['users']['max']:.1%})"
    )
    print(f"PROJECTED (not measured): {scale}x the Taste Profile ({users:,} users x {songs:,} songs, {pairs:,} pairs)")
    print(f"  on {n} two-core workers, {args.network_gbit:g} Gbit/s links (assumed), k = {k}:")
    print(
        f"  compute {compute:.0f} s/iteration (musrec's measured {args.taste_profile_s_per_iteration:.1f} s/iteration "
        f"on the full Taste Profile, scaled {scale}x and split {n} ways)"
    )
    print(
        f"  each worker receives {recv / gib:.1f} GiB and sends {send / gib:.1f} GiB per iteration "
        f"({worker_net:.0f} s on its link); the coordinator moves {driver / gib:.2f} GiB ({driver_net:.1f} s)"
    )
    print(
        f"  each worker holds {hold / gib:.1f} GiB (the touched rows of the fixed side, its own rows and plays; "
        f"{old_hold / gib:.1f} GiB if it held all of the fixed side)"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--songs", type=int, default=50_000)
    ap.add_argument("--songs-per-user", type=float, default=40.0)
    ap.add_argument("--factors", type=int, default=100)
    ap.add_argument("--regularization", type=float, default=0.01)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--spark-plays", type=int, default=5_000_000, help="0: no Spark peer")
    ap.add_argument("--spark-iterations", type=int, default=5)
    ap.add_argument("--spark-repeats", type=int, default=3)
    ap.add_argument("--spark-memory", default="8g")
    ap.add_argument("--project-scale", type=int, default=100)
    ap.add_argument("--project-workers", type=int, default=16)
    ap.add_argument("--network-gbit", type=float, default=10.0)
    ap.add_argument(
        "--project-touched-scale",
        type=float,
        default=1.0,
        help="the Taste-Profile-shaped matrix the touched shares are computed on, as a fraction of the real one",
    )
    ap.add_argument(
        "--taste-profile-s-per-iteration",
        type=float,
        default=None,
        help="musrec's s/iteration on the full Taste Profile, 2 threads (bench_taste_profile.py); "
        "no projection without it",
    )
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.iterations < 2:
        ap.error("--iterations must be at least 2 (the marginal time per iteration needs two lengths)")

    world = musrec.synthetic.listening(args.users, args.songs, args.songs_per_user, seed=0)
    plays = world.plays
    settings = {"factors": args.factors, "regularization": args.regularization, "random_state": 0}
    short, long = [], []
    for _ in range(args.repeats):
        for iters, out in ((1, short), (args.iterations, long)):
            t = time.perf_counter()
            local = musrec.WMF(**settings, iterations=iters, num_threads=1).fit(plays, show_progress=False)
            out.append(time.perf_counter() - t)
    local_per_iter = marginal(short, long, args.iterations)
    results = {
        "machine": machine_line(),
        "matrix": [plays.shape[0], plays.shape[1], int(plays.nnz)],
        "factors": args.factors,
        "local_1_thread_s_per_iteration": local_per_iter,
    }
    print(f"{plays.shape[0]} x {plays.shape[1]}, {plays.nnz} plays, {args.factors} factors; {results['machine']}")
    print(f"local fit, 1 thread: {spread(local_per_iter)} s/iteration (median [min-max] of {args.repeats})", flush=True)
    results["runs"] = ray_runs(args, plays, local, {**settings})
    why_not = spark_available() if args.spark_plays > 0 else "--spark-plays 0"
    if why_not is None:
        results["spark"] = spark_peer(args)
    else:
        print(f"Spark peer skipped: {why_not}")
    if args.taste_profile_s_per_iteration:
        results["projection"] = projection(args)
    else:
        print(
            "no projection: pass --taste-profile-s-per-iteration "
            "(bench_taste_profile.py's musrec figure on this machine)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
