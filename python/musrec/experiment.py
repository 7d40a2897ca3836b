"""Reproduce the paper's experiment from a preset, as ``musrec reproduce`` does.

``musrec reproduce``: the paper's experiment in one call, on the embedded synthetic world
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
    """Return the directory of a preset's synthetic world under ``work_dir``.

    Parameters
    ----------
    work_dir : str or os.PathLike
        The working directory.
    preset : str
        The preset's name.
    seed : int
        The world's seed.

    Returns
    -------
    str
        ``work_dir/world-<preset>-seed<seed>``.

    See Also
    --------
    prepare_world : Writes the world there.

    Examples
    --------
    >>> from musrec import experiment
    >>> experiment.world_dir("musrec-work", "tiny", 0)
    'musrec-work/world-tiny-seed0'
    """
    return os.path.join(os.fspath(work_dir), f"world-{preset}-seed{seed}")


def prepare_world(
    work_dir: str | os.PathLike,
    preset: str = "small",
    seed: int = 0,
    num_threads: int = 0,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> str:
    """Write the preset's synthetic world under ``work_dir``, unless an identical one is there.

    It is written into a temporary directory renamed into place when complete, so an
    interrupted write is never mistaken for a world. A world is identical when its
    ``world.json`` records the same configuration (the preset's world with ``seed``); a
    different world at the same place is written again.

    Parameters
    ----------
    work_dir : str or os.PathLike
        The working directory; the world goes to :func:`world_dir`.
    preset : {"tiny", "small", "paper"}, default "small"
        The preset's name.
    seed : int, default 0
        The world's seed.
    num_threads : int, default 0
        Threads to render the audio on (0: one per core).
    show_progress : bool, default True
        Show a progress bar while the audio renders.
    log : callable, default print
        Receives one line on what is done (reused or written).

    Returns
    -------
    str
        The world's directory.

    Raises
    ------
    ValueError
        If ``preset`` is not a preset's name.
    KeyboardInterrupt
        On Ctrl-C while the world is written.

    See Also
    --------
    musrec.synthetic.write_world : Writes a world of any configuration.

    Examples
    --------
    >>> from musrec import experiment
    >>> path = experiment.prepare_world("musrec-work", "tiny", seed=0)  # doctest: +SKIP
    """
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
    """Build the :class:`musrec.Pipeline` of a preset.

    It runs on ``data_dir`` (a real dataset, de-sparsified to the preset's size) or on the
    preset's synthetic world, written under ``work_dir`` first. The settings are checked
    before any world is written.

    Parameters
    ----------
    preset : {"tiny", "small", "paper"}, default "small"
        The preset's name.
    data_dir : str or os.PathLike or None, optional
        A real dataset directory (layout: :mod:`musrec.data`); None: the preset's synthetic
        world.
    work_dir : str or os.PathLike, default "musrec-work"
        Where the world and the stages' caches (``work_dir/stages``) are kept.
    random_state : int or None, optional
        Seeds the world and the pipeline (None: 0).
    num_threads : int, default 0
        Threads to compute on (0: one per core).
    show_progress : bool, default True
        Show progress bars.
    log : callable or None, optional
        Receives one line per stage (None: print when ``show_progress``, else nothing).
    seed : int or None, optional
        The deprecated old name of ``random_state``.
    **overrides
        Replace Pipeline settings (``model`` dicts merge); see :class:`musrec.Pipeline`.

    Returns
    -------
    musrec.Pipeline
        The pipeline, ready to :meth:`~musrec.Pipeline.run`.

    Raises
    ------
    ValueError
        If ``preset`` is not a preset's name, or the settings cannot work (unknown model
        kinds, ``test_fraction`` outside (0, 1), learning rates or ``N`` not positive).
    TypeError
        If both ``random_state`` and ``seed`` are given, or an override is not a Pipeline
        setting (found only once the world is written).
    FileNotFoundError
        If ``data_dir`` is not a directory.

    Warns
    -----
    DeprecationWarning
        When ``seed`` is given.

    See Also
    --------
    reproduce : Runs the pipeline and writes its tables and figures.

    Notes
    -----
    The Figure 3 learning-rate study uses ``musrec.pipeline.PAPER_LEARNING_RATES`` unless
    ``learning_rates`` is given. With ``data_dir``, ``n_users`` and ``n_songs`` default to the
    size of the preset's world.

    Examples
    --------
    >>> from musrec import experiment
    >>> pipe = experiment.pipeline("tiny", work_dir="musrec-work", random_state=0)  # doctest: +SKIP
    >>> result = pipe.run()  # doctest: +SKIP
    >>> pipe = experiment.pipeline("small", data_dir="msd", model={"max_epochs": 10})  # doctest: +SKIP
    """
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
    """Run the whole experiment of a preset and write its tables and figures.

    Parameters
    ----------
    preset : {"tiny", "small", "paper"}, default "small"
        The preset's name (see :func:`pipeline`).
    data_dir : str or os.PathLike or None, optional
        A real dataset directory; None: the preset's synthetic world.
    out_dir : str or os.PathLike or None, default "musrec-results"
        Where the tables and figures are written (None: write nothing).
    work_dir : str or os.PathLike or None, optional
        Keeps the world and every stage's cache, so a second run only redoes what changed
        (None: ``out_dir/work``, or ``musrec-results/work`` when ``out_dir`` is None).
    **kwargs
        Passed to :func:`pipeline`: ``random_state``, ``num_threads``, ``show_progress``,
        ``log`` and Pipeline settings.

    Returns
    -------
    musrec.report.PipelineResult
        Table 1 and Figures 2 and 3; its ``summary`` also records the ``preset``, the
        ``data`` (``"synthetic world"`` or ``data_dir``) and, with ``out_dir``, the
        ``files`` written.

    Raises
    ------
    ValueError
        If ``preset`` is not a preset's name, or the settings cannot work.
    TypeError
        If both ``random_state`` and ``seed`` are given, or a keyword is not a Pipeline
        setting.
    FileNotFoundError
        If ``data_dir`` is not a directory.

    See Also
    --------
    pipeline : The pipeline that is run.

    Examples
    --------
    >>> import musrec
    >>> result = musrec.reproduce("tiny", out_dir="musrec-results")  # doctest: +SKIP
    >>> print(result.table1_markdown())  # doctest: +SKIP
    """
    if work_dir is None:
        work_dir = os.path.join(os.fspath(out_dir or "musrec-results"), "work")
    result = pipeline(preset, data_dir, work_dir, **kwargs).run()
    result.summary["preset"] = preset
    result.summary["data"] = "synthetic world" if data_dir is None else os.fspath(data_dir)
    if out_dir is not None:
        result.summary["files"] = result.write(out_dir)
    return result
