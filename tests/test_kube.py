"""The Kubernetes API client: one mapping from an answer's HTTP status to an error."""

from __future__ import annotations

import time
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
    # A kubeconfig, as the CLI and development serve use: none of the package's other parts,
    # nor requests and oauthlib (only an OIDC token's refresh needs them: the test below).
    models, requests = probe("", f"kube.connect(Path({str(kubeconfig)!r}))")
    assert (models, requests) == ("0", "False")
    # In a pod: neither.
    models, requests = probe("", "kube._client(); kube._loader(None)")
    assert (models, requests) == ("0", "False")
    # Where the whole client is imported already, that one is used.
    models, _ = probe("import kubernetes", f"kube.connect(Path({str(kubeconfig)!r}))")
    assert int(models) >= 5


def _jwt(expires: float) -> str:
    """An unsigned JWT (the kubeconfig loader reads only its expiry), with no character its
    check refuses (``=``, ``+``, ``/``) and a payload whose padding it accepts."""
    import base64
    import json

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims: dict[str, object] = {"exp": int(expires), "sub": "dev"}
    while len(part(claims)) % 4 == 1:
        claims["sub"] = str(claims["sub"]) + "x"
    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


@pytest.fixture
def identity_provider(tmp_path: Path) -> Iterator[tuple[str, bytes, list[bytes]]]:
    """An OIDC identity provider over HTTPS: its discovery document and a token endpoint that
    answers a refresh with a new ID token. Yields its URL, its CA and the refresh requests' bodies."""
    import json
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from webhook import certs, tls

    ca, leaf = certs.issue(dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    certs.write_pairs(tmp_path / "idp", ca, leaf)
    refreshes: list[bytes] = []
    new_token = _jwt(time.time() + 3600)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: object, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            assert self.path == "/.well-known/openid-configuration"
            self._answer({"issuer": url, "token_endpoint": f"{url}/token"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            refreshes.append(body)
            if b"refresh_token=revoked" in body:  # as a provider refuses a revoked token
                self._answer({"error": "invalid_request"}, status=400)
                return
            self._answer(
                {"id_token": new_token, "refresh_token": "r2", "access_token": "a",
                 "token_type": "Bearer", "expires_in": 3600}
            )  # fmt: skip

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context: ssl.SSLContext = tls.server_context(tmp_path / "idp")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url, ca.cert_pem, refreshes
    server.shutdown()
    server.server_close()


OIDC_PROBE = """
import sys
from pathlib import Path
from webhook import kube
valid = kube.connect(Path(sys.argv[1]))
print("requests" in sys.modules)
refreshed = kube.connect(Path(sys.argv[2]))
print("requests" in sys.modules)
print(valid.api.configuration.api_key["BearerToken"])
print(refreshed.api.configuration.api_key["BearerToken"])
refused = kube.connect(Path(sys.argv[3]))
print(refused.api.configuration.api_key["BearerToken"])
"""


def test_a_kubeconfig_s_oidc_token_is_refreshed_with_its_libraries_imported_only_then(
    identity_provider: tuple[str, bytes, list[bytes]], tmp_path: Path
) -> None:
    import base64
    import json
    import subprocess
    import sys

    import yaml

    url, ca_pem, refreshes = identity_provider

    def kubeconfig(name: str, id_token: str, refresh_token: str = "r1") -> Path:
        provider = {
            "client-id": "seguard", "client-secret": "s", "id-token": id_token,
            "refresh-token": refresh_token, "idp-issuer-url": url,
            "idp-certificate-authority-data": base64.b64encode(ca_pem).decode(),
        }  # fmt: skip
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "x",
            "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"auth-provider": {"name": "oidc", "config": provider}}}],
        }  # fmt: skip
        path = tmp_path / name
        path.write_text(json.dumps(config))
        return path

    still_valid, expired = _jwt(time.time() + 3600), _jwt(time.time() - 60)
    result = subprocess.run(
        [sys.executable, "-c", OIDC_PROBE, str(kubeconfig("valid", still_valid)),
         str(kubeconfig("expired", expired)), str(kubeconfig("revoked", expired, "revoked"))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    before, after, valid_token, refreshed_token, refused_token = result.stdout.split("\n")[:5]
    # A token still valid: nothing refreshed, and requests and oauthlib never imported.
    assert (before, valid_token) == ("False", f"Bearer {still_valid}")
    # An expired one: refreshed at the identity provider, with its refresh token.
    assert after == "True"
    assert len(refreshes) == 2 and b"grant_type=refresh_token" in refreshes[0]
    assert b"refresh_token=r1" in refreshes[0]
    assert refreshed_token.startswith("Bearer ") and refreshed_token != f"Bearer {expired}"
    # The loader writes the new tokens back to the kubeconfig, as kubectl does.
    written = json.dumps(yaml.safe_load((tmp_path / "expired").read_text()))
    assert '"refresh-token": "r2"' in written and refreshed_token[len("Bearer ") :] in written
    # A refresh the provider refuses (oauthlib's error, which the loader catches through the
    # stand-in for oauthlib): the loader goes on with the token it has, as it always did.
    assert b"refresh_token=revoked" in refreshes[1]
    assert refused_token == f"Bearer {expired}"
