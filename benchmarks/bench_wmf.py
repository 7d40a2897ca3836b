"""WMF: musrec vs implicit, side by side on the same synthetic matrix in one run.

    python3 -m pip install ".[bench]"          # implicit, threadpoolctl
    python3 benchmarks/bench_wmf.py            # paper size and ~5M plays, both solvers
    python3 benchmarks/bench_wmf.py --sizes paper --solvers cg

Fairness (see ../shared/BENCHMARKS.md): implicit's CPU ALS uses the matrix value itself as
the confidence, so it gets 1 + alpha * r as data (alpha=1) while musrec gets r with
confidence="linear"; same factors (100), regularization, iterations (15), solver (CG with 3
steps, or Cholesky), thread count; implicit runs under threadpool_limits(1, "blas").
Each (library, solver, size) runs in its own process on the identical seeded matrix, so
peak memory is that of one fit. Seconds per iteration = fit time / iterations (setup
included on both sides). Quality: musrec.metrics on the same 20% held-out split.
Batch recommend: top-10 for every user, already-played items filtered, on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SIZES = {
    # users, songs, mean distinct songs per user
    "paper": (10_000, 50_000, 40.0),
    "5M": (200_000, 100_000, 25.0),
}


def rss_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS
    except OSError:
        pass


def worker(lib: str, solver: str, size: str, args: argparse.Namespace) -> dict:
    import musrec
    import numpy as np

    users, songs, per_user = SIZES[size]
    world = musrec.synthetic.listening(n_users=users, n_songs=songs, mean_songs_per_user=per_user, seed=0)
    train, test = musrec.metrics.train_test_split(world.plays, 0.2, random_state=0)
    if args.eval_users and args.eval_users < users:
        keep = np.zeros(users, bool)
        keep[np.random.default_rng(0).choice(users, args.eval_users, replace=False)] = True
        test = test.multiply(keep[:, None]).tocsr()
    base = rss_mib("VmRSS")
    reset_peak()
    if lib == "musrec":
        model = musrec.WMF(
            factors=100,
            regularization=args.regularization,
            alpha=args.alpha,
            iterations=args.iterations,
            solver=solver,
            cg_steps=3,
            random_state=0,
            num_threads=args.threads,
        )
        t0 = time.perf_counter()
        model.fit(train, show_progress=False)
        fit_s = time.perf_counter() - t0
        peak = rss_mib("VmHWM") - base
        t0 = time.perf_counter()
        model.recommend_all(train, N=10)
        rec_s = time.perf_counter() - t0
        factors = model
    else:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        confidence = train.copy()
        confidence.data = 1.0 + args.alpha * confidence.data
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=100,
                regularization=args.regularization,
                alpha=1.0,
                iterations=args.iterations,
                use_cg=(solver == "cg"),
                random_state=0,
                num_threads=args.threads,
                calculate_training_loss=False,
            )
            model.cg_steps = 3  # an attribute in implicit 0.7, not a constructor argument
            t0 = time.perf_counter()
            model.fit(confidence, show_progress=False)
            fit_s = time.perf_counter() - t0
            peak = rss_mib("VmHWM") - base
            userids = np.arange(users)
            t0 = time.perf_counter()
            model.recommend(userids, train[userids], N=10, filter_already_liked_items=True)
            rec_s = time.perf_counter() - t0
        factors = model
    quality = musrec.metrics.ranking_metrics(factors, train, test, N=10)
    return {
        "lib": lib,
        "solver": solver,
        "size": size,
        "users": users,
        "songs": songs,
        "plays": int(train.nnz),
        "s_per_iter": fit_s / args.iterations,
        "fit_s": fit_s,
        "peak_mib": peak,
        "recommend_all_s": rec_s,
        "precision@10": quality["precision"],
        "ndcg@10": quality["ndcg"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--solvers", nargs="+", default=["cg", "cholesky"], choices=["cg", "cholesky"])
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--regularization", type=float, default=0.01)
    p.add_argument("--eval-users", type=int, default=20_000, help="users sampled for quality metrics")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "wmf.json"))
    p.add_argument("--worker", nargs=3, metavar=("LIB", "SOLVER", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return

    try:
        import implicit  # noqa: F401
    except ImportError:
        sys.exit("implicit is not installed: python3 -m pip install '.[bench]'")
    forwarded = [
        "--iterations",
        str(args.iterations),
        "--threads",
        str(args.threads),
        "--alpha",
        str(args.alpha),
        "--regularization",
        str(args.regularization),
        "--eval-users",
        str(args.eval_users),
    ]
    rows = []
    for size in args.sizes:
        for solver in args.solvers:
            pair = {}
            for lib in ("musrec", "implicit"):
                cmd = [sys.executable, __file__, "--worker", lib, solver, size, *forwarded]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                pair[lib] = json.loads(out.strip().splitlines()[-1])
                r = pair[lib]
                print(
                    f"{size:>5} {solver:>8} {lib:>8}: {r['s_per_iter']:.3f} s/iter, peak +{r['peak_mib']:.0f} MiB, "
                    f"recommend_all {r['recommend_all_s']:.2f} s, P@10 {r['precision@10']:.4f}, "
                    f"NDCG@10 {r['ndcg@10']:.4f}",
                    flush=True,
                )
            m, i = pair["musrec"], pair["implicit"]
            rows.append(
                {
                    "size": size,
                    "solver": solver,
                    "plays": m["plays"],
                    "musrec": m,
                    "implicit": i,
                    "speedup_fit": i["s_per_iter"] / m["s_per_iter"],
                    "speedup_recommend": i["recommend_all_s"] / m["recommend_all_s"],
                    "precision_rel_diff": (m["precision@10"] - i["precision@10"]) / i["precision@10"],
                }
            )
    print()
    print(
        "| size | plays | solver | musrec s/iter | implicit s/iter | speed-up | musrec peak MiB | implicit peak MiB "
        "| recommend-all musrec / implicit (s) | speed-up | P@10 musrec / implicit | NDCG@10 musrec / implicit |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m, i = r["musrec"], r["implicit"]
        print(
            f"| {r['size']} | {r['plays']:,} | {r['solver']} | {m['s_per_iter']:.3f} | {i['s_per_iter']:.3f} | "
            f"{r['speedup_fit']:.2f}x | {m['peak_mib']:.0f} | {i['peak_mib']:.0f} | "
            f"{m['recommend_all_s']:.2f} / {i['recommend_all_s']:.2f} | {r['speedup_recommend']:.2f}x | "
            f"{m['precision@10']:.4f} / {i['precision@10']:.4f} | {m['ndcg@10']:.4f} / {i['ndcg@10']:.4f} |"
        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
