"""The ``musrec`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

PRESETS = {
    # users, songs, mean distinct songs per user
    "tiny": (500, 2_000, 30.0),
    "small": (5_000, 20_000, 40.0),
    "paper": (10_000, 50_000, 40.0),
}


def _table(rows: list[dict], n: int) -> str:
    cols = ["precision", "recall", "f1", "ndcg", "map", "auc"]
    head = "| model | " + " | ".join(f"{c}@{n}" if c != "auc" else "AUC" for c in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    body = [f"| {r['model']} | " + " | ".join(f"{r[c]:.4f}" for c in cols) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def reproduce(args: argparse.Namespace) -> int:
    from . import WMF, metrics, synthetic

    users, songs, per_user = PRESETS[args.preset]
    users = args.users or users
    songs = args.songs or songs
    print(f"musrec reproduce: preset {args.preset!r}, {users:,} users x {songs:,} songs (synthetic)")
    print("stage 1: WMF on listening data (the audio/metadata stages are not built yet)")
    t0 = time.perf_counter()
    world = synthetic.listening(n_users=users, n_songs=songs, mean_songs_per_user=per_user, seed=args.seed)
    plays = world.plays
    counts = plays.data
    print(
        f"  listening: {plays.nnz:,} (user, song) pairs, density {plays.nnz / (users * songs):.2e}, "
        f"play counts median {np.median(counts):.0f} / mean {counts.mean():.2f} / max {counts.max():.0f} "
        f"[{time.perf_counter() - t0:.1f} s]"
    )
    train, test = metrics.train_test_split(plays, test_fraction=0.2, random_state=args.seed)
    print(f"  split: {train.nnz:,} train / {test.nnz:,} held-out interactions")
    model = WMF(
        factors=args.factors,
        regularization=args.regularization,
        alpha=args.alpha,
        confidence=args.confidence,
        iterations=args.iterations,
        solver=args.solver,
        random_state=args.seed,
        num_threads=args.threads,
    )
    t0 = time.perf_counter()
    model.fit(train, show_progress=not args.quiet)
    fit_s = time.perf_counter() - t0
    print(f"  WMF fit: {fit_s:.2f} s ({fit_s / max(args.iterations, 1):.3f} s per iteration)")
    n = args.top_n
    rows = [
        {"model": "WMF", **metrics.ranking_metrics(model, train, test, N=n, num_threads=args.threads)},
        {"model": "popularity", **metrics.popularity_ranking_metrics(train, test, N=n)},
        {"model": "random", **metrics.random_ranking_metrics(train, test, N=n, random_state=args.seed)},
    ]
    table = _table(rows, n)
    print()
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "wmf_ranking.md"), "w") as f:
            f.write(table + "\n")
        with open(os.path.join(args.out, "wmf_ranking.json"), "w") as f:
            json.dump({"preset": args.preset, "users": users, "songs": songs, "rows": rows}, f, indent=2)
        model.save(os.path.join(args.out, "wmf.safetensors"))
        print(f"\nwrote {args.out}/wmf_ranking.md, wmf_ranking.json, wmf.safetensors")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run the recommender end to end on the embedded synthetic data")
    rep.add_argument("--preset", choices=sorted(PRESETS), default="small")
    rep.add_argument("--users", type=int, help="override the preset's number of users")
    rep.add_argument("--songs", type=int, help="override the preset's number of songs")
    rep.add_argument("--factors", type=int, default=100)
    rep.add_argument("--iterations", type=int, default=15)
    rep.add_argument("--regularization", type=float, default=0.01)
    rep.add_argument("--alpha", type=float, default=1.0)
    rep.add_argument("--confidence", choices=["linear", "log"], default="linear")
    rep.add_argument("--solver", choices=["cg", "cholesky"], default="cg")
    rep.add_argument("--threads", type=int, default=0, help="0 = one per core")
    rep.add_argument("--top-n", type=int, default=10)
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--out", help="directory for the result table, JSON and model")
    rep.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        return reproduce(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as e:
        print(f"musrec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
