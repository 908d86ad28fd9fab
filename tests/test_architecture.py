"""The core stays pure: no web framework, server, cluster client or I/O modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "webhook"
CORE = [
    "hosts",
    "policy",
    "claims",
    "registry",
    "rules",
    "defaults",
    "admission",
    "review",
    "check",
    "shapes",
]
FORBIDDEN = {
    "fastapi", "starlette", "uvicorn", "kubernetes", "socket", "ssl", "subprocess", "logging",
    "webhook.app", "webhook.cli", "webhook.audit", "webhook.server", "webhook.sources",
    "webhook.certs", "webhook.runtime", "webhook.metrics",
}  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_nothing_from_the_shell(module: str) -> None:
    imported = imported_modules(PACKAGE / f"{module}.py")
    bad = {
        name
        for name in imported
        for forbidden in FORBIDDEN
        if name == forbidden or name.startswith(forbidden + ".")
    }
    assert not bad, f"webhook/{module}.py imports {sorted(bad)}"


@pytest.mark.parametrize("module", CORE)
def test_core_module_calls_no_file_or_clock_functions(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    calls = {
        node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    }
    assert not calls & {
        "open",
        "print",
        "now",
        "time",
        "perf_counter",
        "sleep",
        "read_text",
        "read_bytes",
    }
