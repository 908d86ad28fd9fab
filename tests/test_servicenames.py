"""The names a Service owns: built and read back by one module."""

from __future__ import annotations

import pytest

from webhook.core import servicenames


def test_the_names_follow_the_cluster_domain() -> None:
    assert servicenames.fqdn("reviews", "bookinfo", "corp.internal") == (
        "reviews.bookinfo.svc.corp.internal"
    )
    assert servicenames.aliases("reviews", "bookinfo") == (
        "reviews.bookinfo",
        "reviews.bookinfo.svc",
    )
    assert servicenames.fqdn_suffix("bookinfo", "corp.internal") == ".bookinfo.svc.corp.internal"
    assert servicenames.zones("bookinfo", "corp.internal") == (
        "bookinfo.svc.corp.internal",
        "bookinfo.svc",
        "bookinfo",
    )
    assert servicenames.dns_names("seguard", "seguard-system", "cluster.local") == [
        "seguard",
        "seguard.seguard-system",
        "seguard.seguard-system.svc",
        "seguard.seguard-system.svc.cluster.local",
    ]


@pytest.mark.parametrize(
    ("host", "found"),
    [
        ("reviews.bookinfo.svc.cluster.local", ("bookinfo", "reviews")),
        ("a.b.svc.cluster.local", ("b", "a")),
        ("reviews.bookinfo.svc.other.local", None),  # another cluster domain
        ("x.reviews.bookinfo.svc.cluster.local", None),  # three labels before .svc
        ("bookinfo.svc.cluster.local", None),  # no Service name
        ("reviews.bookinfo.cluster.local", None),  # no .svc
        ("svc.cluster.local", None),
        ("cluster.local", None),
    ],
)
def test_an_fqdn_is_read_back_into_its_namespace_and_name(
    host: str, found: tuple[str, str] | None
) -> None:
    assert servicenames.of_fqdn(host, "cluster.local") == found


@pytest.mark.parametrize(
    ("host", "found"),
    [
        ("reviews.bookinfo", ("bookinfo", "reviews")),
        ("reviews.bookinfo.svc", ("bookinfo", "reviews")),
        ("reviews", None),
        ("a.b.c", None),
        ("reviews.bookinfo.svc.cluster.local", None),
    ],
)
def test_an_alias_is_read_back_into_its_namespace_and_name(
    host: str, found: tuple[str, str] | None
) -> None:
    assert servicenames.of_alias(host) == found


@pytest.mark.parametrize(("name", "namespace"), [("a", "b"), ("reviews", "bookinfo")])
def test_what_is_built_reads_back(name: str, namespace: str) -> None:
    assert servicenames.of_fqdn(servicenames.fqdn(name, namespace, "c.local"), "c.local") == (
        namespace,
        name,
    )
    for alias in servicenames.aliases(name, namespace):
        assert servicenames.of_alias(alias) == (namespace, name)
