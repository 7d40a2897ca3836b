"""Load a Taste-Profile-sized ``train_triplets.txt``: musrec vs pandas, time and peak memory.

    python benchmarks/bench_triplets.py                      # the full size: 48,373,586 lines
    python benchmarks/bench_triplets.py --scale 0.1          # a tenth

The real file cannot be downloaded here, so the benchmark writes one of the same shape (once;
kept at --file): 48,373,586 lines, 1,019,318 users (40-hex ids) and 384,546 songs (MSD-style
``SO...`` ids), grouped by user as the real file is, song popularity long-tailed, play counts
mostly 1 with a heavy tail. About 2.9 GB.

Each reader runs in a child process of its own so its peak resident memory is its own:
``musrec.data.read_triplets`` (streams the file into a CSR matrix with string-id
vocabularies) against what a data scientist would write otherwise,
``pandas.read_csv`` + ``factorize`` + ``scipy.sparse.csr_matrix`` (pandas is an optional
benchmark dependency). Prints seconds, peak memory and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

LINES, USERS, SONGS = 48_373_586, 1_019_318, 384_546

READERS = {
    "musrec": """
import musrec
t = musrec.data.read_triplets(PATH, show_progress=False)
shape, nnz = t.plays.shape, t.plays.nnz
""",
    "pandas": """
import pandas as pd, scipy.sparse as sp, numpy as np
df = pd.read_csv(PATH, sep="\\t", header=None, names=["user", "song", "count"],
                 dtype={"user": str, "song": str, "count": np.float32}, engine="c")
u, users = pd.factorize(df["user"])
s, songs = pd.factorize(df["song"])
m = sp.csr_matrix((df["count"].to_numpy(), (u, s)), shape=(len(users), len(songs)))
m.sum_duplicates()
shape, nnz = m.shape, m.nnz
""",
}


def shape(scale: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The file's shape at ``scale``: distinct songs per user and the songs' popularity.

    Distinct songs per user are at least 1 and long-tailed (log-normal activity), summing to
    the lines; popularity falls as rank^-0.8. Both keep their form at any scale (per user, and
    per song as a function of its rank over the catalogue), which bench_distributed.py's
    projection relies on.
    """
    n_lines, n_users, n_songs = int(LINES * scale), int(USERS * scale), int(SONGS * scale)
    activity = rng.lognormal(0, 1.0, n_users)
    per_user = 1 + rng.multinomial(n_lines - n_users, activity / activity.sum())
    popularity = 1.0 / np.arange(1, n_songs + 1) ** 0.8
    return per_user, popularity / popularity.sum()


def plays(per_user: np.ndarray, popularity: np.ndarray, rng: np.random.Generator):
    """Yield the plays user block by user block: ``(users, songs, counts)`` integer arrays."""
    for start in range(0, len(per_user), 20_000):
        chunk = per_user[start : start + 20_000]
        song = rng.choice(len(popularity), size=int(chunk.sum()), p=popularity)
        count = rng.geometric(0.45, size=len(song))
        owner = np.repeat(np.arange(start, start + len(chunk)), chunk)
        yield owner, song, count


def write_file(path: str, scale: float, seed: int = 0) -> None:
    n_lines, n_users, n_songs = int(LINES * scale), int(USERS * scale), int(SONGS * scale)
    rng = np.random.default_rng(seed)
    hexdigits = np.array(list("0123456789abcdef"))
    alnum = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    users = ["".join(r) for r in hexdigits[rng.integers(0, 16, (n_users, 40))]]
    songs = ["SO" + "".join(r) for r in alnum[rng.integers(0, 36, (n_songs, 16))]]
    per_user, popularity = shape(scale, rng)
    tmp = path + ".partial"
    done = 0
    with open(tmp, "w") as f:
        for owner, song, count in plays(per_user, popularity, rng):
            f.write("".join(f"{users[u]}\t{songs[s]}\t{c}\n" for u, s, c in zip(owner, song, count)))
            done += len(song)
            print(f"\r  writing {done:,} / {n_lines:,} lines", end="", flush=True)
    os.replace(tmp, path)
    print()


def run(name: str, path: str) -> dict:
    code = (
        f"import json, resource, time\nPATH = {path!r}\nstart = time.perf_counter()\n"
        + READERS[name]
        + "\nprint(json.dumps({'seconds': time.perf_counter() - start, 'shape': list(shape), 'nnz': int(nnz), "
        "'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the real file's size")
    p.add_argument("--file", help="where the generated file lives (default: train_triplets-<scale>.txt)")
    p.add_argument("--readers", default="musrec,pandas")
    args = p.parse_args()
    path = args.file or f"train_triplets-{args.scale:g}.txt"
    if not os.path.exists(path):
        start = time.perf_counter()
        write_file(path, args.scale)
        print(f"  wrote {path} in {time.perf_counter() - start:.0f} s")
    size = os.path.getsize(path)
    print(f"{path}: {size / 1e9:.2f} GB, {os.cpu_count()} CPUs")
    results = {}
    for name in args.readers.split(","):
        results[name] = r = run(name, path)
        if "error" in r:
            print(f"  {name:>7}: failed: {r['error']}")
        else:
            speed = size / 1e6 / r["seconds"]
            print(
                f"  {name:>7}: {r['seconds']:7.1f} s  {speed:6.0f} MB/s  peak {r['peak_mb']:7,.0f} MB"
                f"  {r['shape'][0]:,} x {r['shape'][1]:,}, {r['nnz']:,} pairs"
            )
    if "seconds" in results.get("musrec", {}) and "seconds" in results.get("pandas", {}):
        m, pd_ = results["musrec"], results["pandas"]
        print(
            f"musrec is {pd_['seconds'] / m['seconds']:.1f}x faster than pandas and peaks at "
            f"{m['peak_mb'] / pd_['peak_mb']:.2f}x its memory"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
