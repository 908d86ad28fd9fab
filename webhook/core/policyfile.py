"""Reading a ServiceEntryPolicy document (pure): YAML or JSON in, a ``Policy`` out, or a
``PolicyError`` that names every bad field by its path and says what it expected.

The global rules replace the built-in lists; a namespace rule adds to the global ones (its
``Layer``). Everything else a section leaves out is inherited from the layer under it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Set as AbstractSet
from dataclasses import replace
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson
import yaml

from webhook.core import hosts
from webhook.core.policy import (
    API_VERSION,
    KIND,
    LOCATIONS,
    RESOLUTIONS,
    Action,
    AuditSettings,
    Conflicts,
    Defaults,
    Exemptions,
    HostRules,
    LabelRequirement,
    Mode,
    NamespaceRule,
    NamespaceSelector,
    Network,
    Policy,
    Rules,
    Targets,
    looks_like_an_address,
)
from webhook.core.policyschema import MESH_WIDE, SPEC, TOP_LEVEL, Field
from webhook.core.shapes import describe as _describe

try:  # the C loader is several times faster on large dumps
    YAML_LOADER: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    YAML_LOADER = yaml.SafeLoader


def load_yaml_documents(text: str | bytes) -> list[Any]:
    """The documents of a YAML (or JSON) text, the empty ones left out. Raises ValueError with
    ``yaml_problem``'s one line: manifests and policies read the same way, and fail alike."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=YAML_LOADER) if doc is not None]
    except yaml.YAMLError:
        pass
    # Read again by the pure-Python loader, for its message: it points at the place (libyaml
    # often at the end of the stream), and reads the same whichever loader PyYAML was built with.
    try:
        return [doc for doc in yaml.load_all(text, Loader=yaml.SafeLoader) if doc is not None]
    except yaml.YAMLError as exc:
        raise ValueError(yaml_problem(exc)) from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"not valid YAML{where}: {problem}"


class PolicyError(ValueError):
    """A policy document that cannot be used. ``errors`` holds one line per problem."""

    def __init__(self, errors: list[str], *, source: str = "policy") -> None:
        self.errors = errors
        self.source = source
        shown = "; ".join(errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{source}: {shown}{more}")


DEFAULT_POLICY_YAML = """\
apiVersion: seguard.io/v1alpha1
kind: ServiceEntryPolicy
spec:
  clusterDomain: cluster.local
  mode: Enforce                      # Enforce | Warn | Audit
  meshDefaultExportTo: ["*"]         # mirror of meshConfig.defaultServiceExportTo
  exemptions:                        # requests from these are allowed, still audited
    namespaces: [istio-system]
    users: []
    groups: []
  hosts:
    allowed: []                      # empty or absent: any external host may be registered
    denied: []
    wildcards: Allow                 # Allow | Warn | Deny
    publicSuffixWildcards: Deny      # WildcardTooBroad: Allow | Warn | Deny
    partialWildcards: Warn           # PartialWildcard (*foo.example.com): Allow | Warn | Deny
  conflicts:                         # each: Deny | Warn | Allow
    kubernetesService: Deny
    kubernetesServiceSameNamespace: Warn
    serviceEntry: Deny
    serviceEntrySameNamespace: Warn
    wildcardOverlap: Warn
    reservedClusterDomain: Deny
  namespaces: []                     # rules for some namespaces; the first match applies, e.g.
  # - selector:
  #     names: [payments]            # and/or matchLabels / matchExpressions on Namespace labels
  #     matchLabels: {team: payments}
  #   hosts: {allowed: ["*.stripe.com"]}   # adds to the global allowed list
  #   mode: Warn                     # any field of spec except clusterDomain may be overridden
  targets:                           # where the entry's traffic goes: endpoints and addresses
    denied: [169.254.0.0/16, "fe80::/10", 127.0.0.0/8, "::1/128", 0.0.0.0/8, "fd00:ec2::254/128",
             metadata.google.internal, metadata.azure.internal]   # CIDRs, IPs or host patterns
    minPrefixLength: {ipv4: 8, ipv6: 32}
    action: Deny                     # Deny | Warn | Allow, for TargetDenied and TargetTooBroad
  defaults:                          # applied by the mutating webhook, only where absent
    location: MESH_EXTERNAL          # null: leave alone
    resolution: Auto                 # Auto | NONE | STATIC | DNS | DNS_ROUND_ROBIN | null
    exportTo: null                   # e.g. ["."]
  audit:
    recordAllowed: false             # also record clean allows
  scan:
    interval: 5m                     # the periodic scan of existing ServiceEntries; 0 turns it off
"""


def default_policy() -> Policy:
    """The built-in policy: the document of DESIGN.md section 4, with no namespace rules (its
    payments rule is an example, not a default)."""
    return parse_policy_text(DEFAULT_POLICY_YAML, source="built-in")


def parse_policy_text(text: str | bytes, *, source: str = "policy") -> Policy:
    """Parse a YAML or JSON policy document. Raises PolicyError naming every bad field."""
    try:
        documents = load_yaml_documents(text)
    except ValueError as exc:
        raise PolicyError([str(exc)], source=source) from None
    if len(documents) != 1:
        raise PolicyError(
            [f"expected exactly one YAML document, found {len(documents)}"], source=source
        )
    document = documents[0]
    held = policy_in_config_map(document)
    if held is not None:
        return parse_policy_text(held, source=f"{source} (data.{CONFIG_MAP_KEY})")
    if _is_config_map(document):
        raise PolicyError(
            [f"a ConfigMap, with no data.{CONFIG_MAP_KEY} holding a ServiceEntryPolicy"],
            source=source,
        )
    raw_bytes = text.encode() if isinstance(text, str) else text
    return parse_policy(document, source=source, digest=hashlib.sha256(raw_bytes).hexdigest())


# The key of the ConfigMap the server's policy is mounted from (deploy/base/policy.yaml).
CONFIG_MAP_KEY = "policy.yaml"


def _is_config_map(document: object) -> bool:
    return (
        isinstance(document, dict)
        and document.get("kind") == "ConfigMap"
        and document.get("apiVersion") == "v1"
    )


def policy_in_config_map(document: object) -> str | None:
    """The policy text a ConfigMap holds in ``data.policy.yaml`` (as deploy/ ships it), or None
    when ``document`` is no such ConfigMap."""
    if not _is_config_map(document):
        return None
    assert isinstance(document, dict)
    data = document.get("data")
    held = data.get(CONFIG_MAP_KEY) if isinstance(data, dict) else None
    return held if isinstance(held, str) else None


def parse_policy(document: object, *, source: str = "policy", digest: str = "") -> Policy:
    checker = _Checker()
    policy = checker.policy(document)
    if checker.errors:
        raise PolicyError(checker.errors, source=source)
    assert policy is not None
    if not digest:
        digest = hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return replace(policy, digest=digest, source=source)


# --- the checker -----------------------------------------------------------------------------


def _fields(*path: str) -> frozenset[str]:
    """The field names the model (``policyschema``) gives the object at ``path`` under spec
    (a list's items, for a list)."""
    field = SPEC
    for name in path:
        field = _object_of(field).fields[name]
    return frozenset(_object_of(field).fields)


def _object_of(field: Field) -> Field:
    return field.items if field.items is not None else field


_SPEC_FIELDS = _fields()
# A namespace rule may override any field of spec except these, which are mesh-wide.
_MESH_WIDE = MESH_WIDE
_CONFLICT_FIELDS = MappingProxyType(
    {key: re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower() for key in sorted(_fields("conflicts"))}
)
_OPERATORS = (
    _object_of(
        _object_of(_object_of(SPEC.fields["namespaces"]).fields["selector"]).fields[
            "matchExpressions"
        ]
    )
    .fields["operator"]
    .enum
)
_MISSING = object()


class Layer(NamedTuple):
    """How one layer of rules meets the layer under it. The global rules (``REPLACES``) set
    their lists in place of the built-in ones; a namespace rule (``ADDS``) adds its lists to the
    global ones, and may set its own meshDefaultExportTo. Everything a layer leaves out is the
    layer under it."""

    adds: bool

    def sets(self, under: frozenset[str], given: frozenset[str]) -> frozenset[str]:
        return under | given if self.adds else given

    def patterns(self, under: tuple[str, ...], given: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(under + given) if self.adds else given

    def kept_targets(self, under: list[Any]) -> list[Any]:
        """What stays of the denied targets under a layer that lists its own."""
        return under if self.adds else []


REPLACES = Layer(adds=False)
ADDS = Layer(adds=True)


class _Checker:
    def __init__(self, layer: Layer = REPLACES, errors: list[str] | None = None) -> None:
        self.layer = layer
        # Shared by the checker of the global rules and those of the namespace rules.
        self.errors: list[str] = errors if errors is not None else []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def mapping(self, value: object, path: str, allowed: AbstractSet[str]) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"expected an object, got {_describe(value)}")
            return None
        for key in value:
            if key not in allowed:
                self.error(
                    f"{path}.{key}", f"unknown field; expected one of {', '.join(sorted(allowed))}"
                )
        return value

    def string_list(self, value: object, path: str) -> list[str] | None:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"expected a list of strings, got {_describe(value)}")
            return None
        good: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, str) and item:
                good.append(item)
            else:
                self.error(f"{path}[{i}]", f"expected a non-empty string, got {_describe(item)}")
        return good

    def enum(self, value: object, path: str, choices: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        if value not in choices:
            self.error(path, f"expected one of {' | '.join(choices)}, got {_describe(value)}")
            return default
        return str(value)

    def policy(self, document: object) -> Policy | None:
        top = self.mapping(document, "policy", TOP_LEVEL)
        if top is None:
            return None
        if top.get("apiVersion") != API_VERSION:
            self.error(
                "apiVersion", f"expected {API_VERSION}, got {_describe(top.get('apiVersion'))}"
            )
        if top.get("kind") != KIND:
            self.error("kind", f"expected {KIND}, got {_describe(top.get('kind'))}")
        if "metadata" in top and not isinstance(top["metadata"], dict | None):
            self.error("metadata", f"expected an object, got {_describe(top['metadata'])}")
        spec = self.mapping(top.get("spec"), "spec", _SPEC_FIELDS)
        if spec is None:
            return None
        cluster_domain = self.cluster_domain(spec.get("clusterDomain"), "spec.clusterDomain")
        mesh_default = self.export_to(
            spec.get("meshDefaultExportTo", _MISSING), "spec.meshDefaultExportTo"
        )
        base = Rules(mesh_default_export_to=mesh_default or ("*",))
        rules = self.rules(spec, "spec", base)
        scan_interval = self.scan(spec.get("scan"), "spec.scan")
        namespace_rules: list[NamespaceRule] = []
        raw_rules = spec.get("namespaces")
        if raw_rules is not None and not isinstance(raw_rules, list):
            self.error("spec.namespaces", f"expected a list, got {_describe(raw_rules)}")
        elif raw_rules:
            for i, raw in enumerate(raw_rules):
                rule = self.namespace_rule(raw, f"spec.namespaces[{i}]", rules)
                if rule is not None:
                    namespace_rules.append(rule)
        return Policy(
            cluster_domain=cluster_domain,
            rules=rules,
            namespace_rules=tuple(namespace_rules),
            scan_interval_s=scan_interval,
            export_defaults_vary=any(
                rule.rules.mesh_default_export_to != rules.mesh_default_export_to
                for rule in namespace_rules
            ),
        )

    def cluster_domain(self, value: object, path: str) -> str:
        if value is None:
            return "cluster.local"
        try:
            domain = hosts.normalize(value)
        except hosts.InvalidHost as exc:
            self.error(path, f"expected a DNS domain, got {_describe(value)} ({exc.reason})")
            return "cluster.local"
        if hosts.is_wildcard(domain):
            self.error(path, f"expected a DNS domain without a wildcard, got {value!r}")
        return domain

    def export_to(self, value: object, path: str) -> tuple[str, ...] | None:
        """An exportTo list as Istio validates it; None when absent or null."""
        if value is _MISSING or value is None:
            return None
        items = self.string_list(value, path)
        if items is None:
            return None
        if not items:
            self.error(path, "must not be an empty list; leave it out or use null")
            return None
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item in seen:
                self.error(f"{path}[{i}]", f"duplicate entry {item!r}")
            seen.add(item)
            if item not in ("*", ".", "~") and not _is_dns_label(item):
                self.error(
                    f"{path}[{i}]", f"expected '*', '.', '~' or a namespace name, got {item!r}"
                )
        for special in ("*", "~"):
            if special in seen and len(items) > 1:
                self.error(path, f"{special!r} must be the only entry")
        return tuple(items)

    def host_patterns(self, value: object, path: str) -> tuple[str, ...]:
        items = self.string_list(value, path)
        if items is None:
            return ()
        patterns: list[str] = []
        for i, item in enumerate(items):
            try:
                patterns.append(hosts.normalize(item))
            except hosts.InvalidHost as exc:
                self.error(
                    f"{path}[{i}]",
                    f"expected a host or a '*.' wildcard pattern, got {item!r} ({exc.reason})",
                )
        return tuple(patterns)

    def scan(self, value: object, path: str) -> float:
        spec = self.mapping(value, path, _fields("scan"))
        if not spec or spec.get("interval") is None:
            return 300.0
        return self.duration(spec["interval"], f"{path}.interval")

    def duration(self, value: object, path: str) -> float:
        units = {"s": 1.0, "m": 60.0, "h": 3600.0}
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return float(value)
        if isinstance(value, str) and value[-1:] in units and value[:-1].isdigit():
            return int(value[:-1]) * units[value[-1]]
        self.error(
            path,
            f"expected a duration such as 30s, 5m or 1h (0 turns it off), got {_describe(value)}",
        )
        return 300.0

    def rules(self, spec: dict[str, Any], path: str, base: Rules) -> Rules:
        """Rules from a spec, on top of ``base`` as this checker's layer says."""
        mode = Mode(self.enum(spec.get("mode"), f"{path}.mode", tuple(Mode), base.mode.value))
        mesh_default = base.mesh_default_export_to
        if self.layer.adds:  # the global value is read into ``base`` by the caller
            mesh_default = (
                self.export_to(
                    spec.get("meshDefaultExportTo", _MISSING), f"{path}.meshDefaultExportTo"
                )
                or mesh_default
            )
        return Rules(
            mode=mode,
            mesh_default_export_to=mesh_default,
            exemptions=self.exemptions(spec.get("exemptions"), f"{path}.exemptions", base),
            hosts=self.host_rules(spec.get("hosts"), f"{path}.hosts", base),
            conflicts=self.conflicts(spec.get("conflicts"), f"{path}.conflicts", base),
            defaults=self.defaults(spec.get("defaults", _MISSING), f"{path}.defaults", base),
            audit=self.audit(spec.get("audit"), f"{path}.audit", base),
            targets=self.targets(spec.get("targets"), f"{path}.targets", base),
        )

    def exemptions(self, value: object, path: str, base: Rules) -> Exemptions:
        spec = self.mapping(value, path, _fields("exemptions"))
        if spec is None:
            return base.exemptions
        found = {
            key: frozenset(self.string_list(spec.get(key), f"{path}.{key}") or ())
            for key in ("namespaces", "users", "groups")
        }
        old = base.exemptions
        return Exemptions(
            namespaces=self.layer.sets(old.namespaces, found["namespaces"]),
            users=self.layer.sets(old.users, found["users"]),
            groups=self.layer.sets(old.groups, found["groups"]),
        )

    def host_rules(self, value: object, path: str, base: Rules) -> HostRules:
        spec = self.mapping(value, path, _fields("hosts"))
        if spec is None:
            return base.hosts
        old = base.hosts
        allowed = self.host_patterns(spec.get("allowed"), f"{path}.allowed")
        denied = self.host_patterns(spec.get("denied"), f"{path}.denied")
        actions = tuple(Action)
        return HostRules(
            # A namespace rule adds to the global lists.
            allowed=self.layer.patterns(old.allowed, allowed),
            denied=self.layer.patterns(old.denied, denied),
            wildcards=Action(
                self.enum(spec.get("wildcards"), f"{path}.wildcards", actions, old.wildcards.value)
            ),
            public_suffix_wildcards=Action(
                self.enum(
                    spec.get("publicSuffixWildcards"),
                    f"{path}.publicSuffixWildcards",
                    actions,
                    old.public_suffix_wildcards.value,
                )
            ),
            partial_wildcards=Action(
                self.enum(
                    spec.get("partialWildcards"),
                    f"{path}.partialWildcards",
                    actions,
                    old.partial_wildcards.value,
                )
            ),
        )

    def targets(self, value: object, path: str, base: Rules) -> Targets:
        """The targets section; a namespace rule adds to the global denied list."""
        spec = self.mapping(value, path, _fields("targets"))
        old = base.targets
        if spec is None:
            return old
        networks, names = list(old.denied_networks), list(old.denied_hosts)
        if "denied" in spec:  # the global list replaces the built-in one; a namespace's adds
            networks, names = self.layer.kept_targets(networks), self.layer.kept_targets(names)
            for i, item in enumerate(self.string_list(spec["denied"], f"{path}.denied") or ()):
                target = self.target(item, f"{path}.denied[{i}]")
                if isinstance(target, str):
                    names.append(target)
                elif target is not None:
                    networks.append(target)
        prefix = (
            self.mapping(
                spec.get("minPrefixLength"),
                f"{path}.minPrefixLength",
                _fields("targets", "minPrefixLength"),
            )
            or {}
        )
        return Targets(
            denied_networks=tuple(dict.fromkeys(networks)),
            denied_hosts=_unique(tuple(names)),
            min_prefix_ipv4=self.prefix_length(
                prefix.get("ipv4"), f"{path}.minPrefixLength.ipv4", 32, old.min_prefix_ipv4
            ),
            min_prefix_ipv6=self.prefix_length(
                prefix.get("ipv6"), f"{path}.minPrefixLength.ipv6", 128, old.min_prefix_ipv6
            ),
            action=Action(
                self.enum(spec.get("action"), f"{path}.action", tuple(Action), old.action.value)
            ),
        )

    def target(self, item: str, path: str) -> Network | str | None:
        """A denied target: a CIDR, an IP (a network of one address) or a host pattern."""
        if looks_like_an_address(item):
            try:
                return ipaddress.ip_network(item)
            except ValueError as exc:
                self.error(
                    path,
                    f"expected a CIDR such as 169.254.0.0/16, an IP or a host pattern, got "
                    f"{item!r} ({exc})",
                )
                return None
        try:
            return hosts.normalize(item)
        except hosts.InvalidHost as exc:
            self.error(
                path,
                f"expected a CIDR such as 169.254.0.0/16, an IP or a host pattern, got {item!r} "
                f"({exc.reason})",
            )
            return None

    def prefix_length(self, value: object, path: str, bits: int, default: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bits:
            self.error(path, f"expected a prefix length from 0 to {bits}, got {_describe(value)}")
            return default
        return value

    def conflicts(self, value: object, path: str, base: Rules) -> Conflicts:
        spec = self.mapping(value, path, set(_CONFLICT_FIELDS))
        if spec is None:
            return base.conflicts
        changes = {
            attr: Action(
                self.enum(
                    spec.get(key),
                    f"{path}.{key}",
                    tuple(Action),
                    getattr(base.conflicts, attr).value,
                )
            )
            for key, attr in _CONFLICT_FIELDS.items()
        }
        return replace(base.conflicts, **changes)

    def defaults(self, value: object, path: str, base: Rules) -> Defaults:
        if value is _MISSING:
            return base.defaults
        spec = self.mapping(value, path, _fields("defaults"))
        if spec is None:
            return base.defaults
        old = base.defaults
        location = self.choice_or_null(
            spec, "location", f"{path}.location", LOCATIONS, old.location
        )
        resolution = self.choice_or_null(
            spec, "resolution", f"{path}.resolution", RESOLUTIONS, old.resolution
        )
        export_to = old.export_to
        if "exportTo" in spec:
            export_to = self.export_to(spec["exportTo"], f"{path}.exportTo")
        return Defaults(location=location, resolution=resolution, export_to=export_to)

    def choice_or_null(
        self,
        spec: dict[str, Any],
        key: str,
        path: str,
        choices: tuple[str, ...],
        default: str | None,
    ) -> str | None:
        """``spec[key]``: one of ``choices``, or null; ``default`` when absent or refused."""
        if key not in spec:
            return default
        given: object = spec[key]
        if given is None:
            return None
        if isinstance(given, str) and given in choices:
            return given
        self.error(path, f"expected {' | '.join(choices)} or null, got {_describe(given)}")
        return default

    def audit(self, value: object, path: str, base: Rules) -> AuditSettings:
        spec = self.mapping(value, path, _fields("audit"))
        if spec is None or "recordAllowed" not in spec or spec["recordAllowed"] is None:
            return base.audit
        flag = spec["recordAllowed"]
        if not isinstance(flag, bool):
            self.error(f"{path}.recordAllowed", f"expected true or false, got {_describe(flag)}")
            return base.audit
        return AuditSettings(record_allowed=flag)

    def namespace_rule(self, raw: object, path: str, base: Rules) -> NamespaceRule | None:
        allowed = _fields("namespaces") - _MESH_WIDE
        if isinstance(raw, dict):
            for key in raw:
                if key in _MESH_WIDE:
                    self.error(
                        f"{path}.{key}",
                        "is mesh-wide and may be set only in spec, not per namespace",
                    )
        spec = self.mapping(raw, path, allowed | _MESH_WIDE)
        if spec is None:
            return None
        if "selector" not in spec:
            self.error(f"{path}.selector", "is required")
        selector = self.selector(spec.get("selector"), f"{path}.selector")
        rules = _Checker(ADDS, self.errors).rules(spec, path, base)
        return NamespaceRule(selector=selector, rules=rules)

    def selector(self, value: object, path: str) -> NamespaceSelector:
        spec = self.mapping(value, path, _fields("namespaces", "selector"))
        if not spec:
            return NamespaceSelector()
        names: frozenset[str] | None = None
        if spec.get("names") is not None:
            listed = self.string_list(spec["names"], f"{path}.names") or []
            for i, name in enumerate(listed):
                if not _is_dns_label(name):
                    self.error(f"{path}.names[{i}]", f"expected a namespace name, got {name!r}")
            names = frozenset(listed)
        labels: list[tuple[str, str]] = []
        raw_labels = spec.get("matchLabels")
        if raw_labels is not None:
            if not isinstance(raw_labels, dict):
                self.error(
                    f"{path}.matchLabels", f"expected an object, got {_describe(raw_labels)}"
                )
            else:
                for key, val in raw_labels.items():
                    if not isinstance(val, str):
                        self.error(
                            f"{path}.matchLabels.{key}", f"expected a string, got {_describe(val)}"
                        )
                    else:
                        labels.append((str(key), val))
        expressions: list[LabelRequirement] = []
        raw_exprs = spec.get("matchExpressions")
        if raw_exprs is not None:
            if not isinstance(raw_exprs, list):
                self.error(
                    f"{path}.matchExpressions", f"expected a list, got {_describe(raw_exprs)}"
                )
            else:
                for i, raw in enumerate(raw_exprs):
                    req = self.requirement(raw, f"{path}.matchExpressions[{i}]")
                    if req is not None:
                        expressions.append(req)
        return NamespaceSelector(
            names=names, match_labels=tuple(labels), match_expressions=tuple(expressions)
        )

    def requirement(self, raw: object, path: str) -> LabelRequirement | None:
        spec = self.mapping(raw, path, _fields("namespaces", "selector", "matchExpressions"))
        if spec is None:
            return None
        key = spec.get("key")
        if not isinstance(key, str) or not key:
            self.error(f"{path}.key", f"expected a label key, got {_describe(key)}")
            return None
        operator = spec.get("operator")
        if operator not in _OPERATORS:
            self.error(
                f"{path}.operator",
                f"expected one of {' | '.join(_OPERATORS)}, got {_describe(operator)}",
            )
            return None
        values = self.string_list(spec.get("values"), f"{path}.values") or []
        if operator in ("In", "NotIn") and not values:
            self.error(f"{path}.values", f"must not be empty for operator {operator}")
        if operator in ("Exists", "DoesNotExist") and values:
            self.error(f"{path}.values", f"must be empty for operator {operator}")
        return LabelRequirement(key=key, operator=str(operator), values=frozenset(values))


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _is_dns_label(value: str) -> bool:
    return len(value) <= hosts.MAX_LABEL and bool(hosts.DNS_LABEL.match(value))
