"""Readiness: what takes a replica out of the Service, and what /readyz says of it."""

from __future__ import annotations

import pytest

from tests.factories import empty_snapshot
from webhook.audit import AuditLog
from webhook.core.policyfile import default_policy
from webhook.runtime import Runtime


def ready_runtime(**staleness: float) -> Runtime:
    runtime = Runtime(audit=AuditLog([]))
    runtime.set_policy(default_policy())
    runtime.set_snapshot(empty_snapshot("cluster.local"))
    runtime.syncs = dict.fromkeys(("Namespace", "Service", "ServiceEntry"), True)
    runtime.registry_staleness = lambda: staleness
    return runtime


@pytest.mark.parametrize(
    ("staleness", "ready", "stale"),
    [
        pytest.param({"Service": 0.0, "ServiceEntry": 0.0}, True, [], id="every-watch-open"),
        pytest.param({"Service": 119.0, "ServiceEntry": 0.0}, True, [], id="behind-less-than-the-bound"),
        pytest.param({"Service": 121.0, "ServiceEntry": 0.0}, False, ["Service"], id="behind-more-than-the-bound"),
    ],
)  # fmt: skip
def test_a_registry_behind_the_cluster_past_the_bound_is_unready(
    staleness: dict[str, float], ready: bool, stale: list[str]
) -> None:
    runtime = ready_runtime(**staleness)
    is_ready, details = runtime.readiness()
    assert is_ready is ready
    registry = details["registry"]
    assert isinstance(registry, dict)
    assert registry["stale"] == stale
    assert registry["staleness"] == {kind: round(age, 1) for kind, age in staleness.items()}


def test_before_the_first_list_the_staleness_is_unknown_not_a_number() -> None:
    runtime = ready_runtime(Service=float("inf"))
    runtime.syncs["Service"] = False
    is_ready, details = runtime.readiness()
    assert is_ready is False  # not synced yet
    registry = details["registry"]
    assert isinstance(registry, dict)
    assert registry["staleness"] == {"Service": None}  # JSON has no infinity
