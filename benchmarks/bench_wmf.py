"""WMF: musrec vs implicit, side by side on the same synthetic matrix in one run.

    python3 -m pip install ".[bench]"          # implicit, threadpoolctl
    python3 benchmarks/bench_wmf.py            # paper size and ~5M plays, both solvers, alpha 1 and 40
    python3 benchmarks/bench_wmf.py --sizes paper --solvers cg --repeats 5

Fairness (see ../shared/BENCHMARKS.md): implicit's CPU ALS uses the matrix value itself as
the confidence, so it gets 1 + alpha * r as data (alpha=1) while musrec gets r with
confidence="linear"; same factors (100), regularization, iterations (15), solver (CG with 3
steps, or Cholesky), thread count; implicit runs under threadpool_limits(1, "blas").
Each (library, solver, size) runs in its own process on the identical seeded matrix, so
peak memory is that of one fit. Seconds per iteration = fit time / iterations (setup
included on both sides). Quality: musrec.metrics on the same 20% held-out split.
Batch recommend: top-10 for every user, already-played items filtered, on both sides.

Timing on a shared machine: each (size, solver, alpha) runs `--repeats` times, alternating
musrec and implicit (the starting side rotates each repetition, see _timing.interleaved), and
reports the median and the min-max spread of each side and of the paired speed-up. Alpha is
swept (1 and 40 by default) because confidence changes how fast CG converges. The CPU model,
the load average and the threads each side used are printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _timing import Rates, cpu_model, machine_line, ratio_spread

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


def musrec_threads(requested: int) -> int:
    """Threads musrec's pool gets: num_threads, or every available core for 0."""
    return requested or len(os.sched_getaffinity(0))


def spread(xs: list[float]) -> str:
    """median [min-max]"""
    import statistics

    return f"{statistics.median(xs):.3f} [{min(xs):.3f}-{max(xs):.3f}]"


def implicit_als(factors: int, regularization: float, iterations: int, solver: str, threads: int):
    """implicit's CPU ALS set up as musrec's WMF is: alpha 1 (the data carry the confidence),
    CG with 3 steps or Cholesky, seeded, no training loss."""
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=factors,
        regularization=regularization,
        alpha=1.0,
        iterations=iterations,
        use_cg=(solver == "cg"),
        random_state=0,
        num_threads=threads,
        calculate_training_loss=False,
    )
    model.cg_steps = 3  # an attribute in implicit 0.7, not a constructor argument
    return model


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
        threads = {"num_threads": musrec_threads(args.threads)}
    else:
        from threadpoolctl import threadpool_info, threadpool_limits

        confidence = train.copy()
        confidence.data = 1.0 + args.alpha * confidence.data
        with threadpool_limits(1, "blas"):
            model = implicit_als(100, args.regularization, args.iterations, solver, args.threads)
            t0 = time.perf_counter()
            model.fit(confidence, show_progress=False)
            fit_s = time.perf_counter() - t0
            peak = rss_mib("VmHWM") - base
            userids = np.arange(users)
            t0 = time.perf_counter()
            model.recommend(userids, train[userids], N=10, filter_already_liked_items=True)
            rec_s = time.perf_counter() - t0
            blas = sorted({(i["internal_api"], i["num_threads"]) for i in threadpool_info()})
        threads = {"num_threads": model.num_threads, "blas": [f"{api}={n}" for api, n in blas]}
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
        "alpha": args.alpha,
        "threads": threads,
        "precision@10": quality["precision"],
        "ndcg@10": quality["ndcg"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--solvers", nargs="+", default=["cg", "cholesky"], choices=["cg", "cholesky"])
    p.add_argument("--alphas", nargs="+", type=float, default=[1.0, 40.0])
    p.add_argument("--repeats", type=int, default=3, help="alternating repetitions per side")
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--alpha", type=float, default=1.0, help=argparse.SUPPRESS)  # the worker's
    p.add_argument("--regularization", type=float, default=0.01)
    p.add_argument("--eval-users", type=int, default=20_000, help="users sampled for quality metrics")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "wmf.json"))
    p.add_argument("--worker", nargs=3, metavar=("LIB", "SOLVER", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return

    try:
        import implicit
    except ImportError:
        sys.exit("implicit is not installed: python3 -m pip install '.[bench]'")
    import statistics

    import musrec

    print(f"machine: {machine_line()}")
    print(f"musrec {musrec.__version__}, implicit {implicit.__version__}, {args.repeats} alternating repetitions")
    libs = ["musrec", "implicit"]
    rows = []
    for size in args.sizes:
        for solver in args.solvers:
            for alpha in args.alphas:
                forwarded = [
                    *("--iterations", str(args.iterations), "--threads", str(args.threads)),
                    *("--alpha", str(alpha), "--regularization", str(args.regularization)),
                    *("--eval-users", str(args.eval_users)),
                ]
                runs: dict[str, list[dict]] = {lib: [] for lib in libs}
                for rep in range(args.repeats):
                    for lib in libs[rep % 2 :] + libs[: rep % 2]:
                        cmd = [sys.executable, __file__, "--worker", lib, solver, size, *forwarded]
                        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                        r = json.loads(out.strip().splitlines()[-1])
                        runs[lib].append(r)
                        print(
                            f"{size:>5} {solver:>8} alpha {alpha:g} rep {rep} {lib:>8}: {r['s_per_iter']:.3f} s/iter, "
                            f"peak +{r['peak_mib']:.0f} MiB, recommend_all {r['recommend_all_s']:.2f} s, "
                            f"P@10 {r['precision@10']:.4f}, threads {r['threads']}",
                            flush=True,
                        )
                m, i = runs["musrec"], runs["implicit"]
                # Rates of 1 item per call: rate ratio musrec / implicit = implicit s / musrec s.
                fit = ratio_spread(Rates(1, [r["s_per_iter"] for r in m]), Rates(1, [r["s_per_iter"] for r in i]))
                rec = ratio_spread(
                    Rates(1, [r["recommend_all_s"] for r in m]), Rates(1, [r["recommend_all_s"] for r in i])
                )
                med = lambda rs, key: statistics.median(r[key] for r in rs)  # noqa: E731
                rows.append(
                    {
                        "size": size,
                        "solver": solver,
                        "alpha": alpha,
                        "plays": m[0]["plays"],
                        "cpu": cpu_model(),
                        "load_average": os.getloadavg(),
                        "runs": runs,
                        "speedup_fit": fit,
                        "speedup_recommend": rec,
                        "precision_rel_diff": (med(m, "precision@10") - med(i, "precision@10"))
                        / med(i, "precision@10"),
                    }
                )
    print()
    print(f"CPU: {cpu_model()}; load average now {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("median [min-max] over the repetitions; speed-ups are paired per repetition")
    print(
        "| size | plays | solver | alpha | musrec s/iter | implicit s/iter | speed-up | peak MiB musrec / implicit "
        "| recommend-all s musrec | recommend-all s implicit | speed-up "
        "| P@10 musrec / implicit | NDCG@10 musrec / implicit | threads |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m, i = r["runs"]["musrec"], r["runs"]["implicit"]
        med = lambda rs, key: statistics.median(x[key] for x in rs)  # noqa: E731
        col = lambda rs, key: spread([x[key] for x in rs])  # noqa: E731
        sf, sr = r["speedup_fit"], r["speedup_recommend"]
        print(
            f"| {r['size']} | {r['plays']:,} | {r['solver']} | {r['alpha']:g} | {col(m, 's_per_iter')} | "
            f"{col(i, 's_per_iter')} | **{sf[0]:.2f}x** [{sf[1]:.2f}-{sf[2]:.2f}] | "
            f"{med(m, 'peak_mib'):.0f} / {med(i, 'peak_mib'):.0f} | {col(m, 'recommend_all_s')} | "
            f"{col(i, 'recommend_all_s')} | **{sr[0]:.2f}x** [{sr[1]:.2f}-{sr[2]:.2f}] | "
            f"{med(m, 'precision@10'):.4f} / {med(i, 'precision@10'):.4f} | "
            f"{med(m, 'ndcg@10'):.4f} / {med(i, 'ndcg@10'):.4f} | "
            f"musrec {m[0]['threads']['num_threads']}, implicit {i[0]['threads']['num_threads']} "
            f"({', '.join(i[0]['threads']['blas'])}) |"
        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
