"""Fusion network training and inference: musrec (candle, Rust) vs the same model in PyTorch.

Both sides build the same architecture (musrec's defaults: three 1-D convolutions of 256
channels, width 3, pooling 4/2/2, LSTM 256, d=100; tag/artist/year embeddings 64/64/16, MLP
512 -> 100, dropout 0.2, fused by a linear layer), train with Adam at 1e-3 on batches of 64
clips of 128 Mel bands x 130 frames (3 s at 22,050 Hz), on the same threads, in one run.

    python benchmarks/bench_fusion.py [--threads 2] [--steps 20] [--kind fusion]

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


def bench_torch(kind, spec, tags, artists, years, targets, batch, steps, threads, infer_batch):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vocab = (tags.shape[1], int(artists.max()) + 1, int(years.max()) + 1)
    model = torch_model(kind, spec.shape[1], targets.shape[1], *vocab)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(spec)
    tg, ar, yr, y = (torch.from_numpy(a) for a in (tags, artists, years, targets))
    n = x.shape[0]
    times = []
    model.train()
    for step in range(steps + 3):
        idx = torch.arange(step * batch, step * batch + batch) % n
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[idx], tg[idx], ar[idx], yr[idx]), y[idx])
        loss.backward()
        opt.step()
        if step >= 3:  # warm-up excluded
            times.append(time.perf_counter() - t0)
    model.eval()
    b = infer_batch
    with torch.no_grad():
        model(x[:b], tg[:b], ar[:b], yr[:b])
        t0 = time.perf_counter()
        for s in range(0, n, b):
            model(x[s : s + b], tg[s : s + b], ar[s : s + b], yr[s : s + b])
        infer = n / (time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    return statistics.median(times), infer, params


def bench_musrec(kind, spec, meta, targets, batch, steps, threads, infer_batch):
    n = spec.shape[0]
    per_epoch = -(-n // batch)
    extra = max(1, -(-steps // per_epoch))

    def fit(epochs):
        model = musrec.FusionModel(kind, max_epochs=epochs, batch_size=batch, num_threads=threads, min_count=1)
        t0 = time.perf_counter()
        model.fit(spec, meta, targets, validation=None, show_progress=False)
        return time.perf_counter() - t0, model

    base, _ = fit(1)
    more, model = fit(1 + extra)
    step = (more - base) / (extra * per_epoch)
    model.predict(spec[:infer_batch], meta[:infer_batch], batch_size=infer_batch)
    t0 = time.perf_counter()
    model.predict(spec, meta, batch_size=infer_batch)
    infer = n / (time.perf_counter() - t0)
    return step, infer, model.n_parameters_


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
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

    print(
        f"kind={args.kind} batch={args.batch} infer-batch={args.infer_batch} input=128x{args.frames} "
        f"threads={args.threads}"
    )
    m_step, m_infer, m_params = bench_musrec(
        args.kind, spec, meta, targets, args.batch, args.steps, args.threads, args.infer_batch
    )
    try:
        t_step, t_infer, t_params = bench_torch(
            args.kind, spec, tags, artists, years, targets, args.batch, args.steps, args.threads, args.infer_batch
        )
    except ImportError:
        print("PyTorch is not installed: musrec only")
        t_step = t_infer = t_params = None
    rows = [("musrec", m_step, m_infer, m_params)]
    if t_step is not None:
        rows.append(("pytorch", t_step, t_infer, t_params))
    print(f"{'library':<10}{'params':>10}{'step (s)':>11}{'train samples/s':>17}{'infer samples/s':>17}")
    for name, step, infer, params in rows:
        print(f"{name:<10}{params:>10,}{step:>11.4f}{args.batch / step:>17,.0f}{infer:>17,.0f}")
    if t_step is not None:
        print(f"musrec / pytorch: training {t_step / m_step:.2f}x, inference {m_infer / t_infer:.2f}x")


if __name__ == "__main__":
    main()
