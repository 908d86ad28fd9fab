"""The webhook configurations of deploy/, as rendered by kustomize, against a real API server:
accepted as they are (with the Service swapped for a loopback URL), enforcing as configured,
and switched to failurePolicy Fail by the safe rollout.

Without KUBEBUILDER_ASSETS (etcd and kube-apiserver) these tests skip, saying why.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml

from tests.e2e.controlplane import ControlPlane, loopback_webhooks, render_deploy
from tests.e2e.test_kubectl import PATIENCE_S, entry, get, namespace, rejected
from webhook import kube
from webhook.rollout import RolloutManager

pytestmark = pytest.mark.e2e

NAME = "seguard-rendered"


def live(plane: ControlPlane, kind: str) -> dict[str, Any]:
    out = plane.kubectl("get", f"{kind}webhookconfiguration", NAME, "-o", "json").stdout
    loaded: dict[str, Any] = json.loads(out)
    return loaded


def test_the_rendered_webhook_configurations_are_accepted_and_enforce_as_configured(
    plane: ControlPlane,
) -> None:
    configs = loopback_webhooks(
        render_deploy("base"),
        base_url=f"https://127.0.0.1:{plane.webhook_port}",
        ca_pem=plane.webhook_ca,
        name=NAME,
    )
    assert {c["kind"] for c in configs} == {
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
    # Only the rendered configurations may judge while this test runs.
    plane.kubectl("delete", "validatingwebhookconfiguration", "seguard")
    plane.kubectl("delete", "mutatingwebhookconfiguration", "seguard")
    try:
        for config in configs:
            result = plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(config), check=False)
            assert result.returncode == 0, (
                f"the API server refused {config['kind']}: {result.stderr}"
            )
        validating = live(plane, "validating")["webhooks"][0]
        mutating = live(plane, "mutating")["webhooks"][0]
        for hook in (validating, mutating):
            assert hook["matchPolicy"] == "Equivalent"
            assert hook["sideEffects"] == "NoneOnDryRun"
            assert hook["timeoutSeconds"] == 5
            assert hook["failurePolicy"] == "Ignore"  # the safe rollout starts here
            assert {tuple(r["apiVersions"]) for r in hook["rules"]} == {
                ("v1", "v1beta1", "v1alpha3")
            }
        assert mutating["reinvocationPolicy"] == "IfNeeded"

        # The API server learns of webhook configurations from an informer: wait until only the
        # rendered ones are in force (kube-system left out, an ordinary namespace judged).
        for ns in ("team-r1", "team-r2", "seguard-system"):
            namespace(plane, ns)
        started = time.monotonic()
        while True:
            outside = plane.apply(entry("probe", "kube-system", ["*.com"]), "--dry-run=server")
            inside = plane.apply(entry("probe", "team-r1", ["*.com"]), "--dry-run=server")
            mutated = plane.apply(
                entry("probe", "team-r1", ["probe.example.com"]), "--dry-run=server", "-o", "yaml"
            )
            defaulted = "MESH_EXTERNAL" in mutated.stdout
            if outside.returncode == 0 and "WildcardTooBroad" in inside.stderr and defaulted:
                break
            assert time.monotonic() - started < PATIENCE_S, (outside.stderr, inside.stderr)
            time.sleep(0.2)

        # Enforced in an ordinary namespace, and defaulted.
        plane.apply(entry("held", "team-r1", ["rendered.example.com"]), check=True)
        rejected(plane, entry("copy", "team-r2", ["rendered.example.com"]), "ConflictServiceEntry")
        stored = get(plane, "team-r1", "held")
        assert stored["spec"]["location"] == "MESH_EXTERNAL"

        # Not called for the namespaces the selector leaves out: the webhook's own, kube-system.
        for ns in ("kube-system", "seguard-system"):
            result = plane.apply(entry("everything", ns, ["*.com"]))
            assert result.returncode == 0, f"{ns} should not be judged: {result.stderr}"
            assert "location" not in get(plane, ns, "everything")["spec"]

        # The safe rollout: the probe is denied for the right reason, so validation fails closed.
        manager = RolloutManager(
            kube.connect(plane.kubeconfig),
            name=NAME,
            ca_file=plane.root / "webhook-certs" / "ca.crt",
            probe_namespace="default",
        )
        started = time.monotonic()
        while not manager.state.enforcing:
            manager.step()
            assert time.monotonic() - started < PATIENCE_S, manager.state.last_probe
            time.sleep(0.2)
        assert live(plane, "validating")["webhooks"][0]["failurePolicy"] == "Fail"
        assert live(plane, "mutating")["webhooks"][0]["failurePolicy"] == "Ignore"
    finally:
        for ns in ("kube-system", "seguard-system"):  # gone before other tests judge *.com
            plane.kubectl(
                "delete", "serviceentries.networking.istio.io", "everything", "-n", ns,
                "--ignore-not-found", check=False,
            )  # fmt: skip
        plane.kubectl("delete", "validatingwebhookconfiguration", NAME, check=False)
        plane.kubectl("delete", "mutatingwebhookconfiguration", NAME, check=False)
        plane.register_webhooks()
