"""The policy reloader on its own: what a poll of the file does to the policy in force."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import orjson
import pytest

from webhook import reload, supervise
from webhook.audit import AuditLog
from webhook.core.policyfile import parse_policy_text
from webhook.reload import PolicyReloader
from webhook.runtime import Runtime

POLICY = b"""apiVersion: seguard.io/v1alpha1
kind: ServiceEntryPolicy
spec:
  mode: Enforce
"""
CHANGED = POLICY.replace(b"Enforce", b"Warn")


class Lines:
    name = "lines"

    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []

    def write(self, data: bytes) -> None:
        self.records.extend(orjson.loads(line) for line in data.splitlines())

    def close(self) -> None:
        pass


def reloader_at(path: Path) -> tuple[PolicyReloader, Runtime, Lines]:
    path.write_bytes(POLICY)
    sink = Lines()
    runtime = Runtime(audit=AuditLog([sink]))
    runtime.set_policy(parse_policy_text(POLICY, source=str(path)))
    return PolicyReloader(path, runtime), runtime, sink


def read_errors(runtime: Runtime) -> float:
    return runtime.metrics.registry.get_sample_value("seguard_policy_read_errors_total") or 0.0


def test_a_file_that_cannot_be_read_is_not_a_refused_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yaml"
    reloader, runtime, sink = reloader_at(path)
    path.unlink()  # a mount caught mid-swap, or a process out of descriptors
    with caplog.at_level(logging.INFO, logger="seguard.reload"):
        for _ in range(3):
            assert reloader.check() is False
        path.write_bytes(POLICY)  # back, unchanged
        assert reloader.check() is False
    assert runtime.policy_generation == 1
    assert runtime.policy_error == ""
    assert runtime.metrics.registry.get_sample_value("seguard_policy_last_reload_ok") == 1
    assert read_errors(runtime) == 3
    assert sink.records == []  # no policy.rejected record
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot read the policy file" in m for m in messages) == 1  # once, not thrice
    assert any("can be read again" in m for m in messages)


def test_a_changed_file_after_a_failed_read_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    reloader, runtime, _ = reloader_at(path)
    path.unlink()
    assert reloader.check() is False
    path.write_bytes(CHANGED)
    assert reloader.check() is True
    assert runtime.policy_generation == 2


def test_a_policy_that_does_not_parse_is_still_refused_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    reloader, runtime, sink = reloader_at(path)
    path.write_bytes(POLICY.replace(b"Enforce", b"Sometimes"))
    assert reloader.check() is False
    assert runtime.policy_generation == 1
    assert "Sometimes" in runtime.policy_error
    assert [r["event"] for r in sink.records] == ["policy.rejected"]
    assert reloader.check() is False  # the same bad file: refused once, not at every poll
    assert len(sink.records) == 1


def test_a_reload_check_that_raises_is_supervised_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unforeseen error in one check: logged once with its traceback, counted, readiness
    down after three in a row, back once the check runs well; the other check never stops."""
    health = supervise.Health()
    calls = {"broken": 0, "fine": 0}
    seen_failing: list[dict[str, str]] = []

    def broken() -> None:
        calls["broken"] += 1
        seen_failing.append(health.failing(time.monotonic()))
        if calls["broken"] <= 4:
            raise RuntimeError("a reload bug")

    def fine() -> None:
        calls["fine"] += 1

    async def run() -> None:
        task = asyncio.create_task(
            reload.poll(
                {"broken-reloader": broken, "fine-reloader": fine}, every=0.001, health=health
            )
        )
        while calls["broken"] < 6:
            await asyncio.sleep(0.001)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.ERROR, logger="seguard.reload"):
        asyncio.run(run())
    assert calls["fine"] >= 6
    assert health.crash_counts() == {"broken-reloader": 4}
    # As seen at the start of each call: failing from the third failure in a row, and no
    # longer once the check has run well (the fifth call did).
    assert seen_failing[3] == {
        "broken-reloader": "RuntimeError: a reload bug (3 failures in a row)"
    }
    assert seen_failing[5] == {}
    failures = [r for r in caplog.records if getattr(r, "event", "") == "thread.failed"]
    assert len(failures) == 4
    assert failures[0].exc_info is not None
    assert all(r.exc_info is None for r in failures[1:])
