"""Audit records: their schema, the append-only file, and reading them back."""

from __future__ import annotations

import fcntl
import io
import os
import stat
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from tests.factories import make_policy, make_request, make_service_entry, make_snapshot
from webhook.audit import (
    SCHEMA_VERSION,
    AdmissionRecord,
    AuditLog,
    FileSink,
    Query,
    StreamSink,
    admission_record,
    parse_since,
    policy_rejected_record,
    read_records,
    should_record,
    timestamp,
)
from webhook.core import review

REGISTRY = make_snapshot(make_service_entry("stripe", "team-a", ["api.stripe.com"]))
WHEN = datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)


def denied_record() -> AdmissionRecord:
    req = make_request(
        make_service_entry("copy", "team-b", ["api.stripe.com"]),
        user="bob",
        groups=["devs"],
        dry_run=True,
        version="v1beta1",
    )
    verdict = review.validate(req, policy=make_policy(), snapshot=REGISTRY)
    return admission_record(
        req, verdict, webhook="validate", policy_generation=4, at=timestamp(WHEN)
    )


def test_a_denial_record_answers_who_what_when_and_why() -> None:
    record = denied_record()
    assert record == {
        "schemaVersion": SCHEMA_VERSION,
        "event": "admission.decision",
        "level": "warning",
        "time": "2026-11-23T10:00:00.123Z",
        "webhook": "validate",
        "uid": "6f1c2d3e-0000-4000-8000-000000000001",
        "operation": "CREATE",
        "dryRun": True,
        "user": "bob",
        "groups": ["devs"],
        "namespace": "team-b",
        "name": "copy",
        "kind": "ServiceEntry",
        "version": "v1beta1",
        "hosts": ["api.stripe.com"],
        "decision": "denied",
        "mode": "Enforce",
        "exemption": None,
        "findings": [
            {
                "code": "ConflictServiceEntry",
                "host": "api.stripe.com",
                "action": "Deny",
                "outcome": "denied",
                "message": record["findings"][0]["message"],
                "owner": {
                    "kind": "ServiceEntry",
                    "namespace": "team-a",
                    "name": "stripe",
                    "host": "api.stripe.com",
                    "exportTo": "*",
                },
            }
        ],
        "policyGeneration": 4,
    }


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(WHEN, "2026-11-23T10:00:00.123Z", id="utc-to-the-millisecond"),
        pytest.param(
            datetime(2026, 11, 23, 12, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-23T10:00:00.999Z",
            id="another-zone-is-written-in-utc",
        ),
    ],
)
def test_timestamps_are_utc_with_milliseconds(moment: datetime, expected: str) -> None:
    assert timestamp(moment) == expected


def test_the_current_timestamp_is_now_and_moves_within_a_second() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    first = timestamp()
    time.sleep(0.002)
    second = timestamp()
    after = datetime.now(UTC)
    for stamp in (first, second):
        assert len(stamp) == len("2026-11-23T10:00:00.123Z") and stamp.endswith("Z")
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert before <= moment <= after
    assert first < second  # the cached second still gets fresh milliseconds


def test_clean_allows_are_recorded_only_when_the_policy_asks() -> None:
    req = make_request(make_service_entry("free", "team-b", ["free.example.com"]))
    quiet = review.validate(req, policy=make_policy(), snapshot=REGISTRY)
    loud = review.validate(
        req, policy=make_policy(audit={"recordAllowed": True}), snapshot=REGISTRY
    )
    assert not should_record(quiet)
    assert should_record(loud)


def test_the_file_sink_appends_and_keeps_earlier_records(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "seguard.log"
    for n in range(2):
        log = AuditLog([FileSink(str(path))])
        log.write(policy_rejected_record("p.yaml", "bad", policy_generation=n, at=timestamp()))
        log.close()
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line)["policyGeneration"] for line in lines] == [0, 1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_failing_sink_does_not_stop_the_others_and_is_counted(tmp_path: Path) -> None:
    class Broken:
        name = "broken"

        def write(self, line: bytes) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            pass

    failures: list[str] = []
    stream = io.BytesIO()
    log = AuditLog([Broken(), StreamSink(stream)], on_failure=failures.append)
    record = policy_rejected_record("p.yaml", "bad", policy_generation=1, at=timestamp())
    assert log.write(record) is False
    assert failures == ["broken"]
    assert stream.getvalue() == orjson.dumps(record) + b"\n"


def test_reading_back_skips_a_torn_last_line() -> None:
    lines = [orjson.dumps(denied_record()), b'{"schemaVersion":1,"event":"admission.dec']
    assert [r["name"] for r in read_records(lines)] == ["copy"]


def _open_flags(path: Path) -> list[int]:
    """The status flags of every descriptor this process holds on ``path`` (Linux)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(fcntl.fcntl(int(fd), fcntl.F_GETFL))
        except OSError:
            continue
    return found


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and hasattr(os, "O_DSYNC")),
    reason="descriptor flags are read from /proc",
)
@pytest.mark.parametrize("fsync", [True, False])
def test_the_file_sink_writes_synchronously_unless_told_not_to(tmp_path: Path, fsync: bool) -> None:
    path = tmp_path / "audit.log"
    sink = FileSink(str(path), fsync=fsync, max_bytes=200)
    try:
        for n in range(5):  # past max_bytes: the file after rotation must be opened the same way
            sink.write(orjson.dumps({"n": n, "pad": "x" * 60}) + b"\n")
        assert (tmp_path / "audit.log.1").exists()
        flags = _open_flags(path)
        assert len(flags) == 1
        assert bool(flags[0] & os.O_DSYNC) is fsync
        assert flags[0] & os.O_APPEND
    finally:
        sink.close()
    assert _open_flags(path) == []


def test_a_query_matches_when_every_filter_given_matches() -> None:
    record = denied_record()
    assert Query().matches(record)
    assert Query(namespace="team-b", user="bob", decision="denied").matches(record)
    assert Query(code="ConflictServiceEntry", event="admission.decision").matches(record)
    assert not Query(namespace="team-a").matches(record)
    assert not Query(code="HostDenied").matches(record)
    assert Query(since=WHEN - timedelta(seconds=1)).matches(record)
    assert not Query(since=WHEN + timedelta(seconds=1)).matches(record)
    assert not Query(since=WHEN).matches({**record, "time": "yesterday"})


def test_since_reads_a_duration_or_a_time_and_refuses_the_rest() -> None:
    assert parse_since("90m", WHEN) == WHEN - timedelta(minutes=90)
    assert parse_since("2026-11-23T09:00:00Z", WHEN) == WHEN - timedelta(
        hours=1, microseconds=123000
    )
    with pytest.raises(ValueError, match="expected a duration such as 30m"):
        parse_since("soon", WHEN)
