"""Backoff: 0.8 s doubling to 30 s, with up to a fifth more at random, reset only when told."""

from __future__ import annotations

import pytest

from webhook.backoff import JITTER, Backoff


def test_the_waits_double_to_the_cap_and_stay_there() -> None:
    backoff = Backoff(0.8, 30.0, rand=lambda: 0.0)
    assert [backoff.next() for _ in range(8)] == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]


def test_jitter_adds_at_most_a_fifth() -> None:
    highest = Backoff(0.8, 30.0, rand=lambda: 1.0)
    assert highest.next() == pytest.approx(0.8 * (1 + JITTER))
    assert JITTER == 0.2


def test_only_a_reset_starts_again_from_the_first_wait() -> None:
    backoff = Backoff(1.0, 60.0, rand=lambda: 0.0)
    for _ in range(4):
        backoff.next()
    assert backoff.next() == 16.0
    backoff.reset()
    assert backoff.next() == 1.0
