"""Which hosts does an object claim? One answer for Services and ServiceEntries (pure).

The admission path and the registry sources both call these functions, so a host is normalised
and judged the same way whether it arrives in an AdmissionReview or from a watch.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from webhook.core import hosts, servicenames
from webhook.core.shapes import type_name as _kind

SERVICE = "Service"
SERVICE_ENTRY = "ServiceEntry"
NAMESPACE = "Namespace"
ISTIO_GROUP = "networking.istio.io"
# The CRD's maxItems for spec.hosts and spec.ports. The mutating webhook runs before the API server
# checks the schema, so it can see more; anything above this is refused without further work.
MAX_HOSTS = 256
MAX_PORTS = 256
# The CRD sets no maxItems for endpoints and addresses. A ServiceEntry lists a handful; past these
# bounds (far more than any real one) the object is refused rather than judged address by
# address, so one request cannot make the rules parse millions of addresses.
MAX_ENDPOINTS = 4096
MAX_ADDRESSES = 4096
SERVICE_EXPORT_ANNOTATION = "networking.istio.io/exportTo"
# The source of the objects the cluster's own API server lists (webhook.sources.kubernetes).
CLUSTER_SOURCE = "kubernetes"


# An object's (kind, namespace, name). ``tuple[str, ...]``, not ``tuple[str, str, str]``: mypyc
# keeps a fixed-length tuple unboxed and makes a new tuple object each time it stores one, so
# the registry's tables held copies of keys and every relist made a new one for every object
# kept (2.5 MB at 40,000 ServiceEntries, and the pools of the copies freed left behind).
ClaimKey = tuple[str, ...]


class Claim(NamedTuple):
    """The names one object holds in the registry."""

    kind: str
    namespace: str
    name: str
    hosts: tuple[str, ...]
    export_to: tuple[str, ...] | None = None
    # metadata.creationTimestamp, in seconds since the epoch (UTC); None without one. An int and
    # not the text: 40 bytes less an entry, 1.6 MB at 40,000 ServiceEntries. ``created`` gives
    # the text back as the API server writes it.
    created_s: int | None = None
    source: str = ""
    # Hosts that are not DNS names, as (index, raw value, reason).
    invalid: tuple[tuple[int, object, str], ...] = ()
    # Shape problems that make the object unusable (spec not an object, hosts not a list ...).
    problems: tuple[str, ...] = ()
    # Service only: its cluster IPs (spec.clusterIP and spec.clusterIPs), in compressed form.
    cluster_ips: tuple[str, ...] = ()
    # ServiceEntry only: where its traffic goes, as (field, address as written):
    # spec.endpoints[i].address and spec.addresses[i].
    targets: tuple[tuple[str, str], ...] = ()
    # ServiceEntry only: its hosts are themselves where traffic goes (no endpoints and no
    # workloadSelector, and a resolution that resolves or passes through the name: not STATIC).
    resolves_hosts: bool = False

    @property
    def aliases(self) -> tuple[str, ...]:
        """Service only: the short names Istio adds as route domains (name.ns, name.ns.svc).

        Derived, not stored: at 100,000 entries the alias strings would take about 12 MB, and
        the registry answers alias lookups from the Service's namespace and name instead."""
        if self.kind != SERVICE:
            return ()
        return servicenames.aliases(self.name, self.namespace)

    @property
    def key(self) -> ClaimKey:
        return (self.kind, self.namespace, self.name)

    @property
    def created(self) -> str:
        """creationTimestamp as the API server writes it (whole seconds, UTC, Z); "" without."""
        return timestamp_text(self.created_s)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def kind_of(obj: Mapping[str, Any]) -> str | None:
    """Service, ServiceEntry or Namespace for the objects the registry follows, else None."""
    kind = obj.get("kind")
    api_version = obj.get("apiVersion")
    if kind == SERVICE and api_version == "v1":
        return SERVICE
    if kind == NAMESPACE and api_version == "v1":
        return NAMESPACE
    if (
        kind == SERVICE_ENTRY
        and isinstance(api_version, str)
        and api_version.startswith(ISTIO_GROUP + "/")
    ):
        return SERVICE_ENTRY
    return None


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def object_name(obj: Mapping[str, Any]) -> str:
    meta = _metadata(obj)
    name = meta.get("name")
    return name if isinstance(name, str) else ""


def object_namespace(obj: Mapping[str, Any], default: str = "default") -> str:
    namespace = _metadata(obj).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else default


def service_claim(
    obj: Mapping[str, Any], *, cluster_domain: str, source: str = "", namespace: str | None = None
) -> Claim:
    meta = _metadata(obj)
    name = object_name(obj)
    ns = namespace or object_namespace(obj)
    fqdn = servicenames.fqdn(name, ns, cluster_domain)
    export_to: tuple[str, ...] | None = None
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        raw = annotations.get(SERVICE_EXPORT_ANNOTATION)
        if isinstance(raw, str) and raw.strip():
            export_to = tuple(part.strip() for part in raw.split(",") if part.strip())
    # No creation time: only ServiceEntries are ordered by age (Services always win).
    spec = obj.get("spec")
    return Claim(
        kind=SERVICE,
        namespace=ns,
        name=name,
        hosts=(fqdn,),
        export_to=export_to,
        source=source,
        cluster_ips=cluster_ips_of(spec) if isinstance(spec, dict) else (),
    )


def cluster_ips_of(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """A Service's cluster IPs: ``spec.clusterIPs`` (dual stack) and ``spec.clusterIP``, in
    compressed form; ``None`` (headless) and anything that is not an IP are left out."""
    raw: list[object] = [spec.get("clusterIP")]
    listed = spec.get("clusterIPs")
    if isinstance(listed, list):
        raw.extend(listed)
    return ips_of(raw)


def ips_of(raw: list[object]) -> tuple[str, ...]:
    """The IP addresses among ``raw``, compressed and de-duplicated, in order."""
    found: dict[str, None] = {}
    for item in raw:
        if isinstance(item, str) and item and item != "None":
            try:
                found[ipaddress.ip_address(item).compressed] = None
            except ValueError:
                continue
    return tuple(found)


def service_entry_claim(
    obj: Mapping[str, Any], *, source: str = "", namespace: str | None = None
) -> Claim:
    """The hosts of a ServiceEntry, normalised and de-duplicated, with every problem named."""
    meta = _metadata(obj)
    ns = namespace or object_namespace(obj)
    name = meta.get("name")
    created = meta.get("creationTimestamp")
    spec = obj.get("spec")
    problems: list[str] = []
    valid: list[str] = []
    invalid: list[tuple[int, object, str]] = []
    export_to: tuple[str, ...] | None = None
    if not isinstance(spec, dict):
        problems.append(f"spec must be an object, not {_kind(spec)}")
    else:
        raw_hosts = spec.get("hosts")
        if not isinstance(raw_hosts, list):
            problems.append(f"spec.hosts must be a list of host names, not {_kind(raw_hosts)}")
        elif not raw_hosts:
            problems.append("spec.hosts must hold at least one host")
        elif len(raw_hosts) > MAX_HOSTS:
            problems.append(
                f"spec.hosts has {len(raw_hosts)} entries; at most {MAX_HOSTS} are allowed"
            )
        else:
            seen: set[str] = set()
            for i, raw in enumerate(raw_hosts):
                try:
                    host = hosts.normalize(raw)
                except hosts.InvalidHost as exc:
                    invalid.append((i, raw, exc.reason))
                    continue
                if host not in seen:
                    seen.add(host)
                    valid.append(host)
        ports = spec.get("ports")
        if ports is not None and not isinstance(ports, list):
            problems.append(f"spec.ports must be a list, not {_kind(ports)}")
        elif isinstance(ports, list) and len(ports) > MAX_PORTS:
            problems.append(f"spec.ports has {len(ports)} entries; at most {MAX_PORTS} are allowed")
        raw_export = spec.get("exportTo")
        if isinstance(raw_export, list) and raw_export:
            if all(isinstance(item, str) for item in raw_export):
                export_to = tuple(raw_export)
            else:
                problems.append("spec.exportTo must be a list of strings")
        elif raw_export is not None and not isinstance(raw_export, list):
            problems.append(f"spec.exportTo must be a list, not {_kind(raw_export)}")
    targets: tuple[tuple[str, str], ...] = ()
    resolves_hosts = False
    if isinstance(spec, dict):
        if "endpoints" in spec or "addresses" in spec:
            targets, resolves_hosts = _targets(spec, problems)
        else:  # nearly every entry: nothing but its hosts says where its traffic goes
            resolves_hosts = not spec.get("workloadSelector") and spec.get("resolution") != "STATIC"
    return Claim(
        kind=SERVICE_ENTRY,
        namespace=ns,
        name=name if isinstance(name, str) else "",
        hosts=tuple(valid),
        export_to=export_to,
        created_s=timestamp_seconds(created),
        source=source,
        invalid=tuple(invalid),
        problems=tuple(problems),
        targets=targets,
        resolves_hosts=resolves_hosts,
    )


def _targets(
    spec: Mapping[str, Any], problems: list[str]
) -> tuple[tuple[tuple[str, str], ...], bool]:
    """Where a ServiceEntry's traffic goes: its endpoints' addresses and its addresses, and
    whether its hosts are resolved (or passed through) as they are. Shape problems are added
    to ``problems``; whether an address is a valid one is for the rules to say."""
    found: list[tuple[str, str]] = []
    endpoints = spec.get("endpoints")
    if endpoints is not None and not isinstance(endpoints, list):
        problems.append(f"spec.endpoints must be a list, not {_kind(endpoints)}")
        endpoints = None
    elif isinstance(endpoints, list):
        if len(endpoints) > MAX_ENDPOINTS:
            problems.append(
                f"spec.endpoints has {len(endpoints)} entries; at most {MAX_ENDPOINTS} are judged"
            )
            endpoints = endpoints[:MAX_ENDPOINTS]
        for i, endpoint in enumerate(endpoints):
            if not isinstance(endpoint, dict):
                problems.append(f"spec.endpoints[{i}] must be an object, not {_kind(endpoint)}")
                continue
            address = endpoint.get("address")
            if address is None:
                continue  # an endpoint reached through its network's gateway
            if not isinstance(address, str):
                problems.append(
                    f"spec.endpoints[{i}].address must be a string, not {_kind(address)}"
                )
                continue
            found.append((f"spec.endpoints[{i}].address", address))
    addresses = spec.get("addresses")
    if addresses is not None and not isinstance(addresses, list):
        problems.append(f"spec.addresses must be a list, not {_kind(addresses)}")
    elif isinstance(addresses, list):
        for i, address in enumerate(addresses[:MAX_ADDRESSES]):
            if isinstance(address, str):
                found.append((f"spec.addresses[{i}]", address))
            else:
                problems.append(f"spec.addresses[{i}] must be a string, not {_kind(address)}")
        if len(addresses) > MAX_ADDRESSES:
            problems.append(
                f"spec.addresses has {len(addresses)} entries; at most {MAX_ADDRESSES} are judged"
            )
    return tuple(found), _hosts_resolved(spec, endpoints)


def _hosts_resolved(spec: Mapping[str, Any], endpoints: list[Any] | None) -> bool:
    """True when an entry's hosts are where its traffic goes: no endpoints, no workloadSelector,
    and a resolution that resolves or passes the name through (anything but STATIC)."""
    return not endpoints and not spec.get("workloadSelector") and spec.get("resolution") != "STATIC"


def namespace_labels(obj: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    labels = _metadata(obj).get("labels")
    if not isinstance(labels, dict):
        return frozenset()
    return frozenset((str(k), str(v)) for k, v in labels.items() if isinstance(v, str))


# RFC 3339, as metadata.creationTimestamp holds it: the API server writes whole seconds in UTC
# with a Z; a manifest may hold fractions of a second or an offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a date of the proleptic Gregorian calendar."""
    year -= month <= 2
    era = year // 400
    of_era = year - era * 400
    of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    of_cycle = of_era * 365 + of_era // 4 - of_era // 100 + of_year
    return era * 146097 + of_cycle - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719468
    era = days // 146097
    of_era = days - era * 146097
    of_cycle = (of_era - of_era // 1460 + of_era // 36524 - of_era // 146096) // 365
    of_year = of_era - (365 * of_cycle + of_cycle // 4 - of_cycle // 100)
    shifted = (5 * of_year + 2) // 153
    day = of_year - (153 * shifted + 2) // 5 + 1
    month = shifted + (3 if shifted < 10 else -9)
    return of_cycle + era * 400 + (month <= 2), month, day


def timestamp_seconds(raw: object) -> int | None:
    """An RFC 3339 time in seconds since the epoch, fractions of a second dropped; None for
    anything else (a time that does not exist included)."""
    if not isinstance(raw, str):
        return None
    found = _RFC3339.fullmatch(raw)
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(found.group(i)) for i in range(1, 7))
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS_IN_MONTH[month - 1]:
        return None
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if month == 2 and day == 29 and not leap:
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    offset = 0
    if found.group(7) is None:
        offset_hours, offset_minutes = int(found.group(9)), int(found.group(10))
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = (offset_hours * 60 + offset_minutes) * 60
        if found.group(8) == "-":
            offset = -offset
    days = _days_from_civil(year, month, day)
    return days * 86400 + hour * 3600 + minute * 60 + second - offset


def timestamp_text(seconds: int | None) -> str:
    """Seconds since the epoch as the API server writes a timestamp; "" for None."""
    if seconds is None:
        return ""
    days, of_day = divmod(seconds, 86400)
    year, month, day = _civil_from_days(days)
    hour, rest = divmod(of_day, 3600)
    minute, second = divmod(rest, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
