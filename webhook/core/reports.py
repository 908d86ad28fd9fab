"""The scan's findings as PolicyReports (pure): one ``wgpolicyk8s.io/v1alpha2`` PolicyReport per
namespace with violations, as Policy Reporter and other dashboards read them.

Each result is one finding on one ServiceEntry: the reason code is the rule, ``seguard`` the
policy and the source; a finding the namespace enforces (Deny in Enforce mode, not exempt) is a
``fail`` of high severity, anything else the webhook would let through (Warn, Audit, exempt) a
``warn`` of medium severity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from webhook.core.policy import Action, Mode
from webhook.core.scan import Violation

API_VERSION = "wgpolicyk8s.io/v1alpha2"
KIND = "PolicyReport"
NAME = "seguard"
SOURCE = "seguard"
# Set on every report seguard writes: the reports it replaces and removes are those, only.
MANAGED_BY = ("app.kubernetes.io/managed-by", "seguard")


def enforced(violation: Violation) -> bool:
    """Whether the webhook would refuse this today (what ``scan.denying`` counts)."""
    return (
        violation.finding.action is Action.DENY
        and violation.mode is Mode.ENFORCE
        and not violation.exempt
    )


def result_of(violation: Violation, *, at_seconds: int) -> dict[str, Any]:
    finding = violation.finding
    failed = enforced(violation)
    properties = {"host": finding.host, "action": str(finding.action), "mode": str(violation.mode)}
    if finding.owner is not None:
        owner = finding.owner
        properties["owner"] = f"{owner.kind} {owner.namespace}/{owner.name}"
    if violation.exempt:
        properties["exempt"] = "true"
    return {
        "policy": NAME,
        "rule": str(finding.code),
        "source": SOURCE,
        "category": "Service registry",
        "result": "fail" if failed else "warn",
        "severity": "high" if failed else "medium",
        "scored": True,
        "message": finding.message,
        "properties": properties,
        "resources": [
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "namespace": violation.namespace,
                "name": violation.name,
            }
        ],
        "timestamp": {"seconds": at_seconds, "nanos": 0},
    }


def reports(violations: Iterable[Violation], *, at_seconds: int) -> dict[str, dict[str, Any]]:
    """The PolicyReport of each namespace that has violations, by namespace."""
    results: dict[str, list[dict[str, Any]]] = {}
    for violation in violations:
        results.setdefault(violation.namespace, []).append(
            result_of(violation, at_seconds=at_seconds)
        )
    found = {}
    for namespace, items in results.items():
        summary = {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0}
        for item in items:
            summary[item["result"]] += 1
        found[namespace] = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": NAME,
                "namespace": namespace,
                "labels": {MANAGED_BY[0]: MANAGED_BY[1]},
            },
            "summary": summary,
            "results": items,
        }
    return found


def same_report(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two reports say the same, their results' timestamps aside: an unchanged report
    is not written again."""

    def plain(report: Mapping[str, Any]) -> tuple[Any, ...]:
        results = report.get("results") or []
        return (
            report.get("summary"),
            [
                {k: v for k, v in item.items() if k != "timestamp"}
                for item in results
                if isinstance(item, Mapping)
            ],
        )

    return plain(a) == plain(b)
