"""The ServiceEntryPolicy resource against a real kube-apiserver: the CRD installs and `kubectl
explain` knows its fields; a bad edit is refused by the API server's schema, or, past the
schema, by seguard with a condition while the old policy keeps enforcing; a good edit changes a
verdict within seconds.

Without KUBEBUILDER_ASSETS (etcd and kube-apiserver) these tests skip, saying why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane import ControlPlane, until
from tests.factories import make_namespace, make_service_entry

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent.parent
PATIENCE_S = 15.0  # liveness only: how long to keep retrying something that must happen


def eventually(what: str, check: Any) -> Any:
    return until(what, check, patience_s=PATIENCE_S, every_s=0.2)


def policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "seguard.io/v1alpha1",
        "kind": "ServiceEntryPolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    }


@pytest.fixture
def resource_plane(plane: ControlPlane) -> Iterator[ControlPlane]:
    """The session's control plane, its webhook reading the ServiceEntryPolicy resource; the
    webhook goes back to its policy file afterwards."""
    plane.kubectl("apply", "-f", str(ROOT / "deploy" / "base" / "crd.yaml"))
    plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/serviceentrypolicies.seguard.io",
    )  # fmt: skip
    plane.apply(make_namespace("team-policy"), check=True)
    plane.apply(policy({"mode": "Enforce", "hosts": {"denied": ["*.blocked.example"]}}), check=True)
    plane.kill_webhook()
    plane.start_webhook(keep=True, from_cluster=True)
    try:
        yield plane
    finally:
        plane.kubectl("delete", "serviceentrypolicies.seguard.io", "default", check=False)
        plane.kill_webhook()
        plane.start_webhook(keep=True)


def dry_run(plane: ControlPlane, host: str) -> tuple[bool, str]:
    entry = make_service_entry("probe", "team-policy", [host])
    result = plane.apply(entry, "--dry-run=server")
    return result.returncode == 0, result.stderr


def status(plane: ControlPlane) -> dict[str, Any]:
    out = plane.kubectl("get", "serviceentrypolicies.seguard.io", "default", "-o", "json").stdout
    found: dict[str, Any] = json.loads(out).get("status") or {}
    return found


def condition(plane: ControlPlane, kind: str) -> dict[str, Any] | None:
    for item in status(plane).get("conditions") or []:
        if item.get("type") == kind:
            found: dict[str, Any] = item
            return found
    return None


def test_kubectl_explain_knows_the_policys_fields(resource_plane: ControlPlane) -> None:
    explained = eventually(
        "kubectl explain serviceentrypolicy.spec.hosts",
        lambda: (
            resource_plane.kubectl("explain", "serviceentrypolicy.spec.hosts", check=False).stdout
        ),
    )
    assert "Which external hosts may be registered." in explained
    assert "publicSuffixWildcards" in explained


def test_edits_of_the_policy_resource_from_schema_to_verdict(resource_plane: ControlPlane) -> None:
    plane = resource_plane
    # In force: the denied pattern refuses a host.
    refused = eventually(
        "the resource's policy in force", lambda: not dry_run(plane, "a.blocked.example")[0]
    )
    assert refused
    assert "HostDenied" in dry_run(plane, "a.blocked.example")[1]
    generation = eventually(
        "status for generation 1", lambda: status(plane).get("observedGeneration")
    )
    enforced = eventually(
        "Enforced", lambda: (c := condition(plane, "Enforced")) and c["status"] == "True" and c
    )
    assert enforced["message"] == f"1 of 1 replicas serve generation {generation}"
    table = plane.kubectl("get", "serviceentrypolicy").stdout
    assert table.split()[:5] == ["NAME", "MODE", "ACCEPTED", "ENFORCED", "AGE"]

    # Refused by the API server's schema: nothing reaches seguard.
    bad = plane.kubectl(
        "patch", "serviceentrypolicy", "default", "--type", "merge",
        "-p", '{"spec":{"mode":"Sometimes"}}', check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "spec.mode" in bad.stderr and "Unsupported value" in bad.stderr

    # Past the schema (a string), refused by seguard: a condition says why, the old policy stays.
    plane.kubectl(
        "patch", "serviceentrypolicy", "default", "--type", "merge",
        "-p", '{"spec":{"hosts":{"allowed":["*.*.example.com"]}}}',
    )  # fmt: skip
    accepted = eventually(
        "Accepted False",
        lambda: (c := condition(plane, "Accepted")) and c["status"] == "False" and c,
    )
    assert accepted["reason"] == "Invalid" and "spec.hosts.allowed[0]" in accepted["message"]
    assert "HostDenied" in dry_run(plane, "a.blocked.example")[1]  # still enforcing

    # A good edit changes the verdict within seconds.
    plane.kubectl(
        "patch", "serviceentrypolicy", "default", "--type", "merge",
        "-p", '{"spec":{"hosts":{"allowed":null,"denied":[]}}}',
    )  # fmt: skip
    assert eventually("the host allowed", lambda: dry_run(plane, "a.blocked.example")[0])
    assert eventually(
        "Accepted True", lambda: (c := condition(plane, "Accepted")) and c["status"] == "True"
    )
