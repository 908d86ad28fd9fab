"""The scan of existing ServiceEntries (pure): oldest owner wins, and what counts as denying."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import (
    make_policy,
    make_service,
    make_service_entry,
    make_snapshot,
)
from webhook.core.scan import denying, scan


def aged(name: str, namespace: str, hosts: list[str], created: str, **spec: Any) -> dict[str, Any]:
    return make_service_entry(
        name, namespace, hosts, metadata={"creationTimestamp": created}, **spec
    )


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        pytest.param(
            [
                aged("late", "team-b", ["api.stripe.com"], "2026-03-02T00:00:00Z"),
                aged("early", "team-a", ["api.stripe.com"], "2026-03-01T00:00:00Z"),
            ],
            [("team-b", "late", "ConflictServiceEntry", "team-a/early")],
            id="the-younger-of-two-owners-is-the-violation",
        ),
        pytest.param(
            [
                make_service("reviews", "bookinfo", creationTimestamp="2026-05-01T00:00:00Z"),
                aged("shadow", "team-b", ["reviews.bookinfo"], "2026-01-01T00:00:00Z"),
            ],
            [
                ("team-b", "shadow", "ReservedClusterDomain", "-"),
                ("team-b", "shadow", "ConflictKubernetesService", "bookinfo/reviews"),
            ],
            id="a-service-wins-even-when-it-came-later",
        ),
        pytest.param(
            [
                aged("a", "team-a", ["api.stripe.com"], "2026-03-01T00:00:00Z", exportTo=["."]),
                aged("b", "team-b", ["api.stripe.com"], "2026-03-02T00:00:00Z"),
            ],
            [],
            id="a-local-only-entry-contests-nothing",
        ),
        pytest.param(
            [aged("wide", "team-b", ["*.com"], "2026-03-02T00:00:00Z")],
            [("team-b", "wide", "WildcardTooBroad", "-")],
            id="policy-findings-are-reported-too",
        ),
    ],
)
def test_scan_judges_each_entry_against_its_elders(
    objects: list[dict[str, Any]], expected: list[tuple[str, str, str, str]]
) -> None:
    violations = scan(make_snapshot(*objects), make_policy())
    got = [
        (
            v.namespace,
            v.name,
            v.finding.code.value,
            f"{v.finding.owner.namespace}/{v.finding.owner.name}" if v.finding.owner else "-",
        )
        for v in violations
    ]
    assert got == expected


def test_exempt_namespaces_are_reported_but_not_counted_as_denying() -> None:
    snapshot = make_snapshot(
        aged("a", "team-a", ["x.example.com"], "2026-01-01T00:00:00Z"),
        aged("b", "istio-system", ["x.example.com"], "2026-02-01T00:00:00Z"),
    )
    violations = scan(snapshot, make_policy())
    assert [(v.name, v.exempt) for v in violations] == [("b", True)]
    assert denying(violations) == []


@pytest.mark.parametrize(
    ("spec", "denied"),
    [
        pytest.param({}, True, id="enforce-denies"),
        pytest.param({"mode": "Audit"}, False, id="audit-mode-only-reports"),
        pytest.param({"mode": "Warn"}, False, id="warn-mode-only-reports"),
        pytest.param({"mode": "Audit", "namespaces": [{"selector": {"names": ["team-b"]}, "mode": "Enforce"}]}, True, id="a-namespace-that-enforces-denies"),
    ],
)  # fmt: skip
def test_what_the_scan_counts_as_denying_follows_the_namespaces_mode(
    spec: dict[str, Any], denied: bool
) -> None:
    snapshot = make_snapshot(
        aged("a", "team-a", ["x.example.com"], "2026-01-01T00:00:00Z"),
        aged("b", "team-b", ["x.example.com"], "2026-02-01T00:00:00Z"),
    )
    violations = scan(snapshot, make_policy(**spec))
    assert [(v.name, v.finding.code.value) for v in violations] == [("b", "ConflictServiceEntry")]
    assert bool(denying(violations)) is denied
