"""The admission endpoints (app.py): whatever breaks between the body and the answer denies the
request and writes a whole audit record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.factories import make_review, make_service_entry
from tests.live import running
from tests.test_server import REGISTRY
from webhook.app import JUDGES
from webhook.audit import AdmissionRecord


def test_an_internal_error_fails_closed_and_is_audited(tmp_path: Path) -> None:
    # Fault injection: the judge raises as a bug would. The answer must be a denial.
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    with running(tmp_path, snapshot=REGISTRY, judges={**JUDGES, "validate": broken}) as srv:
        review = make_review(
            make_service_entry("x", "team-c", ["free.example.com"]), uid="uid-fault"
        )
        status, body = srv.call("/validate", review)
        records = srv.audit_records()
    assert status == 200
    response = body["response"]
    assert response["uid"] == "uid-fault"
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    (record,) = [r for r in records if r["uid"] == "uid-fault"]
    assert [f["code"] for f in record["findings"]] == ["InternalError"]
    assert set(record) == set(AdmissionRecord.__annotations__)


def test_a_failure_after_the_judge_fails_closed_with_a_whole_record(tmp_path: Path) -> None:
    """What breaks after the decision (here, the events hook) still gives a denial and an audit
    record of the same shape as any other, with who asked and what."""

    def broken_events(*args: Any) -> None:
        raise RuntimeError("injected into the events hook")

    with running(tmp_path, snapshot=REGISTRY, on_denied=broken_events) as srv:
        review = make_review(
            make_service_entry("copy", "team-c", ["api.stripe.com"]), uid="uid-late", user="eve"
        )
        status, body = srv.call("/validate", review)
        records = [r for r in srv.audit_records() if r["uid"] == "uid-late"]
    assert status == 200
    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["code"] == 500
    (record,) = records
    assert set(record) == set(AdmissionRecord.__annotations__)
    assert record["user"] == "eve" and record["operation"] == "CREATE"
    assert record["hosts"] == ["api.stripe.com"] and record["mode"] == "Enforce"
    assert [f["code"] for f in record["findings"]] == ["InternalError"]
    assert record["policyGeneration"] == 1
