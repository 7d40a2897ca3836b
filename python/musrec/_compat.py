"""Old names kept working for a while: ``seed`` is now ``random_state`` everywhere, the name
scikit-learn and implicit users know."""

from __future__ import annotations

import warnings
from typing import Any


def random_state(random_state: Any, seed: Any, owner: str, default: int = 0) -> Any:
    """The seed to use, given ``random_state`` and the deprecated ``seed`` of ``owner``."""
    if seed is None:
        return default if random_state is None else random_state
    if random_state is not None:
        raise TypeError(f"{owner}: give random_state only (seed is its old name)")
    warnings.warn(f"{owner}(seed=...) is deprecated; use random_state=...", DeprecationWarning, stacklevel=3)
    return seed
