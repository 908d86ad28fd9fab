"""The names a Kubernetes Service owns, built and read back in one place.

A Service ``name`` in namespace ``ns`` is ``name.ns.svc.<cluster domain>`` (its FQDN), and
Istio adds two aliases as HTTP route domains, ``name.ns`` and ``name.ns.svc`` (and the bare
``name`` inside its own namespace). The registry, the rules, the claims and the webhook's own
certificate all take these forms from here.
"""

from __future__ import annotations


def fqdn(name: str, namespace: str, cluster_domain: str) -> str:
    return f"{name}.{namespace}.svc.{cluster_domain}"


def fqdn_suffix(namespace: str, cluster_domain: str) -> str:
    """What every FQDN of a Service of ``namespace`` ends with: ``.ns.svc.<domain>``."""
    return f".{namespace}.svc.{cluster_domain}"


def aliases(name: str, namespace: str) -> tuple[str, str]:
    """The short names Istio adds as route domains: ``name.ns`` and ``name.ns.svc``."""
    short = f"{name}.{namespace}"
    return short, short + ".svc"


def zones(namespace: str, cluster_domain: str) -> tuple[str, str, str]:
    """The domains the names of a namespace's Services lie in, form by form: the FQDNs', the
    ``.svc`` aliases', the short aliases'."""
    return f"{namespace}.svc.{cluster_domain}", f"{namespace}.svc", namespace


def of_fqdn(host: str, cluster_domain: str) -> tuple[str, str] | None:
    """(namespace, name) when ``host`` is a Service's FQDN, ``name.ns.svc.<domain>`` with one
    label each for the name and the namespace; else None."""
    suffix_at = len(host) - len(cluster_domain) - 5
    if suffix_at < 3 or not host.endswith(cluster_domain):
        return None
    if host[suffix_at : suffix_at + 5] != ".svc.":
        return None
    first = host.find(".")
    if first == -1 or first >= suffix_at or host.find(".", first + 1) != suffix_at:
        return None
    return host[first + 1 : suffix_at], host[:first]


def of_alias(host: str) -> tuple[str, str] | None:
    """(namespace, name) when ``host`` has the form of an alias, ``name.ns`` or
    ``name.ns.svc``; else None."""
    first = host.find(".")
    if first == -1:
        return None
    second = host.find(".", first + 1)
    if second == -1:
        return host[first + 1 :], host[:first]
    if host.endswith(".svc") and second == len(host) - 4:
        return host[first + 1 : second], host[:first]
    return None


def dns_names(service: str, namespace: str, cluster_domain: str) -> list[str]:
    """The names a client inside the cluster may use to reach a Service: the bare name, the
    two aliases and the FQDN."""
    return [service, *aliases(service, namespace), fqdn(service, namespace, cluster_domain)]
