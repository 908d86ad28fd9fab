"""Check a ServiceEntry spec against Istio's own CRD, as the API server would (tests only).

The API server validates a custom resource after the mutating webhooks have run, with the CRD's
openAPIV3Schema and its ``x-kubernetes-validations`` CEL rules. ``crd_errors`` walks the same
schema, read from ``tests/data/istio-serviceentry-crd.yaml``, and evaluates the same rules with
cel-python, so a test can ask whether the API server would take an object our webhook patched.

It covers what the ServiceEntry schema uses: types (and ``x-kubernetes-int-or-string``), enum,
required, minItems/maxItems, min/maxLength, minimum/maximum, min/maxProperties,
``additionalProperties`` schemas, ``x-kubernetes-list-type`` (map and set) uniqueness, and every
CEL rule at its node. As the API server does, a null object field that is not ``nullable`` is
pruned before validation, and unknown fields are reported (kubectl's default field validation is
Strict). Rules are compiled once per rule text.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import celpy
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

CRD_FILE = Path(__file__).parent / "data" / "istio-serviceentry-crd.yaml"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


@functools.cache
def _crd() -> dict[str, Any]:
    document = yaml.safe_load(CRD_FILE.read_text())
    assert isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition"
    return document


def served_versions() -> tuple[str, ...]:
    return tuple(v["name"] for v in _crd()["spec"]["versions"] if v.get("served"))


def object_schema(version: str = "v1") -> dict[str, Any]:
    """The openAPIV3Schema of one served version."""
    for entry in _crd()["spec"]["versions"]:
        if entry["name"] == version:
            schema: dict[str, Any] = entry["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"the ServiceEntry CRD serves no version {version!r}")


def crd_errors(spec: Any, version: str = "v1") -> list[str]:
    """Every way ``spec`` breaks the CRD's schema or CEL rules; empty when the API server takes it.

    ``spec`` is the object's ``spec`` as JSON (None means absent). The walk starts at the root of
    the schema so that ``required: [spec]`` holds too; ``metadata`` is the API server's business.
    """
    root = object_schema(version)
    body: dict[str, Any] = {} if spec is None else {"spec": spec}
    errors: list[str] = []
    _walk(body, root, "", errors)
    return errors


def _walk(value: Any, schema: Mapping[str, Any], path: str, errors: list[str]) -> Any:
    """Validate ``value`` at ``path``; return it as the rules see it (null fields pruned)."""
    if not _type_ok(value, schema, path, errors):
        return value
    seen = value
    if "enum" in schema and value not in schema["enum"]:
        shown = ", ".join(f'"{v}"' for v in schema["enum"])
        errors.append(f"{path}: Unsupported value: {value!r}: supported values: {shown}")
    if isinstance(value, str):
        _bounds(len(value), schema, suffix="Length", unit="characters", path=path, errors=errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: Invalid value: {value}: should be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: Invalid value: {value}: should be <= {schema['maximum']}")
    elif isinstance(value, list):
        seen = _walk_list(value, schema, path, errors)
    elif isinstance(value, dict):
        seen = _walk_object(value, schema, path, errors)
    for rule in schema.get("x-kubernetes-validations", ()):
        if not _rule_holds(rule["rule"], seen):
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            errors.append(f"{path or '<root>'}: Invalid value: {message}")
    return seen


def _type_ok(value: Any, schema: Mapping[str, Any], path: str, errors: list[str]) -> bool:
    where = path or "<root>"
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return True
        errors.append(f"{where}: Invalid value: {value!r}: must be an integer or a string")
        return False
    wanted = schema.get("type")
    if wanted is None:
        return True
    if value is None and schema.get("nullable"):
        return True
    ok = isinstance(value, _TYPES[wanted])
    if wanted in ("integer", "number") and isinstance(value, bool):
        ok = False
    if not ok:
        errors.append(f"{where}: Invalid value: {_describe(value)}: must be of type {wanted}")
    return ok


def _bounds(
    size: int,
    schema: Mapping[str, Any],
    *,
    suffix: str,
    unit: str,
    path: str,
    errors: list[str],
) -> None:
    low = schema.get(f"min{suffix}")
    high = schema.get(f"max{suffix}")
    if low is not None and size < low:
        errors.append(f"{path}: Invalid value: must have at least {low} {unit}")
    if high is not None and size > high:
        errors.append(f"{path}: Too long: may not have more than {high} {unit}")


def _walk_list(value: list[Any], schema: Mapping[str, Any], path: str, errors: list[str]) -> Any:
    _bounds(len(value), schema, suffix="Items", unit="items", path=path, errors=errors)
    items = schema.get("items", {})
    seen = [_walk(item, items, f"{path}[{i}]", errors) for i, item in enumerate(value)]
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = tuple(schema.get("x-kubernetes-list-map-keys", ()))
        found: set[str] = set()
        for i, item in enumerate(seen):
            if not isinstance(item, dict):
                continue
            key = repr(tuple(item.get(k) for k in keys))
            if key in found:
                shown = ", ".join(f'"{k}":{item.get(k)!r}' for k in keys)
                errors.append(f"{path}[{i}]: Duplicate value: map[{shown}]")
            found.add(key)
    elif list_type == "set":
        found_items: list[Any] = []
        for i, item in enumerate(seen):
            if item in found_items:
                errors.append(f"{path}[{i}]: Duplicate value: {item!r}")
            found_items.append(item)
    return seen


def _walk_object(
    value: dict[str, Any], schema: Mapping[str, Any], path: str, errors: list[str]
) -> Any:
    properties: Mapping[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    seen: dict[str, Any] = {}
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        sub = properties.get(key)
        if sub is None and isinstance(extra, dict):
            sub = extra
        if sub is None:
            if not preserve:
                errors.append(f'{child}: unknown field "{key}"')
            continue
        if item is None and not sub.get("nullable"):
            continue  # the API server prunes a null that the schema does not allow
        seen[key] = _walk(item, sub, child, errors)
    for key in schema.get("required", ()):
        if key not in seen:
            errors.append(f"{path + '.' if path else ''}{key}: Required value")
    _bounds(len(seen), schema, suffix="Properties", unit="properties", path=path, errors=errors)
    return seen


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{value!r} ({type(value).__name__})"


# CEL.


def _substring(text: Any, start: Any, end: Any = None) -> Any:
    """Kubernetes' CEL strings extension ``substring``: code points, and an error out of range."""
    whole = str(text)
    first = int(start)
    last = len(whole) if end is None else int(end)
    if not 0 <= first <= last <= len(whole):
        return CELEvalError(f"substring({first}, {last}) out of range for {len(whole)} characters")
    return celtypes.StringType(whole[first:last])


# The Kubernetes CEL library functions the ServiceEntry rules use beyond standard CEL.
_KUBERNETES_FUNCTIONS = {"substring": _substring}
_ENVIRONMENT = celpy.Environment()


@functools.cache
def _program(rule: str) -> celpy.Runner:
    return _ENVIRONMENT.program(
        _ENVIRONMENT.compile(rule), functions=cast(Any, _KUBERNETES_FUNCTIONS)
    )


def _rule_holds(rule: str, value: Any) -> bool:
    """A rule holds when it evaluates to true; an evaluation error fails it, as in Kubernetes."""
    try:
        result = _program(rule).evaluate({"self": json_to_cel(value)})
    except CELEvalError:
        return False
    return isinstance(result, celtypes.BoolType) and bool(result)
