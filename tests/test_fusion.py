"""musrec.FusionModel: the paper's fusion network and its baselines, end to end."""

from __future__ import annotations

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
    assert len(history["train_loss"]) == 2 and len(history["validation_loss"]) == 2
    assert all(np.isfinite(history["train_loss"]))
    out = model.predict(spec_test, meta_test)
    assert out.shape == (160, 8) and out.dtype == np.float32 and np.isfinite(out).all()
    assert model.n_parameters_ > 0
    assert model.config_["net"]["kind"] == kind


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
    model = musrec.FusionModel("cnn", learning_rate=0.05, max_epochs=40, patience=2, **SMALL)
    model.fit(spec, meta, y, show_progress=False)
    val = model.history_["validation_loss"]
    assert model.stopped_early_ and len(val) < 40
    assert model.best_epoch_ == int(np.argmin(val))
    assert len(val) - 1 - model.best_epoch_ == 2


def test_bad_inputs_raise_clear_errors(data):
    (spec, meta, y), _ = data
    with pytest.raises(ValueError, match="unknown kind"):
        musrec.FusionModel("transformer")
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
