"""A step run every few seconds (periodic.py): an expected failure is logged once per distinct
message while the loop goes on, and the recovery once."""

from __future__ import annotations

import logging
import threading

import pytest

from webhook.periodic import Periodic


class Steps(Periodic):
    """Fails with the given messages in turn ("" succeeds), then stops itself."""

    def __init__(self, outcomes: list[str], log: logging.Logger) -> None:
        super().__init__(every=0.001, name="steps", errors=(ConnectionError,), log=log)
        self.outcomes = list(outcomes)
        self.errors_seen: list[str] = []
        self.done = threading.Event()

    def step(self) -> None:
        outcome = self.outcomes.pop(0)
        if not self.outcomes:
            self.done.set()
            self.stop()
        if outcome:
            raise ConnectionError(outcome)


def test_a_failure_is_logged_once_per_message_and_the_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.periodic")
    steps = Steps(["down", "down", "down", "refused", "", "", "down", ""], log)
    with caplog.at_level(logging.INFO, logger="test.periodic"):
        steps.start()
        assert steps.done.wait(10)
        steps.join()
    events = [(r.levelname, getattr(r, "event", ""), r.getMessage()) for r in caplog.records]
    assert events == [
        ("ERROR", "task.failed", "down"),
        ("ERROR", "task.failed", "refused"),
        ("INFO", "task.recovered", "recovered: refused"),
        ("ERROR", "task.failed", "down"),
        ("INFO", "task.recovered", "recovered: down"),
    ]
    assert steps.error == ""


def test_the_last_failure_is_kept_for_readiness() -> None:
    steps = Steps(["up?", "still down"], logging.getLogger("test.periodic"))
    steps.start()
    assert steps.done.wait(10)
    steps.join()
    assert steps.error == "still down"
