"""Safe rollout: prove the validating webhook works before it may fail closed, and keep its CA
bundle in place. Driven against the fake API server, which calls the registered webhook for a
dry-run create as a real API server does."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakeapi import Cluster, FakeApiServer
from tests.live import LiveServer, running
from webhook import kube
from webhook.kube import ClusterError
from webhook.rollout import RolloutManager


def configs(url: str, bundle: str) -> dict[tuple[str, str], dict[str, Any]]:
    def hook(name: str, path: str) -> dict[str, Any]:
        return {
            "name": name,
            "clientConfig": {"url": url + path, "caBundle": bundle},
            "failurePolicy": "Ignore",
            "sideEffects": "NoneOnDryRun",
            "admissionReviewVersions": ["v1"],
        }

    return {
        ("mutating", "seguard"): {
            "metadata": {"name": "seguard"},
            "webhooks": [hook("mutate.seguard.io", "/mutate")],
        },
        ("validating", "seguard"): {
            "metadata": {"name": "seguard"},
            "webhooks": [hook("validate.seguard.io", "/validate")],
        },
    }


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FakeApiServer, LiveServer, kube.Transport]]:
    with running(tmp_path / "webhook") as live:
        cluster = Cluster()
        # As GitOps might leave it: a stale CA bundle, and both webhooks at Ignore.
        cluster.webhooks = configs(
            f"https://127.0.0.1:{live.port}", base64.b64encode(b"stale").decode()
        )
        fake = FakeApiServer(cluster)
        fake.start()
        try:
            yield fake, live, kube.connect(fake.kubeconfig(tmp_path / "kc"))
        finally:
            fake.stop()


def manager(transport: kube.Transport, live: LiveServer, **overrides: Any) -> RolloutManager:
    settings: dict[str, Any] = {
        "name": "seguard",
        "ca_file": live.cert_dir / "ca.crt",
        "probe_namespace": "default",
    }
    settings.update(overrides)
    return RolloutManager(transport, **settings)


def policies(fake: FakeApiServer) -> tuple[str, str]:
    webhooks = fake.cluster.webhooks
    return (
        webhooks[("mutating", "seguard")]["webhooks"][0]["failurePolicy"],
        webhooks[("validating", "seguard")]["webhooks"][0]["failurePolicy"],
    )


def test_validation_switches_to_fail_once_the_probe_is_denied_for_the_right_reason(
    setup: tuple[FakeApiServer, LiveServer, kube.Transport],
) -> None:
    fake, live, transport = setup
    rollout = manager(transport, live)
    rollout.step()
    assert rollout.state.enforcing
    assert "[RolloutProbe]" in rollout.state.last_probe
    assert policies(fake) == ("Ignore", "Fail")
    ours = base64.b64encode((live.cert_dir / "ca.crt").read_bytes()).decode()
    for kind in ("mutating", "validating"):
        assert (
            fake.cluster.webhooks[(kind, "seguard")]["webhooks"][0]["clientConfig"]["caBundle"]
            == ours
        )
    assert any(
        r["findings"][0]["code"] == "RolloutProbe" and r["dryRun"] for r in live.audit_records()
    )


def test_while_the_probe_is_admitted_validation_stays_at_ignore(
    setup: tuple[FakeApiServer, LiveServer, kube.Transport],
) -> None:
    fake, live, transport = setup
    # No CA bundle to inject: the API server cannot verify the webhook, and with Ignore the
    # probe is admitted. Switching to Fail now would block every ServiceEntry write.
    rollout = manager(transport, live, ca_file=None)
    rollout.step()
    assert not rollout.state.enforcing
    assert "admitted" in rollout.state.last_probe
    assert policies(fake) == ("Ignore", "Ignore")


def test_no_probe_before_the_server_is_ready(
    setup: tuple[FakeApiServer, LiveServer, kube.Transport],
) -> None:
    fake, live, transport = setup
    rollout = manager(transport, live, is_ready=lambda: False)
    rollout.step()
    assert policies(fake) == ("Ignore", "Ignore")
    assert rollout.state.last_probe == ""


def test_an_overwritten_ca_bundle_is_put_back(
    setup: tuple[FakeApiServer, LiveServer, kube.Transport],
) -> None:
    fake, live, transport = setup
    rollout = manager(transport, live)
    rollout.step()
    fake.cluster.webhooks[("validating", "seguard")]["webhooks"][0]["clientConfig"]["caBundle"] = ""
    assert rollout.ensure_ca() == 1
    assert rollout.state.ca_repairs == 3  # two at the first step, one now
    assert rollout.ensure_ca() == 0


def test_rbac_refusing_the_patch_is_one_clear_error(
    setup: tuple[FakeApiServer, LiveServer, kube.Transport],
) -> None:
    fake, live, transport = setup
    fake.cluster.forbid_patch = True
    with pytest.raises(
        ClusterError, match="RBAC forbids patch on mutatingwebhookconfigurations seguard"
    ):
        manager(transport, live).step()
