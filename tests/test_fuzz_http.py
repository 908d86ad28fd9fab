"""HTTP fuzzing of /validate and /mutate on the real server (TLS, keep-alive).

For every request: the server answers (no crash, no 5xx without an AdmissionReview), a 200 is a
well-formed AdmissionReview, and nothing invalid is let through. CI sends a short run;
`HYPOTHESIS_PROFILE=long pytest tests/test_fuzz_http.py` sends 20,000 bodies per test.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import make_review, make_service_entry, make_snapshot
from tests.live import LiveServer, running
from tests.test_properties import assert_well_formed, json_values, reviews

REGISTRY = make_snapshot(make_service_entry("stripe", "team-a", ["api.stripe.com"]))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running(
        tmp_path_factory.mktemp("fuzz"), snapshot=REGISTRY, max_body=512 * 1024, body_deadline_s=1.0
    ) as srv:
        yield srv


class Client:
    """One kept-alive connection, reopened when the server closes it."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.conn = live.connection()

    def post(
        self, path: str, body: bytes, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.conn.request("POST", path, body=body, headers={"Content-Type": content_type})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError, ssl.SSLError):
                self.conn.close()
                self.conn = self.live.connection()
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[Client]:
    fuzzer = Client(live)
    yield fuzzer
    fuzzer.conn.close()


ANSWERS = {200, 400, 413, 415}


def check(status: int, raw: bytes, sent: Any) -> None:
    assert status in ANSWERS, f"unexpected status {status}: {raw[:200]!r}"
    answer = orjson.loads(raw)
    if status == 200:
        assert isinstance(sent, dict)
        assert_well_formed(status, answer, sent)
    else:
        assert isinstance(answer["error"], str)


@given(st.binary(max_size=2048), st.sampled_from(["/validate", "/mutate"]))
def test_arbitrary_bytes(client: Client, body: bytes, path: str) -> None:
    status, raw = client.post(path, body)
    assert status in ANSWERS
    assert orjson.loads(raw)


@given(json_values, st.sampled_from(["/validate", "/mutate"]))
def test_arbitrary_json(client: Client, value: Any, path: str) -> None:
    status, raw = client.post(path, orjson.dumps(value))
    check(status, raw, value)


@given(reviews, st.sampled_from(["/validate", "/mutate"]))
def test_admission_reviews_with_wrong_types_in_them(
    client: Client, sent: dict[str, Any], path: str
) -> None:
    status, raw = client.post(path, orjson.dumps(sent))
    check(status, raw, sent)


@given(st.lists(st.text(max_size=30), min_size=1, max_size=20))
def test_no_invalid_host_gets_through_over_http(client: Client, hosts: list[str]) -> None:
    from tests.test_properties import _invalid

    sent = make_review(make_service_entry("fuzz", "team-z", hosts))
    for path in ("/validate", "/mutate"):
        status, raw = client.post(path, orjson.dumps(sent))
        check(status, raw, sent)
        if any(_invalid(h) for h in hosts):
            assert orjson.loads(raw)["response"]["allowed"] is False


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, id="deep-nesting"),
        pytest.param(
            b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"\xff\xfe"}}',
            400,
            id="non-utf8-inside-json",
        ),
        pytest.param(
            orjson.dumps(
                make_review(
                    make_service_entry("m", "team-m", [f"h{i}.example.com" for i in range(10_000)])
                )
            ),
            200,
            id="ten-thousand-hosts",
        ),
        pytest.param(b" " * (600 * 1024), 413, id="over-the-limit"),
        pytest.param(
            b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","object":{',
            400,
            id="truncated-json",
        ),
    ],
)
def test_hostile_bodies(client: Client, body: bytes, status: int) -> None:
    got, raw = client.post("/validate", body)
    assert got == status
    if status == 200:
        assert orjson.loads(raw)["response"]["allowed"] is False


def _raw_tls(live: LiveServer) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(Path(live.cert_dir) / "ca.crt"))
    return context.wrap_socket(
        socket.create_connection(("127.0.0.1", live.port), timeout=10), server_hostname="localhost"
    )


def test_a_body_cut_short_does_not_harm_the_server(live: LiveServer, client: Client) -> None:
    for _ in range(20):
        sock = _raw_tls(live)
        sock.sendall(
            b'POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"apiVersion":'
        )
        sock.close()
    status, raw = client.post(
        "/validate",
        orjson.dumps(make_review(make_service_entry("ok", "team-o", ["ok.example.com"]))),
    )
    assert status == 200
    assert orjson.loads(raw)["response"]["allowed"] is True


def test_a_slow_client_gets_408_and_others_are_served_meanwhile(
    live: LiveServer, client: Client
) -> None:
    body = orjson.dumps(make_review(make_service_entry("slow", "team-s", ["slow.example.com"])))
    sock = _raw_tls(live)
    sock.sendall(
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(body)
    )
    sock.sendall(body[:10])
    started = time.monotonic()
    # While it trickles, everyone else is answered.
    status, _ = client.post(
        "/validate",
        orjson.dumps(make_review(make_service_entry("ok", "team-o", ["ok.example.com"]))),
    )
    assert status == 200
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 30  # liveness only: the deadline is 1 s here
    sock.close()
