"""The files source: manifests on disk, the offline and development registry (shell).

Reads YAML or JSON, multi-document files, and ``kind: List`` dumps from ``kubectl get -o yaml``
(also typed lists such as ``ServiceList`` straight from the API, whose items carry no kind).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from webhook.core.policy import API_VERSION, KIND, Policy
from webhook.core.policyfile import load_yaml_documents, parse_policy

SOURCE = "files"
STDIN = Path("-")  # a FILE of "-" is standard input
SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(ValueError):
    """A manifest file that cannot be read or parsed."""


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """The files to read: each file given, and every manifest under each folder, sorted."""
    found: list[Path] = []
    for path in paths:
        if path == STDIN:
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES))
        elif path.exists():
            found.append(path)
        else:
            raise ManifestError(f"{path}: no such file or folder")
    return found


def read_documents(path: Path) -> Iterator[dict[str, Any]]:
    """The objects in one file, with List items flattened."""
    try:
        text = sys.stdin.buffer.read() if path == STDIN else path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read ({exc.strerror})") from None
    if path.suffix == ".json":
        # One JSON document (often a large List dump): orjson reads it tens of times faster.
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ManifestError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(document, dict):
            raise ManifestError(f"{path}: document 1 is not an object")
        yield from flatten(document)
        return
    try:
        decoded = text.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None
    try:
        documents = load_yaml_documents(decoded)
    except ValueError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    for index, doc in enumerate(documents):
        if not isinstance(doc, dict):
            raise ManifestError(f"{path}: document {index + 1} is not an object")
        yield from flatten(doc)


def flatten(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kind = doc.get("kind")
    items = doc.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        item_kind = kind[: -len("List")]
        for item in items:
            if not isinstance(item, dict):
                continue
            if item_kind and "kind" not in item:  # a typed list: ServiceList, NamespaceList ...
                yield from flatten({"kind": item_kind, "apiVersion": doc.get("apiVersion"), **item})
            else:
                yield from flatten(item)
        return
    yield doc


def read_located(paths: Iterable[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every object under ``paths``, with the file it came from."""
    return [(path, obj) for path in manifest_files(paths) for obj in read_documents(path)]


def read_objects(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return [obj for _, obj in read_located(paths)]


def is_policy(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == KIND and obj.get("apiVersion") == API_VERSION


def policy_in(located: Iterable[tuple[Path, dict[str, Any]]]) -> Policy | None:
    """The ServiceEntryPolicy kept beside the manifests, if there is one. Two is an error."""
    found = [(path, obj) for path, obj in located if is_policy(obj)]
    if len(found) > 1:
        raise ManifestError(
            f"{found[0][0]} and {found[1][0]} both hold a ServiceEntryPolicy; keep one, or "
            "choose with --policy"
        )
    if not found:
        return None
    path, document = found[0]
    return parse_policy(document, source=str(path))
