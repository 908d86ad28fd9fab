"""Kubernetes Warning Events for rejections, in the ServiceEntry's namespace (shell).

``kubectl get events -n NS`` then answers "why was my ServiceEntry refused" without access to the
webhook's logs. Sending never blocks or fails an admission: events go through a bounded queue to a
thread of their own, and what cannot be sent is counted and dropped. A CI loop that retries the
same bad apply cannot flood etcd: one event per ServiceEntry and reason code per window, whose
message counts the repeats, and a cap on events per second overall. Dry runs make no events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhook import logs, supervise
from webhook.core.admission import AdmissionRequest
from webhook.core.outcomes import DENIED
from webhook.core.review import Verdict
from webhook.kube import ClusterError, Transport

log = logging.getLogger("seguard.events")

# One event per (namespace, name, code) per minute: the first rejection is news, the next
# fifty of a retry loop are not.
WINDOW_S = 60.0
# Overall: a burst of 20, then 5 a second. Enough for a real spike of different objects.
BURST = 20
PER_SECOND = 5.0
QUEUE_SIZE = 1000
# The API server rejects an Event message over 1 KiB.
MESSAGE_MAX = 1024
REASON_MAX = 128


@dataclass(frozen=True, slots=True)
class PendingEvent:
    namespace: str
    name: str
    reason: str
    message: str
    api_version: str
    uid: str


class RateLimiter:
    """Per-key windows plus a token bucket for everything (pure: time is passed in)."""

    def __init__(
        self, *, window: float = WINDOW_S, burst: int = BURST, rate: float = PER_SECOND
    ) -> None:
        self.window = window
        self.burst = burst
        self.rate = rate
        self._tokens = float(burst)
        self._last = 0.0
        self._seen: dict[
            tuple[str, str, str], tuple[float, int]
        ] = {}  # key -> (sent at, suppressed)

    def admit(self, key: tuple[str, str, str], now: float) -> tuple[bool, int]:
        """Whether to send now, and how many repeats were suppressed since the last one."""
        sent_at, suppressed = self._seen.get(key, (-1e18, 0))
        if now - sent_at < self.window:
            self._seen[key] = (sent_at, suppressed + 1)
            return False, 0
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            self._seen[key] = (sent_at, suppressed + 1)
            return False, 0
        self._tokens -= 1.0
        self._seen[key] = (now, 0)
        if len(self._seen) > 10_000:  # forget windows long closed
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
        return True, suppressed


def denied_messages(verdict: Verdict) -> dict[str, list[str]]:
    """The messages of a denial's denied findings, by reason code, in order (pure)."""
    by_code: dict[str, list[str]] = {}
    for finding, outcome in zip(verdict.findings, verdict.outcomes, strict=True):
        if outcome == DENIED:
            by_code.setdefault(str(finding.code), []).append(finding.message)
    return by_code


def event_of(req: AdmissionRequest, code: str, messages: list[str]) -> PendingEvent:
    """The event for one reason code of a denial (pure)."""
    name = req.name or req.generate_name or "(unnamed)"
    api_version = f"{req.group}/{req.version}" if req.group else req.version
    text = "; ".join(messages)
    if len(text) > MESSAGE_MAX:
        text = text[: MESSAGE_MAX - 3] + "..."
    return PendingEvent(req.namespace, name, code[:REASON_MAX], text, api_version, req.uid)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(
        self,
        transport: Transport,
        *,
        on_dropped: Callable[[str], None] | None = None,
        on_sent: Callable[[], None] | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.limiter = limiter or RateLimiter()
        self._clock = clock
        self._on_dropped = on_dropped
        self._on_sent = on_sent
        self._queue: queue.Queue[tuple[PendingEvent, int] | None] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._instance = os.environ.get("POD_NAME") or socket.gethostname()
        self._thread = supervise.thread("events", self._run)
        self.sent = 0
        self._reported = ""

    def __call__(self, req: AdmissionRequest, verdict: Verdict) -> None:
        """Called on the hot path for each real denial: only queue, never wait."""
        if req.dry_run:
            return
        # The limit first: a retry loop's repeats are dropped before any event is built (the
        # message, the dataclass), which would cost more than the decision itself.
        name = req.name or req.generate_name or "(unnamed)"
        for code, messages in denied_messages(verdict).items():
            repeats = self._admitted((req.namespace, name, code[:REASON_MAX]))
            if repeats is not None:
                self._enqueue(event_of(req, code, messages), repeats)

    def record(self, event: PendingEvent) -> None:
        """Queue one event, unless the rate limit drops it; never waits.

        The limit is applied here, not in the sending thread: a retry loop's repeats are
        dropped with a dictionary lookup and never wake that thread, which would take the GIL
        from the event loop once per denial."""
        repeats = self._admitted((event.namespace, event.name, event.reason))
        if repeats is not None:
            self._enqueue(event, repeats)

    def _admitted(self, key: tuple[str, str, str]) -> int | None:
        """The repeats suppressed since the last event for ``key``, or None (and counted as
        dropped) when the rate limit holds this one back."""
        with self._lock:
            send, repeats = self.limiter.admit(key, self._clock())
        if not send:
            self._dropped("rate limited")
            return None
        return repeats

    def _enqueue(self, event: PendingEvent, repeats: int) -> None:
        try:
            self._queue.put_nowait((event, repeats))
        except queue.Full:
            self._dropped("queue full")

    def _dropped(self, why: str) -> None:
        if self._on_dropped is not None:
            self._on_dropped(why)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, repeats = item
            try:
                self.send(event, repeats)
                self.sent += 1
                if self._on_sent is not None:
                    self._on_sent()
                self._reported = ""
            except ClusterError as exc:
                self._dropped("api error")
                if str(exc) != self._reported:
                    self._reported = str(exc)
                    log.warning(
                        "could not record a Warning event (%s); admissions are unaffected",
                        exc,
                        extra=logs.fields("events.failed"),
                    )

    def send(self, event: PendingEvent, repeats: int = 0) -> None:
        message = event.message
        if repeats:
            message = f"{message} (and {repeats} more time(s) in the last minute)"[:MESSAGE_MAX]
        now = _now()
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{event.name}.", "namespace": event.namespace},
            "involvedObject": {
                "apiVersion": event.api_version,
                "kind": "ServiceEntry",
                "namespace": event.namespace,
                "name": event.name,
            },
            "reason": event.reason,
            "message": message,
            "type": "Warning",
            "count": 1 + repeats,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": "seguard"},
            "reportingComponent": "seguard.io/webhook",
            "reportingInstance": self._instance,
        }
        self.transport.call(
            "POST",
            f"/api/v1/namespaces/{event.namespace}/events",
            verb="create",
            what="events",
            where=f"in namespace {event.namespace}",
            body=body,
        )
