"""The `musrec` console command."""

import json
import shutil
import subprocess

from musrec import cli


def test_reproduce_tiny_writes_results(tmp_path):
    exe = shutil.which("musrec")
    assert exe, "the musrec console script is installed"
    out = subprocess.run(
        [exe, "reproduce", "--preset", "tiny", "--factors", "16", "--quiet", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "| WMF |" in out.stdout and "| popularity |" in out.stdout
    rows = json.loads((tmp_path / "wmf_ranking.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["WMF", "popularity", "random"]
    assert (tmp_path / "wmf.safetensors").stat().st_size > 0


def test_bad_arguments_give_a_message_not_a_traceback(capsys):
    assert cli.main(["reproduce", "--preset", "tiny", "--factors", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "factors" in err and "Traceback" not in err
