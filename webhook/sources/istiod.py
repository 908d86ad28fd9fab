"""The istiod source, optional: poll ``/debug/registryz`` for what Istio itself sees (shell).

It covers names the cluster's own API does not show: Services of remote clusters in a
multicluster mesh, and other registry adapters. Each entry becomes a claim with source
``istiod``; a claim whose object another source already holds is left to that source.
"""

from __future__ import annotations

import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from webhook.core import hosts
from webhook.core.claims import SERVICE, SERVICE_ENTRY, Claim, ips_of, timestamp_seconds
from webhook.periodic import Periodic
from webhook.sources.store import RegistryStore

log = logging.getLogger("seguard.istiod")

SOURCE = "istiod"
# registryz is a full dump of istiod's registry (megabytes in a large mesh): every 30 s is often
# enough for names that change at the pace of deployments, and light on istiod.
POLL_EVERY_S = 30.0
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
FORBIDDEN_HINT = (
    "istiod answered 403 for /debug/registryz: from Istio 1.28.4 on, debug endpoints answer only "
    "callers in the Istio root namespace (istio-system) or in a namespace allow-listed for debug "
    "access; run the webhook there, allow-list its namespace, or drop --istiod-url"
)


class IstiodError(Exception):
    """registryz could not be read, as one line that says what to do."""


def registryz_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith("/debug/registryz") else base + "/debug/registryz"


def fetch(
    url: str, *, token_file: Path = SERVICE_ACCOUNT_TOKEN, timeout: float = 10.0
) -> list[Any]:
    """GET registryz with the pod's service account token (re-read each time: it rotates)."""
    try:
        request = urllib.request.Request(registryz_url(url), headers={"Accept": "application/json"})
    except ValueError as exc:  # not a URL at all: the poller reports it, and goes on
        raise IstiodError(f"cannot reach istiod at {url!r}: {exc}") from None
    if token_file.exists():
        request.add_header("Authorization", f"Bearer {token_file.read_text().strip()}")
    context = ssl.create_default_context()
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 403:
            raise IstiodError(FORBIDDEN_HINT) from None
        raise IstiodError(f"istiod answered {exc.code} for {registryz_url(url)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise IstiodError(f"cannot reach istiod at {registryz_url(url)}: {reason}") from None
    try:
        services = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IstiodError(f"istiod's registryz is not JSON ({exc})") from None
    if not isinstance(services, list):
        raise IstiodError("istiod's registryz is not a JSON array of services")
    return services


def _export_to(raw: object) -> tuple[str, ...] | None:
    # A set in Go: a JSON object whose keys are the members (or a list, or null).
    if isinstance(raw, dict):
        return tuple(sorted(str(k) for k in raw)) or None
    if isinstance(raw, list):
        return tuple(str(v) for v in raw) or None
    return None


def claims_from_registryz(services: Iterable[Any]) -> list[Claim]:
    """Kubernetes entries become Service claims (their aliases follow from them), External
    entries ServiceEntry claims, one per object with all its hosts. Anything unusable is left
    out."""
    grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
    for service in services:
        if not isinstance(service, dict):
            continue
        attributes = service.get("Attributes")
        if not isinstance(attributes, dict):
            continue
        namespace = attributes.get("Namespace")
        name = attributes.get("ObjectName") or attributes.get("Name")
        try:
            host = hosts.normalize(service.get("hostname"))
        except hosts.InvalidHost:
            continue
        if not isinstance(namespace, str) or not isinstance(name, str) or not name:
            continue
        registry = attributes.get("ServiceRegistry")
        kind = SERVICE if registry == "Kubernetes" else SERVICE_ENTRY
        entry = grouped.setdefault(
            (kind, namespace, name),
            {
                "hosts": [],
                "export_to": _export_to(attributes.get("ExportTo")),
                "created": None,
                "ips": [],
            },
        )
        if host not in entry["hosts"]:
            entry["hosts"].append(host)
        if kind == SERVICE:
            entry["ips"].extend(_cluster_ips(service))
        created = _created(service.get("creationTime"))
        if created is not None and (entry["created"] is None or created < entry["created"]):
            entry["created"] = created
    claims: list[Claim] = []
    for (kind, namespace, name), entry in grouped.items():
        claims.append(
            Claim(
                kind=kind,
                namespace=namespace,
                name=name,
                hosts=tuple(entry["hosts"]),
                export_to=entry["export_to"],
                created_s=entry["created"],
                source=SOURCE,
                cluster_ips=ips_of(entry["ips"]),
            )
        )
    return claims


# Go's zero time (year 1) is istiod saying it does not know when.
_KNOWN_FROM = timestamp_seconds("0002-01-01T00:00:00Z")


def _created(raw: object) -> int | None:
    """istiod's creationTime (Go's RFC 3339, with fractions of a second or an offset) in
    seconds, as the registry holds a creationTimestamp; None when it is not a time."""
    seconds = timestamp_seconds(raw)
    if seconds is None or _KNOWN_FROM is None or seconds < _KNOWN_FROM:
        return None
    return seconds


def _cluster_ips(service: dict[str, Any]) -> list[object]:
    """A Kubernetes Service's cluster IPs as registryz shows them: ``clusterVIPs`` (per
    cluster, in a multicluster mesh) and ``defaultAddress``; 0.0.0.0 marks a headless one."""
    found: list[object] = []
    vips = service.get("clusterVIPs")
    addresses = vips.get("Addresses") if isinstance(vips, dict) else None
    if isinstance(addresses, dict):
        for listed in addresses.values():
            if isinstance(listed, list):
                found.extend(listed)
    found.append(service.get("defaultAddress"))
    return [ip for ip in found if ip not in ("0.0.0.0", "::")]


class IstiodPoller(Periodic):
    """Polls registryz in a thread and replaces the store's istiod claims each time; on a
    failure the last good entries stay."""

    def __init__(
        self,
        url: str,
        store: RegistryStore,
        *,
        every: float = POLL_EVERY_S,
    ) -> None:
        super().__init__(every=every, name="istiod-poller", errors=(IstiodError,), log=log)
        self.url = url
        self.store = store
        self.polls = 0

    def step(self) -> None:
        self.poll_once()

    def poll_once(self) -> int:
        services = fetch(self.url)
        claims = claims_from_registryz(services)
        self.store.replace_claims(SOURCE, claims)
        self.polls += 1
        return len(claims)
