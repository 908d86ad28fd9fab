"""Host names: normalisation, validity, cover and overlap, Kubernetes names, public suffixes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core import hosts


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("api.stripe.com", "api.stripe.com", id="a-plain-name-is-kept"),
        pytest.param("API.Stripe.COM", "api.stripe.com", id="upper-case-is-lowered"),
        pytest.param("api.stripe.com.", "api.stripe.com", id="one-trailing-dot-is-stripped"),
        pytest.param("*.Example.com.", "*.example.com", id="a-wildcard-is-normalised-too"),
        pytest.param("bücher.de", "xn--bcher-kva.de", id="idn-becomes-a-labels"),
        pytest.param("*.BÜCHER.de", "*.xn--bcher-kva.de", id="idn-wildcard-becomes-a-labels"),
        pytest.param("xn--bcher-kva.de", "xn--bcher-kva.de", id="a-labels-stay-as-they-are"),
        pytest.param("reviews", "reviews", id="a-single-label-is-a-name"),
        pytest.param("a" * 63 + ".com", "a" * 63 + ".com", id="a-63-character-label-is-fine"),
        pytest.param(
            "my-service.ns-1.svc.cluster.local",
            "my-service.ns-1.svc.cluster.local",
            id="hyphens-and-digits",
        ),
        pytest.param("*Foo.Example.com", "*foo.example.com", id="a-partial-wildcard-is-kept"),
        pytest.param(
            "*-foo.example.com", "*-foo.example.com", id="a-partial-wildcard-with-a-hyphen"
        ),
        pytest.param("*foo", "*foo", id="a-partial-wildcard-of-one-label"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert hosts.normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param(".", "empty", id="a-lone-dot"),
        pytest.param("*", "every host", id="star-alone"),
        pytest.param("*.", "every host", id="star-dot"),
        pytest.param("1.2.3.4", "IP address", id="ipv4-address"),
        pytest.param("2001:db8::1", "IP address", id="ipv6-address"),
        pytest.param("a" * 64 + ".com", "63", id="label-over-63-characters"),
        pytest.param(".".join(["abcdefghi"] * 26), "253", id="name-over-253-characters"),
        pytest.param("foo.*.com", "first label", id="star-in-the-middle"),
        pytest.param("foo*.bar.com", "first label", id="a-star-at-the-end-of-a-label"),
        pytest.param("f*o.bar.com", "first label", id="a-star-inside-a-label"),
        pytest.param("*f*o.bar.com", "first label", id="two-stars-in-a-partial-label"),
        pytest.param("*foo-.bar.com", "not at the end", id="a-partial-label-ending-in-a-hyphen"),
        pytest.param("*--foo.bar.com", "first label", id="a-partial-label-with-two-hyphens"),
        pytest.param("*bücher.de", "first label", id="a-partial-label-that-is-not-ascii"),
        pytest.param(
            "*" + "a" * 63 + ".com", "first label", id="a-partial-label-over-63-characters"
        ),
        pytest.param("*.*.com", "first label", id="two-stars"),
        pytest.param("foo_bar.com", "a-z, 0-9", id="underscore"),
        pytest.param("-foo.com", "a-z, 0-9", id="leading-hyphen"),
        pytest.param("foo-.com", "a-z, 0-9", id="trailing-hyphen"),
        pytest.param("a..b.com", "empty label", id="empty-label"),
        pytest.param("foo.123", "all-numeric", id="numeric-top-level-label"),
        pytest.param("exa mple.com", "a-z, 0-9", id="a-space"),
    ],
)
def test_invalid_hosts_say_why(raw: str, reason: str) -> None:
    with pytest.raises(hosts.InvalidHost) as caught:
        hosts.normalize(raw)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    "raw",
    [None, 42, 4.2, True, ["a.com"], {"host": "a.com"}],
    ids=lambda v: f"a-{type(v).__name__}",
)
def test_a_host_that_is_not_a_string_is_invalid(raw: Any) -> None:
    with pytest.raises(hosts.InvalidHost, match="must be a string"):
        hosts.normalize(raw)


@pytest.mark.parametrize(
    ("pattern", "host", "covers"),
    [
        pytest.param("*.example.com", "a.example.com", True, id="wildcard-covers-a-subdomain"),
        pytest.param(
            "*.example.com", "a.b.example.com", True, id="wildcard-covers-a-deeper-subdomain"
        ),
        pytest.param("*.example.com", "example.com", False, id="wildcard-does-not-cover-its-base"),
        pytest.param("*.example.com", "badexample.com", False, id="suffix-must-start-at-a-label"),
        pytest.param(
            "*.example.com", "*.a.example.com", True, id="wildcard-covers-a-deeper-wildcard"
        ),
        pytest.param("*.example.com", "*.example.com", True, id="wildcard-covers-itself"),
        pytest.param(
            "*.a.example.com",
            "*.example.com",
            False,
            id="deeper-wildcard-does-not-cover-a-broader-one",
        ),
        pytest.param("a.example.com", "a.example.com", True, id="a-name-covers-itself"),
        pytest.param("a.example.com", "*.example.com", False, id="a-name-never-covers-a-wildcard"),
        pytest.param("*.com", "*.example.com", True, id="broad-wildcard-covers-a-narrow-one"),
        pytest.param(
            "*foo.example.com", "foo.example.com", True, id="a-partial-wildcard-covers-its-suffix"
        ),
        pytest.param(
            "*foo.example.com",
            "xfoo.example.com",
            True,
            id="a-partial-wildcard-covers-across-the-label",
        ),
        pytest.param(
            "*foo.example.com",
            "a.foo.example.com",
            True,
            id="a-partial-wildcard-covers-deeper-names",
        ),
        pytest.param(
            "*foo.example.com",
            "*.foo.example.com",
            True,
            id="a-partial-wildcard-covers-the-wildcard-below-it",
        ),
        pytest.param(
            "*foo.example.com",
            "oo.example.com",
            False,
            id="a-partial-wildcard-does-not-cover-a-shorter-suffix",
        ),
        pytest.param(
            "*.example.com", "*foo.example.com", True, id="a-wildcard-covers-a-partial-one-below-it"
        ),
        pytest.param(
            "*oo.example.com", "*foo.example.com", True, id="a-shorter-partial-covers-a-longer-one"
        ),
        pytest.param(
            "*foo.example.com",
            "*oo.example.com",
            False,
            id="a-longer-partial-does-not-cover-a-shorter-one",
        ),
        pytest.param(
            "*.example.com",
            "*example.com",
            False,
            id="a-wildcard-does-not-cover-a-partial-that-matches-its-base",
        ),
    ],
)
def test_covers(pattern: str, host: str, covers: bool) -> None:
    assert hosts.covers(pattern, host) is covers


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        pytest.param("*.example.com", "a.example.com", True, id="wildcard-and-a-name-it-covers"),
        pytest.param("a.example.com", "*.example.com", True, id="overlap-is-symmetric"),
        pytest.param("*.com", "*.example.com", True, id="two-wildcards-one-suffix-of-the-other"),
        pytest.param("*.a.com", "*.b.com", False, id="two-wildcards-apart"),
        pytest.param("a.com", "b.com", False, id="two-different-names"),
        pytest.param("*.example.com", "example.com", False, id="wildcard-and-its-base"),
        pytest.param("*example.com", "example.com", True, id="a-partial-wildcard-and-its-suffix"),
        pytest.param(
            "*.foo.example.com", "*foo.example.com", True, id="a-wildcard-inside-a-partial-one"
        ),
        pytest.param(
            "*foo.example.com", "*bar.example.com", False, id="two-partial-wildcards-apart"
        ),
    ],
)
def test_overlaps(a: str, b: str, overlap: bool) -> None:
    assert hosts.overlaps(a, b) is overlap


@pytest.mark.parametrize(
    ("host", "suffix"),
    [
        pytest.param("*.com", "com", id="a-top-level-domain"),
        pytest.param("*.co.uk", "co.uk", id="a-second-level-public-suffix"),
        pytest.param("*.uk", "uk", id="a-country-code"),
        pytest.param("*.kawasaki.jp", "kawasaki.jp", id="a-psl-wildcard-rule"),
        pytest.param("*.stripe.com", None, id="a-registrable-domain-is-fine"),
        pytest.param("*.example.co.uk", None, id="under-a-registrable-domain-is-fine"),
        pytest.param("*.corp", None, id="an-unknown-top-level-domain-is-not-public"),
        pytest.param("api.stripe.com", None, id="not-a-wildcard"),
        pytest.param("*oogle.com", "com", id="a-partial-label-under-a-public-suffix-spans-sites"),
        pytest.param(
            "*api.stripe.com", None, id="a-partial-label-under-a-registrable-domain-is-fine"
        ),
        pytest.param("*foo", "", id="a-partial-wildcard-of-one-label-sits-at-the-root"),
    ],
)
def test_public_suffix_of_a_wildcard(host: str, suffix: str | None) -> None:
    assert hosts.public_suffix_of_wildcard(host) == suffix


@pytest.mark.parametrize(
    ("host", "domain", "inside"),
    [
        pytest.param("a.svc.cluster.local", "cluster.local", True, id="a-name-inside"),
        pytest.param("cluster.local", "cluster.local", True, id="the-domain-itself"),
        pytest.param("*.svc.cluster.local", "cluster.local", True, id="a-wildcard-inside"),
        pytest.param("*.local", "cluster.local", False, id="a-wildcard-above"),
        pytest.param("notcluster.local", "cluster.local", False, id="a-look-alike"),
        pytest.param("*s.svc.cluster.local", "cluster.local", True, id="a-partial-wildcard-inside"),
        pytest.param(
            "*cluster.local", "cluster.local", False, id="a-partial-wildcard-that-reaches-outside"
        ),
    ],
)
def test_is_under(host: str, domain: str, inside: bool) -> None:
    assert hosts.is_under(host, domain) is inside


@pytest.mark.parametrize(
    ("host", "base", "parent"),
    [
        pytest.param("api.example.com", "api.example.com", "api.example.com", id="an-exact-name-is-its-own"),
        pytest.param("*.example.com", "example.com", "example.com", id="a-wildcard"),
        pytest.param("*foo.example.com", "foo.example.com", "example.com", id="a-partial-wildcard"),
        pytest.param("*foo", "foo", "", id="a-partial-wildcard-of-one-label-lies-in-the-root"),
    ],
)  # fmt: skip
def test_the_base_and_parent_of_a_wildcard(host: str, base: str, parent: str) -> None:
    assert hosts.base_name(host) == base
    if hosts.is_wildcard(host):
        assert hosts.wildcard_parent(host) == parent


def _slow(raw: str) -> str | None:
    try:
        return hosts._normalize(raw)
    except hosts.InvalidHost:
        return None


def _fast(raw: str) -> str | None:
    try:
        return hosts.normalize(raw)
    except hosts.InvalidHost:
        return None


_NAME_CHARS = st.sampled_from([*"abcz0189-.*AZ_", "ü", ":"])


@given(st.text(_NAME_CHARS, min_size=0, max_size=80))
@settings(max_examples=3000, deadline=None)
def test_the_quick_way_and_the_checks_agree_on_every_name(raw: str) -> None:
    assert _fast(raw) == _slow(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "a" * 63 + ".com",
        "a" * 64 + ".com",
        ".".join(["abcdefghi"] * 25) + ".com",  # 254 characters
        ".".join(["abcdefghi"] * 25)[:-4] + ".com",
        "*.com",
        "*.123",
        "1.2.3.4",
        "a.1-2",
        "a.12",
        "-a.com",
        "a-.com",
        "xn--bcher-kva.example",
    ],
)
def test_the_quick_way_and_the_checks_agree_at_the_edges(raw: str) -> None:
    assert _fast(raw) == _slow(raw)
