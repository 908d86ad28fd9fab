"""Where an entry's traffic goes: endpoints and addresses, against the targets policy, the host
rules and the Services' cluster IPs. Each attack sits beside the legitimate neighbour it must
not catch."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import (
    make_policy,
    make_request,
    make_service,
    make_service_entry,
    make_snapshot,
)
from webhook.core import review
from webhook.core.registry import Snapshot


def service_with_ips(name: str, namespace: str, *ips: str) -> dict[str, Any]:
    service = make_service(name, namespace)
    service["spec"]["clusterIP"] = ips[0]
    service["spec"]["clusterIPs"] = list(ips)
    return service


CLUSTER = make_snapshot(
    service_with_ips("reviews", "bookinfo", "10.96.21.7", "fd00:10:96::7"),
    make_service("headless", "bookinfo"),
)
POLICY = make_policy(
    hosts={"denied": ["*.corp.example.com"]},
    namespaces=[{"selector": {"names": ["payments"]}, "hosts": {"allowed": ["*.stripe.com"]}}],
)


def judge(
    spec: dict[str, Any],
    *,
    namespace: str = "team-x",
    hosts: list[str] | None = None,
    policy: Any = POLICY,
    snapshot: Snapshot = CLUSTER,
) -> review.Verdict:
    obj = make_service_entry("entry", namespace, hosts or ["api.partner.example.com"], **spec)
    return review.validate(make_request(obj), policy=policy, snapshot=snapshot)


def static(*addresses: str) -> dict[str, Any]:
    return {"resolution": "STATIC", "endpoints": [{"address": a} for a in addresses]}


def dns(*addresses: str) -> dict[str, Any]:
    return {"resolution": "DNS", "endpoints": [{"address": a} for a in addresses]}


def none(*addresses: str) -> dict[str, Any]:
    return {"resolution": "NONE", "addresses": list(addresses)}


@pytest.mark.parametrize(
    ("spec", "codes"),
    [
        pytest.param(static("169.254.169.254"), ["TargetDenied"], id="an-endpoint-at-the-cloud-metadata-server"),
        pytest.param(static("192.0.2.10"), [], id="an-endpoint-ip-in-a-documentation-range-is-fine"),
        pytest.param(static("10.0.0.12"), [], id="an-endpoint-on-a-private-network-is-fine"),
        pytest.param(static("127.0.0.1"), ["TargetDenied"], id="an-endpoint-on-loopback"),
        pytest.param(static("0.0.0.0"), ["TargetDenied"], id="an-endpoint-at-this-network"),
        pytest.param(static("fe80::1"), ["TargetDenied"], id="an-endpoint-link-local-in-ipv6"),
        pytest.param(static("fe80::1%eth0"), ["TargetDenied"], id="an-endpoint-link-local-with-a-zone"),
        pytest.param(static("::1"), ["TargetDenied"], id="an-endpoint-on-ipv6-loopback"),
        pytest.param(static("fd00:ec2::254"), ["TargetDenied"], id="an-endpoint-at-the-aws-ipv6-metadata-server"),
        pytest.param(static("::ffff:169.254.169.254"), ["TargetDenied"], id="the-metadata-server-as-an-ipv4-mapped-address"),
        pytest.param(static("64:ff9b::a9fe:a9fe"), ["TargetDenied"], id="the-metadata-server-through-nat64"),
        pytest.param(static("::ffff:192.0.2.10"), [], id="a-documentation-ip-as-an-ipv4-mapped-address-is-fine"),
        pytest.param(static("2001:db8::10"), [], id="an-ipv6-endpoint-in-a-documentation-range-is-fine"),
        pytest.param(static("10.96.21.7"), ["TargetDenied"], id="an-endpoint-at-a-services-cluster-ip"),
        pytest.param(static("fd00:10:96::7"), ["TargetDenied"], id="an-endpoint-at-a-services-ipv6-cluster-ip"),
        pytest.param(static("10.96.21.8"), [], id="the-address-next-to-a-cluster-ip-is-fine"),
        pytest.param({"resolution": "STATIC", "endpoints": [{"address": "unix:///var/run/app.sock"}]}, [], id="a-unix-socket-endpoint-is-fine"),
        pytest.param({"resolution": "STATIC", "endpoints": [{"network": "remote", "labels": {"app": "x"}}]}, [], id="an-endpoint-behind-its-networks-gateway-is-fine"),
        pytest.param(dns("metadata.google.internal"), ["TargetDenied"], id="an-endpoint-at-the-metadata-server-by-name"),
        pytest.param(dns("Metadata.Google.Internal."), ["TargetDenied"], id="the-metadata-server-by-name-however-written"),
        pytest.param(dns("metadata"), ["TargetDenied"], id="the-metadata-servers-short-name-through-search-domains"),
        pytest.param(dns("localhost"), ["TargetDenied"], id="an-endpoint-at-localhost"),
        pytest.param(dns("db.localhost"), ["TargetDenied"], id="an-endpoint-under-localhost"),
        pytest.param(dns("backend.partner.example.com"), [], id="an-endpoint-at-a-partner-name-is-fine"),
        pytest.param(dns("vault.corp.example.com"), ["HostDenied"], id="an-endpoint-in-the-denied-domains"),
        pytest.param(dns("reviews.bookinfo.svc.cluster.local"), [], id="an-endpoint-at-a-service-by-name-is-fine"),
        pytest.param(dns("bad_name.example.com"), ["InvalidSpec"], id="an-endpoint-that-is-no-address-or-name"),
        pytest.param(dns("*.example.com"), ["InvalidSpec"], id="an-endpoint-that-is-a-wildcard"),
        pytest.param(static("300.1.2.3"), ["InvalidSpec"], id="an-endpoint-that-is-no-ip"),
        pytest.param(none("0.0.0.0/0"), ["TargetTooBroad", "TargetDenied"], id="every-address"),
        pytest.param(none("10.0.0.0/7"), ["TargetTooBroad"], id="a-range-broader-than-a-slash-8"),
        pytest.param(none("10.0.0.0/8"), [], id="a-whole-private-network-is-as-broad-as-allowed"),
        pytest.param(none("10.20.0.0/16"), [], id="a-partner-cidr-slash-16-is-fine"),
        pytest.param(none("198.51.100.0/24"), [], id="a-partner-cidr-slash-24-is-fine"),
        pytest.param(none("169.254.0.0/15"), ["TargetDenied"], id="a-range-that-covers-the-metadata-range"),
        pytest.param(none("169.254.169.0/24"), ["TargetDenied"], id="a-range-inside-the-metadata-range"),
        pytest.param(none("10.96.21.7/32"), ["TargetDenied"], id="a-single-address-range-at-a-cluster-ip"),
        pytest.param(none("10.96.21.7"), ["TargetDenied"], id="an-address-at-a-cluster-ip"),
        pytest.param(none("2001:db8::/16"), ["TargetTooBroad"], id="an-ipv6-range-broader-than-a-slash-32"),
        pytest.param(none("2001:db8::/48"), [], id="an-ipv6-partner-range-is-fine"),
        pytest.param(none("::ffff:0.0.0.0/96"), ["TargetTooBroad", "TargetDenied"], id="every-ipv4-address-in-ipv6-form"),
        pytest.param(none("not-an-address"), ["InvalidSpec"], id="an-address-that-is-no-ip-or-cidr"),
        pytest.param(none("::ffff:0:0/95"), ["TargetTooBroad", "TargetDenied"], id="an-ipv6-range-holding-every-ipv4-mapped-address"),
        pytest.param(none("64:ff9b::/64"), ["TargetTooBroad", "TargetDenied"], id="an-ipv6-range-holding-all-of-nat64"),
        pytest.param(static("::"), ["TargetDenied"], id="an-endpoint-at-the-ipv6-unspecified-address"),
        pytest.param(dns("ip6-localhost"), ["TargetDenied"], id="an-endpoint-at-the-kubelets-name-for-ipv6-loopback"),
        pytest.param(dns("ip6-loopback"), ["TargetDenied"], id="an-endpoint-at-the-other-kubelet-name-for-ipv6-loopback"),
        pytest.param(dns("0x7f000001"), ["TargetDenied"], id="an-endpoint-at-loopback-written-in-hex"),
        pytest.param(dns("0xa9fea9fe"), ["TargetDenied"], id="an-endpoint-at-the-metadata-server-written-in-hex"),
        pytest.param(static("::ffff:0:a9fe:a9fe"), ["TargetDenied"], id="the-metadata-server-as-an-ipv4-translated-address"),
        pytest.param(static("64:ff9b:1::a9fe:a9fe"), ["TargetDenied"], id="the-metadata-server-through-local-use-nat64"),
        pytest.param({"resolution": "DNS", "addresses": ["169.254.169.254"]}, ["TargetDenied"], id="a-vip-at-the-metadata-server-whatever-the-resolution"),
    ],
)  # fmt: skip
def test_targets(spec: dict[str, Any], codes: list[str]) -> None:
    verdict = judge(spec)
    assert list(verdict.codes) == codes
    assert verdict.allowed is (not codes)


def test_a_cluster_ip_target_names_the_service_and_the_field() -> None:
    verdict = judge(static("192.0.2.1", "10.96.21.7"))
    [finding] = verdict.findings
    assert finding.owner is not None
    assert (finding.owner.kind, finding.owner.namespace, finding.owner.name) == (
        "Service",
        "bookinfo",
        "reviews",
    )
    assert "spec.endpoints[1].address" in finding.message
    assert finding.host == "10.96.21.7"


@pytest.mark.parametrize(
    ("hosts", "spec", "codes"),
    [
        pytest.param(["metadata.google.internal"], {"resolution": "DNS"}, ["TargetDenied"], id="a-host-that-is-the-metadata-server-resolved-as-it-is"),
        pytest.param(["*.google.internal"], {"resolution": "NONE"}, ["TargetDenied"], id="a-wildcard-passed-through-to-the-metadata-server"),
        pytest.param(["metadata.google.internal"], static("192.0.2.10"), [], id="a-host-whose-traffic-goes-to-its-endpoints-is-no-target"),
        pytest.param(["localhost.example.com"], {"resolution": "DNS"}, [], id="a-name-that-only-starts-like-localhost-is-fine"),
        pytest.param(["api.partner.example.com"], {"resolution": "DNS"}, [], id="an-ordinary-host-resolved-as-it-is-is-fine"),
    ],
)  # fmt: skip
def test_hosts_are_targets_when_nothing_else_is(
    hosts: list[str], spec: dict[str, Any], codes: list[str]
) -> None:
    assert list(judge(spec, hosts=hosts).codes) == codes


@pytest.mark.parametrize(
    ("namespace", "address", "codes"),
    [
        pytest.param("payments", "collector.example.org", ["HostNotAllowed"], id="an-endpoint-outside-the-namespaces-allowed-domains"),
        pytest.param("payments", "eu.api.stripe.com", [], id="an-endpoint-inside-the-allowed-domains"),
        pytest.param("payments", "reviews.bookinfo.svc.cluster.local", [], id="an-endpoint-in-the-cluster-domain-is-not-held-to-the-list"),
    ],
)  # fmt: skip
def test_endpoint_names_are_held_to_the_allowed_domains(
    namespace: str, address: str, codes: list[str]
) -> None:
    verdict = judge(dns(address), namespace=namespace, hosts=["checkout.stripe.com"])
    assert list(verdict.codes) == codes
    if codes:
        assert f'endpoint "{address}" (spec.endpoints[0].address)' in verdict.findings[0].message


@pytest.mark.parametrize(
    ("targets", "spec", "codes", "allowed"),
    [
        pytest.param({"action": "Warn"}, static("169.254.169.254"), ["TargetDenied"], True, id="targets-can-warn"),
        pytest.param({"action": "Allow"}, none("0.0.0.0/0"), [], True, id="targets-can-be-switched-off"),
        pytest.param({"denied": ["203.0.113.0/24"]}, static("169.254.169.254"), [], True, id="a-denied-list-given-replaces-the-built-in-one"),
        pytest.param({"denied": ["203.0.113.0/24"]}, static("203.0.113.9"), ["TargetDenied"], False, id="a-denied-range-of-the-admins"),
        pytest.param({"denied": ["*.internal.example"]}, dns("db.internal.example"), ["TargetDenied"], False, id="a-denied-host-pattern-of-the-admins"),
        pytest.param({"minPrefixLength": {"ipv4": 16}}, none("10.0.0.0/8"), ["TargetTooBroad"], False, id="a-longer-minimum-prefix"),
        pytest.param({"minPrefixLength": {"ipv4": 0}}, none("0.0.0.0/0"), ["TargetDenied"], False, id="no-minimum-prefix-still-keeps-the-denied-ranges"),
    ],
)  # fmt: skip
def test_the_targets_policy(
    targets: dict[str, Any], spec: dict[str, Any], codes: list[str], allowed: bool
) -> None:
    verdict = judge(spec, policy=make_policy(targets=targets))
    assert list(verdict.codes) == codes
    assert verdict.allowed is allowed


def test_a_namespace_rule_adds_denied_targets_for_its_namespace() -> None:
    policy = make_policy(
        namespaces=[{"selector": {"names": ["team-x"]}, "targets": {"denied": ["192.0.2.0/24"]}}]
    )
    assert judge(static("192.0.2.10"), policy=policy).codes == ("TargetDenied",)
    assert judge(static("192.0.2.10"), namespace="team-y", policy=policy).codes == ()
    # The built-in list still holds for the namespace.
    assert judge(static("169.254.169.254"), policy=policy).codes == ("TargetDenied",)


def test_a_headless_service_has_no_cluster_ip_to_take() -> None:
    assert CLUSTER.service_with_ip("None") is None
    assert judge(static("10.96.21.9")).codes == ()


def test_a_loopback_name_is_one_finding() -> None:
    assert [f.code.value for f in judge(dns("localhost")).findings] == ["TargetDenied"]
