"""deploy/: render each overlay with kustomize, validate every object against the Kubernetes
schemas (kubernetes-validate), and check the properties a safe install depends on."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from webhook.core.policyfile import parse_policy

ROOT = Path(__file__).resolve().parent.parent
# The oldest Kubernetes minor we support: every object must be valid there (and later).
KUBERNETES_VERSION = "1.30"
CERT_MANAGER_KINDS = {"Certificate", "Issuer"}


def render(overlay: str, tmp_path: Path) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (for `kubectl kustomize`) is not on PATH")
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", deploy)
    if overlay == "self-signed":
        subprocess.run(
            [sys.executable, "-m", "webhook.cli", "certs", "generate", "--out", str(deploy / "overlays/self-signed/certs"),
             "--service", "seguard", "--namespace", "seguard-system", "--ca-bundle-patch"],
            check=True, capture_output=True,
        )  # fmt: skip
    path = deploy / ("base" if overlay == "base" else f"overlays/{overlay}")
    result = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_overlay(
    tmp_path: Path, kustomization: str, files: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """A copy of deploy/ with an overlay of one's own (``deploy/overlays/mine``), rendered."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (for `kubectl kustomize`) is not on PATH")
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", deploy)
    mine = deploy / "overlays" / "mine"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(kustomization)
    for name, text in (files or {}).items():
        (mine / name).write_text(text)
    result = subprocess.run(
        ["kubectl", "kustomize", str(mine)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(params=["base", "cert-manager", "self-signed"])
def rendered(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param, tmp_path)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_every_rendered_object_is_valid(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for obj in objects:
        if obj["apiVersion"] == "seguard.io/v1alpha1":
            # Our own kind: the schema is ours (tests/test_policyschema.py); the reader checks it.
            parse_policy(obj)
            continue
        if obj["kind"] in CERT_MANAGER_KINDS:
            # Not in the Kubernetes schemas: check the fields cert-manager requires.
            assert obj["apiVersion"] == "cert-manager.io/v1"
            if obj["kind"] == "Certificate":
                assert obj["spec"]["secretName"]
                assert obj["spec"]["issuerRef"]["name"]
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_each_overlay_supplies_the_serving_secret_and_the_ca(tmp_path: Path) -> None:
    signed = render("self-signed", tmp_path / "s")
    [secret] = by_kind(signed, "Secret")
    assert secret["metadata"]["name"] == "seguard-tls"
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}  # never ca.key
    for config in by_kind(signed, "MutatingWebhookConfiguration") + by_kind(
        signed, "ValidatingWebhookConfiguration"
    ):
        bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
        assert bundle == base64.b64decode(secret["data"]["ca.crt"])
        assert bundle.startswith(b"-----BEGIN CERTIFICATE-----")
    managed = render("cert-manager", tmp_path / "c")
    certificate = next(
        c for c in by_kind(managed, "Certificate") if c["metadata"]["name"] == "seguard-tls"
    )
    assert "seguard.seguard-system.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["privateKey"] == {
        "algorithm": "ECDSA",
        "size": 256,
        "rotationPolicy": "Always",
    }
    for config in by_kind(managed, "MutatingWebhookConfiguration") + by_kind(
        managed, "ValidatingWebhookConfiguration"
    ):
        assert (
            config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
            == "seguard-system/seguard-tls"
        )


def test_the_webhook_configurations_are_safe(tmp_path: Path) -> None:
    objects = render("base", tmp_path)
    [mutating] = by_kind(objects, "MutatingWebhookConfiguration")
    [validating] = by_kind(objects, "ValidatingWebhookConfiguration")
    for config, path in ((mutating, "/mutate"), (validating, "/validate")):
        [hook] = config["webhooks"]
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["rules"] == [
            {
                "apiGroups": ["networking.istio.io"],
                "apiVersions": ["v1", "v1beta1", "v1alpha3"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["serviceentries"],
                "scope": "Namespaced",
            }
        ]
        assert hook["sideEffects"] == "NoneOnDryRun"
        assert hook["timeoutSeconds"] == 5
        assert hook["admissionReviewVersions"] == ["v1"]
        # The safe rollout starts at Ignore; the server switches validation to Fail.
        assert hook["failurePolicy"] == "Ignore"
        assert hook["namespaceSelector"] == {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": ["seguard-system", "kube-system"],
                }
            ]
        }
        assert hook["clientConfig"]["service"] == {
            "name": "seguard",
            "namespace": "seguard-system",
            "path": path,
            "port": 443,
        }
    assert mutating["webhooks"][0]["reinvocationPolicy"] == "IfNeeded"


def test_the_deployment_is_hardened_and_highly_available(tmp_path: Path) -> None:
    objects = render("base", tmp_path)
    [deployment] = by_kind(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--manage-webhooks=seguard" in container["args"]
    [pdb] = by_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    [service] = by_kind(objects, "Service")
    assert {p["port"] for p in service["spec"]["ports"]} == {443, 8080}
    # The policy is the ServiceEntryPolicy "default", in Audit mode, and the server reads it
    # (no --policy file).
    [policy] = by_kind(objects, "ServiceEntryPolicy")
    assert policy["metadata"]["name"] == "default"
    assert policy["spec"]["mode"] == "Audit", (
        "a fresh install refuses nothing until the admin says so"
    )
    assert not any(arg.startswith("--policy") for arg in container["args"])
    result = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "policy", "validate", "-"],
        input=yaml.safe_dump(policy), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [crd] = by_kind(objects, "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "serviceentrypolicies.seguard.io"


def test_the_policy_configmap_component_puts_the_file_back(tmp_path: Path) -> None:
    """For those who keep the policy in a ConfigMap: --policy, the mount, the ConfigMap, and no
    ServiceEntryPolicy object that would seem to be in force."""
    objects = render_overlay(
        tmp_path,
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n- ../../base\ncomponents:\n- ../../components/policy-configmap\n",
    )
    assert by_kind(objects, "ServiceEntryPolicy") == []
    [config] = by_kind(objects, "ConfigMap")
    [deployment] = by_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert "--policy=/etc/seguard/policy/policy.yaml" in container["args"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "policy"]
    assert mount["mountPath"] == "/etc/seguard/policy"
    [volume] = [v for v in pod["volumes"] if v["name"] == "policy"]
    assert volume["configMap"]["name"] == config["metadata"]["name"]
    checked = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "policy", "validate", "-"],
        input=yaml.safe_dump(config), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "mode Audit" in checked.stdout


def test_the_rendered_webhooks_with_a_loopback_url_stay_valid(tmp_path: Path) -> None:
    """What the e2e suite installs in a real API server: deploy/'s webhook configurations with
    the Service swapped for a URL. Offline, the swap keeps them valid and keeps every other
    field."""
    from tests.e2e.controlplane import loopback_webhooks

    objects = render("base", tmp_path)
    configs = loopback_webhooks(
        objects, base_url="https://127.0.0.1:9443", ca_pem=b"PEM", name="seguard-rendered"
    )
    assert len(configs) == 2
    for config, original in zip(
        configs, [o for o in objects if o["kind"].endswith("WebhookConfiguration")], strict=True
    ):
        kubernetes_validate.validate(config, KUBERNETES_VERSION, strict=True)
        assert config["metadata"] == {"name": "seguard-rendered"}
        for hook, before in zip(config["webhooks"], original["webhooks"], strict=True):
            assert hook["clientConfig"] == {
                "url": f"https://127.0.0.1:9443{before['clientConfig']['service']['path']}",
                "caBundle": base64.b64encode(b"PEM").decode(),
            }
            assert {k: v for k, v in hook.items() if k != "clientConfig"} == {
                k: v for k, v in before.items() if k != "clientConfig"
            }


def test_the_readmes_own_overlay_sets_the_image_and_owns_the_policy(tmp_path: Path) -> None:
    """The overlay the README tells a platform team to write, as written there: it renders, its
    objects are valid, the Deployment runs their image, and the policy is theirs."""
    readme = (ROOT / "README.md").read_text()
    marker = "# deploy/overlays/mine/kustomization.yaml\n"
    start = readme.index(marker) + len(marker)
    kustomization = readme[start : readme.index("```", start)]
    policy = (
        "apiVersion: seguard.io/v1alpha1\nkind: ServiceEntryPolicy\nmetadata:\n  name: default\n"
        "spec:\n  mode: Enforce\n  hosts:\n    allowed: ['*.example.com']\n"
    )
    objects = render_overlay(tmp_path, kustomization, {"policy.yaml": policy})
    for obj in objects:
        if obj["apiVersion"].startswith(("cert-manager.io", "monitoring.coreos.com")):
            continue
        if obj["apiVersion"] == "seguard.io/v1alpha1":
            parse_policy(obj)
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    [deployment] = by_kind(objects, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/platform/seguard:0.1.0"
    [owned] = by_kind(objects, "ServiceEntryPolicy")
    assert owned["spec"]["mode"] == "Enforce"
    assert owned["spec"]["hosts"]["allowed"] == ["*.example.com"]
    assert owned["spec"]["exemptions"] == {"namespaces": ["istio-system"]}  # kept from deploy/
    assert {"ServiceMonitor", "PrometheusRule"} <= {obj["kind"] for obj in objects}
