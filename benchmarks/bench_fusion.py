"""Fusion network training and inference: musrec (candle, Rust) vs the same model in PyTorch.

Both sides build the same architecture (musrec's defaults: three 1-D convolutions of 256
channels, width 3, pooling 4/2/2, LSTM 256, d=100; tag/artist/year embeddings 64/64/16, MLP
512 -> 100, dropout 0.2, fused by a linear layer), train with Adam at 1e-3 on batches of 64
clips of 128 Mel bands x 130 frames (3 s at 22,050 Hz), on the same threads, in one run.

    python benchmarks/bench_fusion.py [--threads 2] [--steps 40] [--repeats 5] [--kind fusion]

PyTorch is an optional benchmark dependency (see ../shared/BENCHMARKS.md):
``pip install "torch==2.11.0"``. musrec's step time is measured through the public API as
the difference between a fit of E+k epochs and one of E epochs, divided by the extra steps,
so set-up (vocabularies, standardisation, first-touch allocation) is excluded as it is for
PyTorch's warm-up steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import musrec
import numpy as np
from _timing import machine_line  # run from benchmarks/, as every benchmark is


def make_data(n: int, n_mels: int, frames: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    spec = rng.normal(-40.0, 12.0, (n, n_mels, frames)).astype(np.float32)
    n_tags, n_artists = 1000, 500
    meta = []
    for _ in range(n):
        tags = [f"tag{j}" for j in rng.choice(n_tags, size=3, replace=False)]
        meta.append({"tags": tags, "artist": f"artist{rng.integers(n_artists)}", "year": int(rng.integers(1960, 2020))})
    targets = rng.normal(0.0, 0.3, (n, d)).astype(np.float32)
    return spec, meta, targets


def torch_model(kind: str, n_mels: int, d: int, n_tags: int, n_artists: int, n_years: int):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.audio = kind != "embedding"
            self.meta = kind in ("fusion", "embedding")
            if self.audio:
                layers, ch = [], n_mels
                for out, pool in zip((256, 256, 256), (4, 2, 2)):
                    layers += [nn.Conv1d(ch, out, 3, padding=1), nn.MaxPool1d(pool), nn.ReLU()]
                    ch = out
                self.conv = nn.Sequential(*layers)
                self.lstm = nn.LSTM(256, 256, batch_first=True) if kind in ("fusion", "cnn_lstm") else None
                self.audio_fc = nn.Linear(256, d)
            if self.meta:
                self.tags = nn.Parameter(torch.randn(n_tags, 64))
                self.artists = nn.Embedding(n_artists, 64)
                self.years = nn.Embedding(n_years, 16)
                self.mlp = nn.Sequential(
                    nn.Linear(144, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, d), nn.ReLU(), nn.Dropout(0.2)
                )
            self.drop = nn.Dropout(0.2)
            self.head = nn.Linear(2 * d if kind == "fusion" else d, d)

        def forward(self, spec, tags, artists, years):
            parts = []
            if self.audio:
                x = self.conv(spec)
                if self.lstm is not None:
                    _, (h, _) = self.lstm(x.transpose(1, 2))
                    x = h[-1]
                else:
                    x = x.mean(dim=2)
                parts.append(self.drop(torch.relu(self.audio_fc(x))))
            if self.meta:
                m = torch.cat([tags @ self.tags, self.artists(artists), self.years(years)], dim=1)
                parts.append(self.mlp(m))
            return self.head(torch.cat(parts, dim=1))

    return Net()


class TorchSide:
    """The PyTorch model and optimiser, built once; each repetition trains `steps` steps
    (after 3 warm-up steps on the first) and times inference over every song."""

    def __init__(self, kind, spec, tags, artists, years, targets, threads):
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        vocab = (tags.shape[1], int(artists.max()) + 1, int(years.max()) + 1)
        self.model = torch_model(kind, spec.shape[1], targets.shape[1], *vocab)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.x = torch.from_numpy(spec)
        self.tg, self.ar, self.yr, self.y = (torch.from_numpy(a) for a in (tags, artists, years, targets))
        self.n_parameters = sum(p.numel() for p in self.model.parameters())
        self.position = 0
        self.train_steps(3)

    def train_steps(self, steps: int, batch: int = 64) -> list[float]:
        torch, n, times = self.torch, self.x.shape[0], []
        self.model.train()
        for _ in range(steps):
            idx = torch.arange(self.position, self.position + batch) % n
            self.position += batch
            t0 = time.perf_counter()
            self.opt.zero_grad()
            loss = torch.nn.functional.mse_loss(
                self.model(self.x[idx], self.tg[idx], self.ar[idx], self.yr[idx]), self.y[idx]
            )
            loss.backward()
            self.opt.step()
            times.append(time.perf_counter() - t0)
        return times

    def rep(self, batch: int, steps: int, infer_batch: int) -> tuple[float, float]:
        step = statistics.median(self.train_steps(steps, batch))
        self.model.eval()
        x, tg, ar, yr, n, b = self.x, self.tg, self.ar, self.yr, self.x.shape[0], infer_batch
        with self.torch.no_grad():
            self.model(x[:b], tg[:b], ar[:b], yr[:b])
            t0 = time.perf_counter()
            for s in range(0, n, b):
                self.model(x[s : s + b], tg[s : s + b], ar[s : s + b], yr[s : s + b])
            infer = n / (time.perf_counter() - t0)
        return step, infer


class MusrecSide:
    """Each repetition: the step time as the difference between a fit of 1 + k epochs and the
    faster of two of 1 epoch, over the k extra epochs' steps (so set-up is excluded), and inference over every
    song. The first repetition starts with a warm-up fit (the thread pool and the allocator's
    first pages), as PyTorch's side has its warm-up steps."""

    def __init__(self, kind, spec, meta, targets, threads):
        self.kind, self.spec, self.meta, self.targets, self.threads = kind, spec, meta, targets, threads
        self.n_parameters = None
        self.warm = False

    def fit(self, epochs: int, batch: int):
        model = musrec.FusionModel(
            self.kind, max_epochs=epochs, batch_size=batch, num_threads=self.threads, min_count=1
        )
        t0 = time.perf_counter()
        model.fit(self.spec, self.meta, self.targets, validation=None, show_progress=False)
        return time.perf_counter() - t0, model

    def rep(self, batch: int, steps: int, infer_batch: int) -> tuple[float, float]:
        n = self.spec.shape[0]
        per_epoch = -(-n // batch)
        extra = max(1, -(-steps // per_epoch))
        if not self.warm:
            self.fit(1, batch)
            self.warm = True
        # the faster of two 1-epoch fits: noise in the set-up cannot shrink the step time
        base = min(self.fit(1, batch)[0] for _ in range(2))
        more, model = self.fit(1 + extra, batch)
        self.n_parameters = model.n_parameters_
        step = (more - base) / (extra * per_epoch)
        model.predict(self.spec[:infer_batch], self.meta[:infer_batch], batch_size=infer_batch)
        t0 = time.perf_counter()
        model.predict(self.spec, self.meta, batch_size=infer_batch)
        return step, n / (time.perf_counter() - t0)


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40, help="training steps per repetition, each side")
    ap.add_argument("--repeats", type=int, default=5, help="alternating repetitions of both sides")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--frames", type=int, default=130, help="130 = 3 s at 22,050 Hz; 47 = 3 s at 8 kHz")
    ap.add_argument("--infer-batch", type=int, default=64, help="songs per forward pass at inference, both sides")
    ap.add_argument("--kind", default="fusion", choices=musrec.fusion.KINDS)
    args = ap.parse_args()

    n = args.batch * 10
    spec, meta, targets = make_data(n, 128, args.frames, 100)
    # The PyTorch side gets the same encoded inputs musrec builds internally.
    tags_vocab = sorted({t for m in meta for t in m["tags"]})
    tag_index = {t: i + 1 for i, t in enumerate(tags_vocab)}
    tags = np.zeros((n, len(tags_vocab) + 1), np.float32)
    for i, m in enumerate(meta):
        for t in m["tags"]:
            tags[i, tag_index[t]] = 1.0 / len(m["tags"])
    artists = np.array([int(m["artist"][6:]) + 1 for m in meta], np.int64)
    years = np.array([(m["year"] - 1960) // 5 + 1 for m in meta], np.int64)

    print(machine_line())
    sides = {"musrec": MusrecSide(args.kind, spec, meta, targets, args.threads)}
    try:
        sides["pytorch"] = TorchSide(args.kind, spec, tags, artists, years, targets, args.threads)
        torch_threads = sides["pytorch"].torch.get_num_threads()
    except ImportError:
        print("PyTorch is not installed: musrec only")
        torch_threads = None
    print(
        f"kind={args.kind} batch={args.batch} infer-batch={args.infer_batch} input=128x{args.frames} "
        f"threads: musrec {args.threads}"
        + (f", pytorch {torch_threads}" if torch_threads else "")
        + f"; {args.repeats} alternating repetitions of {args.steps} steps"
    )
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    names = list(sides)
    for rep in range(args.repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            results[name].append(sides[name].rep(args.batch, args.steps, args.infer_batch))
    print("median [min-max] over repetitions")
    print(f"{'library':<10}{'params':>11}  {'step (s)':<26}{'train samples/s':<22}{'infer samples/s':<22}")
    for name, side in sides.items():
        steps = [s for s, _ in results[name]]
        infers = [i for _, i in results[name]]
        print(
            f"{name:<10}{side.n_parameters:>11,}  {spread(steps, '.4f'):<26}"
            f"{spread([args.batch / s for s in steps], ',.0f'):<22}{spread(infers, ',.0f'):<22}"
        )
    if "pytorch" in results:
        train = [t[0] / m[0] for m, t in zip(results["musrec"], results["pytorch"], strict=True)]
        infer = [m[1] / t[1] for m, t in zip(results["musrec"], results["pytorch"], strict=True)]
        print(
            f"musrec / pytorch (paired by repetition): training {spread(train, '.2f')}x, "
            f"inference {spread(infer, '.2f')}x"
        )


if __name__ == "__main__":
    main()
