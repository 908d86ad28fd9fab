"""The running event loop, looked up once (shell).

``asyncio.get_running_loop()`` and ``asyncio.current_task()`` make a ``getpid()`` system call on
every call (CPython checks that the process has not forked). On the admission path that is two
or three system calls per request, as many as the response itself. A server runs on one loop,
so the loop is looked up once, and again only after it has closed (a process that runs several
servers in turn, as the tests do).
"""

from __future__ import annotations

import asyncio


class LoopRef:
    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        """The running loop (call it from a coroutine or a callback on that loop)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop


class Deadlines:
    """Tasks waiting on something (a request body) that must not take longer than ``seconds``.

    One sweep a second cancels the tasks past their deadline, instead of one timer per request:
    arming and cancelling a timer costs about 2 µs, as much as a tenth of a clean decision. A
    deadline is therefore kept to within a second, which is all a body deadline needs.
    """

    SWEEP_EVERY_S = 1.0

    __slots__ = ("_armed", "_expired", "_loop", "_waiting", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._loop = LoopRef()
        self._waiting: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        # The loop a sweep is pending on. Compared, not just set: a loop that closed with its
        # sweep still pending (a server stopped, another started) must not leave us unswept.
        self._armed: asyncio.AbstractEventLoop | None = None

    def begin(self, task: asyncio.Task[object]) -> None:
        loop = self._loop.get()
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
        loop = self._loop.get()
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
