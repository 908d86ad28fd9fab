"""The ServiceEntryPolicy's fields, held one way: every field of the model (the CRD's schema)
is read by the policy reader with its type and its choices, nothing outside it is, and the CRD
in deploy/ is the one the model makes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.core.policyfile import PolicyError, parse_policy
from webhook.core.policyschema import SPEC, Field, crd, openapi

ROOT = Path(__file__).resolve().parent.parent


def leaves(field: Field, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Field]]:
    """Every field under ``field``, by its path (a list's items are under "[]")."""
    for name, sub in field.fields.items():
        yield (*path, name), sub
        yield from leaves(sub, (*path, name))
    if field.items is not None and field.items.fields:
        yield from leaves(field.items, (*path, "[]"))


FIELDS = list(leaves(SPEC))


def document(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A policy whose only setting is ``value`` at ``path`` (with what a list item requires)."""

    def build(rest: tuple[str, ...], at: Field) -> Any:
        if not rest:
            return value
        if rest[0] == "[]":
            assert at.items is not None
            item = build(rest[1:], at.items)
            required = {
                "selector": {"names": ["payments"]},
                "key": "tier",
                "operator": "Exists",
            }
            return [{**{k: required[k] for k in at.items.required if k != rest[1]}, **item}]
        return {rest[0]: build(rest[1:], at.fields[rest[0]])}

    return {"apiVersion": "seguard.io/v1alpha1", "kind": "ServiceEntryPolicy", "spec": build(path, SPEC)}  # fmt: skip


def where(path: tuple[str, ...]) -> str:
    return "spec." + ".".join(path).replace(".[]", "[0]")


def refused(doc: dict[str, Any]) -> list[str]:
    try:
        parse_policy(doc)
    except PolicyError as exc:
        return exc.errors
    return []


@pytest.mark.parametrize(("path", "field"), FIELDS, ids=[where(p) for p, _ in FIELDS])
def test_every_field_of_the_schema_is_read_with_its_example(
    path: tuple[str, ...], field: Field
) -> None:
    assert field.example is not None or field.type == "object", f"{where(path)} has no example"
    value = field.example if field.example is not None else {}
    assert refused(document(path, value)) == []


@pytest.mark.parametrize(("path", "field"), FIELDS, ids=[where(p) for p, _ in FIELDS])
def test_a_value_of_another_type_is_refused_at_its_path(
    path: tuple[str, ...], field: Field
) -> None:
    wrong = {
        "object": "text",
        "array": "text",
        "string": 12,
        "boolean": "yes",
        "integer": "8",
        "duration": [1],
    }[field.type]
    if field.type == "object" and field.values is not None:
        wrong = ["text"]
    errors = refused(document(path, wrong))
    assert any(e.startswith(where(path)) for e in errors), errors


@pytest.mark.parametrize(
    ("path", "field"),
    [(p, f) for p, f in FIELDS if f.enum],
    ids=[where(p) for p, f in FIELDS if f.enum],
)
def test_an_enum_takes_each_of_its_choices_and_nothing_else(
    path: tuple[str, ...], field: Field
) -> None:
    for choice in field.enum:
        doc = document(path, choice)
        if choice in ("In", "NotIn"):  # these need values
            doc["spec"]["namespaces"][0]["selector"]["matchExpressions"][0]["values"] = ["x"]
        assert refused(doc) == [], choice
    errors = refused(document(path, "NotAChoice"))
    assert errors and errors[0].startswith(where(path))
    assert all(choice in errors[0] for choice in field.enum)


OBJECTS: list[tuple[list[str], Field]] = [([], SPEC)] + [
    (list(p), f) for p, f in FIELDS if f.fields
]


@pytest.mark.parametrize(
    ("path", "field"), OBJECTS, ids=["spec"] + [where(tuple(p)) for p, f in FIELDS if f.fields]
)
def test_a_field_the_schema_does_not_have_is_refused(path: list[str], field: Field) -> None:
    if path:
        doc = document(tuple(path), {"notAField": 1})
    else:
        doc = {**document(("mode",), "Warn"), "spec": {"notAField": 1}}
    errors = refused(doc)
    [error] = [e for e in errors if "notAField: unknown field" in e]
    # The error lists what the object takes: the model's fields (and per namespace, those
    # that are mesh-wide are refused with their own error).
    assert all(name in error for name in field.fields), error


def test_the_crd_schema_is_the_models_and_structural() -> None:
    definition = crd()
    [version] = definition["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["properties"]["spec"] == openapi(SPEC)
    assert version["subresources"] == {"status": {}}
    assert definition["spec"]["scope"] == "Cluster"

    def walk(node: dict[str, Any], at: str) -> None:
        # Structural: every node says its type (or is int-or-string), so the API server prunes
        # and validates it.
        assert "type" in node or node.get("x-kubernetes-int-or-string"), at
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{at}.{name}")
        if "items" in node:
            walk(node["items"], f"{at}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{at}.*")

    walk(schema, "")


def test_deploy_installs_the_crd_the_model_makes() -> None:
    shipped = yaml.safe_load((ROOT / "deploy" / "base" / "crd.yaml").read_text())
    assert shipped == crd()
    printed = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "policy", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    assert yaml.safe_load(printed.stdout) == crd()


def test_a_resource_read_back_from_the_api_server_is_a_policy() -> None:
    resource = {
        "apiVersion": "seguard.io/v1alpha1",
        "kind": "ServiceEntryPolicy",
        "metadata": {"name": "default", "generation": 3, "resourceVersion": "812"},
        "spec": {"mode": "Warn"},
        "status": {"observedGeneration": 2, "conditions": []},
    }
    assert str(parse_policy(resource).rules.mode) == "Warn"
