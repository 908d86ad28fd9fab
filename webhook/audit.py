"""The audit trail: one JSON record per judged request with findings, and its sinks (shell).

``admission_record`` is pure: it builds the record from the request and the verdict. The sinks
write it as one line, before the response leaves: standard output by default, and an
append-only file with ``--audit-file``. A sink that fails never changes the decision; the failure
is counted and the record goes to standard error instead, so nothing is lost silently.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from webhook.admission import AdmissionRequest
from webhook.review import Verdict

SCHEMA_VERSION = 1
EVENT_ADMISSION = "admission.decision"
EVENT_POLICY_REJECTED = "policy.rejected"

log = logging.getLogger("seguard.audit")


def timestamp(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _raw_hosts(obj: Mapping[str, Any] | None) -> list[str]:
    spec = obj.get("spec") if obj else None
    hosts = spec.get("hosts") if isinstance(spec, dict) else None
    if not isinstance(hosts, list):
        return []
    # Bounded: a hostile request may carry thousands; the findings name the ones that matter.
    return [h if isinstance(h, str) else repr(h) for h in hosts[:256]]


def admission_record(
    req: AdmissionRequest | None,
    verdict: Verdict,
    *,
    webhook: str,
    policy_generation: int,
    now: datetime | None = None,
    uid: str = "",
) -> dict[str, Any]:
    """The audit record of one decision (DESIGN.md section 7). Pure."""
    findings = [
        {**finding.as_dict(), "outcome": outcome}
        for finding, outcome in zip(verdict.findings, verdict.outcomes, strict=True)
    ]
    return {
        "schemaVersion": SCHEMA_VERSION,
        "event": EVENT_ADMISSION,
        "time": timestamp(now),
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
        "mode": verdict.mode.value if verdict.mode else None,
        "exemption": verdict.exemption,
        "findings": findings,
        "policyGeneration": policy_generation,
    }


def should_record(verdict: Verdict) -> bool:
    """Every decision with findings, and clean allows where the policy asks for them."""
    return bool(verdict.findings) or verdict.record_allowed


class Sink(Protocol):
    name: str

    def write(self, line: bytes) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """Writes lines to a binary stream (standard output by default) and flushes each one."""

    name = "stdout"

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._lock = threading.Lock()

    def write(self, line: bytes) -> None:
        with self._lock:
            self._stream.write(line)
            self._stream.flush()

    def close(self) -> None:
        with self._lock:
            self._stream.flush()


class FileSink:
    """An append-only file: O_APPEND, one write per record, fsync before returning."""

    name = "file"

    def __init__(self, path: str, *, fsync: bool = True) -> None:
        self.path = path
        self._fsync = fsync
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        # 0600: records name users and groups.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()

    def write(self, line: bytes) -> None:
        with self._lock:
            os.write(self._fd, line)
            if self._fsync:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class AuditLog:
    def __init__(self, sinks: Sequence[Sink], *, on_failure: Any = None) -> None:
        self.sinks = list(sinks)
        self._on_failure = on_failure

    def write(self, record: Mapping[str, Any]) -> bool:
        """Write one record to every sink. Returns False when some sink failed."""
        line = orjson.dumps(record) + b"\n"
        ok = True
        for sink in self.sinks:
            try:
                sink.write(line)
            except Exception as exc:  # a sink must never break a decision
                ok = False
                if self._on_failure is not None:
                    self._on_failure(sink.name)
                log.error("audit sink %s failed (%s); record follows on stderr", sink.name, exc)
                sys.stderr.buffer.write(line)
                sys.stderr.flush()
        return ok

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def open_audit_log(*, stdout: bool, file: str | None, on_failure: Any = None) -> AuditLog:
    sinks: list[Sink] = []
    if stdout:
        sinks.append(StreamSink())
    if file:
        sinks.append(FileSink(file))
    return AuditLog(sinks, on_failure=on_failure)


def read_records(lines: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    """Parse audit lines, skipping a torn or foreign line instead of failing."""
    for raw in lines:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and "schemaVersion" in record:
            yield record
