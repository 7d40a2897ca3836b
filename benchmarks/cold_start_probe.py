"""Where the audio models lose information, on bench_cold_start.py's real-sound world.

The real-sound world derives each song's audible style from 53 descriptors of its whole
10 s log-Mel (16 kHz; ``src/synthetic/real.rs``): per coarse band the mean, spread and flux,
onset density, pulse clarity and tempo, loudness and dynamics. This probe fits ridge and a
small numpy MLP from those descriptors to the WMF song vectors, computed three ways:

* from the truth (the whole song, the world's own 16 kHz log-Mel);
* from the excerpts the models read (the pipeline's features: by default the paper's 8 kHz);
* from the same excerpts at another front end (``--rates``, e.g. 16000).

Two rows train a linear model and the MLP by WPE (``FusionModel(objective="wpe")``'s
objective: each song's error weighted by WMF's own loss for it) instead of the MSE.
One row trains the MLP on the true audible style instead (which no model has), then fits
ridge from its predicted style: what the non-linearity is worth with clean targets.

Each row is Figure 2's recall@10 / user AUC on the cold-start songs, beside the audio
ceiling (ridge on the true audible style). The gaps between rows say how much is lost to
the excerpts, to the front end's bandwidth, and to non-linearity.

``--metadata`` probes the metadata instead (the embedding network's inputs): ridge on the
tag strengths, year buckets and artists as ``ridge_metadata`` reads them; the same with
non-linear views of the tags (presence, logit of the strength, an RBF kernel's random
features, a numpy MLP); the same with each artist's mean tags over its songs in the
catalogue (metadata only, no plays: known for a new artist's songs too); and a metadata
ceiling, ridge on the true style of the dimensions the world's tags and artists follow
(``metadata_dims``), with and without the genre.

    python3 benchmarks/bench_cold_start.py --split artists   # writes the world first
    python3 benchmarks/cold_start_probe.py --split artists --seeds 0,1,2 --rates 8000 16000
    python3 benchmarks/cold_start_probe.py --split artists --seeds 0,1,2 --metadata
"""

from __future__ import annotations

import argparse
import os

import musrec
import numpy as np
import scipy.sparse as sp
from cold_start_variants import print_seed_table
from musrec import audio, experiment, metrics

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--world", default="/tmp/musrec-bench-cold-start/world-4000x2000-10s-seed0")
ap.add_argument("--stages", default="/tmp/musrec-bench-cold-start/runs")
ap.add_argument("--split", default="songs", choices=("songs", "artists"))
ap.add_argument("--seeds", default="0")
ap.add_argument("--rates", nargs="+", type=int, default=[8000, 16000], help="front-end sample rates to probe")
ap.add_argument("--decay", type=float, default=1e-3, help="the MLPs' L2 penalty")
ap.add_argument("--hops", nargs="+", type=int, default=[512], help="STFT hops to probe (n_fft = 2 x hop)")
ap.add_argument(
    "--tag-weights",
    nargs="*",
    type=float,
    default=[],
    help="also train the excerpt MLP with a second head predicting the tag strengths, at these loss weights",
)
ap.add_argument("--metadata", action="store_true", help="probe the metadata models instead of the audio ones")
ap.add_argument("--excerpts-only", action="store_true", help="skip the whole-song and WPE rows")
ap.add_argument(
    "--random-features",
    type=int,
    default=0,
    help="also fit ridge with this many random Fourier features of the audio inputs (an RBF kernel's)",
)
ap.add_argument(
    "--rff-scale",
    type=float,
    default=0.5,
    help="the RBF kernel's gamma times the number of standardised audio inputs",
)

COARSE = 16


def describe(spec: np.ndarray, hop_seconds: float) -> np.ndarray:
    """numpy port of ``real::describe`` over a batch: (..., n_mels, frames) dB -> (..., 53)."""
    n_mels, frames = spec.shape[-2:]
    group = -(-n_mels // COARSE)
    coarse = np.stack(
        [spec[..., b * group : min((b + 1) * group, n_mels), :].mean(-2) for b in range(COARSE)], -2
    )  # (..., 16, frames)
    mean, spread = coarse.mean(-1), coarse.std(-1)
    flux = np.abs(np.diff(coarse, axis=-1)).mean(-1)
    onset = np.maximum(np.diff(spec, axis=-1), 0).sum(-2)  # (..., frames - 1)
    centred = onset - onset.mean(-1, keepdims=True)
    energy = np.maximum((centred**2).sum(-1), 1e-12)
    lo, hi = int(1 / 3 / hop_seconds), int(np.ceil(1 / hop_seconds))
    lags = range(max(lo, 1), min(hi, centred.shape[-1] - 1) + 1)
    r = np.stack([(centred[..., :-lag] * centred[..., lag:]).sum(-1) / energy for lag in lags], -1)
    best = np.maximum(r.max(-1), 0)
    best_lag = np.where(r.max(-1) > 0, np.asarray(list(lags))[r.argmax(-1)], lo)
    level_t = spec.mean(-2)
    extra = [onset.mean(-1), best, best_lag * hop_seconds, level_t.mean(-1), level_t.std(-1)]
    return np.concatenate([mean, spread, flux, np.stack(extra, -1)], -1)


def standardise(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return (x - x[rows].mean(0)) / (x[rows].std(0) + 1e-9)


def ridge(x, y, fit, val, test):
    x = np.hstack([standardise(x, fit), np.ones((len(x), 1))])

    def solve(p):
        return np.linalg.solve(x[fit].T @ x[fit] + p * np.eye(x.shape[1]), x[fit].T @ y[fit])

    best = min(10.0 ** np.arange(-1, 5, 0.5), key=lambda p: float(((x[val] @ solve(p) - y[val]) ** 2).mean()))
    return x[test] @ solve(best)


def ridge_blocks(blocks, y, fit, val, test):
    """Ridge with a penalty of its own per block of columns (each block standardised and
    divided by the square root of its width, then scaled by 1/sqrt(penalty)), the penalties
    chosen on the validation MSE one block at a time, two sweeps."""
    zs = [standardise(b, fit) / np.sqrt(b.shape[1]) for b in blocks]
    grid = 10.0 ** np.arange(-3, 3.01, 0.5)

    def solve(p):
        x = np.hstack([z / np.sqrt(pi) for z, pi in zip(zs, p)] + [np.full((len(y), 1), 10.0)])
        return x, np.linalg.solve(x[fit].T @ x[fit] + np.eye(x.shape[1]), x[fit].T @ y[fit])

    def err(p):
        x, w = solve(p)
        return float(((x[val] @ w - y[val]) ** 2).mean())

    p = [1.0] * len(zs)
    for _ in range(2):
        for i in range(len(p)):
            p[i] = min(grid, key=lambda g, i=i: err(p[:i] + [g] + p[i + 1 :]))
    x, w = solve(p)
    return x[test] @ w


def random_fourier(x, fit, n, scale, seed):
    """n random Fourier features of the standardised x: cos(x W + b) with W ~ N(0, 2 gamma),
    gamma = scale / x's width, so that exp(-gamma |x - x'|^2) is about e^-1 for two typical songs."""
    x = standardise(x, fit)
    rng = np.random.default_rng(seed)
    gamma = scale / x.shape[1]
    w = rng.normal(0, np.sqrt(2 * gamma), (x.shape[1], n))
    return np.sqrt(2.0 / n) * np.cos(x @ w + rng.uniform(0, 2 * np.pi, n))


def song_metrics(plays, users, params, rows):
    """WPE's per-song quadratic form (FusionModel(objective="wpe")): WMF's loss for song i
    at a vector v is v^T A_i v - 2 v^T b_i + const, with A_i = X^T X + sum over its
    listeners of (c - 1) x x^T and b_i = sum of c x. Both divided by the mean trace / k."""
    x = users.astype(np.float64)
    by_song = plays[:, rows].tocsc()
    a = np.empty((len(rows), x.shape[1], x.shape[1]))
    b = np.empty((len(rows), x.shape[1]))
    for j in range(len(rows)):
        span = slice(by_song.indptr[j], by_song.indptr[j + 1])
        u, r = by_song.indices[span], by_song.data[span].astype(np.float64)
        c = 1 + params["alpha"] * (r if params["confidence"] == "linear" else np.log1p(r / params["eps"]))
        a[j] = x.T @ x + (x[u] * (c - 1)[:, None]).T @ x[u]
        b[j] = (x[u] * c[:, None]).sum(0)
    scale = np.trace(a, axis1=1, axis2=2).mean() / x.shape[1]
    return a / scale, b / scale


def mlp(x, y, fit, val, test, hidden=128, steps=3000, seed=0, metric=None, linear=False, decay=1e-3, aux=None):
    """One tanh hidden layer plus a linear skip, Adam, full batch, L2 and the epoch of
    least validation MSE (``decay``: the L2 penalty added to each gradient, which is the
    mean over songs and factors). With ``metric`` (:func:`song_metrics` of the ``fit`` songs) it
    minimises WPE instead of the MSE; ``linear`` drops the hidden layer. ``aux = (targets,
    weight)`` adds a second head on the hidden layer that predicts ``targets`` (the songs'
    tag strengths), its MSE relative to the targets' variance weighted by ``weight`` beside
    the main MSE relative to the vectors' variance (multi-task learning); the epoch is still
    chosen by the vectors' validation MSE."""
    rng = np.random.default_rng(seed)
    x = standardise(x, fit)
    d, k = x.shape[1], y.shape[1]
    params = [rng.normal(0, 1 / np.sqrt(d), (d, hidden)), np.zeros(hidden), rng.normal(0, 0.01, (hidden, k))]
    params += [np.zeros((d, k)), y[fit].mean(0)]
    if aux is not None:
        a, weight = aux
        scale = float(y[fit].var(0).sum()) / float(a[fit].var(0).sum() + 1e-12)
        params += [rng.normal(0, 0.01, (hidden, a.shape[1])), a[fit].mean(0)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    best, best_params, lr = np.inf, None, 3e-3

    def forward(p, rows):
        h = np.tanh(x[rows] @ p[0] + p[1])
        return h, h @ p[2] * (not linear) + x[rows] @ p[3] + p[4]

    for t in range(1, steps + 1):
        h, out = forward(params, fit)
        if metric is None:
            g = 2 * (out - y[fit]) / out.size
        else:
            g = 2 * (np.einsum("npq,nq->np", metric[0], out) - metric[1]) / out.size
        back = g @ params[2].T
        grads = [None, None, h.T @ g, x[fit].T @ g, g.sum(0)]
        if aux is not None:
            ga = weight * scale * 2 * (h @ params[5] + params[6] - a[fit]) / out.size
            back = back + ga @ params[5].T
            grads += [h.T @ ga, ga.sum(0)]
        gh = back * (1 - h**2)
        grads[:2] = [x[fit].T @ gh, gh.sum(0)]
        for i, (p, gi) in enumerate(zip(params, grads)):
            gi = gi + decay * p * (i in (0, 2, 3, 5))
            m[i] = 0.9 * m[i] + 0.1 * gi
            v[i] = 0.999 * v[i] + 0.001 * gi**2
            params[i] = p - lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
        if t % 25 == 0:
            err = float(((forward(params, val)[1] - y[val]) ** 2).mean())
            if err < best:
                best, best_params = err, [p.copy() for p in params]
    return forward(best_params, test)[1]


def whole_song_rows(args, score, whole, y, fit, val, test_idx, seed, ds, users, wmf, audible):
    """The rows from the whole song's exact descriptors, WPE and the true audible style;
    returns the WPE metric of the fitting songs."""
    score("ridge on the whole song's descriptors (16 kHz)", ridge(whole, y, fit, val, test_idx))
    score(
        "MLP on the whole song's descriptors (16 kHz)",
        mlp(whole, y, fit, val, test_idx, seed=seed, decay=args.decay),
    )
    wpe = song_metrics(ds.plays, users, wmf.get_params(), fit)
    for linear in (True, False):
        name = f"{'linear model' if linear else 'MLP'} trained by WPE (full batch) on the same"
        score(name, mlp(whole, y, fit, val, test_idx, seed=seed, metric=wpe, linear=linear, decay=args.decay))
    # The same MLP trained on the true audible style instead of the noisy WMF vectors (no
    # model has that target), then ridge from its predicted style to the vectors.
    predicted = mlp(whole, audible, fit, val, np.arange(len(y)), seed=seed, decay=args.decay)
    r2 = 1 - ((predicted[test_idx] - audible[test_idx]) ** 2).mean() / audible[test_idx].var(0).mean()
    print(f"seed {seed}: the MLP's R² for the true audible style of the test songs: {r2:.3f}", flush=True)
    score("the same MLP trained on the true audible style, then ridge", ridge(predicted, y, fit, val, test_idx))
    return wpe


def one_hot(labels) -> np.ndarray:
    _, inverse = np.unique(np.asarray(labels), return_inverse=True)
    out = np.zeros((len(inverse), inverse.max() + 1))
    out[np.arange(len(inverse)), inverse] = 1.0
    return out


def metadata_rows(score, ds, strengths, style, metadata_dims, genre, y, fit, val, test_idx, seed, decay):
    """The --metadata probe's rows (see the module's docstring)."""
    year = np.asarray(ds.songs.year, np.int64)
    years = one_hot(np.where(year > 0, year // 5, -1))  # 5-year buckets, one for unknown
    artists = one_hot(ds.songs.artist_name)
    by_artist = artists.copy()
    artists[:, artists[fit].sum(0) == 0] = 0.0  # an artist with no training song says nothing
    # Each song's artist's mean tag strengths over all the artist's songs in the catalogue.
    artist_tags = by_artist @ ((by_artist.T @ strengths) / by_artist.sum(0)[:, None])
    present = (strengths > 0).astype(np.float64)
    clipped = np.clip(strengths, 1e-3, 1 - 1e-3)
    logit = np.where(strengths > 0, np.log(clipped / (1 - clipped)), 0.0)
    base = [strengths, years, artists]
    score("ridge: tags, years, artists (ridge_metadata)", ridge_blocks(base, y, fit, val, test_idx))
    score("ridge: + tag presence", ridge_blocks([*base, present], y, fit, val, test_idx))
    score("ridge: + tag presence + logit strength", ridge_blocks([*base, present, logit], y, fit, val, test_idx))
    for n, scale in ((1000, 0.5), (1000, 2.0)):
        f = random_fourier(np.hstack([strengths, years]), fit, n, scale, seed)
        name = f"ridge: + {n} RBF features of tags and years (scale {scale:g})"
        score(name, ridge_blocks([*base, f], y, fit, val, test_idx))
    mlp_in = np.hstack([strengths, present, years])
    score("MLP on tags, presence, years", mlp(mlp_in, y, fit, val, test_idx, seed=seed, decay=decay))
    score("ridge: + the artist's mean tags", ridge_blocks([*base, artist_tags], y, fit, val, test_idx))
    truth_md = style[:, metadata_dims]
    score("metadata ceiling: ridge on the true metadata style", ridge(truth_md, y, fit, val, test_idx))
    score(
        "metadata ceiling: the same and the genre",
        ridge_blocks([truth_md, one_hot(genre)], y, fit, val, test_idx),
    )


def main() -> None:
    args = ap.parse_args()
    truth = musrec.synthetic.load_truth(args.world)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        pipe = experiment.pipeline(
            "small", args.world, args.stages, random_state=seed, n_users=None, n_songs=None,
            kinds=("ridge",), learning_rates=(), excerpts=3, split=args.split, show_progress=False,
        )  # fmt: skip
        ds, wmf, spec, _, meta, train_idx, test_idx = pipe._prepared()
        users, y = wmf.user_factors, wmf.item_factors.astype(np.float64)
        fit, val = pipe._validation(train_idx)
        test_plays = ds.plays[:, test_idx].tocsr()
        no_train = sp.csr_matrix(test_plays.shape, dtype=np.float32)

        def score(name, predicted, users=users, no_train=no_train, test_plays=test_plays, seed=seed):
            ranker = musrec.pipeline._Vectors(users, np.asarray(predicted, np.float32))
            m = metrics.ranking_metrics(ranker, no_train, test_plays, N=10)
            rows.append((name, m["recall"], m["auc"]))
            print(f"seed {seed}: {name}: recall@10 {m['recall']:.4f}, AUC {m['auc']:.3f}", flush=True)

        where = {s: i for i, s in enumerate(truth["song_ids"])}
        order = np.array([where[s] for s in ds.songs.song_id])
        style = np.asarray(truth["song_style"], np.float64)[order]
        audible = style[:, np.asarray(truth["audio_dims"], int)]
        # Each song's tag strengths (its Last.fm weights over the largest in training).
        strengths = ds.songs.tags.toarray().astype(np.float64)
        strengths /= max(float(strengths[fit].max()), 1e-12)
        if args.metadata:
            genre = np.asarray(truth["song_genre"])[order]
            metadata_dims = np.asarray(truth["metadata_dims"], int)
            metadata_rows(score, ds, strengths, style, metadata_dims, genre, y, fit, val, test_idx, seed, args.decay)
            print(f"seed {seed} done", flush=True)
            continue
        whole = np.asarray(truth["real_sound"]["descriptors"], np.float64)[order]
        score("audio ceiling: ridge on the true audible style", ridge(audible, y, fit, val, test_idx))
        wpe = None
        if not args.excerpts_only:
            wpe = whole_song_rows(args, score, whole, y, fit, val, test_idx, seed, ds, users, wmf, audible)
        for rate in args.rates:
            for hop in args.hops:
                config = audio.FeatureConfig.paper().replace(
                    sample_rate=rate, hop_length=hop, n_fft=2 * hop, win_length=2 * hop
                )
                if rate == 8000 and hop == 512:
                    x = spec
                else:
                    cache = os.path.join(args.stages, "features")
                    x = audio.extract(
                        ds.songs.audio_path, config, show_progress=False, cache_dir=cache, excerpts=3
                    ).features
                x = x.astype(np.float64)
                d = describe(x, hop / rate).mean(1)
                tag = f"excerpts at {rate // 1000} kHz, hop {hop}"
                stats = np.concatenate([x.mean(-1).mean(1), x.std(-1).mean(1)], 1)
                score(f"ridge on band mean and spread, {tag}", ridge(stats, y, fit, val, test_idx))
                score(f"ridge on descriptors, {tag}", ridge(d, y, fit, val, test_idx))
                score(f"MLP on descriptors, {tag}", mlp(d, y, fit, val, test_idx, seed=seed, decay=args.decay))
                if wpe is not None:
                    score(
                        f"MLP trained by WPE on descriptors, {tag}",
                        mlp(d, y, fit, val, test_idx, seed=seed, metric=wpe, decay=args.decay),
                    )
                for w in args.tag_weights:
                    aux = (strengths, w)
                    score(
                        f"MLP with a tag head (weight {w:g}) on descriptors, {tag}",
                        mlp(d, y, fit, val, test_idx, seed=seed, decay=args.decay, aux=aux),
                    )
                if args.tag_weights:
                    # Two stages: the MLP predicts the tag strengths from the descriptors, then
                    # ridge maps the descriptors and the predicted tags to the vectors.
                    tags_hat = mlp(d, strengths, fit, val, np.arange(len(y)), seed=seed, decay=args.decay)
                    both = np.hstack([d, tags_hat])
                    score(f"MLP to tags, then ridge from descriptors + them, {tag}", ridge(both, y, fit, val, test_idx))
                    # With the songs' own tags beside (what fusion has): does sound-predicted
                    # tagging add to the real tags?
                    for name, parts in (
                        ("band mean and spread + tags", [stats, strengths]),
                        ("descriptors + tags", [d, strengths]),
                        ("descriptors + predicted tags + tags", [d, tags_hat, strengths]),
                    ):
                        score(f"ridge on {name}, {tag}", ridge(np.hstack(parts), y, fit, val, test_idx))
                if args.random_features:
                    # A kernel machine in closed form: ridge with a penalty per block, on the
                    # audio inputs, an RBF kernel's random features of them, and the tags.
                    n, sc = args.random_features, args.rff_scale
                    for name, audio_in in (
                        ("band mean and spread", stats),
                        ("mean, spread, descriptors", np.hstack([stats, d])),
                    ):
                        score(
                            f"block ridge: {name} | tags, {tag}",
                            ridge_blocks([audio_in, strengths], y, fit, val, test_idx),
                        )
                        f = random_fourier(audio_in, fit, n, sc, seed)
                        score(
                            f"block ridge: {name} | {n} RBF features of it | tags, {tag}",
                            ridge_blocks([audio_in, f, strengths], y, fit, val, test_idx),
                        )
        print(f"seed {seed} done", flush=True)
    print(f"\ncold-start {args.split}, seeds {args.seeds}\n")
    print_seed_table("probe", rows)


if __name__ == "__main__":
    main()
