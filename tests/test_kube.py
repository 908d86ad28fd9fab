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


CLIENT_PROBE = """
import sys
UNUSED = ("kubernetes.dynamic", "kubernetes.watch", "kubernetes.stream", "kubernetes.informer",
          "kubernetes.leaderelection", "kubernetes.utils.create_from_yaml")
from pathlib import Path
{before}
from webhook import kube
{load}
loaded = sorted(m for m in sys.modules if m.startswith("kubernetes"))
print(len([m for m in loaded if m.startswith(UNUSED)]))
print("requests" in sys.modules)
"""


def probe(before: str, load: str) -> list[str]:
    import subprocess
    import sys

    script = CLIENT_PROBE.format(before=before, load=load)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_a_connection_loads_only_the_client_parts_the_transport_uses(
    transport: kube.Transport, tmp_path: Path
) -> None:
    # In this process the transport works as ever (the fixture connected through it).
    status, answer = transport.call("GET", "/api/v1/namespaces", verb="list", what="namespaces")
    assert status == 200 and answer["kind"] == "NamespaceList"
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(
        '{"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],'
        ' "users": [{"name": "u", "user": {"token": "t"}}], "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],'
        ' "current-context": "x"}'
    )  # fmt: skip
    # A kubeconfig, as the CLI and development serve use: none of the package's other parts.
    models, _ = probe("", f"kube.connect(Path({str(kubeconfig)!r}))")
    assert models == "0"
    # In a pod: neither those nor requests and oauthlib (only a kubeconfig's OIDC needs them).
    models, requests = probe("", "kube._client(); kube._loader(None)")
    assert (models, requests) == ("0", "False")
    # Where the whole client is imported already, that one is used.
    models, _ = probe("import kubernetes", f"kube.connect(Path({str(kubeconfig)!r}))")
    assert int(models) >= 5
