"""The `musrec` console command."""

import shutil
import subprocess

from musrec import cli


def test_reproduce_reuses_the_stages_and_writes_every_file(tiny_experiment, tmp_path):
    _, _, work, _ = tiny_experiment
    exe = shutil.which("musrec")
    assert exe, "the musrec console script is installed"
    out = subprocess.run(
        [exe, "reproduce", "--preset", "tiny", "--work", str(work), "--out", str(tmp_path), "--quiet"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "[world] reusing" in out.stdout and "[train fusion] " in out.stdout and "(cached)" in out.stdout
    assert "| Ours (fusion) |" in out.stdout and "0.917" in out.stdout  # Table 1 with the paper's column
    assert "| WMF oracle |" in out.stdout and "| popularity |" in out.stdout
    assert "the paper's claim" in out.stdout and "peak memory" in out.stdout
    for name in ("table1.md", "table1.csv", "figure2.md", "figure2.csv", "figure2.png", "figure3.csv", "figure3.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_bad_inputs_give_a_message_not_a_traceback(tmp_path, capsys):
    assert cli.main(["reproduce", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and "Traceback" not in err
    # a directory without the dataset's files
    assert cli.main(["reproduce", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "train_triplets" in err and "Traceback" not in err
    assert (
        cli.main(
            ["reproduce", "--preset", "tiny", "--kinds", "fusion,transformer", "--out", str(tmp_path / "o"), "--quiet"]
        )
        == 2
    )
    assert "unknown model kinds" in capsys.readouterr().err


def test_reproduce_on_a_dataset_directory(tiny_experiment, tmp_path, capsys):
    """--data reads a directory in the real formats (here the tiny world) and de-sparsifies it
    to the preset's size; the same data and settings reuse the cached stages."""
    _, _, work, pipe = tiny_experiment
    args = ["reproduce", "--data", pipe.data_dir, "--preset", "tiny", "--work", str(work), "--out", str(tmp_path)]
    assert cli.main([*args, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "the dataset in" in out and "[world]" not in out and "[train fusion] " in out
    finished = [line for line in out.splitlines() if line.startswith("[train") and " s" in line]
    assert finished and all("(cached)" in line for line in finished), finished
    assert (tmp_path / "report.md").exists()
