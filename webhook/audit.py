"""The audit trail: one JSON record per judged request with findings, and its sinks (shell).

``admission_record`` is pure: it builds the record from the request and the verdict. The sinks
write it as one line, before the response leaves: standard output by default, and an
append-only file with ``--audit-file``. A sink that fails never changes the decision; the failure
is counted and the record goes to standard error instead, so nothing is lost silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypedDict

import orjson

from webhook import logs, supervise
from webhook.core.admission import AdmissionRequest
from webhook.core.outcomes import DENIED
from webhook.core.review import Verdict
from webhook.core.scan import Violation

SCHEMA_VERSION = 1
EVENT_ADMISSION = "admission.decision"
EVENT_POLICY_REJECTED = "policy.rejected"
EVENT_SCAN_VIOLATION = "scan.violation"
EVENTS = (EVENT_ADMISSION, EVENT_POLICY_REJECTED, EVENT_SCAN_VIOLATION)

log = logging.getLogger("seguard.audit")


# The formatted second of the last timestamp: every denial is stamped, and formatting a datetime
# costs about 2 µs where reusing the second's text and adding the milliseconds costs 0.4.
# One cell holding a (second, text) pair, replaced whole: safe from any thread.
_second: list[tuple[int, str]] = [(-1, "")]


def timestamp(now: datetime | None = None) -> str:
    """UTC, to the millisecond: 2026-12-01T21:40:11.123Z."""
    if now is not None:
        return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    moment = time.time()
    whole = int(moment)
    cached = _second[0]
    if cached[0] != whole:
        cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        _second[0] = cached
    return f"{cached[1]}.{int((moment - whole) * 1000):03d}Z"


def _raw_hosts(obj: Mapping[str, Any] | None) -> list[str]:
    spec = obj.get("spec") if obj else None
    hosts = spec.get("hosts") if isinstance(spec, dict) else None
    if not isinstance(hosts, list):
        return []
    # Bounded: a hostile request may carry thousands; the findings name the ones that matter.
    return [h if isinstance(h, str) else repr(h) for h in hosts[:256]]


class AdmissionRecord(TypedDict):
    """One decision (DESIGN.md section 7): ``event`` is ``admission.decision``."""

    schemaVersion: int
    event: str
    level: str  # as a log line's: info, warning or error
    time: str
    webhook: str
    uid: str
    operation: str
    dryRun: bool
    user: str
    groups: list[str]
    namespace: str
    name: str
    kind: str
    version: str
    hosts: list[str]
    decision: str
    mode: str | None
    exemption: str | None
    findings: list[dict[str, object]]
    policyGeneration: int


class ScanViolationRecord(TypedDict):
    """One finding of the scan on an existing ServiceEntry: ``event`` is ``scan.violation``."""

    schemaVersion: int
    event: str
    level: str  # as a log line's: info, warning or error
    time: str
    namespace: str
    name: str
    created: str
    exempt: bool
    mode: str
    code: str
    host: str
    action: str
    message: str
    owner: dict[str, str] | None
    policyGeneration: int


class PolicyRejectedRecord(TypedDict):
    """A policy that was read and refused: ``event`` is ``policy.rejected``."""

    schemaVersion: int
    event: str
    level: str  # as a log line's: info, warning or error
    time: str
    file: str
    error: str
    policyGeneration: int


# Every record the trail holds is one of these, each built by its function below.
AuditRecord = AdmissionRecord | ScanViolationRecord | PolicyRejectedRecord


def admission_record(
    req: AdmissionRequest | None,
    verdict: Verdict,
    *,
    webhook: str,
    policy_generation: int,
    at: str,
    uid: str = "",
) -> AdmissionRecord:
    """The audit record of one decision, stamped ``at`` (see ``timestamp``). Pure. Without a
    request (it could not be read), the fields it would fill are empty and ``uid`` is used."""
    findings = [
        {**finding.as_dict(), "outcome": outcome}
        for finding, outcome in zip(verdict.findings, verdict.outcomes, strict=True)
    ]
    return {
        "schemaVersion": SCHEMA_VERSION,
        "event": EVENT_ADMISSION,
        "level": "warning" if verdict.result == DENIED else "info",
        "time": at,
        "webhook": webhook,
        "uid": req.uid if req else uid,
        "operation": req.operation if req else "",
        "dryRun": req.dry_run if req else False,
        "user": req.user if req else "",
        "groups": list(req.groups) if req else [],
        "namespace": req.namespace if req else "",
        "name": req.display_name if req else "",
        "kind": req.kind if req else "",
        "version": req.version if req else "",
        "hosts": _raw_hosts(req.object if req else None),
        "decision": verdict.result,
        "mode": str(verdict.mode) if verdict.mode else None,
        "exemption": verdict.exemption,
        "findings": findings,
        "policyGeneration": policy_generation,
    }


def failure_record(
    req: AdmissionRequest, message: str, *, webhook: str, policy_generation: int, at: str
) -> AdmissionRecord:
    """The record of a request denied because seguard failed while answering it: the same
    shape as any decision's, built by hand, since the code that failed may be what builds the
    others (``admission_record`` and the decision it reads)."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "event": EVENT_ADMISSION,
        "level": "error",
        "time": at,
        "webhook": webhook,
        "uid": req.uid,
        "operation": req.operation,
        "dryRun": req.dry_run,
        "user": req.user,
        "groups": list(req.groups),
        "namespace": req.namespace,
        "name": req.display_name,
        "kind": req.kind,
        "version": req.version,
        "hosts": _raw_hosts(req.object),
        "decision": DENIED,
        "mode": "Enforce",
        "exemption": None,
        "findings": [
            {
                "code": "InternalError",
                "host": "",
                "action": "Deny",
                "message": message,
                "owner": None,
                "outcome": DENIED,
            }
        ],
        "policyGeneration": policy_generation,
    }


def scan_violation_record(
    violation: Violation, *, policy_generation: int, at: str
) -> ScanViolationRecord:
    finding = violation.finding
    return {
        "schemaVersion": SCHEMA_VERSION,
        "event": EVENT_SCAN_VIOLATION,
        "level": "warning",
        "time": at,
        "namespace": violation.namespace,
        "name": violation.name,
        "created": violation.created,
        "exempt": violation.exempt,
        "mode": str(violation.mode),
        "code": str(finding.code),
        "host": finding.host,
        "action": str(finding.action),
        "message": finding.message,
        "owner": finding.owner.as_dict() if finding.owner else None,
        "policyGeneration": policy_generation,
    }


def policy_rejected_record(
    file: str, error: str, *, policy_generation: int, at: str
) -> PolicyRejectedRecord:
    return {
        "schemaVersion": SCHEMA_VERSION,
        "event": EVENT_POLICY_REJECTED,
        "level": "error",
        "time": at,
        "file": file,
        "error": error,
        "policyGeneration": policy_generation,
    }


def should_record(verdict: Verdict) -> bool:
    """Every decision with findings, and clean allows where the policy asks for them."""
    return bool(verdict.findings) or verdict.record_allowed


class Sink(Protocol):
    name: str

    def write(self, data: bytes) -> None:
        """Write whole lines (one record, or a batch of them), durably if the sink can."""

    def close(self) -> None: ...


class StreamSink:
    """Writes lines to a binary stream (standard output by default) and flushes them."""

    name = "stdout"

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._stream.write(data)
            self._stream.flush()

    def close(self) -> None:
        with self._lock:
            self._stream.flush()


_sync = getattr(os, "fdatasync", os.fsync)
# With O_DSYNC each write returns once its data is on disk (what write plus fdatasync does), in
# one system call: the writer thread gives up and takes back the GIL once per group, not twice.
_O_DSYNC = getattr(os, "O_DSYNC", 0)

# Rotate at 100 MiB and keep five old files: a day of denials in a busy cluster fits many times
# over, and the disk use stays bounded at 600 MiB.
ROTATE_BYTES = 100 * 1024 * 1024
ROTATE_KEEP = 5


class FileSink:
    """An append-only file: O_APPEND, fsync before returning, rotated by size.

    Rotation renames ``audit.log`` to ``audit.log.1`` (and ``.1`` to ``.2``, up to ``keep``) and
    starts a new file; ``seguard audit`` reads them all back in order.
    """

    name = "file"

    def __init__(
        self,
        path: str,
        *,
        fsync: bool = True,
        max_bytes: int = ROTATE_BYTES,
        keep: int = ROTATE_KEEP,
    ) -> None:
        self.path = path
        self._fsync = fsync
        self._max_bytes = max_bytes
        self._keep = keep
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self._end_torn_line()

    def _end_torn_line(self) -> None:
        """After a crash the file may end mid-record: close that line, so the next record is
        not glued to it (readers skip the torn line and keep the rest)."""
        if not self._size:
            return
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            last = handle.read(1)
        if last != b"\n":
            os.write(self._fd, b"\n")
            self._size += 1

    def _open(self) -> int:
        # 0600: records name users and groups.
        sync = _O_DSYNC if self._fsync else 0
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | sync, 0o600)

    def _rotate(self) -> None:
        os.close(self._fd)
        for index in range(self._keep - 1, 0, -1):
            older = f"{self.path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._fd = self._open()
        self._size = 0

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._size and self._size + len(data) > self._max_bytes:
                self._rotate()
            view = memoryview(data)
            while view:  # os.write may write less than asked
                written = os.write(self._fd, view)
                view = view[written:]
            self._size += len(data)
            if self._fsync and not _O_DSYNC:
                # fdatasync: the data and the size, without the timestamps fsync also writes.
                _sync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def rotated_files(path: str) -> list[str]:
    """The audit file and its rotated predecessors, oldest first."""
    found = []
    index = 1
    while os.path.exists(f"{path}.{index}"):
        found.append(f"{path}.{index}")
        index += 1
    found.reverse()
    if os.path.exists(path):
        found.append(path)
    return found


# The webhooks we install time out after 5 s (deploy/base/webhooks.yaml). A decision whose
# record is not durable within 2 s is answered without waiting longer (see AuditLog), which
# leaves the answer 3 s to reach the API server.
COMMIT_DEADLINE_S = 2.0
# Records handed to the writer and not yet written, at most: about 1 KB each, so 10 MB while a
# sink is stalled (a busy cluster's 1,000 denials a second fill it in 10 s). Beyond it a record
# is not kept: its decision fails closed and the API server's own audit log still has the
# answer's auditAnnotations.
MAX_PENDING = 10_000
# How long closing waits for the writer to finish what is queued: as long as a graceful stop
# waits for the requests in flight.
CLOSE_WAIT_S = 10.0
# What write_async says of a record.
COMMITTED, LATE, DROPPED = "committed", "late", "dropped"


class AuditLog:
    """Writes records to every sink before a response leaves.

    On the server (after ``start()``), records are committed in groups. The records of one
    event-loop iteration form a group, handed in one piece to a writer thread, which writes and
    syncs each group it finds waiting with one write and one fdatasync; the requests await their
    group's commit. The disk wait happens off the event loop, and under load one sync serves
    many denials.

    A sink that stalls (standard output nobody reads, a hung disk) never holds a decision past
    ``COMMIT_DEADLINE_S``: the group's wait ends there with False (not durable), its records
    stay queued and are written once the sink moves again, and ``on_stall(reason, count)``
    counts them. At most ``MAX_PENDING`` records wait; more are refused at once (False).
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        on_failure: Any = None,
        on_stall: Callable[[str, int], None] | None = None,
        deadline_s: float = COMMIT_DEADLINE_S,
        max_pending: int = MAX_PENDING,
        close_wait_s: float = CLOSE_WAIT_S,
    ) -> None:
        self.sinks = list(sinks)
        self.close_wait_s = close_wait_s
        self._on_failure = on_failure
        self._on_stall = on_stall
        self.deadline_s = deadline_s
        self.max_pending = max_pending
        self._group: list[tuple[bytes, asyncio.Future[bool]]] = []
        self._queue: queue.SimpleQueue[list[tuple[bytes, asyncio.Future[bool]]] | None] | None = (
            None
        )
        self._thread: threading.Thread | None = None
        # Records handed to the writer and not settled (counted on the event loop's thread).
        self.pending = 0
        # When the writer began the commit it is in (monotonic), or None while it waits.
        self._busy_since: float | None = None

    @property
    def stalled(self) -> str | None:
        """Why the audit trail is not keeping up, or None: the queue full, or a commit running
        past the deadline."""
        if self.pending >= self.max_pending:
            return f"{self.pending} records wait for the writer, the most that are kept"
        busy_since = self._busy_since
        if busy_since is not None and time.monotonic() - busy_since > self.deadline_s:
            return f"a write has been waiting {time.monotonic() - busy_since:.0f} s for a sink"
        return None

    def _commit(self, data: bytes) -> bool:
        ok = True
        for sink in self.sinks:
            try:
                sink.write(data)
            except Exception as exc:  # a sink must never break a decision
                ok = False
                if self._on_failure is not None:
                    self._on_failure(sink.name)
                log.error(
                    "audit sink %s failed (%s); records follow on stderr",
                    sink.name,
                    exc,
                    extra=logs.fields("audit.sink.failed", sink=sink.name),
                )
                sys.stderr.buffer.write(data)
                sys.stderr.flush()
        return ok

    def write(self, record: AuditRecord) -> bool:
        """Write one record to every sink now. Returns False when some sink failed."""
        return self._commit(orjson.dumps(record) + b"\n")

    async def write_async(self, record: AuditRecord) -> str:
        """Write one record durably before returning, committed with its group: COMMITTED once
        its group is (a sink that failed had its lines sent to standard error, and is
        counted); LATE when the commit ran past the deadline (the record stays queued and is
        written when the sink moves again); DROPPED when the queue is full (it is not kept)."""
        line = orjson.dumps(record) + b"\n"
        if self._queue is None:
            self._commit(line)
            return COMMITTED
        if self.pending + len(self._group) >= self.max_pending:
            self._stall("queue_full", 1)
            return DROPPED
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if not self._group:
            loop.call_soon(self._hand_off)
        self._group.append((line, future))
        return COMMITTED if await future else LATE

    def _hand_off(self) -> None:
        group, self._group = self._group, []
        if self._queue is None or not group:
            return
        futures = [future for _, future in group]
        self.pending += len(futures)
        # One timer per group, not per request.
        asyncio.get_running_loop().call_later(self.deadline_s, self._expire, futures)
        self._queue.put(group)

    def _expire(self, futures: list[asyncio.Future[bool]]) -> None:
        late = [future for future in futures if not future.done()]
        for future in late:
            future.set_result(False)
        if late:
            self._stall("timeout", len(late))

    def _stall(self, reason: str, count: int) -> None:
        if self._on_stall is not None:
            self._on_stall(reason, count)

    def _settled(self, futures: list[asyncio.Future[bool]]) -> None:
        self.pending -= len(futures)
        for future in futures:
            if not future.done():  # else it was answered at the deadline
                future.set_result(True)

    def start(self) -> None:
        """Commit in groups, from a writer thread (call it on the server, before serving)."""
        jobs: queue.SimpleQueue[list[tuple[bytes, asyncio.Future[bool]]] | None]
        self._queue = jobs = queue.SimpleQueue()
        self._thread = supervise.thread("audit-writer", lambda: self._writer(jobs))
        self._thread.start()

    def _writer(
        self, jobs: queue.SimpleQueue[list[tuple[bytes, asyncio.Future[bool]]] | None]
    ) -> None:
        """Commit groups until told to stop (``jobs`` is its own reference to the queue: close()
        may let go of it first)."""
        while True:
            group = jobs.get()
            if group is None:
                return
            # Groups that queued while the last sync ran share this one.
            while True:
                try:
                    more = jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    jobs.put(None)
                    break
                group.extend(more)
            self._busy_since = time.monotonic()
            try:
                self._commit(b"".join(line for line, _ in group))
            finally:
                self._busy_since = None
            futures = [future for _, future in group]
            # The loop is gone when this group outlived the server (written after a stall).
            with contextlib.suppress(RuntimeError):
                futures[0].get_loop().call_soon_threadsafe(self._settled, futures)

    def close(self) -> None:
        """Write what is queued, then close the sinks; a writer still blocked on a stalled sink
        after ``close_wait_s`` is left behind (the process is ending), never waited on."""
        if self._group and self._queue is not None:
            group, self._group = self._group, []
            self.pending += len(group)
            self._queue.put(group)
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join(self.close_wait_s)
            self._queue = None
            if self._thread.is_alive():
                log.error(
                    "the audit writer is still blocked on a sink after %g s; %d record(s) were "
                    "not written",
                    self.close_wait_s,
                    self.pending,
                    extra=logs.fields("audit.close.blocked", pending=self.pending),
                )
                return
        for sink in self.sinks:
            sink.close()


def open_audit_log(
    *,
    stdout: bool,
    file: str | None,
    on_failure: Any = None,
    on_stall: Callable[[str, int], None] | None = None,
    max_bytes: int = ROTATE_BYTES,
    keep: int = ROTATE_KEEP,
) -> AuditLog:
    sinks: list[Sink] = []
    if stdout:
        sinks.append(StreamSink())
    if file:
        sinks.append(FileSink(file, max_bytes=max_bytes, keep=keep))
    return AuditLog(sinks, on_failure=on_failure, on_stall=on_stall)


def parse_since(value: str, now: datetime) -> datetime:
    """``30s``, ``15m``, ``1h``, ``2d`` before now, or an RFC 3339 time."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return now - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {value!r}: expected a duration such as 30m, 1h, 2d, or an RFC 3339 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def trail_lines(path: str) -> Iterator[bytes]:
    """The lines of an audit file and of its rotated files, oldest first."""
    files = rotated_files(path)
    if not files:
        raise ValueError(f"{path}: no such audit file")
    for name in files:
        try:
            with open(name, "rb") as handle:
                yield from handle
        except OSError as exc:
            raise ValueError(f"cannot read {name}: {exc.strerror}") from None


@dataclass(frozen=True)
class Query:
    """Which records ``seguard audit`` shows: every filter given must match."""

    since: datetime | None = None
    namespace: str | None = None
    user: str | None = None
    decision: str | None = None
    event: str | None = None
    code: str | None = None

    def matches(self, record: Mapping[str, Any]) -> bool:
        if self.since is not None:
            when = record.get("time")
            if not isinstance(when, str):
                return False
            try:
                moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
            except ValueError:
                return False
            if moment < self.since:
                return False
        for key, wanted in (
            ("namespace", self.namespace),
            ("user", self.user),
            ("decision", self.decision),
            ("event", self.event),
        ):
            if wanted and record.get(key) != wanted:
                return False
        if self.code:
            findings = record.get("findings") or []
            codes = {f.get("code") for f in findings if isinstance(f, dict)}
            codes.add(record.get("code"))
            if self.code not in codes:
                return False
        return True


def read_records(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The audit records among ``lines``, one at a time: an audit file's lines, or a log
    pipeline's, such as ``kubectl logs`` of every replica, with or without ``--prefix``
    (``[pod/NAME/CONTAINER] ``) and ``--timestamps``. A torn line, a log line and anything
    else that is not an audit record is skipped."""
    for raw in lines:
        record = record_of(raw)
        if record is not None:
            yield record


# What may stand before a record on a log pipeline's line: kubectl's --prefix and --timestamps.
_LOG_PREFIX = re.compile(
    rb"\s*(?:\[[^\]\n]*\]\s*)?(?:\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)\s+)?"
)


def record_of(raw: bytes) -> dict[str, Any] | None:
    """The audit record on one line, or None."""
    start = raw.find(b"{")
    if start < 0:
        return None
    if start and _LOG_PREFIX.fullmatch(raw, 0, start) is None:
        return None
    try:
        record = orjson.loads(raw[start:])
    except orjson.JSONDecodeError:
        return None
    if isinstance(record, dict) and "schemaVersion" in record:
        return record
    return None
