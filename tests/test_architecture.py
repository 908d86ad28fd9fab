"""The core stays pure: the import contract in pyproject.toml is the one list of what
``webhook.core`` may not use, and each kind of impurity planted in the core breaks it.

The planted cases run import-linter on a copy of the package, in a fresh interpreter that sees
the copy rather than the installed package."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "webhook" / "core"

# In the copy's folder: forget the editable install, so ``webhook`` is the copy, and lint.
LINT = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
for name in [m for m in sys.modules if m == "webhook" or m.startswith("webhook.")]:
    del sys.modules[name]
from importlinter.cli import lint_imports
sys.exit(lint_imports(no_cache=True, no_logo=True))
"""


def lint(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=folder, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pristine")
    shutil.copytree(
        ROOT / "webhook", folder / "webhook", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    return folder


def test_the_copy_of_the_package_keeps_the_contract(pristine: Path) -> None:
    """The harness itself: the copy, unchanged, passes (so a failure below is the plant's)."""
    result = lint(pristine)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


# The impurities the contract must refuse: a clock, the environment, a metrics client, a thread
# helper, the runtime, logging, events, a thread, a file, and a shell module that did not exist
# when the contract was written.
PLANTS = {
    "a clock": "import time\n",
    "a clock, from a submodule": "from datetime import datetime\n",
    "the environment": "from os import environ\n",
    "metrics": "import prometheus_client\n",
    "the thread helper": "from webhook import supervise\n",
    "the runtime": "from webhook.runtime import Runtime\n",
    "logging": "import logging\n",
    "events": "from webhook import events\n",
    "a thread": "import threading\n",
    "a file": "from pathlib import Path\n",
    "a shell module written after the contract": "from webhook import newly_written\n",
}


@pytest.mark.parametrize("plant", list(PLANTS), ids=list(PLANTS))
def test_each_planted_impurity_breaks_the_contract(
    plant: str, pristine: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "planted"
    shutil.copytree(pristine, folder)
    (folder / "webhook" / "newly_written.py").write_text('"""A new shell module."""\n')
    target = folder / "webhook" / "core" / "rules.py"
    target.write_text(target.read_text() + "\n" + PLANTS[plant])
    result = lint(folder)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert "webhook.core.rules" in result.stdout


def test_every_module_of_the_core_is_under_the_contract() -> None:
    """The contract names the package, not a list of modules: a new core module is covered."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = config["tool"]["importlinter"]["contracts"]
    assert contract["source_modules"] == ["webhook.core"]
    assert "webhook.*" in contract["forbidden_modules"]


# What the import contract cannot see: builtins that do I/O.
BUILTIN_IO = {"open", "print", "input", "breakpoint", "exec", "eval", "__import__"}


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_calls_no_builtin_that_does_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not calls & BUILTIN_IO, f"{path.name} calls {sorted(calls & BUILTIN_IO)}"


MUTABLE_CALLS = {
    "dict",
    "list",
    "set",
    "defaultdict",
    "OrderedDict",
    "Counter",
    "deque",
    "bytearray",
}
MUTABLE_DISPLAYS = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
MEMOS = {"lru_cache", "cache", "cached_property"}


def _module_state(tree: ast.Module) -> list[str]:
    """Module-level names bound to a mutable container, and memoised functions or properties."""
    found: list[str] = []
    for statement in tree.body:
        value = statement.value if isinstance(statement, ast.Assign | ast.AnnAssign) else None
        targets = (
            statement.targets
            if isinstance(statement, ast.Assign)
            else [getattr(statement, "target", None)]
        )
        called = value.func if isinstance(value, ast.Call) else None
        name = getattr(called, "id", getattr(called, "attr", ""))
        if isinstance(value, MUTABLE_DISPLAYS) or name in MUTABLE_CALLS:
            found += [ast.unparse(t) for t in targets if t is not None]
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if getattr(target, "id", getattr(target, "attr", "")) in MEMOS:
                    found.append(f"@{ast.unparse(decorator)} {node.name}")
    return found


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_the_core_holds_no_mutable_module_state_and_no_memo(path: Path) -> None:
    """Tables are frozen (tuple, frozenset, MappingProxyType); state lives in the objects that
    own it; a memo is a cost measured in bench/, not a hidden cache."""
    assert _module_state(ast.parse(path.read_text())) == []


def test_the_module_state_check_sees_what_it_must() -> None:
    planted = ast.parse(
        "import functools\nCACHE = {}\nSEEN: list[int] = []\nX = dict()\nT = (1, 2)\n"
        "@functools.lru_cache(maxsize=4)\ndef f(): pass\n"
    )
    assert _module_state(planted) == ["CACHE", "SEEN", "X", "@functools.lru_cache(maxsize=4) f"]
