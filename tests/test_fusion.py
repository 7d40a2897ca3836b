"""musrec.FusionModel: the paper's fusion network and its baselines, end to end."""

from __future__ import annotations

import pickle

import musrec
import numpy as np
import pytest

SMALL = {
    "conv_channels": (16, 16, 16),
    "pool_sizes": (2, 2, 2),
    "lstm_hidden": 16,
    "tag_dim": 8,
    "artist_dim": 8,
    "year_dim": 4,
    "mlp_hidden": 32,
    "min_count": 1,
    "num_threads": 2,
}


def world(n: int, seed: int, artist_vectors: np.ndarray | None = None):
    """Songs whose 8-d target is half audio (loud band, pulse rate) and half artist.

    The audio part is independent of the artist and the artist part is inaudible, so each
    single-source model can explain only its half; the fusion model can explain both.
    """
    rng = np.random.default_rng(seed)
    n_mels, frames, n_artists = 16, 24, 12
    if artist_vectors is None:
        # Scaled so the artist half has about the variance of the audio half.
        artist_vectors = np.random.default_rng(1234).normal(0, 0.5, (n_artists, 4)).astype(np.float32)
    spec = rng.normal(-60, 2, (n, n_mels, frames)).astype(np.float32)
    band = rng.integers(0, n_mels, n)
    rate = rng.integers(1, 4, n)
    artist = rng.integers(0, n_artists, n)
    for i in range(n):
        pulse = (np.arange(frames) // rate[i]) % 2 == 0
        spec[i, band[i], pulse] += 40
    angle = band / n_mels * np.pi
    audio_part = np.stack([np.cos(angle), np.sin(angle), (rate - 2) / 1.0, (band % 2) - 0.5], axis=1)
    targets = np.concatenate([audio_part, artist_vectors[artist]], axis=1).astype(np.float32)
    targets += rng.normal(0, 0.05, targets.shape).astype(np.float32)
    meta = [
        {"tags": [f"style{artist[i] % 4}"], "artist": f"artist{artist[i]}", "year": 1980 + int(artist[i])}
        for i in range(n)
    ]
    return spec, meta, targets


@pytest.fixture(scope="module")
def data():
    return world(480, 0), world(160, 1)


def test_fusion_beats_both_single_source_models(data):
    (spec, meta, y), (spec_test, meta_test, y_test) = data
    errors = {}
    for kind in ("cnn_lstm", "embedding", "fusion"):
        model = musrec.FusionModel(kind, learning_rate=3e-3, max_epochs=60, patience=8, dropout=0.0, **SMALL)
        model.fit(spec, meta, y, validation=0.15, show_progress=False)
        errors[kind] = model.score(spec_test, meta_test, y_test)
    baseline = float(np.mean((y_test - y.mean(axis=0)) ** 2))
    # Each single-source model learns something, but only its own half of the target.
    assert errors["cnn_lstm"] < 0.9 * baseline, (errors, baseline)
    assert errors["embedding"] < 0.9 * baseline, (errors, baseline)
    assert errors["fusion"] < 0.6 * min(errors["cnn_lstm"], errors["embedding"]), (errors, baseline)


@pytest.mark.parametrize("kind", musrec.fusion.KINDS)
def test_every_kind_trains_and_predicts(kind, data):
    (spec, meta, y), (spec_test, meta_test, _) = data
    model = musrec.FusionModel(kind, max_epochs=2, **SMALL)
    model.fit(spec, meta, y, show_progress=False)
    history = model.history_
    if kind in musrec.fusion.LINEAR_KINDS:
        assert history == {"train_loss": [], "validation_loss": []}  # closed form: no epochs
    else:
        assert len(history["train_loss"]) == 2 and len(history["validation_loss"]) == 2
    assert all(np.isfinite(history["train_loss"]))
    out = model.predict(spec_test, meta_test)
    assert out.shape == (160, 8) and out.dtype == np.float32 and np.isfinite(out).all()
    assert model.n_parameters_ > 0
    assert model.config_["net"]["kind"] == kind


def test_tag_task_trains_on_the_tags_and_predicts_from_audio_alone(data):
    (spec, meta, y), (spec_test, meta_test, _) = data
    model = musrec.FusionModel("cnn_lstm", tag_task=1.0, max_epochs=2, **SMALL)
    with pytest.raises(ValueError, match="tag_task needs the training songs' metadata"):
        model.fit(spec, None, y, show_progress=False)
    model.fit(spec, meta, y, validation=None, show_progress=False)  # keep the trained weights
    assert model.config_["net"]["tag_task"] == 1.0
    out = model.predict(spec_test)  # no metadata needed to predict
    np.testing.assert_array_equal(out, model.predict(spec_test, meta_test))
    plain = musrec.FusionModel("cnn_lstm", max_epochs=2, **SMALL).fit(
        spec, meta, y, validation=None, show_progress=False
    )
    assert not np.array_equal(plain.predict(spec_test), out)
    with pytest.raises(ValueError, match="tag_task applies to the audio networks"):
        musrec.FusionModel("embedding", tag_task=1.0, max_epochs=1).fit(None, meta, y, show_progress=False)


def test_random_features_give_ridge_a_kernel_part(data, tmp_path):
    (spec, meta, y), (spec_test, meta_test, y_test) = data
    plain = musrec.FusionModel("ridge", **SMALL).fit(spec, meta, y, show_progress=False)
    kernel = musrec.FusionModel("ridge", random_features=256, random_state=3, **SMALL)
    kernel.fit(spec, meta, y, show_progress=False)
    ridge = kernel.config_["ridge"]
    assert ridge["lambda_random"] is not None and len(ridge["random_path"]) == 11
    out = kernel.predict(spec_test, meta_test)
    assert np.isfinite(out).all() and not np.array_equal(out, plain.predict(spec_test, meta_test))
    # Saved with its projection; the same seed refits the same model.
    kernel.save(tmp_path / "kernel.safetensors")
    loaded = musrec.FusionModel.load(tmp_path / "kernel.safetensors")
    np.testing.assert_array_equal(loaded.predict(spec_test, meta_test), out)
    again = musrec.FusionModel("ridge", random_features=256, random_state=3, **SMALL)
    np.testing.assert_array_equal(again.fit(spec, meta, y, show_progress=False).predict(spec_test, meta_test), out)
    # Where the linear part reads no audio they do not apply (fusion asks for them by default).
    meta_only = musrec.FusionModel("ridge_metadata", random_features=16).fit(None, meta, y, show_progress=False)
    assert meta_only.config_["net"]["random_features"] == 0
    with pytest.raises(ValueError, match="rff_scale must be"):
        musrec.FusionModel("ridge", random_features=16, rff_scale=-1.0).fit(spec, meta, y, show_progress=False)


def test_wide_flux_adds_each_bands_flux_to_the_linear_part(data, tmp_path):
    (spec, meta, y), (spec_test, meta_test, y_test) = data
    plain = musrec.FusionModel("ridge_audio", wide_flux=False, **SMALL).fit(spec, None, y, show_progress=False)
    flux = musrec.FusionModel("ridge_audio", wide_flux=True, **SMALL).fit(spec, None, y, show_progress=False)
    assert flux.config_["net"]["wide_flux"] and not plain.config_["net"]["wide_flux"]
    out = flux.predict(spec_test, None)
    assert np.isfinite(out).all() and not np.array_equal(out, plain.predict(spec_test, None))
    flux.save(tmp_path / "flux.safetensors")
    np.testing.assert_array_equal(musrec.FusionModel.load(tmp_path / "flux.safetensors").predict(spec_test, None), out)
    assert musrec.FusionModel("ridge_audio", **SMALL).config_["net"]["wide_flux"]  # the default


def test_metadata_forms_and_cold_start_values(data):
    (spec, meta, y), _ = data
    model = musrec.FusionModel("embedding", max_epochs=1, **SMALL)
    model.fit(spec, meta, y, validation=None, show_progress=False)
    as_rows = [
        {"tags": {"style1": 80, "never-seen": 20}, "artist": "artist3", "year": 1983},
        {"tags": None, "artist": None, "year": None},
        {"tags": ["unknown tag"], "artist": "new artist", "year": 0},
        {"artist": "artist3", "tags": [("style1", 1.0)], "year": 1983.0},
    ]
    as_columns = {k: [r.get(k) for r in as_rows] for k in ("tags", "artist", "year")}
    a = model.predict(metadata=as_rows)
    b = model.predict(metadata=as_columns)
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all()
    # Unweighted tags pool equally; an explicit weight list gives the same vector.
    np.testing.assert_array_equal(
        model.predict(metadata=[{"tags": ["style1"], "artist": "artist3", "year": 1983}]), a[3:4]
    )


def test_deterministic_save_load_and_resume(tmp_path, data):
    (spec, meta, y), (spec_test, meta_test, _) = data
    kwargs = dict(max_epochs=4, patience=0, **SMALL)
    a = musrec.FusionModel("fusion", **kwargs).fit(spec, meta, y, show_progress=False)
    b = musrec.FusionModel("fusion", **kwargs).fit(spec, meta, y, show_progress=False)
    pa = a.predict(spec_test, meta_test)
    np.testing.assert_array_equal(pa, b.predict(spec_test, meta_test))

    a.save(tmp_path / "model.safetensors")
    loaded = musrec.FusionModel.load(tmp_path / "model.safetensors")
    np.testing.assert_array_equal(loaded.predict(spec_test, meta_test), pa)
    assert loaded.history_ == a.history_

    # Killed during epoch 3 (the callback raises), then resumed: same curve as unbroken.
    ckpt = tmp_path / "ckpt.safetensors"
    first = musrec.FusionModel("fusion", checkpoint=ckpt, **kwargs)
    batches = -(-int(round(480 * 0.9)) // 64)

    def stop(done, total, loss):
        if done > 2 * batches + 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.fit(spec, meta, y, show_progress=False, callback=stop)
    assert len(first.history_["train_loss"]) == 2  # kept the state of the complete epochs
    resumed = musrec.FusionModel("fusion", checkpoint=ckpt, **kwargs)
    resumed.fit(spec, meta, y, resume=True, show_progress=False)
    assert resumed.history_ == a.history_
    np.testing.assert_array_equal(resumed.predict(spec_test, meta_test), pa)


def test_early_stopping_keeps_the_best_epoch(data):
    (spec, meta, y), _ = data
    model = musrec.FusionModel("cnn", learning_rate=0.05, max_epochs=40, patience=2, wide=False, **SMALL)
    model.fit(spec, meta, y, show_progress=False)
    val = model.history_["validation_loss"]
    assert model.stopped_early_ and len(val) < 40
    assert model.best_epoch_ == int(np.argmin(val))
    assert len(val) - 1 - model.best_epoch_ == 2


def test_learning_rate_falls_on_a_plateau(data):
    (spec, meta, y), _ = data
    model = musrec.FusionModel(
        "cnn", learning_rate=0.1, max_epochs=8, patience=0, lr_patience=1, lr_decay=0.25, wide=False, **SMALL
    )
    model.fit(spec, meta, y, show_progress=False)
    rates, val = model.history_["learning_rate"], model.history_["validation_loss"]
    assert len(rates) == len(val) == 8
    # each epoch after one without a new best runs at a quarter of the rate before
    for epoch in range(1, 8):
        worse = val[epoch - 1] >= min(val[: epoch - 1], default=np.inf)
        assert rates[epoch] == pytest.approx(rates[epoch - 1] * (0.25 if worse else 1.0)), (epoch, rates, val)
    assert rates[-1] < 0.1
    with pytest.raises(ValueError, match="lr_decay"):
        musrec.FusionModel("cnn", lr_decay=0.0)


def test_no_network_collapses_to_the_mean(data):
    """Every network's cold-start predictions vary across songs (the
    paper-size CNN+LSTM once predicted the mean for every song)."""
    (spec, meta, y), (spec_test, meta_test, y_test) = data
    for kind in musrec.fusion.NETWORK_KINDS:
        for architecture in ("musrec", "paper"):
            model = musrec.FusionModel(kind, architecture=architecture, max_epochs=15, learning_rate=3e-3, **SMALL)
            model.fit(spec, meta, y, show_progress=False)
            spread = model.predict(spec_test, meta_test).std(axis=0).mean() / y_test.std(axis=0).mean()
            assert spread > 0.1, (kind, architecture, spread)


def _ridge_by_numpy(spec, meta, y, spec_test, meta_test, lam):
    """Ridge regression by its definition: per-band mean, std and flux (mean absolute
    frame-to-frame change) of the per-band standardised spectrogram (then z-scored), one-hot
    tags (weights), artist and 5-year bucket, an unpenalised intercept, penalty lam on the rest."""

    def stats(s, mu, sd):
        z = (s - mu[None, :, None]) / sd[None, :, None]
        flux = np.abs(np.diff(z, axis=2)).mean(axis=2)
        return np.concatenate([z.mean(axis=2), np.sqrt(z.var(axis=2) + 1e-6), flux], axis=1)

    mu = spec.mean(axis=(0, 2))
    sd = spec.transpose(1, 0, 2).reshape(spec.shape[1], -1).std(axis=1)
    a_train = stats(spec.astype(np.float64), mu, sd)
    a_mu, a_sd = a_train.mean(axis=0), a_train.std(axis=0)
    tags = sorted({t for m in meta for t in m["tags"]})
    artists = sorted({m["artist"] for m in meta})
    y0 = min(m["year"] for m in meta)
    years = sorted({(m["year"] - y0) // 5 for m in meta})

    def design(s, ms):
        one_hot = np.zeros((len(ms), len(tags) + len(artists) + len(years)))
        for i, m in enumerate(ms):
            for t in m["tags"]:
                one_hot[i, tags.index(t)] = 1.0  # its weight (1) over the largest in training (1)
            one_hot[i, len(tags) + artists.index(m["artist"])] = 1
            one_hot[i, len(tags) + len(artists) + years.index((m["year"] - y0) // 5)] = 1
        audio = (stats(s.astype(np.float64), mu, sd) - a_mu) / a_sd
        return np.concatenate([np.ones((len(ms), 1)), audio, one_hot], axis=1)

    x = design(spec, meta)
    penalty = np.full(x.shape[1], lam)
    penalty[0] = 0.0
    w = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ y.astype(np.float64))
    return design(spec_test, meta_test) @ w


def test_ridge_equals_its_definition_in_numpy(data):
    (spec, meta, y), (spec_test, meta_test, _) = data
    model = musrec.FusionModel("ridge", min_count=1).fit(spec, meta, y, validation=None, show_progress=False)
    report = model.ridge_
    assert report["lambda_audio"] == report["lambda_metadata"] == 10.0  # the default without validation
    want = _ridge_by_numpy(spec, meta, y, spec_test, meta_test, 10.0)
    np.testing.assert_allclose(model.predict(spec_test, meta_test), want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_ridge_picks_its_penalties_on_validation_songs(data):
    (spec, meta, y), (spec_test, meta_test, y_test) = data
    model = musrec.FusionModel("ridge", min_count=1).fit(spec, meta, y, validation=0.2, show_progress=False)
    report = model.ridge_
    errors = {(a, m): e for a, m, e in report["path"]}
    assert len(errors) > 11  # the shared grid, then each penalty alone
    pair = errors[(report["lambda_audio"], report["lambda_metadata"])]
    assert pair == min(errors.values())
    # then the artists' own penalty, at the chosen pair
    artist_errors = dict(report["artist_path"])
    assert len(artist_errors) == 11
    assert report["validation_mse"] == min(pair, *artist_errors.values())
    if report["validation_mse"] < pair:
        assert artist_errors[report["lambda_artist"]] == report["validation_mse"]
    else:
        assert report["lambda_artist"] == report["lambda_metadata"]
    # The linear model explains most of the synthetic target (its halves are nearly linear).
    baseline = float(np.mean((y_test - y.mean(axis=0)) ** 2))
    assert model.score(spec_test, meta_test, y_test) < 0.7 * baseline
    # Saved and loaded, it predicts the same.
    for single in ("ridge_audio", "ridge_metadata"):
        m = musrec.FusionModel(single).fit(spec, meta, y, show_progress=False)
        assert m.score(spec_test, meta_test, y_test) < baseline


def test_early_stopping_on_validation_recall(data):
    """stop_metric="recall": the kept epoch is the one whose predictions rank the validation
    songs most like the users' WMF vectors do, checked against numpy."""
    (spec, meta, y), (spec_v, meta_v, y_v) = data
    users = np.random.default_rng(3).normal(size=(50, y.shape[1])).astype(np.float32)
    model = musrec.FusionModel(
        "cnn", learning_rate=0.02, max_epochs=6, patience=0, wide=False, stop_metric="recall", recall_k=5, **SMALL
    )
    model.fit(spec, meta, y, validation=(spec_v, meta_v, y_v), users=users, show_progress=False)
    recall = model.history_["validation_recall"]
    assert len(recall) == 6 and len(model.history_["validation_loss"]) == 6
    assert model.best_epoch_ == int(np.argmax(recall))

    def top5(items):
        return np.argsort(-(users @ items.T), axis=1, kind="stable")[:, :5]

    got, want = top5(model.predict(spec_v, meta_v)), top5(y_v)
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(got, want)])
    assert overlap == pytest.approx(max(recall), abs=1e-9)
    # Without the users, recall cannot be computed; with the wrong width, a clear error.
    with pytest.raises(ValueError, match="users"):
        musrec.FusionModel("cnn", stop_metric="recall", max_epochs=1, **SMALL).fit(spec, meta, y, show_progress=False)
    with pytest.raises(ValueError, match="columns"):
        musrec.FusionModel("cnn", max_epochs=1, **SMALL).fit(spec, meta, y, users=users[:, :3], show_progress=False)
    with pytest.raises(ValueError, match="stop_metric|variant"):
        musrec.FusionModel("cnn", stop_metric="auc")


def test_wpe_objective_is_wmf_loss_around_the_vectors(data):
    """objective="wpe": the training loss is each song's WMF loss around its vector,
    (e/s)^T A (e/s) with A = X^T X + sum over its listeners of (c - 1) x x^T, normalised to
    a mean trace of k (numpy reference, at a learning rate too small to move the weights)."""
    import scipy.sparse as sp

    (spec, meta, y), _ = data
    n, k = y.shape
    rng = np.random.default_rng(5)
    users = rng.normal(size=(40, k)).astype(np.float32)
    counts = sp.random(40, n, density=0.1, random_state=5, format="csr", dtype=np.float32)
    counts.data = np.ceil(counts.data * 5)
    params = musrec.WMFParams(alpha=2.0, factors=k)
    model = musrec.FusionModel(
        "cnn", objective="wpe", learning_rate=1e-12, max_epochs=1, wide=False, dropout=0.0, **SMALL
    )
    model.fit(spec, meta, y, validation=None, users=users, plays=counts, wmf_params=params, show_progress=False)
    e = (model.predict(spec, meta).astype(np.float64) - y) / y.std()
    x = users.astype(np.float64)
    gram = x.T @ x
    by_song = counts.T.tocsr()
    extra, loss = 0.0, 0.0
    for i in range(n):
        u, r = by_song[i].indices, by_song[i].data.astype(np.float64)
        w = 2.0 * r  # c - 1 with linear confidence, alpha 2
        a = gram + (x[u] * w[:, None]).T @ x[u]
        extra += (w * (x[u] ** 2).sum(1)).sum()
        loss += e[i] @ a @ e[i]
    scale = (np.trace(gram) + extra / n) / k
    assert model.history_["train_loss"][0] == pytest.approx(loss / scale / (n * k), rel=1e-3)
    # The plays are required, cover the targets' songs, and need the users.
    with pytest.raises(ValueError, match="plays"):
        musrec.FusionModel("cnn", objective="wpe", max_epochs=1, **SMALL).fit(
            spec, meta, y, users=users, show_progress=False
        )
    with pytest.raises(ValueError, match="song columns"):
        model.fit(spec, meta, y, users=users, plays=counts[:, :-1], show_progress=False)
    with pytest.raises(ValueError, match="users"):
        model.fit(spec, meta, y, plays=counts, show_progress=False)
    with pytest.raises(TypeError, match="WMFParams"):
        model.fit(spec, meta, y, users=users, plays=counts, wmf_params={"alpha": 2.0}, show_progress=False)
    with pytest.raises(ValueError, match="objective"):
        musrec.FusionModel("cnn", objective="mae")


def test_fusion_linear_part_on_metadata_only(data):
    """wide_audio=False: fusion's linear part is ridge on the metadata alone."""
    (spec, meta, y), (spec_t, meta_t, _) = data
    ridge = musrec.FusionModel("ridge_metadata").fit(spec, meta, y, show_progress=False)
    still = musrec.FusionModel("fusion", wide_audio=False, max_epochs=1, learning_rate=1e-12, **SMALL)
    still.fit(spec, meta, y, show_progress=False)
    np.testing.assert_allclose(still.predict(spec_t, meta_t), ridge.predict(None, meta_t), atol=1e-4)
    with pytest.raises(ValueError, match="nothing to read"):
        musrec.FusionModel("cnn", wide_audio=False, **SMALL).fit(spec, meta, y, show_progress=False)


def test_stacked_fusion_is_the_least_squares_combination_of_its_parts(tmp_path, data):
    """stacked=True: the audio network and ridge on all the inputs (with the same random
    features), combined by least squares on the validation songs (numpy's lstsq as the
    reference)."""
    (spec, meta, y), (spec_t, meta_t, _) = data
    cut = 400
    train, val = (spec[:cut], meta[:cut], y[:cut]), (spec[cut:], meta[cut:], y[cut:])
    # A learning rate too small to move: the audio network is its linear start, ridge_audio.
    fused = musrec.FusionModel("fusion", max_epochs=1, learning_rate=1e-12, random_state=4, **SMALL)
    fused.fit(*train, validation=val, show_progress=False)
    net = fused.config_["net"]
    assert net["stacked_ridge_audio"] and net["wide_flux"] and net["random_features"] == cut  # one per song
    audio = musrec.FusionModel("ridge_audio", random_features=2000, random_state=4)
    audio.fit(*train, validation=val, show_progress=False)
    metadata = musrec.FusionModel("ridge", random_features=2000, random_state=4)
    metadata.fit(*train, validation=val, show_progress=False)
    a_v, m_v = audio.predict(val[0], None), metadata.predict(*val[:2])
    d = y.shape[1]
    design = np.column_stack([a_v.ravel(), m_v.ravel(), np.tile(np.eye(d), (len(a_v), 1))]).astype(np.float64)
    solution = np.linalg.lstsq(design, val[2].ravel().astype(np.float64), rcond=None)[0]
    report = fused.stacking_
    assert report["audio_weight"] == pytest.approx(solution[0], rel=1e-3)
    assert report["metadata_weight"] == pytest.approx(solution[1], rel=1e-3)
    assert report["validation_mse"] <= min(report["validation_mse_audio"], report["validation_mse_metadata"])
    want = solution[0] * audio.predict(spec_t, None) + solution[1] * metadata.predict(spec_t, meta_t) + solution[2:]
    np.testing.assert_allclose(fused.predict(spec_t, meta_t), want, atol=1e-4)
    fused.save(tmp_path / "stacked.safetensors")
    again = musrec.FusionModel.load(tmp_path / "stacked.safetensors")
    assert again.stacking_ == report
    np.testing.assert_array_equal(again.predict(spec_t, meta_t), fused.predict(spec_t, meta_t))
    # Joint training and other kinds: no combination.
    assert (
        musrec.FusionModel("fusion", stacked=False, max_epochs=1, **SMALL).fit(*train, show_progress=False).stacking_
        is None
    )
    with pytest.raises(ValueError, match="fusion kind only"):
        musrec.FusionModel("cnn", stacked=True, **SMALL).fit(*train, show_progress=False)


def test_wide_and_deep_starts_from_the_linear_model(tmp_path, data):
    (spec, meta, y), (spec_test, meta_test, _) = data
    ridge = musrec.FusionModel("ridge_metadata").fit(spec, meta, y, show_progress=False)
    # A learning rate too small to move: the wide & deep network is its linear part.
    deep = musrec.FusionModel("embedding", wide=True, max_epochs=1, learning_rate=1e-12, **SMALL)
    deep.fit(spec, meta, y, show_progress=False)
    assert deep.ridge_["lambda_metadata"] == ridge.ridge_["lambda_metadata"]
    np.testing.assert_allclose(deep.predict(None, meta_test), ridge.predict(None, meta_test), atol=1e-5)
    deep.save(tmp_path / "wide.safetensors")
    again = musrec.FusionModel.load(tmp_path / "wide.safetensors")
    np.testing.assert_array_equal(again.predict(None, meta_test), deep.predict(None, meta_test))
    # Trained properly, it beats the linear part on the validation songs or keeps it.
    trained = musrec.FusionModel("fusion", max_epochs=20, learning_rate=3e-3, **SMALL)
    trained.fit(spec, meta, y, show_progress=False)
    assert min(trained.history_["validation_loss"], default=np.inf) <= 1.0 or trained.best_epoch_ is None


def test_several_excerpts_per_song(data):
    (spec, meta, y), (spec_t, meta_t, _) = data
    # four excerpts of each song: its sound shifted in time, as another stretch of it would be
    stack = lambda s: np.stack([np.roll(s, 3 * k, axis=2) for k in range(4)], axis=1)  # noqa: E731
    excerpts, excerpts_t = stack(spec), stack(spec_t)
    # without random features, which are a non-linear function of the statistics over all excerpts
    model = musrec.FusionModel("fusion", max_epochs=3, random_features=0, **SMALL)
    model.fit(excerpts, meta, y, show_progress=False)
    together = model.predict(excerpts_t, meta_t)
    # the prediction from several excerpts is the mean of the predictions from each alone
    alone = np.mean([model.predict(excerpts_t[:, k], meta_t) for k in range(4)], axis=0)
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
    assert model.score(excerpts_t, meta_t, data[1][2]) < np.var(data[1][2], axis=0).mean()
    with pytest.raises(ValueError, match="3-D .* or 4-D"):
        model.predict(excerpts_t[None], meta_t)


def test_estimator_contract(tmp_path, data):
    (spec, meta, y), (spec_t, meta_t, _) = data
    # random_state, the scikit-learn / implicit name; seed still works, with a warning
    with pytest.warns(DeprecationWarning, match="random_state"):
        old = musrec.FusionModel("cnn", seed=4)
    assert old.config_ == musrec.FusionModel("cnn", random_state=4).config_
    with pytest.raises(TypeError, match="random_state only"):
        musrec.FusionModel("cnn", seed=4, random_state=4)
    # fitted attributes do not exist before fit: NotFittedError is a ValueError and an AttributeError
    unfitted = musrec.FusionModel("fusion", max_epochs=2, **SMALL)
    assert not hasattr(unfitted, "history_")
    calls = (lambda: unfitted.predict(spec_t, meta_t), lambda: unfitted.save(tmp_path / "m"), lambda: unfitted.ridge_)
    for call in calls:
        with pytest.raises(musrec.NotFittedError, match="not fitted"):
            call()
    assert issubclass(musrec.NotFittedError, (ValueError, AttributeError, musrec.MusrecError))
    # pickling, before and after fit
    again = pickle.loads(pickle.dumps(unfitted))
    assert again.config_ == unfitted.config_ and again.kind == "fusion"
    again.fit(spec, meta, y, show_progress=False)
    unfitted.fit(spec, meta, y, show_progress=False)
    back = pickle.loads(pickle.dumps(unfitted))
    np.testing.assert_array_equal(back.predict(spec_t, meta_t), unfitted.predict(spec_t, meta_t))
    np.testing.assert_array_equal(again.predict(spec_t, meta_t), unfitted.predict(spec_t, meta_t))
    assert back.history_ == unfitted.history_ and back.config_ == unfitted.config_
    # clone: an unfitted model of the same kind and settings, which fits to the same model
    clone = unfitted.clone()
    assert not hasattr(clone, "history_") and clone.kind == "fusion"
    clone.fit(spec, meta, y, show_progress=False)
    np.testing.assert_array_equal(clone.predict(spec_t, meta_t), unfitted.predict(spec_t, meta_t))
    for model in (musrec.FusionModel("cnn_lstm", architecture="paper", random_state=3), musrec.FusionModel("ridge")):
        assert model.clone().config_ == model.config_
    # a damaged file is a FormatError, which is a ValueError
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(musrec.FormatError) as raised:
        musrec.FusionModel.load(tmp_path / "bad.safetensors")
    assert isinstance(raised.value, ValueError)


def test_bad_inputs_raise_clear_errors(data):
    (spec, meta, y), _ = data
    with pytest.raises(ValueError, match="unknown kind"):
        musrec.FusionModel("transformer")
    with pytest.raises(ValueError, match="architecture"):
        musrec.FusionModel("fusion", architecture="resnet")
    with pytest.raises(ValueError, match="clip_norm"):
        musrec.FusionModel("fusion", clip_norm=-1.0)
    with pytest.raises(ValueError, match="dropout"):
        musrec.FusionModel("fusion", dropout=1.5).fit(spec, meta, y, show_progress=False)
    with pytest.raises(ValueError, match="needs metadata"):
        musrec.FusionModel("fusion", **SMALL).fit(spec, None, y, show_progress=False)
    with pytest.raises(ValueError, match="disagree on the number of songs"):
        musrec.FusionModel("fusion", **SMALL).fit(spec, meta[:-1], y, show_progress=False)
    with pytest.raises(ValueError, match="3-D"):
        musrec.FusionModel("cnn", **SMALL).fit(spec[0], None, y, show_progress=False)
    bad = spec.copy()
    bad[7, 0, 0] = np.nan
    with pytest.raises(ValueError, match="song 7"):
        musrec.FusionModel("cnn", **SMALL).fit(bad, None, y, show_progress=False)
    with pytest.raises(TypeError, match="tags"):
        musrec.FusionModel("embedding", **SMALL).fit(None, [{"tags": "rock"}] * len(y), y, show_progress=False)
    with pytest.raises(ValueError, match="too short"):
        musrec.FusionModel("cnn", pool_sizes=(8, 8, 8)).fit(spec, None, y, show_progress=False)
    with pytest.raises(ValueError, match="not fitted"):
        musrec.FusionModel("cnn", **SMALL).predict(spec)
    model = musrec.FusionModel("cnn", max_epochs=1, **SMALL).fit(spec, None, y, show_progress=False)
    with pytest.raises(ValueError, match="trained on"):
        model.predict(spec[:, :8, :])
    with pytest.raises(FileNotFoundError):
        musrec.FusionModel.load("/nonexistent/model.safetensors")
    with pytest.raises(ValueError, match="checkpoint"):
        musrec.FusionModel("cnn", **SMALL).fit(spec, None, y, resume=True, show_progress=False)


def test_settings_come_from_the_rust_config_types():
    """The Python signature names exactly the core's settings, and they cross typed."""
    import inspect

    names = set(inspect.signature(musrec.FusionModel).parameters)
    core = set(musrec._musrec.FusionCore.SETTINGS) - {"seed"}
    assert core <= names, core - names
    python_only = {"kind", "architecture", "random_state", "num_threads", "checkpoint", "seed"}
    assert names - core == python_only
    model = musrec.FusionModel("cnn", conv_channels=(8, 8, 8), dropout=0.3, stop_metric="recall")
    config = model.config_
    assert config["net"]["conv_channels"] == [8, 8, 8] and config["train"]["stop_metric"] == "recall"
    assert config["net"]["dropout"] == pytest.approx(0.3)
    with pytest.raises(TypeError, match="conv_channels"):
        musrec.FusionModel("cnn", conv_channels="wide")
    with pytest.raises(ValueError, match="stop_metric"):
        musrec.FusionModel("cnn", stop_metric="auc")
    with pytest.raises(ValueError, match="n_mels is not a setting"):
        musrec._musrec.FusionCore("cnn", n_mels=4)
    with pytest.raises(ValueError, match="unknown model setting"):
        musrec._musrec.FusionCore("cnn", colour=4)
