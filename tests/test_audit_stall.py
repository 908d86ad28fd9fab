"""A stalled audit sink (standard output that nobody reads), over the real server: decisions are
answered within the audit deadline, the queue is bounded, and readiness and the metrics say so."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.factories import make_review, make_service_entry, make_snapshot
from tests.live import LiveServer, running
from webhook.audit import LATE, AuditLog, StreamSink, policy_rejected_record, timestamp

PATIENCE_S = 30.0
REGISTRY = make_snapshot(make_service_entry("stripe", "team-a", ["api.stripe.com"]))


class StalledPipe:
    """A pipe whose reader reads nothing until told to: writes to it block, as standard output
    does when the container's log reader stops."""

    def __init__(self) -> None:
        self.read_fd, write_fd = os.pipe()
        flags = fcntl.fcntl(write_fd, fcntl.F_GETFL)
        fcntl.fcntl(write_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        with contextlib.suppress(BlockingIOError):
            while True:  # fill it: the next write blocks
                os.write(write_fd, b" " * 65536)
        fcntl.fcntl(write_fd, fcntl.F_SETFL, flags)
        self.stream = os.fdopen(write_fd, "wb", buffering=0)
        self.drained = bytearray()
        self.reader: threading.Thread | None = None

    def drain(self) -> None:
        """Start reading (the log reader is back)."""

        def read() -> None:
            while chunk := os.read(self.read_fd, 65536):
                self.drained.extend(chunk)

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()


@pytest.fixture
def pipe() -> Iterator[StalledPipe]:
    stalled = StalledPipe()
    yield stalled
    if stalled.reader is None:
        stalled.drain()  # let a writer still blocked on it finish
    stalled.stream.close()
    if stalled.reader is not None:
        stalled.reader.join(PATIENCE_S)
    os.close(stalled.read_fd)


def validate(live: LiveServer, name: str, hosts: list[str]) -> dict[str, Any]:
    status, body = live.call(
        "/validate", make_review(make_service_entry(name, "team-b", hosts), uid=f"uid-{name}")
    )
    assert status == 200
    response: dict[str, Any] = body["response"]
    return response


def stalled_records(live: LiveServer, reason: str) -> float:
    value = live.runtime.metrics.registry.get_sample_value(
        "seguard_audit_stalled_records_total", {"reason": reason}
    )
    return value or 0.0


def readyz(live: LiveServer) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{live.ops_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_a_stalled_sink_holds_no_decision_and_its_records_come_later(
    tmp_path: Path, pipe: StalledPipe
) -> None:
    with running(
        tmp_path, snapshot=REGISTRY, extra_sinks=[StreamSink(pipe.stream)], audit_deadline_s=0.3
    ) as live:
        denied = validate(live, "dup", ["api.stripe.com"])  # the writer blocks on this one
        assert denied["allowed"] is False and "ConflictServiceEntry" in denied["status"]["message"]
        assert stalled_records(live, "timeout") == 1
        status, ready = readyz(live)
        assert status == 503
        assert ready["audit"]["pending"] == 1 and "waiting" in ready["audit"]["stalled"]
        # Another decision meanwhile is answered too, as decided.
        assert validate(live, "free", ["api.example.com"])["allowed"] is True
        pipe.drain()  # the log reader is back: the records queued are written, none lost
        deadline = time.monotonic() + PATIENCE_S
        while b"uid-dup" not in pipe.drained or readyz(live)[0] != 200:
            assert time.monotonic() < deadline, "the stalled record was never written"
            time.sleep(0.02)
        assert live.runtime.audit.pending == 0
        assert [r["uid"] for r in live.audit_records()] == ["uid-dup"]


def test_with_the_queue_full_an_allow_fails_closed_and_a_denial_stays_one(
    tmp_path: Path, pipe: StalledPipe
) -> None:
    with running(
        tmp_path,
        snapshot=REGISTRY,
        extra_sinks=[StreamSink(pipe.stream)],
        audit_deadline_s=0.2,
        audit_max_pending=1,
    ) as live:
        # A partial wildcard is a warning: allowed, with a record. The first one waits for the
        # stalled writer until the deadline, then is answered as decided.
        first = validate(live, "first", ["*api.example.com"])
        assert first["allowed"] is True
        assert live.runtime.audit.pending == 1
        # The queue is full: the next record cannot be kept, so the allow fails closed.
        second = validate(live, "second", ["*api.example.com"])
        assert second["allowed"] is False
        assert second["status"]["reason"] == "AuditUnavailable"
        assert "[AuditUnavailable]" in second["status"]["message"]
        denial = validate(live, "dup", ["api.stripe.com"])
        assert denial["allowed"] is False and "ConflictServiceEntry" in denial["status"]["message"]
        assert stalled_records(live, "queue_full") == 2
        assert "records wait" in readyz(live)[1]["audit"]["stalled"]
        # A clean allow has no record to keep: the stall does not touch it.
        assert validate(live, "clean", ["api.example.com"])["allowed"] is True
        pipe.drain()
        deadline = time.monotonic() + PATIENCE_S
        while readyz(live)[0] != 200:
            assert time.monotonic() < deadline, "never ready again"
            time.sleep(0.02)
        assert validate(live, "third", ["*api.example.com"])["allowed"] is True


def test_closing_with_a_stalled_sink_does_not_hang(
    pipe: StalledPipe, caplog: pytest.LogCaptureFixture
) -> None:
    log = AuditLog([StreamSink(pipe.stream)], deadline_s=0.1, close_wait_s=0.2)
    log.start()

    async def write() -> str:
        record = policy_rejected_record("p.yaml", "bad", policy_generation=1, at=timestamp())
        return await log.write_async(record)

    assert asyncio.run(write()) == LATE
    log.close()  # returns: the blocked writer is left behind, and said so
    assert "still blocked on a sink" in caplog.text and "1 record(s)" in caplog.text
