"""Cold start on real sound: every model kind against the linear (ridge) baselines.

Builds a synthetic world whose songs are cut from real recordings (freely licensed game
soundtracks that Debian ships: orchestral, electronic, ambient, rock), whose listening
follows styles derived from that sound (``musrec.synthetic.write_world(source_audio=...)``),
then runs the experiment (WMF, cold-start split, 3 s log-Mel excerpts, every kind) and
prints Figure 2's recall and AUC for each model, and each network's verdict against the
ridge model on the same inputs.

    python3 benchmarks/bench_cold_start.py                  # installs the music (apt, root)
    python3 benchmarks/bench_cold_start.py --recordings DIR # any folder of recordings
    python3 benchmarks/bench_cold_start.py --sound rendered # the preset's synthetic world
    python3 benchmarks/bench_cold_start.py --excerpts 1     # the paper's one excerpt per song
    python3 benchmarks/bench_cold_start.py --split artists  # cold start of new artists' songs
    python3 benchmarks/bench_cold_start.py --seeds 0,1,2    # mean and spread over three seeds

Beside the models it prints a content ceiling: ridge regression of the WMF vectors on the
songs' true latent style (the world's ground truth). No model of sound and metadata can
expect to beat it by much, so it bounds what a network can gain over the ridge baseline
in that world. The audio ceiling is the same on only the style dimensions the sound carries
(``audio_dims``): about the best a model of the sound alone can do.

The Debian packages are installed with apt-get when missing (about 600 MB of Ogg Vorbis);
their archives (.pk3, zip) are unpacked into ``--work``. Results go to ``--out`` (report.md,
figures, CSV) and a summary line per model to stdout, with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

import musrec
import numpy as np
import scipy.sparse as sp
from _timing import cpu_model
from musrec import experiment, metrics

#: Debian packages of freely licensed game music, and where their recordings are.
PACKAGES = {
    "wesnoth-1.16-music": "/usr/share/games/wesnoth/1.16/data/core/music",  # orchestral
    "hyperrogue-music": "/usr/share/hyperrogue/music",  # varied: folk, electronic, ambient
    "singularity-music": "/usr/share/games/singularity/music",  # ambient / electronic
    "nexuiz-music": "/usr/share/games/nexuiz/data/music.pk3",  # electronic, metal
    "ufoai-music": "/usr/share/games/ufoai/base/0music.pk3",  # orchestral, ambient
}


def gather_recordings(work: str) -> str:
    """Install the packages if needed and link or unpack their recordings into one folder."""
    missing = [p for p, where in PACKAGES.items() if not os.path.exists(where)]
    if missing:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            sys.exit(f"install {' '.join(missing)} (Debian) or pass --recordings DIR")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)
    out = os.path.join(work, "recordings")
    os.makedirs(out, exist_ok=True)
    for package, where in PACKAGES.items():
        target = os.path.join(out, package)
        if os.path.exists(target):
            continue
        if where.endswith(".pk3"):
            partial = target + ".partial"
            with zipfile.ZipFile(where) as z:
                for name in z.namelist():
                    if name.endswith(".ogg"):
                        z.extract(name, partial)
            os.replace(partial, target)
        else:
            os.symlink(where, target)
    return out


def content_ceiling(pipe: musrec.Pipeline, world: str, dims: str | None = None) -> dict:
    """Figure 2's recall@10 and AUC of a ridge regression of the WMF song vectors on each
    song's true latent style (the world's ground truth, which listening follows): about the
    best any model of a song's content can do here, since it sees the style only through
    the sound and the metadata. With ``dims="audio_dims"``, only the style dimensions the
    sound carries: about the best a model of the sound alone can do. The penalty is picked
    on the last tenth of the training songs."""
    ds, wmf, _, _, _, train_idx, test_idx = pipe._prepared()
    truth = musrec.synthetic.load_truth(world)
    row = {s: i for i, s in enumerate(truth["song_ids"])}
    x = np.asarray(truth["song_style"], np.float64)[[row[s] for s in ds.songs.song_id]]
    if dims is not None:
        x = x[:, np.asarray(truth[dims], int)]
    x = np.hstack([(x - x[train_idx].mean(0)) / x[train_idx].std(0), np.ones((len(x), 1))])
    y = wmf.item_factors.astype(np.float64)
    cut = int(len(train_idx) * 0.9)

    def solve(rows: np.ndarray, penalty: float) -> np.ndarray:
        return np.linalg.solve(x[rows].T @ x[rows] + penalty * np.eye(x.shape[1]), x[rows].T @ y[rows])

    fit, held = train_idx[:cut], train_idx[cut:]
    penalty = min(10.0 ** np.arange(-1, 5), key=lambda p: float(((x[held] @ solve(fit, p) - y[held]) ** 2).mean()))
    predicted = (x[test_idx] @ solve(train_idx, penalty)).astype(np.float32)
    plays = ds.plays[:, test_idx].tocsr()
    ranker = musrec.pipeline._Vectors(wmf.user_factors, predicted)
    return metrics.ranking_metrics(ranker, sp.csr_matrix(plays.shape, dtype=np.float32), plays, N=10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sound",
        default="real",
        choices=("real", "rendered"),
        help="songs cut from recordings, or the preset's synthetic world with rendered sound",
    )
    ap.add_argument("--recordings", help="folder of recordings (default: Debian's game music)")
    ap.add_argument("--work", default="/tmp/musrec-bench-cold-start")
    ap.add_argument("--out", default="benchmarks/results/cold-start")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--songs", type=int, default=4000, help="at most this many songs")
    ap.add_argument("--song-seconds", type=float, default=10.0, help="length of each song cut")
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--songs-per-user", type=float, default=40.0)
    ap.add_argument("--preset", default="small", choices=sorted(experiment.PRESETS), help="network sizes")
    ap.add_argument("--kinds", default=",".join(musrec.fusion.KINDS))
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--architecture", default="musrec", choices=("musrec", "paper"), help="the networks' design")
    ap.add_argument("--excerpts", type=int, default=3, help="excerpts per song the models read")
    ap.add_argument(
        "--world",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a world setting for the real-sound world, e.g. share_without_tags=0.46 (repeatable)",
    )
    ap.add_argument(
        "--split", default="songs", choices=("songs", "artists"), help="hold out random songs, or whole artists"
    )
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a FusionModel setting for every network, e.g. stop_metric=recall (repeatable)",
    )
    ap.add_argument("--seed", type=int, default=0, help="the world's seed")
    ap.add_argument("--seeds", default="0", help="the experiment's seeds (song split, initialisation), comma-separated")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    os.makedirs(args.work, exist_ok=True)
    start = time.perf_counter()
    overrides = {
        "kinds": tuple(args.kinds.split(",")),
        "learning_rates": (),
        "excerpts": args.excerpts,
        "split": args.split,
    }
    overrides["model"] = {"architecture": args.architecture}
    if args.epochs is not None:
        overrides["model"]["max_epochs"] = args.epochs
    for item in args.model:
        key, value = item.split("=", 1)
        overrides["model"][key] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    seeds = [int(x) for x in args.seeds.split(",")]
    if args.sound == "rendered":
        # the preset's own synthetic world, its sound rendered from notes
        work = os.path.join(args.work, "rendered")
        world = experiment.prepare_world(work, args.preset, args.seed, args.threads)
        stages = work
    else:
        recordings = args.recordings or gather_recordings(args.work)
        extra = {k: float(v) for k, v in (item.split("=", 1) for item in args.world)}
        tag = "".join(f"-{k}{v:g}" for k, v in sorted(extra.items()))
        if args.songs_per_user != 40.0:  # the name tells worlds of other listening apart
            tag += f"-{args.songs_per_user:g}plays"
        world = os.path.join(args.work, f"world-{args.songs}x{args.users}-{args.song_seconds:g}s{tag}-seed{args.seed}")
        if not os.path.exists(os.path.join(world, "world.json")):
            partial = world + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            summary = musrec.synthetic.write_world(
                partial,
                "small",
                seed=args.seed,
                num_threads=args.threads,
                source_audio=recordings,
                n_users=args.users,
                n_songs=args.songs,
                mean_songs_per_user=args.songs_per_user,
                duration=args.song_seconds,
                sample_rate=args.sample_rate,
                **extra,
            )
            os.replace(partial, world)
            print(f"world written in {time.perf_counter() - start:.0f} s: {summary}")
        stages = os.path.join(args.work, "runs")

    runs = []  # (seed, result, ceiling)
    for seed in seeds:
        pipe = experiment.pipeline(
            args.preset,
            world,
            stages,
            random_state=seed,
            num_threads=args.threads,
            n_users=None,
            n_songs=None,
            **overrides,
        )
        result = pipe.run()
        out = (
            os.path.join(args.out, args.architecture, f"seed{seed}")
            if len(seeds) > 1
            else os.path.join(args.out, args.architecture)
        )
        result.write(out)
        runs.append((seed, result, content_ceiling(pipe, world), content_ceiling(pipe, world, "audio_dims")))

    s = runs[0][1].summary
    print(
        f"\n{args.sound}-sound world {world}, {args.architecture} networks, {args.excerpts} excerpt(s) per song, "
        f"cold-start {args.split}, seeds {args.seeds} ({cpu_model()}, {os.cpu_count()} CPUs)"
    )
    print(
        f"{s['users']:,} users x {s['songs']:,} songs; {s['training_songs']:,} training, {s['test_songs']:,} cold-start"
    )

    def at(result, model: str, n: int, key: str) -> float:
        row = next((r for r in result.figure2 if r["model"] == model and r["N"] == n), None)
        return float("nan") if row is None else row[key]

    def spread(values: list[float], digits: int) -> str:
        values = np.asarray(values, float)
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"

    print("\n| ranker of the cold-start songs | user AUC | recall@10 | recall@50 |\n|---|---|---|---|")
    for model in dict.fromkeys(r["model"] for r in runs[0][1].figure2):
        cells = [
            spread([at(r, model, n, key) for _, r, _, _ in runs], digits)
            for n, key, digits in ((10, "auc", 3), (10, "recall", 4), (50, "recall", 4))
        ]
        print(f"| {model} | {' | '.join(cells)} |")
    for label, ceiling in (
        ("content ceiling: ridge on the true style", [c for _, _, c, _ in runs]),
        ("audio ceiling: ridge on the style the sound carries", [c for _, _, _, c in runs]),
    ):
        print(f"| {label} | {spread([c['auc'] for c in ceiling], 3)} | {spread([c['recall'] for c in ceiling], 4)} | |")
    for seed, result, c, heard in runs:
        print(f"\nseed {seed}:")
        for line in result.verdict_lines(10):
            print(line)
        ridge_recall, ridge_auc = at(result, "ridge", 10, "recall"), at(result, "ridge", 10, "auc")
        if ridge_recall > 0:
            print(
                f"headroom above ridge: the content ceiling is {c['recall'] / ridge_recall:.2f}x its recall@10 "
                f"and {c['auc'] - ridge_auc:+.3f} in AUC; the audio ceiling {heard['recall'] / ridge_recall:.2f}x "
                f"and {heard['auc'] - ridge_auc:+.3f}"
            )
    if len(runs) > 1:
        print("\nmean over seeds of each network's ratio to its linear counterpart (recall@10; AUC difference):")
        for kind, linear in musrec.fusion.LINEAR_COUNTERPART.items():
            if kind == linear or kind not in overrides["kinds"] or linear not in overrides["kinds"]:
                continue
            ratio = [at(r, kind, 10, "recall") / at(r, linear, 10, "recall") for _, r, _, _ in runs]
            gain = [at(r, kind, 10, "auc") - at(r, linear, 10, "auc") for _, r, _, _ in runs]
            print(f"  {kind} vs {linear}: {spread(ratio, 2)}x, AUC {spread(gain, 3)}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s; reports in {os.path.join(args.out, args.architecture)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
