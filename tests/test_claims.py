"""Claims: which hosts a Service or ServiceEntry claims, the problems of its shape, and where
its traffic goes (targets), as admission and the registry alike read them."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import make_service, make_service_entry
from webhook.core import claims


@pytest.mark.parametrize(
    ("obj", "hosts", "aliases"),
    [
        pytest.param(make_service("reviews", "bookinfo"), ("reviews.bookinfo.svc.cluster.local",), ("reviews.bookinfo", "reviews.bookinfo.svc"), id="a-service-and-its-aliases"),
        pytest.param(make_service_entry("s", "team-a", ["API.stripe.com.", "api.stripe.com", "*.Stripe.com"]), ("api.stripe.com", "*.stripe.com"), (), id="entry-hosts-normalised-and-deduplicated"),
    ],
)  # fmt: skip
def test_claims(obj: dict[str, Any], hosts: tuple[str, ...], aliases: tuple[str, ...]) -> None:
    kind = claims.kind_of(obj)
    claim = (
        claims.service_claim(obj, cluster_domain="cluster.local")
        if kind == claims.SERVICE
        else claims.service_entry_claim(obj)
    )
    assert (claim.hosts, claim.aliases) == (hosts, aliases)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        pytest.param("garbage", "spec must be an object", id="spec-not-an-object"),
        pytest.param({"hosts": "a.com"}, "spec.hosts must be a list", id="hosts-not-a-list"),
        pytest.param({"hosts": []}, "at least one host", id="no-hosts"),
        pytest.param(
            {"hosts": [f"h{i}.com" for i in range(257)]}, "257 entries", id="too-many-hosts"
        ),
        pytest.param({"hosts": ["a.com"], "ports": [{}] * 257}, "257 entries", id="too-many-ports"),
        pytest.param(
            {"hosts": ["a.com"], "exportTo": [1]}, "list of strings", id="export-to-not-strings"
        ),
        pytest.param({"hosts": ["a.com"], "endpoints": {}}, "spec.endpoints must be a list", id="endpoints-not-a-list"),
        pytest.param({"hosts": ["a.com"], "endpoints": ["1.2.3.4"]}, "spec.endpoints[0] must be an object", id="an-endpoint-not-an-object"),
        pytest.param({"hosts": ["a.com"], "endpoints": [{"address": 7}]}, "spec.endpoints[0].address must be a string", id="an-address-not-a-string"),
        pytest.param({"hosts": ["a.com"], "endpoints": [{}] * 4097}, "4097 entries", id="too-many-endpoints"),
        pytest.param({"hosts": ["a.com"], "addresses": "10.0.0.0/8"}, "spec.addresses must be a list", id="addresses-not-a-list"),
        pytest.param({"hosts": ["a.com"], "addresses": [None]}, "spec.addresses[0] must be a string", id="an-address-of-null"),
        pytest.param({"hosts": ["a.com"], "addresses": ["10.0.0.1"] * 4097}, "4097 entries", id="too-many-addresses"),
    ],
)  # fmt: skip
def test_shape_problems_are_named(spec: Any, problem: str) -> None:
    claim = claims.service_entry_claim({"metadata": {"name": "x", "namespace": "y"}, "spec": spec})
    assert any(problem in p for p in claim.problems)


def test_invalid_hosts_are_reported_with_their_index() -> None:
    claim = claims.service_entry_claim(make_service_entry(hosts=["ok.com", "bad_host.com", 7]))
    assert claim.hosts == ("ok.com",)
    assert [(i, raw) for i, raw, _ in claim.invalid] == [(1, "bad_host.com"), (2, 7)]


def test_the_service_export_annotation_is_read() -> None:
    svc = make_service("api", "team-a", annotations={"networking.istio.io/exportTo": ". , team-b"})
    assert claims.service_claim(svc, cluster_domain="cluster.local").export_to == (".", "team-b")


@pytest.mark.parametrize(
    ("spec", "targets", "resolves_hosts"),
    [
        pytest.param({"resolution": "DNS"}, (), True, id="no-endpoints-the-hosts-are-resolved"),
        pytest.param({}, (), True, id="no-resolution-is-none-the-hosts-are-passed-through"),
        pytest.param({"resolution": "STATIC"}, (), False, id="static-without-endpoints-goes-nowhere"),
        pytest.param({"resolution": "STATIC", "workloadSelector": {"labels": {"app": "vm"}}}, (), False, id="a-workload-selector-picks-the-endpoints"),
        pytest.param({"resolution": "STATIC", "endpoints": [{"address": "192.0.2.1"}, {"network": "far"}]}, (("spec.endpoints[0].address", "192.0.2.1"),), False, id="endpoints-are-targets"),
        pytest.param({"resolution": "NONE", "addresses": ["10.0.0.0/16"]}, (("spec.addresses[0]", "10.0.0.0/16"),), True, id="addresses-are-targets"),
    ],
)  # fmt: skip
def test_where_a_service_entrys_traffic_goes(
    spec: dict[str, Any], targets: tuple[tuple[str, str], ...], resolves_hosts: bool
) -> None:
    claim = claims.service_entry_claim(make_service_entry("e", "ns", ["a.example.com"], **spec))
    assert (claim.targets, claim.resolves_hosts, claim.problems) == (targets, resolves_hosts, ())


@pytest.mark.parametrize(
    ("spec", "ips"),
    [
        pytest.param({"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1", "FD00::0001"]}, ("10.96.0.1", "fd00::1"), id="dual-stack-compressed-once-each"),
        pytest.param({"clusterIP": "None", "clusterIPs": ["None"]}, (), id="a-headless-service-has-none"),
        pytest.param({"clusterIP": "", "type": "ExternalName"}, (), id="an-external-name-service-has-none"),
        pytest.param({"clusterIPs": [7, "not-an-ip", "10.96.0.2"]}, ("10.96.0.2",), id="only-ips-are-kept"),
    ],
)  # fmt: skip
def test_a_services_cluster_ips(spec: dict[str, Any], ips: tuple[str, ...]) -> None:
    service = make_service("a", "ns")
    service["spec"].update(spec)
    assert claims.service_claim(service, cluster_domain="cluster.local").cluster_ips == ips


@pytest.mark.parametrize(
    ("raw", "seconds", "text"),
    [
        pytest.param("2026-02-01T00:00:00Z", 1769904000, "2026-02-01T00:00:00Z", id="as-the-api-server-writes-it"),
        pytest.param("1970-01-01T00:00:00Z", 0, "1970-01-01T00:00:00Z", id="the-epoch-is-a-time-not-none"),
        pytest.param("1969-12-31T23:59:59Z", -1, "1969-12-31T23:59:59Z", id="before-the-epoch"),
        pytest.param("2024-02-29T12:00:00Z", 1709208000, "2024-02-29T12:00:00Z", id="a-leap-day"),
        pytest.param("2000-02-29T00:00:00Z", 951782400, "2000-02-29T00:00:00Z", id="a-leap-day-of-a-fourth-century"),
        pytest.param("2026-02-01T00:00:00.999999Z", 1769904000, "2026-02-01T00:00:00Z", id="fractions-dropped"),
        pytest.param("2026-02-01T02:30:00+02:30", 1769904000, "2026-02-01T00:00:00Z", id="an-offset-made-utc"),
        pytest.param("2026-01-31T19:00:00-05:00", 1769904000, "2026-02-01T00:00:00Z", id="a-negative-offset"),
        pytest.param("2026-02-01t00:00:00z", 1769904000, "2026-02-01T00:00:00Z", id="lower-case-t-and-z"),
        pytest.param("2025-02-29T00:00:00Z", None, "", id="no-such-day"),
        pytest.param("1900-02-29T00:00:00Z", None, "", id="no-leap-day-in-1900"),
        pytest.param("2026-04-31T00:00:00Z", None, "", id="april-has-30-days"),
        pytest.param("2026-13-01T00:00:00Z", None, "", id="no-thirteenth-month"),
        pytest.param("2026-02-01T24:00:00Z", None, "", id="no-hour-24"),
        pytest.param("2026-02-01T00:00:60Z", None, "", id="no-leap-second"),
        pytest.param("2026-02-01T00:00:00+24:00", None, "", id="no-such-offset"),
        pytest.param("2026-02-01T00:00:00", None, "", id="no-zone"),
        pytest.param("2026-02-01", None, "", id="a-date-alone"),
        pytest.param("yesterday", None, "", id="not-a-time"),
        pytest.param(" 2026-02-01T00:00:00Z", None, "", id="surrounded"),
        pytest.param(1769904000, None, "", id="a-number"),
        pytest.param(None, None, "", id="none"),
    ],
)  # fmt: skip
def test_a_creation_timestamp_is_held_in_seconds_and_read_back_as_written(
    raw: object, seconds: int | None, text: str
) -> None:
    assert claims.timestamp_seconds(raw) == seconds
    assert claims.timestamp_text(seconds) == text
    meta: dict[str, Any] = {} if raw is None else {"creationTimestamp": raw}
    claim = claims.service_entry_claim(
        make_service_entry("s", "a", ["h.example.com"], metadata=meta)
    )
    assert (claim.created_s, claim.created) == (seconds, text)


@given(
    st.datetimes(
        min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31, 23, 59, 59)
    )
)
def test_timestamps_agree_with_the_standard_library_s_calendar(moment: datetime.datetime) -> None:
    moment = moment.replace(microsecond=0, tzinfo=datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%SZ").rjust(20, "0")
    seconds = claims.timestamp_seconds(text)
    assert seconds == (
        moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    ) // datetime.timedelta(seconds=1)
    assert claims.timestamp_text(seconds) == text
