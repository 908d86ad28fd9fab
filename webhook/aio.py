"""Deadlines for tasks on the event loop (shell)."""

from __future__ import annotations

import asyncio


class Deadlines:
    """Tasks waiting on something (a request body) that must not take longer than ``seconds``.

    One sweep a second cancels the tasks past their deadline, instead of one timer per request:
    arming and cancelling a timer costs about 2 µs, as much as a tenth of a clean decision. A
    deadline is therefore kept to within a second, which is all a body deadline needs.
    """

    SWEEP_EVERY_S = 1.0

    __slots__ = ("_armed", "_expired", "_waiting", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._waiting: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        # The loop a sweep is pending on. Compared, not just set: a loop that closed with its
        # sweep still pending (a server stopped, another started) must not leave us unswept.
        self._armed: asyncio.AbstractEventLoop | None = None

    def begin(self, task: asyncio.Task[object]) -> None:
        loop = asyncio.get_running_loop()
        if self._armed is not loop:
            if self._armed is not None:  # left over from a loop that is gone
                self._waiting.clear()
                self._expired.clear()
            self._armed = loop
            loop.call_later(min(self.SWEEP_EVERY_S, self.seconds), self._sweep)
        self._waiting[task] = loop.time()

    def end(self, task: asyncio.Task[object]) -> bool:
        """Stop watching ``task``; True when its deadline passed (the sweep cancelled it)."""
        self._waiting.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        oldest = loop.time() - self.seconds
        late = [task for task, started in self._waiting.items() if started <= oldest]
        for task in late:
            del self._waiting[task]
            self._expired.add(task)
            task.cancel()
        if self._waiting:
            loop.call_later(min(self.SWEEP_EVERY_S, self.seconds), self._sweep)
        else:
            self._armed = None
