"""The fields of a ServiceEntryPolicy, once (pure): the reader (``policyfile``) takes the names
and choices it accepts from here, and the CustomResourceDefinition's OpenAPI schema is made
from here, so the two cannot drift apart (``tests/test_policyschema.py`` checks each field both
ways)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from webhook.core.policy import API_VERSION, KIND, LOCATIONS, RESOLUTIONS, Action, Mode

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "serviceentrypolicies"
SINGULAR = "serviceentrypolicy"
SHORT_NAMES = ("sep",)
# The one object in force: the others are refused with a condition that says so.
IN_FORCE = "default"


class Field(NamedTuple):
    """One field: its type (object, array, string, boolean, integer, or duration: a number of
    seconds or a string such as 5m), what it means, and what it may hold."""

    type: str
    doc: str
    enum: tuple[str, ...] = ()
    fields: Mapping[str, Field] = MappingProxyType({})
    items: Field | None = None
    values: Field | None = None  # an object whose keys are free and whose values are this
    nullable: bool = False
    minimum: int | None = None
    maximum: int | None = None
    required: tuple[str, ...] = ()
    example: Any = None  # a value the reader accepts, for the tests that hold the two together


def _object(doc: str, fields: dict[str, Field], **extra: Any) -> Field:
    return Field("object", doc, fields=MappingProxyType(fields), nullable=True, **extra)


def _strings(doc: str, example: list[str], *, nullable: bool = True) -> Field:
    return Field(
        "array", doc, items=Field("string", "", example="x"), nullable=nullable, example=example
    )


def _action(doc: str) -> Field:
    return Field("string", doc, enum=tuple(str(a) for a in Action), example="Warn")


EXPORT_TO = _strings(
    "Namespaces that see the entry: '*' (all), '.' (its own), '~' (none) or namespace names.",
    ["."],
)

# What a namespace rule may set as well as spec: every field but these is per namespace too.
MESH_WIDE = frozenset({"clusterDomain", "namespaces", "scan"})

_RULES: Mapping[str, Field] = MappingProxyType(
    {
        "mode": Field(
            "string",
            "Enforce refuses what a Deny finding names; Warn allows it with a warning; Audit only "
            "records it.",
            enum=tuple(str(m) for m in Mode),
            example="Warn",
        ),
        "meshDefaultExportTo": Field(
            EXPORT_TO.type,
            "The exportTo of ServiceEntries that set none (mirror of meshConfig."
            "defaultServiceExportTo).",
            items=EXPORT_TO.items,
            nullable=True,
            example=["*"],
        ),
        "exemptions": _object(
            "Requesters whose requests are allowed whatever the findings (and still audited).",
            {
                "namespaces": _strings("Namespaces whose requests are allowed.", ["istio-system"]),
                "users": _strings("Users whose requests are allowed.", ["ci-bot"]),
                "groups": _strings("Groups whose requests are allowed.", ["platform"]),
            },
        ),
        "hosts": _object(
            "Which external hosts may be registered.",
            {
                "allowed": _strings(
                    "Host patterns (api.example.com, *.example.com) every external host must fall "
                    "under; empty or absent allows any.",
                    ["*.example.com"],
                ),
                "denied": _strings(
                    "Host patterns nobody may register; they outrank allowed.", ["*.internal"]
                ),
                "wildcards": _action("What a wildcard host gets (WildcardNotAllowed)."),
                "publicSuffixWildcards": _action(
                    "What a wildcard at or above a public suffix such as *.com gets "
                    "(WildcardTooBroad)."
                ),
                "partialWildcards": _action(
                    "What a partial wildcard such as *foo.example.com gets (PartialWildcard)."
                ),
            },
        ),
        "conflicts": _object(
            "What each conflict with a name already in the registry gets.",
            {
                "kubernetesService": _action(
                    "A Service's name or alias in another namespace (ConflictKubernetesService)."
                ),
                "kubernetesServiceSameNamespace": _action(
                    "A Service's name in the requester's namespace (ShadowsKubernetesService)."
                ),
                "serviceEntry": _action(
                    "A host another namespace's ServiceEntry holds, where some namespace sees both "
                    "(ConflictServiceEntry)."
                ),
                "serviceEntrySameNamespace": _action(
                    "A host another ServiceEntry of the namespace holds (DuplicateHost)."
                ),
                "wildcardOverlap": _action(
                    "A wildcard that overlaps another entry's host (WildcardOverlap)."
                ),
                "reservedClusterDomain": _action(
                    "A name Kubernetes reserves: the cluster domain, <name>.<ns>.svc, <name>.<ns> "
                    "(ReservedClusterDomain)."
                ),
            },
        ),
        "targets": _object(
            "Where an entry's traffic may go: its endpoints, addresses, and resolved hosts.",
            {
                "denied": _strings(
                    "CIDRs, IPs or host patterns no entry may point at (TargetDenied).",
                    ["169.254.0.0/16", "metadata.google.internal"],
                ),
                "minPrefixLength": _object(
                    "The shortest prefix an address range may have (TargetTooBroad).",
                    {
                        "ipv4": Field(
                            "integer", "For IPv4.", minimum=0, maximum=32, nullable=True, example=8
                        ),
                        "ipv6": Field(
                            "integer",
                            "For IPv6.",
                            minimum=0,
                            maximum=128,
                            nullable=True,
                            example=32,
                        ),
                    },
                ),
                "action": _action("What TargetDenied and TargetTooBroad get."),
            },
        ),
        "defaults": _object(
            "What the mutating webhook fills in where a ServiceEntry leaves it out.",
            {
                "location": Field(
                    "string",
                    "The location of an entry that sets none; null leaves it alone.",
                    enum=LOCATIONS,
                    nullable=True,
                    example="MESH_INTERNAL",
                ),
                "resolution": Field(
                    "string",
                    "The resolution of an entry that sets none; Auto picks one valid for its "
                    "hosts; null leaves it alone.",
                    enum=RESOLUTIONS,
                    nullable=True,
                    example="DNS",
                ),
                "exportTo": Field(
                    EXPORT_TO.type,
                    "The exportTo of an entry that sets none; null leaves it alone.",
                    items=EXPORT_TO.items,
                    nullable=True,
                    example=["."],
                ),
            },
        ),
        "audit": _object(
            "The audit trail.",
            {
                "recordAllowed": Field(
                    "boolean", "Also record clean allows.", nullable=True, example=True
                ),
            },
        ),
    }
)

_SELECTOR = _object(
    "Which namespaces the rule applies to: every part given must match.",
    {
        "names": _strings("Namespace names.", ["payments"]),
        "matchLabels": Field(
            "object",
            "Labels the Namespace must have.",
            values=Field("string", "", example="x"),
            nullable=True,
            example={"team": "payments"},
        ),
        "matchExpressions": Field(
            "array",
            "Label requirements, as a Kubernetes label selector's.",
            items=Field(
                "object",
                "",
                fields=MappingProxyType(
                    {
                        "key": Field("string", "A label key.", example="tier"),
                        "operator": Field(
                            "string",
                            "How the label's value is matched.",
                            enum=("In", "NotIn", "Exists", "DoesNotExist"),
                            example="Exists",
                        ),
                        "values": _strings("Values, for In and NotIn.", []),
                    }
                ),
                required=("key", "operator"),
            ),
            nullable=True,
            example=[{"key": "tier", "operator": "Exists"}],
        ),
    },
)

NAMESPACE_RULE = Field(
    "object",
    "Rules for some namespaces: the first rule whose selector matches applies, on top of the "
    "global ones (its lists add to theirs).",
    fields=MappingProxyType({"selector": _SELECTOR, **_RULES}),
    required=("selector",),
)

SPEC = _object(
    "The policy: global rules, rules per namespace, the defaults and the scan.",
    {
        "clusterDomain": Field(
            "string",
            "The Kubernetes cluster domain; Service names and the reserved domain derive from "
            "it. Changing it needs a restart.",
            nullable=True,
            example="cluster.example",
        ),
        **_RULES,
        "namespaces": Field(
            "array",
            "Rules for some namespaces; the first match applies.",
            items=NAMESPACE_RULE,
            nullable=True,
            example=[{"selector": {"names": ["payments"]}, "mode": "Warn"}],
        ),
        "scan": _object(
            "The periodic scan of existing ServiceEntries.",
            {
                "interval": Field(
                    "duration",
                    "How often: seconds, or 30s, 5m, 1h; 0 turns it off.",
                    nullable=True,
                    example="10m",
                ),
            },
        ),
    },
)

# The parts of a document besides spec: the reader takes them, and a resource read back from
# the API server carries metadata and status too.
TOP_LEVEL = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


def openapi(field: Field) -> dict[str, Any]:
    """The field as an OpenAPI v3 schema of a structural CustomResourceDefinition."""
    schema: dict[str, Any] = {}
    if field.type == "duration":
        schema["x-kubernetes-int-or-string"] = True
    else:
        schema["type"] = field.type
    if field.doc:
        schema["description"] = field.doc
    if field.enum:
        schema["enum"] = list(field.enum)
    if field.nullable:
        schema["nullable"] = True
    if field.minimum is not None:
        schema["minimum"] = field.minimum
    if field.maximum is not None:
        schema["maximum"] = field.maximum
    if field.fields:
        schema["properties"] = {name: openapi(sub) for name, sub in field.fields.items()}
    if field.values is not None:
        schema["additionalProperties"] = openapi(field.values)
    if field.items is not None:
        schema["items"] = openapi(field.items)
    if field.required:
        schema["required"] = list(field.required)
    return schema


def status_schema() -> dict[str, Any]:
    """The schema of the status subresource."""
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "description": "Accepted or Enforced."},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "observedGeneration": {"type": "integer"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "type": "object",
        "description": "What seguard made of the policy: written by the replica holding the "
        "scan Lease.",
        "properties": {
            "observedGeneration": {
                "type": "integer",
                "description": "The generation of the spec the conditions are about.",
            },
            "replicas": {
                "type": "object",
                "description": "Each replica's own report, by pod: the generation it read, "
                "whether it took it, and the generation it serves.",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "readGeneration": {"type": "integer"},
                        "accepted": {"type": "boolean"},
                        "servingGeneration": {"type": "integer"},
                        "lastReport": {"type": "number"},
                    },
                },
            },
            "conditions": {
                "type": "array",
                "description": "Accepted: the spec was read, or why not. Enforced: every "
                "replica serves this generation.",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition of ServiceEntryPolicy (``seguard policy schema``)."""
    columns = [
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {
            "name": "Accepted",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Accepted")].status',
        },
        {
            "name": "Enforced",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Enforced")].message',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
            },
            "scope": "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "The cluster admin's policy for ServiceEntries. "
                            f"Only the one named {IN_FORCE} is in force.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": openapi(SPEC),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }
