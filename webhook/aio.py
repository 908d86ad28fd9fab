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
