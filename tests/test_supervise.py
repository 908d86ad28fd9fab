"""Background threads that never die silently: restarted with backoff, counted, and reported
to readiness when they cannot run."""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.factories import empty_snapshot, make_service_entry
from tests.live import running
from webhook import supervise
from webhook.audit import AuditLog
from webhook.backoff import Backoff
from webhook.core.policyfile import default_policy
from webhook.core.registry import Snapshot
from webhook.metrics import Metrics
from webhook.runtime import Runtime
from webhook.sources.store import RegistryStore

PATIENCE_S = 30.0


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.005)


def fail_then_run_well(health: supervise.Health, failures: int = 3) -> threading.Thread:
    """A supervised thread ``worker`` whose loop raises ``failures`` times, then runs well; it
    is stopped once it has started the time after, and joined."""
    runs: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        runs.append(1)
        if len(runs) <= failures:
            raise RuntimeError("a bug nobody foresaw")
        stop.wait()  # then it runs well until told to stop

    worker = supervise.thread(
        "worker", loop, stop=stop, health=health, backoff=Backoff(0.001, 0.004)
    )
    worker.start()
    wait_until(lambda: len(runs) == failures + 1, "the start after the failures")
    stop.set()
    worker.join(PATIENCE_S)
    return worker


def test_a_loop_that_raises_is_started_again_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = supervise.Health()
    with caplog.at_level(logging.ERROR, logger="seguard.supervise"):
        worker = fail_then_run_well(health)
    assert not worker.is_alive()
    assert health.crash_counts() == {"worker": 3}
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # the traceback once; the repeats in a line each
    assert "a bug nobody foresaw" in caplog.text
    assert sum("failed again" in r.getMessage() for r in caplog.records) == 2


def test_a_thread_that_keeps_failing_cannot_run_until_it_runs_well_again() -> None:
    health = supervise.Health()
    for _ in range(supervise.FAILING_AFTER - 1):
        health.crashed("publisher", "RuntimeError: boom", healthy_run=False)
    health.restarted("publisher", 100.0)
    assert health.failing(101.0) == {}
    health.crashed("publisher", "RuntimeError: boom", healthy_run=False)
    health.restarted("publisher", 200.0)
    assert health.failing(201.0) == {"publisher": "RuntimeError: boom (3 failures in a row)"}
    assert health.failing(200.0 + supervise.HEALTHY_RUN_S) == {}  # ran a minute without failing
    health.crashed("publisher", "RuntimeError: boom", healthy_run=True)  # after a healthy run
    assert health.failing(300.0) == {}


def test_a_failing_thread_makes_the_server_unready_with_the_reason() -> None:
    health = supervise.Health()
    runtime = Runtime(audit=AuditLog([]), threads=health)
    runtime.set_policy(default_policy())
    runtime.set_snapshot(empty_snapshot("cluster.local"))
    assert runtime.readiness()[0] is True
    for _ in range(supervise.FAILING_AFTER):
        health.crashed("events", "OSError: gone", healthy_run=False)
    health.restarted("events", time.monotonic())
    ready, details = runtime.readiness()
    assert ready is False
    assert details["threads"] == {"failing": {"events": "OSError: gone (3 failures in a row)"}}


def test_the_registry_publisher_goes_on_publishing_after_an_unforeseen_error() -> None:
    published: list[Snapshot] = []
    store = RegistryStore(cluster_domain="cluster.local", on_snapshot=published.append)
    faults = [RuntimeError("injected into the publisher")]

    def ready() -> bool:  # asked by the publisher's loop before each publish
        if faults:
            raise faults.pop()
        return True

    before = supervise.HEALTH.crash_counts().get("registry-publisher", 0)
    store.start_publisher(ready)
    try:
        store.apply(make_service_entry("e0", "team-a", ["e0.example.com"]), source="files")
        wait_until(lambda: not faults, "the fault to strike")
        for n in range(1, 6):
            store.apply(
                make_service_entry(f"e{n}", "team-a", [f"e{n}.example.com"]), source="files"
            )
        wait_until(lambda: published and len(published[-1]) == 6, "all six entries published")
    finally:
        store.stop()
        store.join()
    assert supervise.HEALTH.crash_counts()["registry-publisher"] == before + 1
    assert (
        'seguard_thread_failures_total{thread="registry-publisher"}' in Metrics().render().decode()
    )


def test_readyz_answers_503_naming_the_thread_that_cannot_run(tmp_path: Path) -> None:
    health = supervise.Health()
    with running(tmp_path, threads=health) as live:
        url = f"http://127.0.0.1:{live.ops_port}/readyz"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        for _ in range(supervise.FAILING_AFTER):
            health.crashed("audit-writer", "OSError: disk gone", healthy_run=False)
        health.restarted("audit-writer", time.monotonic())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 503
        body = orjson.loads(refused.value.read())
        assert body["threads"]["failing"] == {
            "audit-writer": "OSError: disk gone (3 failures in a row)"
        }
