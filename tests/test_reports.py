"""The scan's findings as PolicyReports (core/reports.py): what each result says, by namespace."""

from __future__ import annotations

import pytest

from webhook.core import reports
from webhook.core.findings import Code, OwnerRef, finding_of
from webhook.core.policy import Action, Mode
from webhook.core.scan import Violation


def violation(
    namespace: str,
    name: str,
    *,
    action: Action = Action.DENY,
    mode: Mode = Mode.ENFORCE,
    exempt: bool = False,
    code: Code = Code.CONFLICT_SERVICE_ENTRY,
) -> Violation:
    owner = OwnerRef("ServiceEntry", "team-a", "early", "api.stripe.com", "*")
    finding = finding_of(code, "api.stripe.com", action, "held by team-a/early", owner)
    return Violation(namespace, name, "", finding, exempt=exempt, mode=mode)


@pytest.mark.parametrize(
    ("kwargs", "result", "severity"),
    [
        pytest.param({}, "fail", "high", id="a-deny-the-namespace-enforces"),
        pytest.param({"mode": Mode.AUDIT}, "warn", "medium", id="a-deny-in-audit-mode"),
        pytest.param({"mode": Mode.WARN}, "warn", "medium", id="a-deny-in-warn-mode"),
        pytest.param({"exempt": True}, "warn", "medium", id="an-exempt-namespace"),
        pytest.param({"action": Action.WARN}, "warn", "medium", id="a-warn-finding"),
    ],
)
def test_a_result_fails_only_what_the_webhook_would_refuse_today(
    kwargs: dict[str, object], result: str, severity: str
) -> None:
    found = reports.result_of(violation("team-b", "late", **kwargs), at_seconds=7)  # type: ignore[arg-type]
    assert (found["result"], found["severity"]) == (result, severity)
    assert found["rule"] == "ConflictServiceEntry" and found["policy"] == "seguard"
    assert found["properties"]["owner"] == "ServiceEntry team-a/early"
    assert found["timestamp"] == {"seconds": 7, "nanos": 0}


def test_one_report_per_namespace_with_its_summary() -> None:
    found = reports.reports(
        [
            violation("team-b", "late"),
            violation("team-b", "wide", action=Action.WARN, code=Code.WILDCARD_OVERLAP),
            violation("team-c", "copy", mode=Mode.AUDIT),
        ],
        at_seconds=1,
    )
    assert sorted(found) == ["team-b", "team-c"]
    assert found["team-b"]["summary"] == {"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 0}
    assert [r["resources"][0]["name"] for r in found["team-b"]["results"]] == ["late", "wide"]
    assert found["team-c"]["metadata"] == {
        "name": "seguard",
        "namespace": "team-c",
        "labels": {"app.kubernetes.io/managed-by": "seguard"},
    }


def test_a_report_that_only_got_older_is_the_same() -> None:
    one = reports.reports([violation("team-b", "late")], at_seconds=1)["team-b"]
    later = reports.reports([violation("team-b", "late")], at_seconds=999)["team-b"]
    other = reports.reports([violation("team-b", "copy")], at_seconds=1)["team-b"]
    assert reports.same_report(one, later)
    assert not reports.same_report(one, other)
