from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.controlplane import ControlPlane, control_plane, missing_binaries


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    reason = missing_binaries()
    if reason is not None:
        pytest.skip(f"e2e needs a real API server: {reason}")
    with control_plane(tmp_path_factory.mktemp("controlplane")) as running:
        running.start_webhook()
        running.register_webhooks()
        yield running
