"""WMF through the Python API: against a dense numpy solve, errors, persistence, quality."""

import json
import signal
import threading

import musrec
import numpy as np
import pytest
import scipy.sparse as sp
from musrec import WMF


def dense_als_half_step(R, Y, reg, alpha):
    """x_u = (Y^T C_u Y + reg I)^-1 Y^T C_u p_u for every row, in float64."""
    R = R.toarray().astype(np.float64)
    Y = Y.astype(np.float64)
    k = Y.shape[1]
    X = np.zeros((R.shape[0], k))
    for u in range(R.shape[0]):
        c = 1 + alpha * R[u]
        p = (R[u] > 0).astype(np.float64)
        A = (Y.T * c) @ Y + reg * np.eye(k)
        X[u] = np.linalg.solve(A, (Y.T * c) @ p)
    return X


def test_cholesky_fit_is_an_exact_als_fixed_point(tiny):
    model = WMF(factors=3, regularization=0.1, alpha=2.0, solver="cholesky", iterations=1, random_state=0)
    model.fit(tiny, show_progress=False)
    # After a full iteration the item factors are the exact solve given the user factors.
    want = dense_als_half_step(tiny.T.tocsr(), model.user_factors, 0.1, 2.0)
    np.testing.assert_allclose(model.item_factors, want, rtol=1e-3, atol=1e-4)
    assert model.user_factors.dtype == np.float32 and model.user_factors.shape == (6, 3)


def test_cg_approaches_cholesky(tiny):
    exact = WMF(factors=3, regularization=0.1, alpha=2.0, solver="cholesky", iterations=30, random_state=0)
    cg = WMF(factors=3, regularization=0.1, alpha=2.0, solver="cg", cg_steps=3, iterations=30, random_state=0)
    exact.fit(tiny, show_progress=False)
    cg.fit(tiny, show_progress=False)
    np.testing.assert_allclose(
        exact.user_factors @ exact.item_factors.T, cg.user_factors @ cg.item_factors.T, atol=2e-3
    )


def test_log_confidence_matches_its_formula(tiny):
    model = WMF(
        factors=3,
        regularization=0.1,
        alpha=2.0,
        confidence="log",
        eps=0.5,
        solver="cholesky",
        iterations=1,
        random_state=0,
    )
    model.fit(tiny, show_progress=False)
    R = tiny.T.tocsr()
    Rlog = R.copy()
    # c = 1 + alpha log(1 + r/eps) is 1 + alpha' r' with r' = log(1 + r/eps) and alpha' = alpha
    Rlog.data = np.log1p(R.data / 0.5).astype(np.float32)
    want = dense_als_half_step(Rlog, model.user_factors, 0.1, 2.0)
    np.testing.assert_allclose(model.item_factors, want, rtol=1e-3, atol=1e-4)


def test_training_loss_decreases_and_is_reported(tiny):
    model = WMF(factors=4, iterations=8, calculate_training_loss=True, random_state=1)
    seen = []
    model.fit(tiny, show_progress=False, callback=lambda i, n, loss: seen.append((i, n, loss)))
    assert [s[0] for s in seen] == list(range(1, 9)) and all(s[1] == 8 for s in seen)
    losses = model.loss_history
    assert len(losses) == 8 and all(b <= a * (1 + 1e-5) for a, b in zip(losses, losses[1:]))
    assert model.training_loss(tiny) == pytest.approx(losses[-1], rel=1e-5)


def test_deterministic_for_seed_and_threads(world):
    a = WMF(factors=16, iterations=3, random_state=5, num_threads=1).fit(world.plays, show_progress=False)
    b = WMF(factors=16, iterations=3, random_state=5, num_threads=2).fit(world.plays, show_progress=False)
    c = WMF(factors=16, iterations=3, random_state=6, num_threads=2).fit(world.plays, show_progress=False)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert not np.array_equal(a.user_factors, c.user_factors)


def test_accepts_any_sparse_format_and_dtype(tiny):
    ref = WMF(factors=3, iterations=2, random_state=0).fit(tiny, show_progress=False)
    for m in (tiny.tocoo(), tiny.tocsc(), tiny.astype(np.int64), sp.csr_array(tiny)):
        other = WMF(factors=3, iterations=2, random_state=0).fit(m, show_progress=False)
        np.testing.assert_allclose(other.user_factors, ref.user_factors, rtol=1e-6)


def test_empty_users_and_items_get_finite_factors():
    m = sp.csr_matrix((np.ones(3, np.float32), ([0, 0, 2], [1, 3, 3])), shape=(4, 5))
    for solver in ("cg", "cholesky"):
        model = WMF(factors=2, iterations=3, solver=solver, random_state=0).fit(m, show_progress=False)
        assert np.isfinite(model.user_factors).all() and np.isfinite(model.item_factors).all()
    assert np.allclose(model.user_factors[[1, 3]], 0) and np.allclose(model.item_factors[[0, 2, 4]], 0)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"factors": 0}, ValueError, "factors"),
        ({"factors": 2.5}, TypeError, "factors"),
        ({"regularization": -1}, ValueError, "regularization"),
        ({"alpha": float("nan")}, ValueError, "alpha"),
        ({"confidence": "quadratic"}, ValueError, "confidence"),
        ({"solver": "sgd"}, ValueError, "solver"),
        ({"cg_steps": 0}, ValueError, "cg_steps"),
        ({"eps": 0}, ValueError, "eps"),
    ],
)
def test_bad_hyperparameters(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        WMF(**kwargs)


def test_bad_matrices_are_named(tiny):
    model = WMF(factors=2, iterations=1)
    bad = tiny.copy()
    bad.data[3] = -2
    with pytest.raises(ValueError, match=r"user 1, item 1.*negative"):
        model.fit(bad, show_progress=False)
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad, show_progress=False)
    with pytest.raises(TypeError, match="scipy.sparse"):
        model.fit(tiny.toarray(), show_progress=False)
    with pytest.raises(ValueError, match="empty"):
        model.fit(sp.csr_matrix((0, 5), dtype=np.float32), show_progress=False)


def test_recommend_single_and_batch(world):
    plays = world.plays
    model = WMF(factors=16, iterations=4, random_state=0).fit(plays, show_progress=False)
    ids, scores = model.recommend(3, N=7)
    assert ids.shape == (7,) and np.all(np.diff(scores) <= 0)
    assert not set(ids) & set(plays[3].indices), "already played items are filtered"
    want = model.item_factors @ model.user_factors[3]
    want[plays[3].indices] = -np.inf
    np.testing.assert_array_equal(ids, np.argsort(-want, kind="stable")[:7])
    np.testing.assert_allclose(scores, want[ids], rtol=1e-5)

    batch_ids, batch_scores = model.recommend([3, 10, 3], N=7)
    assert batch_ids.shape == (3, 7)
    np.testing.assert_array_equal(batch_ids[0], ids)
    np.testing.assert_array_equal(batch_ids[2], ids)
    # Same result whether user_items is the full matrix or the requested rows only.
    np.testing.assert_array_equal(model.recommend([3, 10], plays[[3, 10]], N=7)[0], batch_ids[:2])
    all_ids, _ = model.recommend_all(N=5)
    assert all_ids.shape == (plays.shape[0], 5)
    np.testing.assert_array_equal(all_ids[10], batch_ids[1][:5])


def test_recommend_filters_and_candidates(world):
    model = WMF(factors=8, iterations=2, random_state=0).fit(world.plays, show_progress=False)
    top, _ = model.recommend(0, N=3, filter_already_liked=False)
    ids, _ = model.recommend(0, N=3, filter_already_liked=False, filter_items=top[:2])
    assert top[0] not in ids and top[1] not in ids and top[2] == ids[0]
    cands = np.array([5, 17, 99, 1000])
    ids, scores = model.recommend(0, N=10, items=cands, filter_already_liked=False)
    assert set(ids) == set(cands) and len(ids) == 4, "fewer eligible items than N: trimmed"
    batch, _ = model.recommend([0, 1], N=10, items=cands, filter_already_liked=False)
    assert batch.shape == (2, 4), "N is capped at the number of candidates"
    batch, bscores = model.recommend([0, 1], N=4, items=cands, filter_items=cands[:1], filter_already_liked=False)
    assert (batch[:, 3:] == -1).all() and np.isneginf(bscores[:, 3:]).all(), "filtered rows are padded"
    ids, _ = model.recommend(0, N=10**15)  # capped, not allocated
    assert len(ids) == world.plays.shape[1] - world.plays[0].nnz


def test_recommend_input_errors(world):
    model = WMF(factors=4, iterations=1, random_state=0).fit(world.plays, show_progress=False)
    with pytest.raises(IndexError, match="out of range"):
        model.recommend(world.plays.shape[0])
    with pytest.raises(IndexError, match="out of range"):
        model.recommend(-1)
    with pytest.raises(ValueError, match="items x users"):
        model.recommend(0, world.plays.T.tocsr())
    with pytest.raises(ValueError, match="rows"):
        model.recommend([0, 1], world.plays[:5])
    with pytest.raises(ValueError, match="N"):
        model.recommend(0, N=0)
    with pytest.raises(musrec.NotFittedError, match="not fitted"):
        WMF().recommend(0)


def test_similar_items_and_users(world):
    model = WMF(factors=16, iterations=3, random_state=0).fit(world.plays, show_progress=False)
    ids, scores = model.similar_items(4, N=5)
    assert 4 not in ids and len(ids) == 5
    # Songs nobody played have zero factors: their cosine is NaN, ranked last, as musrec ranks them.
    with np.errstate(invalid="ignore"):
        Y = model.item_factors / np.linalg.norm(model.item_factors, axis=1, keepdims=True)
    assert np.isnan(Y).any(axis=1).sum() == (np.abs(model.item_factors).sum(axis=1) == 0).sum()
    cos = Y @ Y[4]
    cos[4] = -np.inf
    np.testing.assert_array_equal(ids, np.argsort(-cos, kind="stable")[:5])
    np.testing.assert_allclose(scores, cos[ids], rtol=1e-5)
    with_self, s = model.similar_items(4, N=1, include_self=True)
    assert with_self[0] == 4 and s[0] == pytest.approx(1.0, abs=1e-5)
    users, _ = model.similar_users([1, 2], N=3)
    assert users.shape == (2, 3) and 1 not in users[0] and 2 not in users[1]


def test_fold_in_of_a_known_user_matches_its_exact_solution(world):
    plays = world.plays
    model = WMF(factors=8, iterations=3, solver="cholesky", random_state=0).fit(plays, show_progress=False)
    want = dense_als_half_step(plays[7], model.item_factors, model.regularization, model.alpha)[0]
    np.testing.assert_allclose(model.recalculate_user(plays[7]), want, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(model.recalculate_user(plays[7].toarray()[0]), want, rtol=1e-3, atol=1e-5)
    col = plays[:, 9]
    want_item = dense_als_half_step(col.T.tocsr(), model.user_factors, model.regularization, model.alpha)[0]
    np.testing.assert_allclose(model.recalculate_item(col), want_item, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(model.recalculate_item(col.toarray()[:, 0]), want_item, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(model.recalculate_item(col.toarray()), want_item, rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="items"):
        model.recalculate_user(np.ones(5))
    # A brand-new user is served from a few plays.
    new_user = sp.csr_matrix((np.ones(3, np.float32), ([0, 0, 0], plays[7].indices[:3])), shape=(1, plays.shape[1]))
    ids, _ = model.recommend(12345, new_user, N=5, recalculate_user=True)
    assert len(ids) == 5 and not set(ids) & set(plays[7].indices[:3])


def test_save_load_round_trip(tmp_path, world):
    model = WMF(factors=8, iterations=2, alpha=3.0, confidence="log", random_state=4).fit(
        world.plays, show_progress=False
    )
    path = tmp_path / "wmf.safetensors"
    model.save(path)
    loaded = WMF.load(path)
    np.testing.assert_array_equal(loaded.user_factors, model.user_factors)
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    assert (loaded.alpha, loaded.confidence, loaded.factors) == (3.0, "log", 8)
    np.testing.assert_array_equal(loaded.recommend(0, world.plays)[0], model.recommend(0)[0])
    with pytest.raises(ValueError, match="user_items"):
        loaded.recommend(0)  # the training matrix is not stored in the file
    assert [p.name for p in tmp_path.iterdir()] == ["wmf.safetensors"], "no temp files left"
    # The format is plain safetensors: the header is JSON with our metadata.
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert header["__metadata__"]["format"] == "musrec.wmf"
    assert header["user_factors"]["shape"] == [world.plays.shape[0], 8]
    # Fitted with a drawn seed, the file keeps that seed: fitting with it gives the same model.
    drawn = WMF(factors=8, iterations=2).fit(world.plays, show_progress=False)
    drawn.save(path)
    seed = WMF.load(path).random_state
    assert seed is not None and seed != 0
    again = WMF(factors=8, iterations=2, random_state=seed).fit(world.plays, show_progress=False)
    np.testing.assert_array_equal(again.item_factors, drawn.item_factors)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        WMF.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 40)
    with pytest.raises(musrec.FormatError, match="safetensors"):
        WMF.load(bad)
    assert issubclass(musrec.FormatError, musrec.MusrecError)
    with pytest.raises(FileNotFoundError):
        WMF(factors=2, iterations=1).fit(sp.eye(3, format="csr"), show_progress=False).save(
            tmp_path / "no-such-dir" / "m.safetensors"
        )


def test_callback_exception_stops_fit_and_keeps_factors(tiny):
    model = WMF(factors=3, iterations=20, random_state=0)

    def stop(i, n, loss):
        if i == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(tiny, show_progress=False, callback=stop)
    assert model.user_factors is not None and np.isfinite(model.user_factors).all()


def test_ctrl_c_interrupts_a_long_fit():
    rng = np.random.default_rng(0)
    m = sp.random(20000, 20000, density=0.002, format="csr", random_state=rng, dtype=np.float32)
    m.data[:] = 1
    model = WMF(factors=64, iterations=10_000, random_state=0)
    timer = threading.Timer(0.5, lambda: signal.raise_signal(signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(m, show_progress=False)
    finally:
        timer.cancel()
    assert model.user_factors.shape == (20000, 64)


def test_progress_bar_runs(tiny, capsys):
    WMF(factors=2, iterations=3, random_state=0).fit(tiny, show_progress=True)
    assert "WMF" in capsys.readouterr().err


def test_quality_beats_popularity(world):
    train, test = musrec.metrics.train_test_split(world.plays, 0.2, random_state=0)
    model = WMF(factors=32, iterations=10, regularization=0.05, alpha=2.0, random_state=0).fit(
        train, show_progress=False
    )
    wmf = musrec.metrics.ranking_metrics(model, train, test, N=10)
    pop = musrec.metrics.popularity_ranking_metrics(train, test, N=10)
    rnd = musrec.metrics.random_ranking_metrics(train, test, N=10, random_state=0)
    assert wmf["precision"] > 1.5 * pop["precision"], (wmf, pop)
    assert wmf["ndcg"] > pop["ndcg"] and wmf["auc"] > pop["auc"] > rnd["auc"]
    assert rnd["auc"] == pytest.approx(0.5, abs=0.02)


def test_progress_in_a_log_is_a_few_plain_lines(world, capsys):
    # pytest's captured stderr is not a terminal, as in a CI job or `> run.log 2>&1`
    WMF(factors=8, iterations=20, random_state=0).fit(world.plays, show_progress=True)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 11, lines
    assert all(line.startswith("WMF: ") for line in lines) and "\r" not in err
    assert lines[-1].startswith("WMF: 20/20 (100%)"), lines[-1]


def test_pickles_and_comes_back_equal(world):
    import pickle

    model = WMF(factors=8, iterations=2, random_state=0).fit(world.plays, show_progress=False)
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.user_factors, model.user_factors)
    np.testing.assert_array_equal(back.item_factors, model.item_factors)
    for a, b in zip(back.recommend(3, N=5), model.recommend(3, N=5)):
        np.testing.assert_array_equal(a, b)


def test_hyperparameters_are_a_typed_rust_class():
    """WMF's settings live in musrec.WMFParams (the core's schema): named type errors, getters,
    replace, equality, hashing and pickling; setting one on the model is validated too."""
    import pickle

    model = WMF(factors=8, regularization=0.05, alpha=40, confidence="log", eps=2, random_state=np.int64(3))
    p = model.params
    assert isinstance(p, musrec.WMFParams)
    assert (p.factors, p.regularization, p.alpha, p.confidence, p.eps, p.random_state) == (8, 0.05, 40.0, "log", 2.0, 3)
    assert (model.factors, model.alpha, model.solver) == (8, 40.0, "cg")
    assert p == musrec.WMFParams(**p.to_dict()) and hash(p) == hash(p.replace())
    assert pickle.loads(pickle.dumps(p)) == p
    assert eval(repr(p), {"WMFParams": musrec.WMFParams}) == p
    assert p.replace(factors=16).factors == 16 and p.factors == 8
    model.iterations = 2
    assert model.params.iterations == 2 and model.get_params()["iterations"] == 2
    with pytest.raises(ValueError, match="iterations"):
        model.iterations = -1
    with pytest.raises(TypeError, match="factors must be an integer, got bool"):
        WMF(factors=True)
    with pytest.raises(ValueError, match="random_state"):
        WMF(random_state=-1)
    with pytest.raises(TypeError, match="unknown setting"):
        p.replace(rank=3)
