"""DNS names as Istio compares them: normalise, validate, cover and overlap (pure).

A host is an exact name (``api.stripe.com``), a wildcard whose first label is ``*``
(``*.stripe.com``), or a partial wildcard whose first label starts with ``*`` (``*api.stripe.com``,
which Istio's validation accepts with a warning). Matching follows Istio's ``host.Name.Matches``
and ``SubsetOf``, for which a wildcard matches every name that ends with what follows its ``*``:
``*.example.com`` covers ``a.example.com`` and ``a.b.example.com`` but not ``example.com``, and
``*foo.example.com`` covers ``foo.example.com``, ``xfoo.example.com`` and ``a.foo.example.com``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import idna
from publicsuffixlist import PublicSuffixList

from webhook.core.shapes import type_name

# RFC 1035: a label is at most 63 octets and a name at most 253 characters in text form.
MAX_LABEL = 63
MAX_NAME = 253
WILDCARD_PREFIX = "*."

# A fixed pattern of ours, never one a user supplies: a DNS-1123 label in lower case.
DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")


class InvalidHost(ValueError):
    """A host that is not a DNS name Istio can register."""

    def __init__(self, host: object, reason: str) -> None:
        super().__init__(f"{host!r}: {reason}")
        self.host = host
        self.reason = reason


def normalize(raw: object) -> str:
    """Lower-case, strip one trailing dot and turn IDN labels into A-labels.

    Raises InvalidHost for anything that is not a DNS name or a ``*.`` wildcard of one.
    """
    if not isinstance(raw, str):
        raise InvalidHost(raw, f"must be a string, not {type_name(raw)}")
    if len(raw) <= MAX_NAME and _ALREADY_NORMAL.match(raw) is not None:
        return raw
    return _normalize(raw)


# A name that is already what _normalize returns: lower-case DNS-1123 labels of at most 63
# characters, the last one not all digits (so no IPv4 address either), no trailing dot, with at
# most a "*." in front. One match (about 0.3 µs) instead of the label-by-label checks (1.2 µs):
# nearly every host a request carries is like this. Anything else takes the checks, which also
# say what is wrong. tests/test_hosts.py checks that both ways agree.
# fmt: off
_ALREADY_NORMAL = re.compile(r"(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
                             r"(?![0-9]+\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# fmt: on


def _normalize(raw: str) -> str:
    name = raw.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidHost(raw, "is empty")
    if name == "*":
        raise InvalidHost(raw, "'*' alone would match every host")
    prefix, base = "", name
    if name.startswith("*"):
        first, dot, rest = name.partition(".")
        if first != "*":
            _check_partial_label(raw, first)
        prefix, base = first + dot, rest
    if "*" in base:
        raise InvalidHost(
            raw, "'*' is allowed only at the start of the first label, as in '*.example.com'"
        )
    if not base:
        if prefix.endswith("."):
            raise InvalidHost(raw, "has an empty label")
        return prefix  # a partial wildcard of one label, such as "*foo"
    if not base.isascii():
        base = _to_a_labels(raw, base)
    if is_ip(base):
        raise InvalidHost(raw, "is an IP address, not a host name")
    labels = base.split(".")
    for label in labels:
        if not label:
            raise InvalidHost(raw, "has an empty label")
        if len(label) > MAX_LABEL:
            raise InvalidHost(raw, f"has a label longer than {MAX_LABEL} characters")
        if not DNS_LABEL.match(label):
            raise InvalidHost(
                raw,
                f"label {label!r} may hold only a-z, 0-9 and '-', not at either end",
            )
    if labels[-1].isdigit():
        raise InvalidHost(raw, "has an all-numeric top-level label")
    result = prefix + base
    if len(result) > MAX_NAME:
        raise InvalidHost(raw, f"is longer than {MAX_NAME} characters")
    return result


def _check_partial_label(raw: str, first: str) -> None:
    """A partial wildcard's first label, as Istio's validation reads it: ``*`` and then a DNS
    label, or ``*-`` and then one (``*foo``, ``*-foo``), 63 characters in all at most."""
    fragment = first[1:]
    label = fragment[1:] if fragment.startswith("-") else fragment
    if (
        "*" in fragment
        or not fragment.isascii()
        or len(first) > MAX_LABEL
        or not DNS_LABEL.match(label)
    ):
        raise InvalidHost(
            raw,
            f"first label {first!r} must be '*', or '*' followed by a-z, 0-9 and '-' (not at "
            "the end), as in '*.example.com' or '*api.example.com'",
        )


def _to_a_labels(raw: str, base: str) -> str:
    try:
        return idna.encode(base, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidHost(raw, f"is not a valid internationalised name ({exc})") from None


def is_ip(name: str) -> bool:
    """True for an IPv4 or IPv6 address as ``ipaddress.ip_address`` reads it."""
    # IPv4 text is only digits and dots, and IPv6 text always has a colon: anything else is no
    # address, decided without the two exceptions ipaddress raises on the way to saying so.
    if ":" not in name and not name.replace(".", "").isdigit():
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_wildcard(host: str) -> bool:
    """True for ``*.example.com`` and for a partial wildcard such as ``*foo.example.com``."""
    return host.startswith("*")


def is_partial_wildcard(host: str) -> bool:
    return host.startswith("*") and not host.startswith(WILDCARD_PREFIX)


def base_name(host: str) -> str:
    """What every name a wildcard matches ends with, without the leading dot: ``example.com``
    for ``*.example.com``, ``foo.example.com`` for ``*foo.example.com``. An exact host is its own
    base."""
    if host.startswith(WILDCARD_PREFIX):
        return host[2:]
    return host[1:] if host.startswith("*") else host


def wildcard_parent(host: str) -> str:
    """The domain strictly inside which every name a wildcard matches lies: ``example.com`` for
    both ``*.example.com`` and ``*foo.example.com``; "" (the root) for ``*foo``."""
    if host.startswith(WILDCARD_PREFIX):
        return host[2:]
    dot = host.find(".")
    return "" if dot == -1 else host[dot + 1 :]


def parents(name: str) -> Iterator[str]:
    """Each proper parent domain of an exact name, nearest first: a.b.c -> b.c, c."""
    start = name.find(".")
    while start != -1:
        yield name[start + 1 :]
        start = name.find(".", start + 1)


def covers(pattern: str, host: str) -> bool:
    """True when every name ``host`` matches is also matched by ``pattern`` (Istio SubsetOf)."""
    if not pattern.startswith("*"):
        return pattern == host
    if host.startswith("*") and len(host) < len(pattern):
        return False
    return host.endswith(pattern[1:])


def overlaps(a: str, b: str) -> bool:
    """True when some name matches both (Istio Matches): either covers the other."""
    return covers(a, b) or covers(b, a)


def is_under(host: str, domain: str) -> bool:
    """True when every name the exact or wildcard ``host`` matches lies inside ``domain`` (or is
    ``domain``). A partial wildcard's first label may reach outside: ``*cluster.local`` also
    matches ``xcluster.local``."""
    base = base_name(host)
    if base.endswith("." + domain):
        return True
    return base == domain and not is_partial_wildcard(host)


# The package bundles its list: read once, at import (about 30 ms and 1 MB), a table the core
# only looks things up in. Only the ICANN section counts: private entries such as cloud buckets
# are ordinary customer domains to a platform team. Unknown top-level labels (.corp,
# .internal) are not treated as public.
_PUBLIC_SUFFIXES = PublicSuffixList(only_icann=True, accept_unknown=False)


def is_public_suffix(name: str) -> bool:
    """True for a name on the public suffix list (ICANN section): com, co.uk, dev."""
    return bool(_PUBLIC_SUFFIXES.is_public(name))


def public_suffix_of_wildcard(host: str) -> str | None:
    """The public suffix a wildcard sits at or above, or None when it sits under a registrable
    domain. ``*.com`` -> ``com``; ``*.co.uk`` -> ``co.uk``; ``*.stripe.com`` -> None. A partial
    wildcard's first label spans registrable domains when its parent is a public suffix:
    ``*oogle.com`` -> ``com`` (it matches google.com and notgoogle.com); one of a single label
    sits above every suffix: ``*foo`` -> "" (the root)."""
    if not host.startswith("*"):
        return None
    base = wildcard_parent(host)
    if not base:
        return ""
    psl = _PUBLIC_SUFFIXES
    if psl.is_public(base):
        return base
    # A wildcard rule in the list (``*.kawasaki.jp``) makes every child public: the base is then
    # above a public suffix even though it is not one itself.
    if psl.is_public("x." + base):
        return base
    return None
