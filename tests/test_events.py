"""Kubernetes Warning Events for rejections: right content, rate-limited, never in the way."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import make_review, make_service_entry, make_snapshot
from tests.fakeapi import Cluster, FakeApiServer
from tests.live import running
from webhook import kube
from webhook.events import EventRecorder, RateLimiter
from webhook.metrics import Metrics

PATIENCE_S = 20.0
REGISTRY = make_snapshot(make_service_entry("stripe", "team-a", ["api.stripe.com"]))


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeApiServer, kube.Transport]]:
    server = FakeApiServer(Cluster())
    server.start()
    yield server, kube.connect(server.kubeconfig(tmp_path / "kc"))
    server.stop()


@contextlib.contextmanager
def recording(transport: kube.Transport) -> Iterator[tuple[EventRecorder, list[str]]]:
    """A started recorder and the reasons of the events it dropped; stopped afterwards."""
    dropped: list[str] = []
    recorder = EventRecorder(transport, on_dropped=dropped.append)
    recorder.start()
    try:
        yield recorder, dropped
    finally:
        recorder.stop()
        recorder.join()


def wait_for_events(cluster: Cluster, count: int) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while len(cluster.posted_events) < count and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("events", "window", "expected"),
    [
        pytest.param(
            [("a", 0.0), ("a", 1.0), ("a", 59.0)],
            60.0,
            [(True, 0), (False, 0), (False, 0)],
            id="repeats-inside-the-window-are-held-back",
        ),
        pytest.param(
            [("a", 0.0), ("a", 1.0), ("a", 61.0)],
            60.0,
            [(True, 0), (False, 0), (True, 1)],
            id="after-the-window-one-event-counts-the-repeats",
        ),
        pytest.param(
            [("a", 0.0), ("b", 0.0)],
            60.0,
            [(True, 0), (True, 0)],
            id="different-objects-are-not-limited-together",
        ),
    ],
)
def test_rate_limiter(
    events: list[tuple[str, float]], window: float, expected: list[tuple[bool, int]]
) -> None:
    limiter = RateLimiter(window=window, burst=10, rate=1.0)
    assert [limiter.admit(("ns", name, "Code"), now) for name, now in events] == expected


def test_the_global_bucket_caps_a_burst_of_different_objects() -> None:
    limiter = RateLimiter(window=60.0, burst=5, rate=1.0)
    sent = [limiter.admit(("ns", f"o{i}", "Code"), 0.0)[0] for i in range(20)]
    assert sent.count(True) == 5
    assert limiter.admit(("ns", "late", "Code"), 1.0)[0] is True  # one token back after a second


def test_a_rejection_leaves_a_warning_event_on_the_service_entry(
    fake: tuple[FakeApiServer, kube.Transport], tmp_path: Path
) -> None:
    server, transport = fake
    recorder = EventRecorder(transport)
    recorder.start()
    try:
        with running(tmp_path / "w", snapshot=REGISTRY, on_denied=recorder) as live:
            _, body = live.call(
                "/validate", make_review(make_service_entry("copy", "team-b", ["api.stripe.com"]))
            )
            assert body["response"]["allowed"] is False
            wait_for_events(server.cluster, 1)
    finally:
        recorder.stop()
        recorder.join()
    [event] = server.cluster.posted_events
    assert event["type"] == "Warning"
    assert event["reason"] == "ConflictServiceEntry"
    assert "team-a/stripe" in event["message"]
    assert event["involvedObject"] == {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "namespace": "team-b",
        "name": "copy",
    }
    assert event["metadata"]["namespace"] == "team-b"


def test_dry_runs_and_allowed_requests_make_no_event(
    fake: tuple[FakeApiServer, kube.Transport], tmp_path: Path
) -> None:
    server, transport = fake
    recorder = EventRecorder(transport)
    recorder.start()
    try:
        with running(tmp_path / "w", snapshot=REGISTRY, on_denied=recorder) as live:
            live.call(
                "/validate",
                make_review(make_service_entry("copy", "team-b", ["api.stripe.com"]), dry_run=True),
            )
            live.call(
                "/validate", make_review(make_service_entry("ok", "team-b", ["ok.example.com"]))
            )
            # A marker event proves the queue was drained past the two requests above.
            live.call(
                "/validate", make_review(make_service_entry("marker", "team-m", ["api.stripe.com"]))
            )
            wait_for_events(server.cluster, 1)
    finally:
        recorder.stop()
        recorder.join()
    assert [e["involvedObject"]["name"] for e in server.cluster.posted_events] == ["marker"]


def test_a_retry_loop_cannot_flood_etcd(
    fake: tuple[FakeApiServer, kube.Transport], tmp_path: Path
) -> None:
    server, transport = fake
    with (
        recording(transport) as (recorder, dropped),
        running(tmp_path / "w", snapshot=REGISTRY, on_denied=recorder) as live,
    ):
        for _ in range(50):
            live.call(
                "/validate",
                make_review(make_service_entry("copy", "team-b", ["api.stripe.com"])),
            )
        deadline = time.monotonic() + PATIENCE_S
        while len(dropped) < 49 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(server.cluster.posted_events) == 1
    assert dropped.count("rate limited") == 49


def test_a_failing_event_api_never_fails_the_admission(
    fake: tuple[FakeApiServer, kube.Transport], tmp_path: Path
) -> None:
    server, transport = fake
    server.cluster.forbid_events = True
    with (
        recording(transport) as (recorder, dropped),
        running(tmp_path / "w", snapshot=REGISTRY, on_denied=recorder) as live,
    ):
        status, body = live.call(
            "/validate", make_review(make_service_entry("copy", "team-b", ["api.stripe.com"]))
        )
        deadline = time.monotonic() + PATIENCE_S
        while not dropped and time.monotonic() < deadline:
            time.sleep(0.02)
    assert status == 200
    assert body["response"]["allowed"] is False
    assert dropped == ["api error"]


def test_dropped_events_are_counted_by_reason_in_the_metrics() -> None:
    metrics = Metrics()
    for why in ("rate limited", "rate limited", "queue full"):
        metrics.event_dropped(why)
    text = metrics.render().decode()
    assert 'seguard_events_dropped_total{reason="rate limited"} 2.0' in text
    assert 'seguard_events_dropped_total{reason="queue full"} 1.0' in text


def test_each_reason_code_of_a_denial_is_limited_on_its_own(
    fake: tuple[FakeApiServer, kube.Transport], tmp_path: Path
) -> None:
    # One ServiceEntry denied for two reasons, twice: the first denial sends one event per
    # code; the repeat is dropped once per code, and builds no event at all.
    server, transport = fake
    entry = make_service_entry("copy", "team-b", ["api.stripe.com", "*.com"])
    with (
        recording(transport) as (recorder, dropped),
        running(tmp_path / "w", snapshot=REGISTRY, on_denied=recorder) as live,
    ):
        for _ in range(2):
            live.call("/validate", make_review(entry))
        wait_for_events(server.cluster, 2)
    reasons = sorted(e["reason"] for e in server.cluster.posted_events)
    assert reasons == ["ConflictServiceEntry", "WildcardTooBroad"]
    assert dropped == ["rate limited", "rate limited"]
