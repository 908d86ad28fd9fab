"""Exponential backoff with jitter (pure, given its random source)."""

from __future__ import annotations

import random
from collections.abc import Callable

# Up to a fifth more than the delay, at random: replicas that lost the API server together do
# not all come back in the same instant.
JITTER = 0.2


class Backoff:
    """Waits that start at ``start`` and double up to ``cap``, each with jitter, until
    ``reset`` says the work is healthy again. A failure alone never resets it: an API server
    that accepts a list and then breaks every watch keeps being backed off."""

    def __init__(
        self,
        start: float,
        cap: float,
        *,
        jitter: float = JITTER,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.start = start
        self.cap = cap
        self.jitter = jitter
        self.rand = rand
        self.delay = start

    def next(self) -> float:
        """The wait before the next attempt; the one after it is twice as long (to the cap)."""
        wait = self.delay * (1 + self.jitter * self.rand())
        self.delay = min(self.delay * 2, self.cap)
        return wait

    def reset(self) -> None:
        self.delay = self.start
