"""Variants of a cold-start model on bench_cold_start.py's real-sound world, side by side.

Trains one model kind with several settings on the experiment's own split and validation
songs (``musrec.experiment.pipeline``, seeds as given), prints each one's recall@10 and AUC
on the cold-start songs, and the least-squares stack of every pair of variants (weights
fitted on the validation songs, as the stacked fusion model fits its own). Used for the
README's list of what measured within noise.

    python3 benchmarks/bench_cold_start.py --split artists          # writes the world first
    python3 benchmarks/cold_start_variants.py --split artists --kind cnn_lstm \\
        --variants base base+freq_mask=16+time_mask=8 user_metric

A variant is ``base``, ``user_metric`` or ``directions`` followed by ``+setting=value``
FusionModel settings (``+kind=KIND`` trains another kind; ``+objective=wpe`` is given the
training songs' plays; every model gets the fitted WMF as ``users``), or ``ridge_stats`` /
``ridge_flux``: ridge in numpy on each Mel band's mean and spread over the excerpts (and,
for ``ridge_flux``, its mean absolute frame-to-frame change), the penalty picked on the
validation songs. ``directions`` trains on every target scaled to the mean length (a WMF
vector's length mostly says how popular the song is, which content cannot tell).
``user_metric`` trains on the targets mapped by R (R^T R = U^T U / n_users, so the MSE
becomes the mean squared error of every user's scores) and maps the predictions back.
Predictions cached before a change to the models (``base+kind=ridge_metadata`` before tag
strengths, for instance) are stale: use a fresh ``--cache``.
``sound_tags`` trains an audio network (``+kind=``, default cnn_lstm) on every training
song's tag strengths instead of its vector, then fits ridge on the metadata with each song's
predicted tags added as tags of their own (``~name``, kept above 5% of the largest) beside
its real ones: a sound-to-tags model feeding the linear model.
Each pair is also combined as ``a + q * b`` with the ratio q chosen by validation recall@10.
Predictions are cached under ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import musrec
import numpy as np
import scipy.sparse as sp
from musrec import experiment, metrics
from musrec.fusion import FusionModel

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--world", default="/tmp/musrec-bench-cold-start/world-4000x2000-10s-seed0")
ap.add_argument("--stages", default="/tmp/musrec-bench-cold-start/runs")
ap.add_argument("--split", default="songs", choices=("songs", "artists"))
ap.add_argument("--seeds", default="0,1,2")
ap.add_argument("--kind", default="cnn_lstm")
ap.add_argument("--variants", nargs="+", default=["base"])
ap.add_argument("--cache", default="/tmp/musrec-cold-start-variants")
ap.add_argument("--excerpts", type=int, default=3, help="excerpts per song the models read")
ap.add_argument(
    "--feature",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="a FeatureConfig setting replacing the paper's front end, e.g. sample_rate=16000 clip_seconds=6 (repeatable)",
)


def parse(variant: str) -> tuple[str, dict]:
    head, *items = variant.split("+")
    if head not in HEADS:
        raise SystemExit(f"a variant starts with one of {', '.join(HEADS)}, not {head!r}")
    settings = {}
    for item in items:
        key, value = item.split("=", 1)
        settings[key] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    return head, settings


#: what a variant's name starts with
HEADS = ("base", "user_metric", "directions", "ridge_stats", "ridge_flux", "sound_tags")

#: the weight ratios tried for a pair of predictions
RATIOS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


def top_k_overlap(users: np.ndarray, truth: np.ndarray, predicted: np.ndarray, k: int = 10) -> float:
    """Mean share of each user's top-k songs by true vector that the predicted vectors also
    put in the top k (the validation recall of ``stop_metric="recall"``)."""
    by_truth = np.argpartition(-(users @ truth.T), k, 1)[:, :k]
    by_prediction = np.argpartition(-(users @ predicted.T), k, 1)[:, :k]
    return float(np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(by_truth, by_prediction)]))


def ridge_on_statistics(spec, vectors, fit_idx, val_idx, test_idx, flux: bool):
    """(validation, test) predictions of ridge on per-band statistics of every excerpt."""
    x = spec.astype(np.float64)  # songs x excerpts x bands x frames
    if x.ndim == 3:  # one excerpt per song
        x = x[:, None]
    parts = [x.mean(-1), x.std(-1)] + ([np.abs(np.diff(x, axis=-1)).mean(-1)] if flux else [])
    f = np.concatenate([p.mean(1) for p in parts], 1)
    f = (f - f[fit_idx].mean(0)) / (f[fit_idx].std(0) + 1e-9)
    f = np.hstack([f, np.ones((len(f), 1))])
    y = vectors.astype(np.float64)

    def solve(penalty):
        a = f[fit_idx]
        return np.linalg.solve(a.T @ a + penalty * np.eye(a.shape[1]), a.T @ y[fit_idx])

    best = min(10.0 ** np.arange(-1, 5, 0.5), key=lambda p: float(((f[val_idx] @ solve(p) - y[val_idx]) ** 2).mean()))
    w = solve(best)
    return f[val_idx] @ w, f[test_idx] @ w


def ridge_with_sound_tags(pipe, ds, spec, meta, vectors, fit_idx, val_idx, test_idx, settings):
    """Ridge on the metadata plus tags predicted from the sound (the ``sound_tags`` variant).

    Returns the predicted vectors of the validation and the test songs."""
    raw = ds.songs.tags.toarray().astype(np.float32)
    top = max(float(raw[fit_idx].max()), 1e-12)
    strengths = raw / top
    settings = dict(settings)
    kind = settings.pop("kind", "cnn_lstm")
    tagger = FusionModel(kind, **{**pipe.model_args, "stop_metric": "mse", **settings})
    tagger.fit(
        spec[fit_idx],
        None,
        strengths[fit_idx],
        validation=(spec[val_idx], None, strengths[val_idx]),
        show_progress=False,
    )
    predicted = np.clip(tagger.predict(spec), 0, None) * top
    names = ds.songs.tag_names
    extended = []
    for i, m in enumerate(meta):
        tags = dict(m["tags"])
        for j in np.flatnonzero(predicted[i] > 0.05 * top):
            tags[f"~{names[j]}"] = float(predicted[i, j])
        extended.append({**m, "tags": tags})
    model = FusionModel("ridge", **pipe.model_args)
    model.fit(
        spec[fit_idx],
        [extended[i] for i in fit_idx],
        vectors[fit_idx],
        validation=(spec[val_idx], [extended[i] for i in val_idx], vectors[val_idx]),
        show_progress=False,
    )
    on_val = model.predict(spec[val_idx], [extended[i] for i in val_idx])
    return on_val, model.predict(spec[test_idx], [extended[i] for i in test_idx])


def main() -> None:
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        features = musrec.audio.FeatureConfig.paper().replace(
            **{k: json.loads(v) for k, v in (item.split("=", 1) for item in args.feature)}
        )
        pipe = experiment.pipeline(
            "small", args.world, args.stages, random_state=seed, n_users=None, n_songs=None, features=features,
            kinds=(args.kind,), learning_rates=(), excerpts=args.excerpts, split=args.split, show_progress=False,
        )  # fmt: skip
        ds, wmf, spec, _, meta, train_idx, test_idx = pipe._prepared()
        users, vectors = wmf.user_factors, wmf.item_factors
        fit_idx, val_idx = pipe._validation(train_idx)
        if val_idx is None:  # split="songs": a seeded tenth of the training songs, as FusionModel holds out
            held = np.random.default_rng(seed).random(len(fit_idx)) < 0.1
            fit_idx, val_idx = fit_idx[~held], fit_idx[held]
        test_plays = ds.plays[:, test_idx].tocsr()
        no_train = sp.csr_matrix(test_plays.shape, dtype=np.float32)

        def score(predicted: np.ndarray, users=users, no_train=no_train, test_plays=test_plays) -> tuple[float, float]:
            ranker = musrec.pipeline._Vectors(users, predicted.astype(np.float32))
            m = metrics.ranking_metrics(ranker, no_train, test_plays, N=10)
            return m["recall"], m["auc"]

        # R with R^T R = U^T U / n (eigendecomposition), scaled to unit mean eigenvalue
        s, v = np.linalg.eigh(users.astype(np.float64).T @ users / len(users))
        s = np.maximum(s, s.max() * 1e-6)
        r = (np.sqrt(s)[:, None] * v.T) / np.sqrt(s.mean())
        predictions = {}
        for variant in args.variants:
            head, settings = parse(variant)
            front = "".join(f"-{item}" for item in args.feature) + (f"-x{args.excerpts}" if args.excerpts != 3 else "")
            name = f"{os.path.basename(args.world)}-{args.split}-{seed}-{args.kind}{front}-{variant}.npz"
            path = os.path.join(args.cache, name)
            if head.startswith("ridge_"):
                on_val, on_test = ridge_on_statistics(spec, vectors, fit_idx, val_idx, test_idx, head == "ridge_flux")
            elif head == "sound_tags" and not os.path.exists(path):
                start = time.perf_counter()
                on_val, on_test = ridge_with_sound_tags(
                    pipe, ds, spec, meta, vectors, fit_idx, val_idx, test_idx, settings
                )
                np.savez(path, val=on_val, test=on_test)
                print(f"seed {seed}: {variant} in {time.perf_counter() - start:.0f} s")
            elif os.path.exists(path):
                z = np.load(path)
                on_val, on_test = z["val"], z["test"]
            else:
                if head == "user_metric":
                    targets = (vectors.astype(np.float64) @ r.T).astype(np.float32)
                elif head == "directions":  # every target at the mean length: the norm is popularity
                    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                    targets = (vectors / np.maximum(norms, 1e-9) * norms[fit_idx].mean()).astype(np.float32)
                else:
                    targets = vectors
                start = time.perf_counter()
                settings = dict(settings)
                kind = settings.pop("kind", args.kind)  # base+kind=ridge_metadata: another kind
                model = FusionModel(kind, **{**pipe.model_args, **settings})
                model.fit(
                    spec[fit_idx],
                    [meta[i] for i in fit_idx],
                    targets[fit_idx],
                    validation=(spec[val_idx], [meta[i] for i in val_idx], targets[val_idx]),
                    users=wmf,
                    plays=ds.plays[:, fit_idx] if settings.get("objective") == "wpe" else None,
                    show_progress=False,
                )
                on_val = model.predict(spec[val_idx], [meta[i] for i in val_idx])
                on_test = model.predict(spec[test_idx], [meta[i] for i in test_idx])
                if head == "user_metric":
                    back = np.linalg.inv(r).T
                    on_val, on_test = on_val.astype(np.float64) @ back, on_test.astype(np.float64) @ back
                np.savez(path, val=on_val, test=on_test)
                epochs = len(model.history_["train_loss"])
                print(f"seed {seed}: trained {variant} in {time.perf_counter() - start:.0f} s, {epochs} epochs")
            predictions[variant] = (on_val, on_test)
            rows.append((variant, *score(on_test)))
        names = list(predictions)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                (av, at), (bv, bt) = predictions[a], predictions[b]
                truth = vectors[val_idx]
                design = np.stack([(av - av.mean(0)).ravel(), (bv - bv.mean(0)).ravel()], 1)
                w = np.linalg.lstsq(design, (truth - truth.mean(0)).ravel(), rcond=None)[0]
                rows.append((f"stack of {a} and {b}", *score(w[0] * at + w[1] * bt)))
                # the same pair, the ratio of the weights chosen by validation recall@10 instead
                # (an intercept shifts every score of a user alike, so only the ratio ranks)
                ratio = max(RATIOS, key=lambda q: top_k_overlap(users, truth, av + q * bv))
                rows.append((f"{a} + q x {b}, q by validation recall", *score(at + ratio * bt)))
    print(f"\n{args.kind}, cold-start {args.split}, seeds {args.seeds}\n")
    print_seed_table("variant", rows)


def print_seed_table(label: str, rows: list[tuple[str, float, float]]) -> None:
    """A markdown table of (name, recall@10, AUC) rows: per name, the mean and sd of the
    recall over the seeds and the mean AUC."""
    print(f"| {label} | recall@10 | user AUC |\n|---|---|---|")
    for name in dict.fromkeys(r[0] for r in rows):
        x = np.array([r[1:] for r in rows if r[0] == name])
        sd = x[:, 0].std(ddof=1) if len(x) > 1 else 0.0
        print(f"| {name} | {x[:, 0].mean():.4f} ± {sd:.4f} | {x[:, 1].mean():.3f} |")


if __name__ == "__main__":
    main()
