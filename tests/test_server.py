"""The real server: uvicorn over TLS on loopback, driven by keep-alive clients."""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import load_fixture_review
from tests.factories import (
    make_policy,
    make_review,
    make_service,
    make_service_entry,
    make_snapshot,
)
from tests.live import LiveServer, post, running
from webhook import certs, server
from webhook.app import create_app
from webhook.audit import AuditLog
from webhook.runtime import Runtime

REGISTRY = make_snapshot(
    make_service("reviews", "bookinfo"),
    make_service_entry("stripe", "team-a", ["api.stripe.com"]),
    make_service_entry("googleapis", "team-b", ["*.googleapis.com"]),
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running(tmp_path_factory.mktemp("live"), snapshot=REGISTRY, max_body=1024 * 1024) as srv:
        yield srv


def test_one_keep_alive_connection_answers_many_reviews(live: LiveServer) -> None:
    conn = live.connection()
    status, first = post(
        conn, "/validate", make_review(make_service_entry("a", "team-c", ["a.example.com"]))
    )
    sock = conn.sock
    assert status == 200 and first["response"]["allowed"] is True
    for i in range(20):
        uid = f"uid-{i}"
        review = make_review(make_service_entry(f"s{i}", "team-c", ["api.stripe.com"]), uid=uid)
        status, body = post(conn, "/validate", review)
        assert status == 200
        assert body["response"]["uid"] == uid
        assert body["response"]["allowed"] is False
        assert body["response"]["status"]["code"] == 403
        assert "[ConflictServiceEntry]" in body["response"]["status"]["message"]
    assert conn.sock is sock, "the server closed a kept-alive connection"
    conn.close()


def test_keep_alive_outlasts_the_api_servers_idle_timeout(live: LiveServer) -> None:
    # The API server drops idle webhook connections after 90 s; we must not drop them first.
    assert live.web.https.config.timeout_keep_alive > 90


def test_mutate_returns_a_json_patch(live: LiveServer) -> None:
    status, body = live.call("/mutate", load_fixture_review("00-mutating-create-v1.json"))
    response = body["response"]
    assert status == 200 and response["allowed"] is True
    patch = orjson.loads(base64.b64decode(response["patch"]))
    assert {"op": "add", "path": "/spec/location", "value": "MESH_EXTERNAL"} in patch
    assert any("seguard set defaults" in w for w in response["warnings"])


@pytest.mark.parametrize(
    "fixture",
    sorted(p.name for p in (Path(__file__).parent / "data" / "admission-reviews").glob("*.json")),
)
def test_every_captured_review_gets_a_well_formed_answer(live: LiveServer, fixture: str) -> None:
    body = load_fixture_review(fixture)
    path = "/mutate" if "-mutating-" in fixture else "/validate"
    status, answer = live.call(path, body)
    assert status == 200
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == body["request"]["uid"]


def test_wildcard_held_elsewhere_is_denied_over_https(live: LiveServer) -> None:
    status, body = live.call(
        "/validate", load_fixture_review("07-validating-create-v1alpha3-generatename.json")
    )
    assert status == 200
    assert body["response"]["allowed"] is False
    assert body["response"]["auditAnnotations"] == {
        "decision": "denied",
        "reasons": "ConflictServiceEntry",
    }


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        pytest.param(b"{not json", "application/json", 400, id="malformed-json"),
        pytest.param(b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', "application/json", 400, id="review-without-request"),
        pytest.param(orjson.dumps({**make_review(make_service_entry()), "apiVersion": "admission.k8s.io/v1beta1"}), "application/json", 400, id="wrong-api-version"),
        pytest.param(orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "operation": "CREATE", "kind": {}}}), "application/json", 400, id="create-without-object"),
        pytest.param(b"[]", "application/json", 400, id="a-list-not-an-object"),
        pytest.param(b"\xff\xfe\x00", "application/json", 400, id="not-utf8"),
        pytest.param(orjson.dumps(make_review(make_service_entry())), "text/plain", 415, id="wrong-content-type"),
        pytest.param(orjson.dumps(make_review(make_service_entry(), kind="Service", group="")), "application/json", 400, id="a-review-of-another-kind"),
        pytest.param(orjson.dumps(make_review(make_service_entry(), kind="serviceentry")), "application/json", 400, id="a-kind-in-the-wrong-case"),
        pytest.param(orjson.dumps(make_review(make_service_entry("x", "team-c", ["x.example.com"]))).replace(b'"hosts":', b'"hosts":["api.stripe.com"],"hosts":', 1), "application/json", 400, id="a-repeated-key-that-would-hide-a-host"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(
    live: LiveServer, body: bytes, content_type: str, status: int
) -> None:
    got, answer = live.call("/validate", body, content_type=content_type)
    assert got == status
    assert answer["error"]
    got, answer = live.call(
        "/validate", make_review(make_service_entry("ok", "team-c", ["ok.example.com"]))
    )
    assert got == 200 and answer["response"]["allowed"] is True


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(live: LiveServer) -> None:
    conn = live.connection()
    conn.putrequest("POST", "/validate")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert b"limit" in response.read()
    conn.close()
    status, _ = live.call(
        "/validate", make_review(make_service_entry("ok", "team-c", ["ok.example.com"]))
    )
    assert status == 200


def test_a_chunked_body_over_the_limit_is_refused(live: LiveServer) -> None:
    conn = live.connection()
    chunk = b" " * 65536

    def chunks() -> Iterator[bytes]:
        yield b'{"apiVersion":"admission.k8s.io/v1",'
        for _ in range(40):  # 2.5 MiB of whitespace, over the 1 MiB limit of this server
            yield chunk

    conn.request(
        "POST",
        "/validate",
        body=chunks(),
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert response.status == 413
    conn.close()


def test_ten_thousand_hosts_are_denied_with_a_clear_message(live: LiveServer) -> None:
    obj = make_service_entry("many", "team-c", [f"h{i}.example.com" for i in range(10_000)])
    status, body = live.call("/validate", make_review(obj))
    assert status == 200
    assert body["response"]["allowed"] is False
    assert "10000 entries" in body["response"]["status"]["message"]


def test_hosts_that_are_not_strings_are_denied(live: LiveServer) -> None:
    obj = make_service_entry("odd", "team-c", ["a.example.com", {"host": "b"}, None])
    for path in ("/validate", "/mutate"):
        status, body = live.call(path, make_review(obj))
        assert status == 200
        assert body["response"]["allowed"] is False
        assert body["response"]["status"]["message"].count("[InvalidHost]") == 2


def test_warnings_stay_within_the_api_servers_limits(tmp_path: Path) -> None:
    # 200 hosts, each already held in the same namespace: 200 DuplicateHost warnings.
    held = [f"service-number-{i:03}.a-rather-long-domain-name.example.com" for i in range(200)]
    snapshot = make_snapshot(make_service_entry("old", "team-c", held))
    with running(tmp_path, snapshot=snapshot) as srv:
        status, body = srv.call("/validate", make_review(make_service_entry("new", "team-c", held)))
    warnings = body["response"]["warnings"]
    assert status == 200 and body["response"]["allowed"] is True
    assert all(len(w) <= 120 for w in warnings)
    assert sum(len(w) for w in warnings) <= 4096
    assert "more" in warnings[-1]


def test_the_audit_record_is_on_disk_before_the_response_arrives(live: LiveServer) -> None:
    uid = "uid-audit-order"
    review = make_review(
        make_service_entry("s", "team-c", ["api.stripe.com"]), uid=uid, dry_run=True
    )
    _, body = live.call("/validate", review)
    assert body["response"]["allowed"] is False
    matching = [r for r in live.audit_records() if r["uid"] == uid]
    assert len(matching) == 1
    record = matching[0]
    assert record["decision"] == "denied"
    assert record["dryRun"] is True
    assert record["namespace"] == "team-c" and record["name"] == "s"
    assert record["user"] == "alice"
    assert record["hosts"] == ["api.stripe.com"]
    assert record["findings"][0]["owner"]["name"] == "stripe"
    assert record["policyGeneration"] == 1


def test_operations_endpoints_answer_on_the_plain_port(live: LiveServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", live.ops_port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() == b"ok\n"
    conn.request("GET", "/readyz")
    response = conn.getresponse()
    ready = orjson.loads(response.read())
    assert response.status == 200 and ready["ready"] is True
    assert ready["policy"]["generation"] == 1
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    assert 'seguard_admission_requests_total{result="denied",webhook="validate"}' in text
    assert "seguard_admission_duration_seconds_bucket" in text
    assert 'seguard_registry_entries{kind="ServiceEntry"} 2.0' in text
    conn.close()


def test_webhook_paths_are_not_served_on_the_plain_port(live: LiveServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", live.ops_port, timeout=10)
    conn.request("POST", "/validate", body=b"{}", headers={"Content-Type": "application/json"})
    assert conn.getresponse().status == 404
    conn.close()


def test_get_on_validate_is_refused(live: LiveServer) -> None:
    conn = live.connection()
    conn.request("GET", "/validate")
    assert conn.getresponse().status == 405
    conn.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_below_1_2_is_refused(live: LiveServer, version: ssl.TLSVersion) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # Let this client offer the old protocols, so that it is the server that refuses them.
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():  # the client means to use the deprecated protocols
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", live.port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.parametrize(
    ("version", "name"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
)
def test_tls_1_2_and_1_3_are_accepted(live: LiveServer, version: ssl.TLSVersion, name: str) -> None:
    context = live.client_context()
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", live.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == name


def test_a_busy_port_fails_at_startup_with_a_clear_message() -> None:
    holder = server.bind("127.0.0.1", 0)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            server.bind("127.0.0.1", port)
    finally:
        holder.close()


def test_with_a_client_ca_only_the_api_servers_certificate_gets_in(tmp_path: Path) -> None:
    client_dir = tmp_path / "apiserver-client"
    ca, leaf = certs.issue(dns_names=["kube-apiserver"])
    certs.write_pairs(client_dir, ca, leaf)
    with running(tmp_path / "server", client_ca=client_dir / "ca.crt") as srv:
        review = make_review(make_service_entry("m", "team-m", ["m.example.com"]))
        without = http.client.HTTPSConnection(
            "localhost", srv.port, context=srv.client_context(), timeout=5
        )
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            post(without, "/validate", review)
        without.close()
        with_cert = srv.client_context()
        with_cert.load_cert_chain(client_dir / "tls.crt", client_dir / "tls.key")
        conn = http.client.HTTPSConnection("localhost", srv.port, context=with_cert, timeout=5)
        status, body = post(conn, "/validate", review)
        conn.close()
    assert status == 200
    assert body["response"]["allowed"] is True


def test_a_shutdown_cancel_is_not_swallowed_by_the_body_deadline() -> None:
    """When the body deadline and another cancellation (a server stopping) hit the same request,
    the request is cancelled, not answered 408 as if only the deadline had fired."""
    import asyncio

    runtime = Runtime(audit=AuditLog([]))
    runtime.set_policy(make_policy())
    runtime.set_snapshot(make_snapshot())
    endpoint = create_app(runtime).fast_routes["/validate"]  # type: ignore[attr-defined]
    sent: list[dict[str, Any]] = []

    async def main() -> str:
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await never.wait()
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/validate",
            "headers": [(b"content-type", b"application/json")],
        }
        task = asyncio.create_task(endpoint(scope, receive, send))
        await asyncio.sleep(0.01)  # the request now waits for its body
        task.cancel()  # the server stops ...
        endpoint._body_deadlines.seconds = 0.0
        endpoint._body_deadlines._sweep()  # ... and the deadline passes, in the same moment
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "answered"

    assert asyncio.run(main()) == "cancelled"
    assert sent == []


@pytest.mark.parametrize("depth", [300, 1000])
def test_a_review_nested_deeper_than_orjson_writes_is_answered_never_a_bare_500(
    live: LiveServer, depth: int
) -> None:
    """orjson reads 1024 levels but writes 255: the check for repeated keys reads such a body
    again with the standard library, which answers, or (past Python's recursion limit, which
    depends on what else runs) refuses it with a 400."""
    body = orjson.dumps(make_review(make_service_entry("deep", "team-c", ["deep.example.com"])))
    deep = b'"deep":' + b'{"a":' * depth + b"1" + b"}" * depth + b',"hosts":'
    status, answer = live.call("/validate", body.replace(b'"hosts":', deep, 1))
    if depth == 300:
        assert status == 200
    assert status in (200, 400)
    if status == 200:
        assert answer["response"]["uid"] and answer["response"]["allowed"] is True
    else:
        assert "nested too deeply" in answer["error"]
