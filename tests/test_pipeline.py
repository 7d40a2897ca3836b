"""musrec.Pipeline end to end on the tiny preset's synthetic world, written in the real formats."""

from __future__ import annotations

import csv

import musrec
import numpy as np
import pytest
from musrec.pipeline import artist_popularity

REFERENCE_ROWS = {"WMF oracle", "random", "popularity"}


def test_tables_and_figures_have_every_model_and_the_reference_rows(tiny_experiment):
    result, out, _, _ = tiny_experiment
    assert [r["model"] for r in result.table1] == [*musrec.fusion.KINDS, "training mean"]
    assert {r["model"] for r in result.figure2} == {*musrec.fusion.KINDS, *REFERENCE_ROWS}
    assert {r["N"] for r in result.figure2} == {5, 10, 20}
    for name in ("table1", "figure2", "figure3"):
        with open(out / f"{name}.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == len(getattr(result, name)) > 0, name
    for name in ("table1.md", "figure2.md", "report.md", "summary.json", "figure2.png", "figure3.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "0.917" in report and "Ours (fusion)" in report  # the paper's numbers sit next to ours
    s = result.summary
    assert s["test_songs"] > 0 and s["test_users"] > 0 and s["training_songs"] > s["test_songs"]
    assert {st["stage"] for st in s["stages"]} >= {"load data", "WMF", "audio features", "train fusion", "evaluate"}
    assert all(st["peak_rss_mb"] > 0 and st["seconds"] >= 0 for st in s["stages"])


def test_figure3_has_the_four_learning_rates(tiny_experiment):
    result = tiny_experiment[0]
    rates = {r["learning_rate"] for r in result.figure3}
    assert rates == {0.1, 0.01, 0.001, 0.0001}
    for lr in rates:
        epochs = [r["epoch"] for r in result.figure3 if r["learning_rate"] == lr]
        assert epochs == list(range(1, len(epochs) + 1))
    # the default learning rate's curve is the fusion model of Table 1, trained once
    main = result.histories["fusion"]["validation_loss"]
    assert [r["validation_loss"] for r in result.figure3 if r["learning_rate"] == 0.001] == main


def test_fusion_beats_the_baselines_and_the_oracle_is_the_ceiling(tiny_experiment):
    result = tiny_experiment[0]
    for n in (5, 10, 20):
        fusion = result.recall("fusion", n)
        assert fusion > 1.5 * result.recall("random", n), n
        assert fusion > result.recall("popularity", n), n
        for kind in musrec.fusion.KINDS:
            assert result.recall("WMF oracle", n) >= result.recall(kind, n), (n, kind)
    # at least as good as each single-source model (a little slack: 160 test songs)
    recall = sum(result.recall("fusion", n) for n in (5, 10, 20))
    for single in ("cnn_lstm", "embedding"):
        assert recall >= 0.95 * sum(result.recall(single, n) for n in (5, 10, 20)), single
    mse = {r["model"]: r["mse"] for r in result.table1}
    assert mse["fusion"] <= 1.02 * min(mse["cnn_lstm"], mse["embedding"]), mse
    assert mse["fusion"] < mse["training mean"]
    claims = {c["claim"]: c["holds"] for c in result.claims()}
    assert claims["(ours) the fusion model beats the random ranking on recall@10"]


def test_a_rerun_reuses_every_cached_stage(tiny_experiment):
    result, _, work, pipe = tiny_experiment
    models = sorted((work / "stages" / "models").iterdir())
    stamps = {p: p.stat().st_mtime_ns for p in models}
    lines = []
    again = musrec.experiment.pipeline("tiny", work_dir=work, show_progress=False, log=lines.append).run()
    assert {p: p.stat().st_mtime_ns for p in sorted((work / "stages" / "models").iterdir())} == stamps
    assert again.table1 == result.table1
    assert "[world] reusing" in lines[0]
    cached = {st["stage"]: st["cached"] for st in again.summary["stages"]}
    assert cached["WMF"] and cached["audio features"] and cached["train fusion"], cached


def test_artist_popularity_uses_only_the_known_songs():
    import scipy.sparse as sp

    plays = sp.csr_matrix(np.array([[1, 1, 0, 1, 1], [1, 0, 0, 1, 0], [1, 0, 1, 0, 1]], np.float32))
    artists = ["a", "a", "b", "", "c"]  # listeners per song: 3, 1, 1, 2, 2
    known, new = np.array([0, 1, 2]), np.array([3, 4])
    # song 3 has the unknown artist and song 4 an artist without known songs: the mean of the known, 5/3
    np.testing.assert_allclose(artist_popularity(plays, artists, known, new), [5 / 3, 5 / 3])
    # songs of known artists get their artist's mean: a (3 + 1) / 2, b 1
    np.testing.assert_allclose(artist_popularity(plays, artists, known, np.array([1, 2])), [2, 1])
    # ties broken as the numpy code broke them: by default_rng([seed, 2]), below a millionth
    base = artist_popularity(plays, artists, known, new)
    scale = max(1.0, float(np.abs(base).max(initial=0.0)))
    want = base + np.random.default_rng([3, 2]).random(len(base)) * 1e-6 * scale
    np.testing.assert_array_equal(artist_popularity(plays, artists, known, new, tie_break=3), want)


def test_presets_come_from_the_core_and_a_name_is_one_size():
    import pickle

    presets = musrec.experiment.PRESETS
    assert sorted(presets) == ["paper", "small", "tiny"]
    tiny = presets["tiny"]
    assert (tiny.world.n_users, tiny.world.n_songs, tiny.world.sample_rate) == (600, 800, 8000)
    # the experiment's world is the world preset of the same name, at 8 kHz
    assert tiny.world == musrec.synthetic.world_config("tiny", sample_rate=8000)
    settings = tiny.pipeline_settings()
    assert (settings["n_factors"], settings["N"], settings["model"]["max_epochs"]) == (32, [5, 10, 20], 30)
    assert "n_users" not in settings and presets["paper"].pipeline_settings()["n_songs"] == 50_000
    settings["n_factors"] = 1  # a copy: the preset stays as the core defines it
    assert tiny.pipeline_settings()["n_factors"] == 32
    with pytest.raises(TypeError):
        presets["huge"] = tiny
    assert pickle.loads(pickle.dumps(tiny)) == tiny != presets["small"]


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        musrec.Pipeline(tmp_path / "missing", tmp_path / "work")
    with pytest.raises(ValueError, match="unknown model kinds"):
        musrec.Pipeline(tmp_path, tmp_path / "work", kinds=("transformer",))
    with pytest.raises(ValueError, match="learning_rates"):
        musrec.Pipeline(tmp_path, tmp_path / "work", learning_rates=(0.1, -1))
    with pytest.raises(ValueError, match="unknown preset"):
        musrec.experiment.pipeline("huge", work_dir=tmp_path)
    # an empty directory is no dataset: the loader names what is missing
    with pytest.raises((FileNotFoundError, musrec.MusrecError), match="train_triplets"):
        musrec.Pipeline(tmp_path, tmp_path / "work", show_progress=False).run()


def test_damaged_audio_is_counted_and_the_run_finishes(tmp_path):
    root = tmp_path / "world"
    musrec.synthetic.write_world(
        root, preset="tiny", n_users=200, n_songs=150, sample_rate=8000, duration=4.0, show_progress=False
    )
    files = sorted((root / "audio").iterdir())
    files[0].write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio")  # corrupt
    files[1].write_bytes(files[1].read_bytes()[:44])  # a header and no samples
    lines = []
    small = dict(conv_channels=(8, 8, 8), lstm_hidden=8, mlp_hidden=16, max_epochs=2)
    pipe = musrec.Pipeline(
        root,
        tmp_path / "work",
        n_factors=8,
        model=small,
        kinds=("fusion",),
        learning_rates=(),
        N=(5,),
        show_progress=False,
        log=lines.append,
    )
    result = pipe.run()
    assert result.summary["songs_without_usable_audio"] == 2
    message = next(line for line in lines if "no usable audio" in line)
    assert "2 of" in message and (files[0].name in message or files[1].name in message)
    assert [r["model"] for r in result.table1] == ["fusion", "training mean"]
    assert result.figure3 == []


def test_artist_split_holds_out_whole_artists(tiny_experiment):
    _, _, work, pipe = tiny_experiment
    by_artist = musrec.Pipeline(pipe.data_dir, work / "stages", split="artists", show_progress=False)
    _, usable = pipe.spectrograms()
    train, test = by_artist.split(usable)
    artist = np.asarray(pipe.dataset().songs.artist_id, dtype=object)
    known = {a for a in artist[train] if a}
    assert not known & {a for a in artist[test] if a}
    assert abs(len(test) / (len(train) + len(test)) - 0.2) < 0.05
    assert np.array_equal(np.union1d(train, test), np.flatnonzero(usable))
    # early stopping and the ridge penalties are chosen on held-out artists too
    fit, val = by_artist._validation(train)
    assert not {a for a in artist[fit] if a} & {a for a in artist[val] if a}
    assert np.array_equal(np.union1d(fit, val), train) and 0.05 < len(val) / len(train) < 0.15
    assert pipe._validation(train)[1] is None  # a song split lets FusionModel hold out its own tenth
    again = musrec.Pipeline(pipe.data_dir, work / "stages", split="artists", show_progress=False).split(usable)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, test)))
    with pytest.raises(ValueError, match="split must be"):
        musrec.Pipeline(pipe.data_dir, work / "stages", split="albums")


def _numpy_split(usable, artist_ids, test_fraction, by, random_state):
    """The song split as numpy made it before it moved into the core: the reference."""

    def hold_out(songs, n, rng):
        artist = np.asarray(artist_ids, dtype=object).astype(str)[songs]
        group = np.where(artist == "", np.char.add("\0song", songs.astype(str)), artist)
        names, of_song, sizes = np.unique(group, return_inverse=True, return_counts=True)
        drawn = rng.permutation(len(names))
        taken = drawn[: int(np.searchsorted(np.cumsum(sizes[drawn]), n)) + 1]
        out = np.isin(of_song, taken)
        return np.sort(songs[~out]), np.sort(songs[out])

    candidates = np.flatnonzero(usable)
    n_test = max(1, int(round(len(candidates) * test_fraction)))
    rng = np.random.default_rng(random_state)
    if by == "songs":
        order = rng.permutation(candidates)
        train, test = np.sort(order[n_test:]), np.sort(order[:n_test])
        return train, test, (train, None)
    train, test = hold_out(candidates, n_test, rng)
    validation = hold_out(train, max(1, int(round(0.1 * len(train)))), np.random.default_rng([random_state, 1]))
    return train, test, validation


def test_the_cores_song_split_is_the_one_numpy_made(tiny_experiment):
    """The split moved from numpy into the core and draws the same numbers: a seed's split,
    and with it every cached stage, stays what it was."""
    _, _, work, pipe = tiny_experiment
    _, usable = pipe.spectrograms()
    artists = pipe.dataset().songs.artist_id
    for by in ("songs", "artists"):
        for seed in (0, 1, 12345, 2**40 + 7):
            p = musrec.Pipeline(pipe.data_dir, work / "stages", split=by, random_state=seed, show_progress=False)
            train, test = p.split(usable)
            want_train, want_test, (want_fit, want_val) = _numpy_split(usable, artists, 0.2, by, seed)
            assert np.array_equal(train, want_train) and np.array_equal(test, want_test), (by, seed)
            fit, val = p._validation(train)
            assert np.array_equal(fit, want_fit) and (val is None) == (want_val is None), (by, seed)
            if val is not None:
                assert np.array_equal(val, want_val), (by, seed)


def test_the_training_mean_row_is_the_training_songs_mean(tiny_experiment):
    result, _, _, pipe = tiny_experiment
    vectors = pipe.song_vectors().item_factors
    train, test = pipe.split(pipe.spectrograms()[1])
    mean = np.broadcast_to(vectors[train].mean(axis=0), vectors[test].shape)
    want = musrec.metrics.vector_errors(mean, vectors[test])
    (row,) = [r for r in result.table1 if r["model"] == "training mean"]
    assert {**want, "model": "training mean"} == row  # the same sums in the same order: exact
