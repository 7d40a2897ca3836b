"""Progress bars that work in a terminal and in Jupyter (tqdm.auto), or stay silent."""

from __future__ import annotations

from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int, desc: str, show: bool) -> Any:
    """A tqdm bar (notebook widget where available) or a silent stand-in."""
    if not show:
        return _Silent()
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)
    except ImportError:  # tqdm.notebook without ipywidgets
        from tqdm.std import tqdm

        return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)


def callback(progress: Any, user_callback: Any | None = None) -> Any:
    """Adapter for the core's ``(done, total, loss)`` reports."""

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
    """:func:`callback` for work whose total only the core knows (bytes of a file, the
    songs that get audio): the bar adopts the total of each report."""
    inner = callback(progress, user_callback)

    def report(done: int, total: int, loss: float | None) -> None:
        if hasattr(progress, "total") and progress.total != total:
            progress.total = total
            progress.refresh()
        inner(done, total, loss)

    return report
