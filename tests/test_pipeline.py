"""musrec.Pipeline end to end on a tiny synthetic world written in the real formats."""

from __future__ import annotations

import csv

import musrec
import pytest


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    musrec.synthetic.write_world(
        root, preset="tiny", n_users=600, n_songs=800, sample_rate=8000, duration=3.0, seed=0, show_progress=False
    )
    work = tmp_path_factory.mktemp("work")
    small = dict(conv_channels=(32, 32, 32), lstm_hidden=32, mlp_hidden=64, max_epochs=30, patience=5)
    pipe = musrec.Pipeline(root, work, n_factors=32, model=small, N=(5, 10, 20), show_progress=False)
    return pipe, pipe.run(), work


def test_tables_have_every_model_and_the_reference_rows(run, tmp_path):
    _, result, _ = run
    assert [r["model"] for r in result.table1] == list(musrec.fusion.KINDS)
    models = {r["model"] for r in result.figure2}
    assert models == {*musrec.fusion.KINDS, "WMF oracle", "random"}
    assert {r["N"] for r in result.figure2} == {5, 10, 20}
    written = result.write(tmp_path)
    for name in ("table1.md", "table1.csv", "figure2.md", "figure2.csv", "figure2.png"):
        assert any(p.endswith(name) for p in written), name
    with open(tmp_path / "figure2.csv") as f:
        assert len(list(csv.DictReader(f))) == len(result.figure2)
    assert result.summary["test_songs"] > 0 and result.summary["test_users"] > 0


def test_fusion_beats_random_and_the_oracle_is_the_ceiling(run):
    _, result, _ = run
    recall = {(r["model"], r["N"]): r["recall"] for r in result.figure2}
    for n in (5, 10, 20):
        assert recall["fusion", n] > 1.5 * recall["random", n], (n, recall)
        for kind in musrec.fusion.KINDS:
            assert recall["WMF oracle", n] >= recall[kind, n], (n, kind)
    mse = {r["model"]: r["mse"] for r in result.table1}
    assert mse["fusion"] <= 1.1 * min(mse["cnn_lstm"], mse["embedding"]), mse


def test_a_rerun_reuses_every_cached_stage(run):
    pipe, result, work = run
    models = sorted((work / "models").iterdir())
    stamps = {p: p.stat().st_mtime_ns for p in models}
    again = musrec.Pipeline(
        pipe.data_dir, work, n_factors=32, model=pipe.model_args, N=(5, 10, 20), show_progress=False
    ).run()
    assert {p: p.stat().st_mtime_ns for p in sorted((work / "models").iterdir())} == stamps
    assert again.table1 == result.table1


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        musrec.Pipeline(tmp_path / "missing", tmp_path / "work")
    with pytest.raises(ValueError, match="unknown model kinds"):
        musrec.Pipeline(tmp_path, tmp_path / "work", kinds=("transformer",))
