"""Connection supervision shared by every long-lived link (feed sources, the browser, the console's
remote connection)."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff with jitter over the upper half, so many clients do not stampede."""
    ceiling = min(cap, initial * (2 ** max(0, attempt - 1)))
    return ceiling * (0.5 + random.random() / 2)
