"""Deadlines on the event loop: one sweep a second instead of a timer per request."""

from __future__ import annotations

import asyncio

from webhook.aio import Deadlines


async def waits(deadlines: Deadlines, seconds: float) -> str:
    """Wait ``seconds`` under ``deadlines``, and say how it ended."""
    task = asyncio.current_task()
    assert task is not None
    deadlines.begin(task)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        return "expired" if deadlines.end(task) else "cancelled by another"
    return "expired" if deadlines.end(task) else "in time"


def test_deadlines_cancel_only_what_overstays_and_say_so() -> None:
    async def main() -> list[str]:
        deadlines = Deadlines(0.2)
        other = asyncio.create_task(waits(deadlines, 5))
        await asyncio.sleep(0.05)
        other.cancel()  # somebody else's cancellation is not a deadline
        rest = await asyncio.gather(
            waits(deadlines, 5), waits(deadlines, 0.01), waits(deadlines, 5)
        )
        return [await other, *rest]

    assert asyncio.run(main()) == ["cancelled by another", "expired", "in time", "expired"]


def test_deadlines_keep_working_on_a_new_loop_after_the_old_one_closed() -> None:
    deadlines = Deadlines(0.2)
    # The first loop closes with its sweep still pending (the request ended in time).
    assert asyncio.run(waits(deadlines, 0.01)) == "in time"
    assert asyncio.run(waits(deadlines, 5)) == "expired"
