"""Deprecated keyword names, still accepted for a while.

Old names kept working for a while: ``seed`` is now ``random_state`` everywhere, the name
scikit-learn and implicit users know.
"""

from __future__ import annotations

import warnings
from typing import Any


def random_state(random_state: Any, seed: Any, owner: str, default: int = 0) -> Any:
    """Return the seed to use, given ``random_state`` and the deprecated ``seed`` of ``owner``.

    Parameters
    ----------
    random_state : Any
        The seed under its current name, or None.
    seed : Any
        The seed under its deprecated old name, or None.
    owner : str
        The class or function taking them, named in the warning and the error.
    default : int, default 0
        The seed when neither is given.

    Returns
    -------
    Any
        ``seed`` when only it was given, else ``random_state``, or ``default`` when both are None.

    Raises
    ------
    TypeError
        When both ``random_state`` and ``seed`` are given.

    Warns
    -----
    DeprecationWarning
        When ``seed`` is given.
    """
    if seed is None:
        return default if random_state is None else random_state
    if random_state is not None:
        raise TypeError(f"{owner}: give random_state only (seed is its old name)")
    warnings.warn(f"{owner}(seed=...) is deprecated; use random_state=...", DeprecationWarning, stacklevel=3)
    return seed
