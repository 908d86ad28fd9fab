"""PolicyReports against a real kube-apiserver: an entry that got in while the webhooks were
unregistered shows up in a PolicyReport of its namespace, and the report goes once it is fixed.

The PolicyReport CRD here is a small one of the same group, version, kind and names as the
wg-policy CRD (the tests do not read ../shared); it keeps whatever fields a report holds.

Without KUBEBUILDER_ASSETS (etcd and kube-apiserver) these tests skip, saying why.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.controlplane import ControlPlane, until
from tests.factories import make_namespace, make_service_entry

pytestmark = pytest.mark.e2e

PATIENCE_S = 30.0  # the session's policy scans every 2 s; liveness only

POLICY_REPORT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "policyreports.wgpolicyk8s.io"},
    "spec": {
        "group": "wgpolicyk8s.io",
        "names": {
            "kind": "PolicyReport",
            "listKind": "PolicyReportList",
            "plural": "policyreports",
            "singular": "policyreport",
            "shortNames": ["polr"],
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha2",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def eventually(what: str, check: Any) -> Any:
    return until(what, check, patience_s=PATIENCE_S, every_s=0.5)


def report(plane: ControlPlane, namespace: str) -> dict[str, Any] | None:
    result = plane.kubectl(
        "get", "policyreports.wgpolicyk8s.io", "seguard", "-n", namespace, "-o", "json",
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_an_entry_that_got_in_unjudged_is_reported_and_the_report_goes_when_fixed(
    plane: ControlPlane,
) -> None:
    plane.apply(POLICY_REPORT_CRD, check=True)
    plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/policyreports.wgpolicyk8s.io"
    )
    for ns in ("report-a", "report-b"):
        plane.apply(make_namespace(ns), check=True)
    plane.apply(make_service_entry("first", "report-a", ["reported.example.com"]), check=True)
    plane.kubectl("delete", "validatingwebhookconfiguration", "seguard")
    plane.kubectl("delete", "mutatingwebhookconfiguration", "seguard")
    try:
        started = time.monotonic()
        duplicate = make_service_entry("second", "report-b", ["reported.example.com"])
        while plane.apply(duplicate).returncode != 0:
            assert time.monotonic() - started < PATIENCE_S
            time.sleep(0.2)
    finally:
        plane.register_webhooks()
    found = eventually("a PolicyReport in report-b", lambda: report(plane, "report-b"))
    [result] = [r for r in found["results"] if r["resources"][0]["name"] == "second"]
    assert (result["policy"], result["rule"], result["source"]) == (
        "seguard",
        "ConflictServiceEntry",
        "seguard",
    )
    assert result["resources"][0]["kind"] == "ServiceEntry"
    assert found["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "seguard"
    assert report(plane, "report-a") is None  # the older owner is not the violation
    listed = plane.kubectl("get", "polr", "-A").stdout
    assert "report-b" in listed and "seguard" in listed
    # Fixed: the report goes.
    plane.kubectl("delete", "serviceentries.networking.istio.io", "second", "-n", "report-b")
    eventually("the report removed", lambda: report(plane, "report-b") is None)
