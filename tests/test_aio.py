"""The looked-up-once event loop of the admission path."""

from __future__ import annotations

import asyncio

import pytest

from webhook.aio import LoopRef


def test_it_is_the_running_loop_and_follows_a_new_one_after_the_old_closes() -> None:
    ref = LoopRef()

    async def seen() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
        return ref.get(), asyncio.get_running_loop()

    first, running = asyncio.run(seen())
    assert first is running
    second, running = asyncio.run(seen())  # asyncio.run closed the first loop
    assert second is running
    assert second is not first


def test_outside_a_loop_it_raises_like_asyncio() -> None:
    with pytest.raises(RuntimeError):
        LoopRef().get()
