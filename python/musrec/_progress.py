"""Progress reporting of long-running work.

Progress: bars in a terminal and in Jupyter (tqdm.auto), plain lines in a log (stderr
not a terminal, e.g. a CI job or ``> run.log 2>&1``), or silence.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _Lines:
    """A stand-in for a progress bar that writes plain lines to stderr.

    It writes a line at each tenth of the work (and at least every ``every`` seconds), then
    one when it closes: a log stays readable.
    """

    def __init__(self, total: int, desc: str, every: float = 30.0):
        self.total, self.desc, self.every = total, desc, every
        self.n, self.postfix = 0, ""
        self._started = self._said = time.monotonic()
        self._tenth = 0
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        tenth = 10 * self.n // self.total if self.total else 0
        now = time.monotonic()
        if tenth > self._tenth or now - self._said >= self.every:
            self._tenth = max(tenth, self._tenth)
            self._say(now)

    def set_postfix(self, **kwargs: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items())

    def refresh(self) -> None:
        pass

    def _say(self, now: float) -> None:
        self._said = now
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n:,}/{self.total:,}{share}, {now - self._started:.1f} s{extra}", file=sys.stderr)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n and (self._tenth < 10 or self.n < self.total):
                self._say(time.monotonic())


def _interactive() -> bool:
    """Tell whether stderr is a terminal or this is a Jupyter kernel: where a redrawn bar reads well."""
    stream = sys.stderr
    if stream is not None and getattr(stream, "isatty", lambda: False)():
        return True
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None
        return ip is not None and "IPKernelApp" in ip.config
    except Exception:  # an IPython too old or too odd to ask: a plain log is the safe choice
        return False


def bar(total: int, desc: str, show: bool) -> Any:
    """Return a progress bar for ``total`` units of work named ``desc``.

    A tqdm bar (notebook widget where available), plain log lines when stderr is not a
    terminal, or a silent stand-in when ``show`` is false.

    Parameters
    ----------
    total : int
        The units of work.
    desc : str
        The bar's label.
    show : bool
        Whether to report progress at all.

    Returns
    -------
    Any
        An object with tqdm's ``update``, ``set_postfix`` and ``close``.
    """
    if not show:
        return _Silent()
    if not _interactive():
        return _Lines(total, desc)
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)
    except ImportError:  # tqdm.notebook without ipywidgets
        from tqdm.std import tqdm

        return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)


def callback(progress: Any, user_callback: Any | None = None) -> Any:
    """Adapt the core's ``(done, total, loss)`` reports to a progress bar.

    Parameters
    ----------
    progress : Any
        A bar from :func:`bar`: it advances by the units each report adds and shows the loss.
    user_callback : callable or None, optional
        Called with every report's ``(done, total, loss)`` as well.

    Returns
    -------
    callable
        The ``report(done, total, loss)`` function to hand to the core.
    """
    reported = [0]

    def report(done: int, total: int, loss: float | None) -> None:
        progress.update(done - reported[0])  # reports may cover several units at once
        reported[0] = done
        if loss is not None:
            progress.set_postfix(loss=f"{loss:.5f}")
        if user_callback is not None:
            user_callback(done, total, loss)

    return report


def callback_with_total(progress: Any, user_callback: Any | None = None) -> Any:
    """Adapt the core's reports like :func:`callback`, for work whose total only the core knows.

    For the bytes of a file or the songs that get audio: the bar adopts the total of each
    report.

    Parameters
    ----------
    progress : Any
        A bar from :func:`bar`.
    user_callback : callable or None, optional
        Called with every report's ``(done, total, loss)`` as well.

    Returns
    -------
    callable
        The ``report(done, total, loss)`` function to hand to the core.
    """
    inner = callback(progress, user_callback)

    def report(done: int, total: int, loss: float | None) -> None:
        if hasattr(progress, "total") and progress.total != total:
            progress.total = total
            progress.refresh()
        inner(done, total, loss)

    return report
