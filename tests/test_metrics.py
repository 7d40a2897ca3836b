"""Metrics and split through the Python API, checked against a plain numpy reference."""

import musrec
import numpy as np
import pytest
import scipy.sparse as sp
from musrec import metrics


def reference_metrics(U, V, train, test, N):
    """The documented definitions, written directly (float64, full sort)."""
    scores = U.astype(np.float64) @ V.T.astype(np.float64)
    P, R, NDCG, AP, AUC = [], [], [], [], []
    for u in range(train.shape[0]):
        tr = set(train[u].indices)
        te = set(test[u].indices) - tr
        if not te:
            continue
        s = scores[u].copy()
        cand = np.array([i for i in range(s.size) if i not in tr])
        order = cand[np.lexsort((cand, -s[cand]))][:N]  # score desc, id asc
        hits = np.array([i in te for i in order])
        P.append(hits.sum() / N)
        R.append(hits.sum() / len(te))
        dcg = sum(1 / np.log2(r + 2) for r in np.flatnonzero(hits))
        idcg = sum(1 / np.log2(r + 2) for r in range(min(len(te), N)))
        NDCG.append(dcg / idcg)
        AP.append(sum(hits[: r + 1].sum() / (r + 1) for r in np.flatnonzero(hits)) / min(len(te), N))
        neg = [i for i in cand if i not in te]
        if neg:
            pos_s, neg_s = s[list(te)][:, None], s[neg][None, :]
            AUC.append(((pos_s > neg_s).sum() + 0.5 * (pos_s == neg_s).sum()) / (pos_s.size * neg_s.size))
    p, r = np.mean(P), np.mean(R)
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r > 0 else 0.0,
        "ndcg": np.mean(NDCG),
        "map": np.mean(AP),
        "auc": np.mean(AUC),
        "users_evaluated": len(P),
    }


class Factors:
    def __init__(self, U, V):
        self.user_factors, self.item_factors = U, V


def test_ranking_metrics_match_numpy_reference():
    rng = np.random.default_rng(0)
    plays = sp.random(60, 90, density=0.12, format="csr", random_state=rng, dtype=np.float32)
    plays.data[:] = 1
    train, test = metrics.train_test_split(plays, 0.3, random_state=1)
    U = rng.normal(size=(60, 5)).astype(np.float32)
    V = rng.normal(size=(90, 5)).astype(np.float32)
    V[10] = V[11]  # ties
    for N in (1, 5, 20):
        got = metrics.ranking_metrics(Factors(U, V), train, test, N=N)
        want = reference_metrics(U, V, train, test, N)
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-9), (N, key)


def test_popularity_equals_a_one_factor_model():
    rng = np.random.default_rng(1)
    plays = sp.random(40, 50, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    train, test = metrics.train_test_split(plays, 0.25, random_state=0)
    counts = np.asarray((train > 0).sum(axis=0), dtype=np.float32).ravel()
    as_model = Factors(np.ones((40, 1), np.float32), counts[:, None])
    assert metrics.popularity_ranking_metrics(train, test, N=5) == pytest.approx(
        metrics.ranking_metrics(as_model, train, test, N=5)
    )


def test_split_properties(world):
    train, test = metrics.train_test_split(world.plays, 0.2, random_state=3)
    assert train.shape == test.shape == world.plays.shape
    assert (train.multiply(test)).nnz == 0, "disjoint"
    assert abs(train + test - world.plays).max() == 0, "nothing lost, counts kept"
    again, _ = metrics.train_test_split(world.plays, 0.2, random_state=3)
    assert (again != train).nnz == 0
    other, _ = metrics.train_test_split(world.plays, 0.2, random_state=4)
    assert (other != train).nnz > 0
    per_user = np.diff(world.plays.indptr)
    held = np.diff(test.indptr)
    assert (held[per_user >= 2] >= 1).all() and (held[per_user < 2] == 0).all()
    assert (held <= np.maximum(per_user - 1, 0)).all()


def test_metric_errors(world):
    train, test = metrics.train_test_split(world.plays, 0.2, random_state=0)
    model = musrec.WMF(factors=4, iterations=1, random_state=0).fit(train, show_progress=False)
    with pytest.raises(ValueError, match="users x items"):
        metrics.ranking_metrics(model, train.T.tocsr(), test.T.tocsr())
    with pytest.raises(musrec.NotFittedError, match="fit it first"):
        metrics.ranking_metrics(musrec.WMF(factors=4), train, test)
    with pytest.raises(ValueError, match="shape"):
        metrics.ranking_metrics(model, train, test[:10])
    with pytest.raises(ValueError, match="N"):
        metrics.ranking_metrics(model, train, test, N=0)
    with pytest.raises(ValueError, match="test_fraction"):
        metrics.train_test_split(world.plays, 1.5)


def test_synthetic_world_is_deterministic_and_shaped(world):
    again = musrec.synthetic.listening(n_users=1500, n_songs=3000, mean_songs_per_user=30, seed=11)
    assert (again.plays != world.plays).nnz == 0
    assert world.plays.shape == (1500, 3000)
    assert np.median(world.plays.data) == 1 and world.plays.data.max() > 20
    assert world.song_style.shape == (3000, 16) and world.user_taste.shape == (1500, 16)
    with pytest.raises(ValueError, match="n_users"):
        musrec.synthetic.listening(n_users=0)


def test_vector_errors_match_numpy_and_count_clipping():
    rng = np.random.default_rng(3)
    actual = rng.normal(0, 0.4, (50, 10)).astype(np.float32)
    predicted = actual + rng.normal(0, 0.2, actual.shape).astype(np.float32)
    predicted[0, 0] = -1.5  # below -1: MSLE clips it
    e = musrec.metrics.vector_errors(predicted, actual)
    p, a = predicted.astype(np.float64), actual.astype(np.float64)
    assert e["mse"] == pytest.approx(np.mean((p - a) ** 2), rel=1e-9)
    assert e["rmse"] == pytest.approx(np.sqrt(np.mean((p - a) ** 2)), rel=1e-9)
    assert e["mae"] == pytest.approx(np.mean(np.abs(p - a)), rel=1e-9)
    floor = -1 + 1e-6
    msle = np.mean((np.log1p(np.maximum(p, floor)) - np.log1p(np.maximum(a, floor))) ** 2)
    assert e["msle"] == pytest.approx(msle, rel=1e-9)
    assert e["msle_clipped"] == int((p < floor).sum() + (a < floor).sum()) and e["n_values"] == 500
    with pytest.raises(ValueError, match="predicted is"):
        musrec.metrics.vector_errors(predicted[:, :5], actual)
