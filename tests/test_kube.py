"""The Kubernetes API client: one mapping from an answer's HTTP status to an error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakeapi import Cluster, FakeApiServer
from webhook import kube


@pytest.mark.parametrize(
    ("status", "error", "fragment"),
    [
        (401, kube.ClusterError, "the API server refused the credentials (401) (m)"),
        (
            403,
            kube.Forbidden,
            "RBAC forbids create on events in namespace a; grant the webhook's service account "
            "create on events (m)",
        ),
        (404, kube.NotFound, "events is not served by the API server or does not exist (m)"),
        (410, kube.Gone, "m"),
        (500, kube.ClusterError, "create events failed with HTTP 500 (m)"),
        (409, kube.ClusterError, "create events failed with HTTP 409 (m)"),
    ],
)
def test_each_status_is_one_error(status: int, error: type[Exception], fragment: str) -> None:
    found = kube.status_error(status, "m", verb="create", what="events", where="in namespace a")
    assert type(found) is error
    assert str(found) == fragment


def test_a_403_names_what_to_grant_when_told() -> None:
    found = kube.status_error(
        403, "", verb="get", what="leases x", grant="get, create and update on leases"
    )
    assert str(found) == (
        "RBAC forbids get on leases x; grant the webhook's service account get, create and "
        "update on leases"
    )


@pytest.fixture
def transport(tmp_path: Path) -> Iterator[kube.Transport]:
    server = FakeApiServer(Cluster())
    server.start()
    yield kube.connect(server.kubeconfig(tmp_path / "kc"))
    server.stop()


def test_call_raises_what_is_not_expected_and_returns_what_is(transport: kube.Transport) -> None:
    path = "/apis/coordination.k8s.io/v1/namespaces/seguard-system/leases/none"
    with pytest.raises(kube.NotFound, match="leases none is not served"):
        transport.call("GET", path, verb="get", what="leases none")
    status, answer = transport.call("GET", path, verb="get", what="leases none", expected=(404,))
    assert status == 404
    assert isinstance(answer, dict)
