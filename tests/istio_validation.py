"""Istio's ``ValidateServiceEntry``, transcribed into plain Python as a test oracle.

Transcribed from istio/istio ``pkg/config/validation/validation.go`` (``ValidateServiceEntry``,
``validateWorkloadEntry``, ``validateExportTo``, ``ValidateAlphaWorkloadSelector``,
``ValidateUnixAddress``), ``pkg/config/validation/agent/validation.go`` (``ValidateWildcardDomain``,
``ValidateFQDN``, ``ValidateDNS1123Labels``, ``ValidateIPSubnet``, ``ValidatePort``),
``pkg/config/labels/instance.go`` (label and DNS-1123 regular expressions),
``pkg/config/protocol/instance.go`` (``Parse``, ``IsHTTP``, ``IsTLS``) and
``pkg/config/visibility/visibility.go``. It is written from Istio's code, independently of
``webhook/core/defaults.py``, so that a test can check the webhook's output against it.

``istio_errors`` returns Istio's errors; its warnings (partial wildcards, selectors without labels,
TCP ports without addresses, ...) do not make an object invalid and are left out. The spec is the
object's JSON as the API server stores it; as in the protobuf it is turned into, an absent enum is
its zero value (``resolution: NONE``, ``location: MESH_EXTERNAL``) and an empty list is the same
as an absent one.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Mapping
from typing import Any

# labels/instance.go. Note that Istio's DNS-1123 label takes upper-case letters too.
_DNS1123_LABEL_FMT = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_DNS1123_LABEL = re.compile(rf"{_DNS1123_LABEL_FMT}\Z")
_WILDCARD_PREFIX = re.compile(rf"(?:\*|(?:\*|\*-)?{_DNS1123_LABEL_FMT})\Z")
_QUALIFIED_NAME_FMT = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_DNS_NAME_PREFIX_FMT = rf"{_DNS1123_LABEL_FMT}(?:\.{_DNS1123_LABEL_FMT})*/"
_TAG = re.compile(rf"({_DNS_NAME_PREFIX_FMT})?({_QUALIFIED_NAME_FMT})\Z")
_LABEL_VALUE = re.compile(rf"(?:{_QUALIFIED_NAME_FMT})?\Z")
_DNS1123_LABEL_MAX = 63
_DNS_NAME_PREFIX_MAX = 253

UNIX_ADDRESS_PREFIX = "unix://"
_USE_WAYPOINT = "istio.io/use-waypoint"

# protocol/instance.go: Parse lower-cases its input and compares it with these keys. Its
# "DoubleHBONE" case is spelt in mixed case, so it never matches and is left out here.
_PROTOCOLS = {
    "tcp": "TCP",
    "udp": "UDP",
    "grpc": "GRPC",
    "grpc-web": "GRPC-Web",
    "http": "HTTP",
    "http_proxy": "HTTP_PROXY",
    "http2": "HTTP2",
    "https": "HTTPS",
    "tls": "TLS",
    "mongo": "Mongo",
    "redis": "Redis",
    "mysql": "MySQL",
}
UNSUPPORTED = "UnsupportedProtocol"
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"})  # IsHTTP
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})  # IsTLS
# DFP in DYNAMIC_DNS supports these (validation.go, case DYNAMIC_DNS).
_DYNAMIC_DNS_PROTOCOLS = frozenset({"HTTP", "TLS", "GRPC", "HTTP2"})

RESOLUTIONS = ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS")
LOCATIONS = ("MESH_EXTERNAL", "MESH_INTERNAL")


def parse_protocol(value: object) -> str:
    """protocol.Parse: case-insensitive; the empty or an unknown protocol is Unsupported."""
    if not isinstance(value, str):
        return UNSUPPORTED
    return _PROTOCOLS.get(value.lower(), UNSUPPORTED)


def istio_errors(
    spec: Mapping[str, Any] | None,
    *,
    namespace: str = "default",
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """The errors Istio's ValidateServiceEntry finds in ``spec`` (the object's labels matter for
    DYNAMIC_DNS with a waypoint); an empty list means Istio accepts it."""
    se: Mapping[str, Any] = spec if isinstance(spec, Mapping) else {}
    errs: list[str] = []
    hosts: list[Any] = _list(se.get("hosts"))
    addresses: list[Any] = _list(se.get("addresses"))
    ports: list[Any] = _list(se.get("ports"))
    endpoints: list[Any] = _list(se.get("endpoints"))
    selector = se.get("workloadSelector")
    resolution = se.get("resolution") or "NONE"
    location = se.get("location") or "MESH_EXTERNAL"
    if resolution not in RESOLUTIONS:
        return [f"unknown resolution {resolution!r}"]  # the protobuf would not even parse
    if location not in LOCATIONS:
        return [f"unknown location {location!r}"]

    errs += _workload_selector_errors(selector)
    if selector is not None and endpoints:
        errs.append("only one of WorkloadSelector or Endpoints is allowed in Service Entry")

    if not hosts:
        errs.append("service entry must have at least one host")
    for hostname in hosts:
        if hostname == "*":
            errs.append(f"invalid host {hostname}")
        else:
            errs += _err(validate_wildcard_domain(_str(hostname)))
            # Partial wildcards only give a warning (ValidatePartialWildCard).

    cidr_found = False
    for address in addresses:
        cidr_found = cidr_found or "/" in _str(address)
        errs += _err(validate_ip_subnet(_str(address)))
    if cidr_found and resolution not in ("NONE", "STATIC"):
        errs.append("CIDR addresses are allowed only for NONE/STATIC resolution types")

    service_port_names: set[str] = set()
    service_port_numbers: set[int] = set()
    for port in ports:
        if port is None:
            errs.append("service entry port may not be null")
            continue
        name = _str(port.get("name"))
        number = _int(port.get("number"))
        if name in service_port_names:
            errs.append(f"service entry port name {name!r} already defined")
        service_port_names.add(name)
        if number in service_port_numbers:
            errs.append(f"service entry port {number} already defined")
        service_port_numbers.add(number)
        target = _int(port.get("targetPort"))
        if target != 0:
            errs += _err(validate_port(target))
        # Ports serving TCP (or unset) protocol without addresses only give a warning.
        errs += _err(validate_port_name(name))
        errs += _err(validate_protocol(_str(port.get("protocol"))))
        errs += _err(validate_port(number))

    if resolution == "NONE":
        if endpoints:
            errs.append("no endpoints should be provided for resolution type none")
        # A workloadSelector with NONE only gives a warning.
    elif resolution == "STATIC":
        for endpoint in endpoints:
            if endpoint is None:
                errs.append("endpoint cannot be nil")
                continue
            errs += _workload_entry_errors(endpoint, service_port_names)
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if not endpoints:
            for hostname in hosts:
                problem = validate_fqdn(_str(hostname))
                if problem is not None:
                    errs.append(
                        "hosts must be FQDN or contain only prefix wildcards if no endpoints are "
                        f"provided for resolution mode {resolution}, {problem}"
                    )
                    break
        if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
            errs.append(f"there must only be 0 or 1 endpoint for resolution mode {resolution}")
        for endpoint in endpoints:
            if endpoint is None:
                errs.append("endpoint cannot be nil")
                continue
            address = _str(endpoint.get("address"))
            if not is_ip_address(address) and validate_fqdn(address) is not None:
                errs.append(f"endpoint address {address!r} is not a valid FQDN or an IP address")
            errs += _labels_errors(endpoint.get("labels"))
            for name, number in _dict(endpoint.get("ports")).items():
                if name not in service_port_names:
                    errs.append(f"endpoint port {number} is not defined by the service entry")
                errs += _err(validate_port_name(name))
                errs += _err(validate_port(_int(number)))
        # Several hosts with addresses and a TCP port only give a warning.
    else:  # DYNAMIC_DNS
        for hostname in hosts:
            if not _str(hostname).startswith("*"):  # host.Name.IsWildCarded
                errs.append(f"host must be wildcarded for resolution mode {resolution}")
        if addresses:
            errs.append(f"addresses cannot be set for resolution type {resolution}")
        if endpoints:
            errs.append(f"endpoints cannot be set for resolution type {resolution}")
        for port in ports:
            if port is None:
                errs.append("port cannot be nil")
                continue
            if parse_protocol(port.get("protocol")) not in _DYNAMIC_DNS_PROTOCOLS:
                errs.append(
                    "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution "
                    f"type {resolution}"
                )
        if location == "MESH_INTERNAL" and _uses_waypoint(labels):
            errs.append(
                f"location MESH_INTERNAL with resolution type {resolution} is not supported "
                "when using waypoints"
            )

    # Several hosts and a port that is neither HTTP nor TLS: only NONE ignores the hosts.
    if resolution != "NONE" and len(hosts) > 1:
        for port in ports:
            if port is None:
                errs.append("ports cannot be nil")
                continue
            protocol = parse_protocol(port.get("protocol"))
            if protocol not in HTTP_PROTOCOLS and protocol not in TLS_PROTOCOLS:
                errs.append("multiple hosts provided with non-HTTP, non-TLS ports")
                break

    errs += export_to_errors(namespace, [_str(e) for e in _list(se.get("exportTo"))])
    return errs


# agent/validation.go


def check_dns1123_preconditions(name: str) -> str | None:
    if len(name) > 255:
        return f"domain name {name!r} too long (max 255)"
    if not name:
        return "empty domain name not allowed"
    return None


def validate_dns1123_labels(domain: str) -> str | None:
    parts = domain.split(".")
    top_level = parts[-1]
    if _go_atoi_ok(top_level):
        return (
            f"domain name {domain!r} invalid (top level domain {top_level!r} cannot be all-numeric)"
        )
    for i, label in enumerate(parts):
        # The last part may be empty, for unambiguous names like "istio.io."
        if i == len(parts) - 1 and label == "":
            return None
        if not is_dns1123_label(label):
            return f"domain name {domain!r} invalid (label {label!r} invalid)"
    return None


def validate_fqdn(fqdn: str) -> str | None:
    return check_dns1123_preconditions(fqdn) or validate_dns1123_labels(fqdn)


def validate_wildcard_domain(domain: str) -> str | None:
    problem = check_dns1123_preconditions(domain)
    if problem is not None:
        return problem
    first, dot, rest = domain.partition(".")
    if not is_wildcard_dns1123_label(first):
        return f"domain name {domain!r} invalid (label {first!r} invalid)"
    if dot:
        return validate_dns1123_labels(rest)
    return None


def validate_ip_subnet(subnet: str) -> str | None:
    if subnet.count("/") == 1:
        if not _go_parse_prefix_ok(subnet):
            return f"{subnet} is not a valid CIDR block"
        return None
    if not is_ip_address(subnet):
        return f"{subnet} is not a valid IP"
    return None


def validate_port(port: int) -> str | None:
    if 1 <= port <= 65535:
        return None
    return f"port number {port} must be in the range 1..65535"


# validation.go


def validate_port_name(name: str) -> str | None:
    return None if is_dns1123_label(name) else f"invalid port name: {name}"


def validate_protocol(protocol: str) -> str | None:
    # The empty string is used for protocol sniffing.
    if protocol and parse_protocol(protocol) == UNSUPPORTED:
        return f"unsupported protocol: {protocol}"
    return None


def validate_unix_address(address: str) -> str | None:
    if not address:
        return "unix address must not be empty"
    if address.startswith("@"):  # abstract domain socket
        return None
    if not posixpath.isabs(address) or address.endswith("/"):
        return f"{address} is not an absolute path to a file"
    return None


def _workload_selector_errors(selector: object) -> list[str]:
    errs: list[str] = []
    if isinstance(selector, Mapping):
        for key, value in _dict(selector.get("labels")).items():
            if key == "":
                errs.append(f"empty key is not supported in selector: {key}={value}")
            if "*" in key or "*" in _str(value):
                errs.append(f"wildcard is not supported in selector: {key}={value}")
        # A selector without labels only gives a warning.
    return errs


def _workload_entry_errors(endpoint: Mapping[str, Any], service_ports: set[str]) -> list[str]:
    """validateWorkloadEntry with allowFQDNAddresses false, as the STATIC case calls it."""
    errs: list[str] = []
    address = _str(endpoint.get("address"))
    if not address and not endpoint.get("network"):
        return ["address is required"]
    # An address left out with a network set only gives a warning.
    unix = address.startswith(UNIX_ADDRESS_PREFIX)
    endpoint_ports = _dict(endpoint.get("ports"))
    if unix:
        errs += _err(validate_unix_address(address[len(UNIX_ADDRESS_PREFIX) :]))
        if endpoint_ports:
            errs.append(f"unix endpoint {address} must not include ports")
    elif address and not is_ip_address(address):
        errs.append(f"endpoint address {address!r} is not a valid IP address")
    for name, number in endpoint_ports.items():
        if name not in service_ports:
            errs.append(f"endpoint port {number} is not defined by the service entry")
        errs += _err(validate_port_name(name))
        errs += _err(validate_port(_int(number)))
    errs += _labels_errors(endpoint.get("labels"))
    if unix and len(service_ports) != 1:
        errs.append("exactly 1 service port required for unix endpoints")
    return errs


def _uses_waypoint(labels: Mapping[str, str] | None) -> bool:
    value = (labels or {}).get(_USE_WAYPOINT, "")
    return bool(value) and value.lower() != "none"


def export_to_errors(namespace: str, export_to: list[str]) -> list[str]:
    """validateExportTo for a ServiceEntry (isServiceEntry true, no destination rule selector)."""
    errs: list[str] = []
    if not export_to:
        return errs
    seen: set[str] = set()
    for entry in export_to:
        key = namespace if entry == "." else entry
        if key in seen:
            if key != entry:
                errs.append(f"duplicate entries in exportTo: . and current namespace {namespace}")
            else:
                errs.append(f"duplicate entries in exportTo for entry {entry}")
        elif entry == "~":
            seen.add(key)
        else:
            problem = _visibility_error(key)
            if problem is None:
                seen.add(key)
            else:
                errs.append(problem)
    if "*" in seen and len(export_to) > 1:
        errs.append("cannot have both public (*) and non-public exportTo values for a resource")
    if "~" in seen and len(export_to) > 1:
        errs.append("cannot export service entry to no one (~) and someone")
    return errs


def _visibility_error(value: str) -> str | None:
    if value in (".", "*"):
        return None
    if value == "~":
        return "exportTo ~ (none) is not allowed for Istio configuration objects"
    if not is_dns1123_label(value):
        return "only .,*, or a valid DNS 1123 label is allowed as exportTo entry"
    return None


# labels/instance.go


def is_dns1123_label(value: str) -> bool:
    return len(value) <= _DNS1123_LABEL_MAX and bool(_DNS1123_LABEL.match(value))


def is_wildcard_dns1123_label(value: str) -> bool:
    return len(value) <= _DNS1123_LABEL_MAX and bool(_WILDCARD_PREFIX.match(value))


def _labels_errors(labels: object) -> list[str]:
    errs: list[str] = []
    for key, value in _dict(labels).items():
        match = _TAG.match(key)
        if match is None:
            errs.append(f"invalid tag key: {key!r}")
        elif match.group(1) and len(match.group(1)) - 1 > _DNS_NAME_PREFIX_MAX:
            errs.append(f"invalid tag key: {key!r} (DNS prefix is too long)")
        elif len(match.group(2)) > _DNS1123_LABEL_MAX:
            errs.append(f"invalid tag key: {key!r} (name is too long)")
        if not _LABEL_VALUE.match(_str(value)):
            errs.append(f"invalid tag value: {value!r}")
    return errs


# Go standard library behaviour that the rules above depend on.


def is_ip_address(value: str) -> bool:
    """netutil.IsValidIPAddress: Go's netip.ParseAddr (a zone is allowed on IPv6 only)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _go_parse_prefix_ok(value: str) -> bool:
    """Go's netip.ParsePrefix: an address without a zone, then decimal bits within its size."""
    address, _, bits = value.partition("/")
    if "%" in address or not bits.isascii() or not bits.isdigit():
        return False
    if len(bits) > 1 and bits.startswith("0"):
        return False
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return int(bits) <= parsed.max_prefixlen


def _go_atoi_ok(value: str) -> bool:
    """Whether Go's strconv.Atoi parses ``value``: an optional sign, ASCII digits, within int64."""
    digits = value[1:] if value[:1] in ("+", "-") else value
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    return -(2**63) <= int(value) < 2**63


# JSON as the protobuf sees it: a missing or null field is its zero value.


def _err(problem: str | None) -> list[str]:
    return [] if problem is None else [problem]


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
