from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from tests.e2e.controlplane import ControlPlane, control_plane, missing_binaries
from webhook.core.policyfile import DEFAULT_POLICY_YAML


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    reason = missing_binaries()
    if reason is not None:
        pytest.skip(f"e2e needs a real API server: {reason}")
    root = tmp_path_factory.mktemp("controlplane")
    # The built-in policy, scanning every 2 s so the scan's reports show up within a test.
    policy = root / "policy.yaml"
    document = yaml.safe_load(DEFAULT_POLICY_YAML)
    document["spec"]["scan"] = {"interval": "2s"}
    policy.write_text(yaml.safe_dump(document))
    with control_plane(root) as running:
        running.start_webhook(policy=policy)
        running.register_webhooks()
        yield running
