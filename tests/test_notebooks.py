"""The notebooks run top to bottom, so they cannot rot."""

import pathlib
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, tiny_experiment):
    # These notebooks run the tiny preset as the session's experiment did: they start from a
    # copy of its cached stages, as a user re-running a notebook would (the stages are read
    # back; training itself is tested elsewhere).
    work = {"reproduce_paper.ipynb": "reproduce-results/work", "edge_cloud.ipynb": "edge-work"}.get(path.name)
    if work is not None:
        shutil.copytree(tiny_experiment[2], tmp_path / work)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found"
