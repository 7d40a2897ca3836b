"""Conventions CI enforces: ruff's lint and format on the Python code (with pydocstyle's numpy
convention on the package), numpydoc's validator on the public modules' docstrings, and the
compiled module's stubs (``_musrec.pyi``) checked against the module itself by mypy's stubtest."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYTHON = ["python", "tests", "benchmarks"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint_and_format():
    lint = run("ruff", "check", *PYTHON)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run("ruff", "format", "--check", *PYTHON)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_public_docstrings_have_numpydoc_sections():
    # The checks and the exclusions (private names, dunders) are in pyproject.toml's
    # [tool.numpydoc_validation]: summary, Parameters, Returns, Examples on every public object.
    public = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "python" / "musrec").glob("[!_]*.py"))
    public.append("python/musrec/__init__.py")
    assert len(public) > 10
    out = run("numpydoc", "lint", *public)
    assert out.returncode == 0, out.stdout + out.stderr


def test_stubs_match_the_compiled_module():
    allow = ROOT / "tests" / "fixtures" / "stubtest_allowlist.txt"
    # The installed package's stubs are the ones a user's type checker reads.
    out = run("mypy.stubtest", "musrec._musrec", "--ignore-disjoint-bases", "--allowlist", str(allow))
    assert out.returncode == 0, out.stdout + out.stderr
