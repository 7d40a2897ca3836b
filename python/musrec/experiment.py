"""``musrec reproduce``: the paper's experiment in one call, on the embedded synthetic world
(written to disk in the real formats first) or on a real dataset directory.

A preset fixes the size of the world (or of the de-sparsified real data), the number of
WMF factors, the network sizes and training length:

* ``tiny`` (for tests; about 20 s on 2 cores): 600 users x 800 songs, 32 factors, small
  networks (32 channels), at most 30 epochs.
* ``small`` (the default of ``musrec reproduce``; about 4 minutes on 2 cores): 2,000 users
  x 5,000 songs, 64 factors, mid-size networks (64 channels), at most 50 epochs.
* ``paper``: the paper's 10,000 users x 50,000 songs (de-sparsified from a world of 56,000
  drawn songs, of which about 51,400 are played and have audio), 100 factors, the full
  networks and 100 epochs (hours on a laptop CPU; ``benchmarks/bench_reproduce.py`` times it).

Every preset reads three 3-second excerpts of each song at the paper's 8 kHz (the
Pipeline's default), holds out 20% of the songs as cold-start test songs and runs the
Figure 3 learning-rate study. The presets are defined once, in the Rust core
(``src/experiment.rs``): a preset's world is the synthetic world preset of the same name
(:func:`musrec.synthetic.world_config`) with 8 kHz audio. :data:`PRESETS` is a read-only view.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable

from . import _compat, _musrec, synthetic
from .pipeline import PAPER_LEARNING_RATES, Pipeline, check_settings
from .report import PipelineResult

__all__ = ["PRESETS", "ExperimentPreset", "pipeline", "prepare_world", "reproduce", "world_dir"]

#: A preset, defined in the Rust core: ``.world`` (the synthetic world, a
#: :class:`musrec.synthetic.WorldConfig`) and ``.pipeline_settings()`` (the Pipeline's keyword
#: settings: ``n_factors``, ``model``, ``N`` and, for ``paper``, ``n_users``/``n_songs``).
ExperimentPreset = _musrec.ExperimentPreset
ExperimentPreset.__module__ = __name__

#: The presets by name, a read-only view.
PRESETS: Mapping[str, ExperimentPreset] = MappingProxyType(
    {name: ExperimentPreset(name) for name in ExperimentPreset.NAMES}
)


def world_dir(work_dir: str | os.PathLike, preset: str, seed: int) -> str:
    return os.path.join(os.fspath(work_dir), f"world-{preset}-seed{seed}")


def prepare_world(
    work_dir: str | os.PathLike,
    preset: str = "small",
    seed: int = 0,
    num_threads: int = 0,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> str:
    """The preset's synthetic world under ``work_dir``, written unless an identical one is
    there. It is written into a temporary directory renamed into place when complete, so an
    interrupted write is never mistaken for a world."""
    config = ExperimentPreset(preset).world.replace(seed=seed)
    path = world_dir(work_dir, preset, seed)
    truth = os.path.join(path, "world.json")
    if os.path.exists(truth):
        with open(truth, encoding="utf-8") as f:
            if json.load(f).get("config") == config.to_dict():
                log(f"[world] reusing the synthetic world at {path}")
                return path
        log(f"[world] {path} holds a different world; writing it again")
    partial = f"{path}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    log(f"[world] writing a synthetic world of {config.n_users:,} users x {config.n_songs:,} songs to {path}")
    synthetic.write_world(partial, config, seed=seed, num_threads=num_threads, show_progress=show_progress)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(partial, path)
    return path


def pipeline(
    preset: str = "small",
    data_dir: str | os.PathLike | None = None,
    work_dir: str | os.PathLike = "musrec-work",
    *,
    random_state: int | None = None,
    num_threads: int = 0,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    seed: int | None = None,
    **overrides: Any,
) -> Pipeline:
    """The :class:`musrec.Pipeline` of a preset: on ``data_dir`` (a real dataset,
    de-sparsified to the preset's size) or on the preset's synthetic world, written under
    ``work_dir`` first. ``overrides`` replace Pipeline settings (``model`` dicts merge).
    ``random_state`` seeds the world and the pipeline (``seed`` is its deprecated old name)."""
    seed = _compat.random_state(random_state, seed, "musrec.experiment.pipeline")
    spec = ExperimentPreset(preset)  # a ValueError names the presets
    say = log if log is not None else (print if show_progress else lambda line: None)
    settings = spec.pipeline_settings()
    settings["model"] = {**settings["model"], **overrides.pop("model", {})}
    settings.update(overrides)
    settings.setdefault("learning_rates", PAPER_LEARNING_RATES)
    check_settings(**settings)  # before writing a world
    os.makedirs(work_dir, exist_ok=True)
    if data_dir is None:
        data_dir = prepare_world(work_dir, preset, seed, num_threads, show_progress, say)
    else:
        settings.setdefault("n_users", spec.world.n_users)
        settings.setdefault("n_songs", spec.world.n_songs)
    return Pipeline(
        data_dir,
        os.path.join(os.fspath(work_dir), "stages"),
        random_state=seed,
        num_threads=num_threads,
        show_progress=show_progress,
        log=say,
        **settings,
    )


def reproduce(
    preset: str = "small",
    data_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = "musrec-results",
    work_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> PipelineResult:
    """Run the whole experiment of a preset (see :func:`pipeline`) and write its tables and
    figures to ``out_dir`` (None: write nothing). ``work_dir`` (default ``out_dir/work``)
    keeps the world and every stage's cache, so a second run only redoes what changed."""
    if work_dir is None:
        work_dir = os.path.join(os.fspath(out_dir or "musrec-results"), "work")
    result = pipeline(preset, data_dir, work_dir, **kwargs).run()
    result.summary["preset"] = preset
    result.summary["data"] = "synthetic world" if data_dir is None else os.fspath(data_dir)
    if out_dir is not None:
        result.summary["files"] = result.write(out_dir)
    return result
