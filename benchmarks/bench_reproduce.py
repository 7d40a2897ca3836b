"""Time `musrec reproduce` stage by stage and record peak memory.

    python benchmarks/bench_reproduce.py --preset paper --work /big/disk/musrec-bench
    python benchmarks/bench_reproduce.py --preset paper --epochs 2 --learning-rates ""

The paper preset is the paper's size: a synthetic world of 10,000 users x 50,000 songs (4 s
of 8 kHz WAV each, about 3.2 GB), WMF with 100 factors, log-Mel features of every song, the
five networks at full size trained for up to 100 epochs, and the Figure 3 study. On a
2-core laptop the training dominates by far; ``--epochs`` caps it to time everything else
and the cost of an epoch of each network (reported per epoch, so the full run's training
time is that times the epochs it runs). Nothing here is compared with another library: the
per-stage comparisons are bench_wmf.py, bench_audio.py and bench_fusion.py.

Prints a Markdown table of the stages (seconds, whether cached, the process's peak resident
memory after the stage), the results table, and writes ``bench_reproduce.json`` to --out.
A second run with the same --work reuses every cached stage; use a fresh --work to time
from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import musrec
from musrec import experiment


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=sorted(experiment.PRESETS))
    p.add_argument("--work", default="musrec-bench-work", help="world and stage caches (several GB for paper)")
    p.add_argument("--out", default="musrec-bench-results")
    p.add_argument("--epochs", type=int, help="cap every network's training at this many epochs")
    p.add_argument("--learning-rates", help="Figure 3's learning rates, comma-separated; empty skips the study")
    p.add_argument("--kinds", help="the models to train, comma-separated (default: the preset's, all of them)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()

    overrides: dict = {}
    if args.epochs is not None:
        overrides["model"] = {"max_epochs": args.epochs}
    if args.kinds:
        overrides["kinds"] = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if args.learning_rates is not None:
        overrides["learning_rates"] = tuple(float(r) for r in args.learning_rates.split(",") if r.strip())
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    start = time.perf_counter()
    pipe = experiment.pipeline(
        args.preset,
        work_dir=args.work,
        num_threads=args.threads,
        show_progress=not args.quiet,
        log=log,
        **overrides,
    )
    world_s = time.perf_counter() - start
    result = pipe.run()
    total_s = time.perf_counter() - start
    result.write(args.out)

    stages = result.summary["stages"]
    print(f"\nmusrec {musrec.__version__}, preset {args.preset!r}, {os.cpu_count()} CPUs, {platform.processor()}")
    print(f"world written or found: {world_s:.1f} s; whole run {total_s:.1f} s\n")
    print("| stage | seconds | epochs | seconds per epoch | cached | peak memory (MB) |")
    print("|---|---|---|---|---|---|")
    per_epoch = {}
    for st in stages:
        epochs = ""
        rate = ""
        if st["stage"].startswith("train ") and not st["cached"]:
            name = st["stage"][len("train ") :]
            kind, _, lr = name.partition(" learning_rate=")
            history = (
                result.histories.get(kind)
                if not lr
                else {"train_loss": [r for r in result.figure3 if r["learning_rate"] == float(lr)]}
            )
            n = len(history["train_loss"]) if history else 0
            if n:
                epochs, rate = str(n), f"{st['seconds'] / n:.1f}"
                per_epoch[name] = st["seconds"] / n
        print(
            f"| {st['stage']} | {st['seconds']:.1f} | {epochs} | {rate} | {'yes' if st['cached'] else ''} "
            f"| {st['peak_rss_mb']:,.0f} |"
        )
    print()
    print(result.table1_markdown(paper=True))
    print()
    print(result.figure2_markdown(10))
    if result.figure3:
        print("\nFigure 3: fusion's training and validation loss per epoch, by learning rate")
        print("| learning rate | epoch | train loss | validation loss |\n|---|---|---|---|")
        for row in result.figure3:
            lr, epoch, train, val = row["learning_rate"], row["epoch"], row["train_loss"], row["validation_loss"]
            print(f"| {lr:g} | {epoch} | {train:.4f} | {val:.4f} |")
    record = {
        "preset": args.preset,
        "epochs_cap": args.epochs,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "world_seconds": world_s,
        "total_seconds": total_s,
        "stages": stages,
        "seconds_per_epoch": per_epoch,
        "summary": {k: v for k, v in result.summary.items() if k != "stages"},
        "table1": result.table1,
        "figure2": result.figure2,
        "figure3": result.figure3,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_reproduce.json"), "w") as f:
        json.dump(record, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
