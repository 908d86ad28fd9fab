"""The pure core compiled with mypyc, against the same code as Python, in one run.

The core (``webhook/core``) is ``mypy --strict`` clean, so mypyc can compile it unchanged.
``compiled_tree`` copies the package to a scratch folder and compiles the core's modules there;
``Core`` says how to start an interpreter on either core (the compiled copy, or this checkout's
Python source with SEGUARD_PURE=1, whatever this checkout's own build is), for the server runs
of ``bench/run.py`` and for the in-process measurements of ``compiled_costs``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.settings import ROOT

_MEASURE = """
import json, sys
import webhook.core.rules as rules
from bench.micro import lookup_costs
costs, endpoint = lookup_costs()
print(json.dumps({"compiled": rules.__file__.endswith(".so"), "decision_us": costs, "endpoint_us": endpoint}))
"""


def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


@dataclass(frozen=True)
class Core:
    """One of the two cores: ``name`` is "compiled" or "pure"; ``root`` the folder whose
    ``webhook`` package an interpreter started with ``python()`` imports."""

    name: str
    root: Path

    def python(self) -> list[str]:
        """The interpreter's command. ``-S``: no site hooks, so an editable install of this
        checkout does not win over ``root``."""
        return [sys.executable, "-S"]

    def env(self) -> dict[str, str]:
        path = ":".join([str(self.root), str(ROOT), _site_packages()])
        return {
            "PYTHONPATH": path,
            "PATH": "/usr/bin:/bin",
            **({"SEGUARD_PURE": "1"} if self.name == "pure" else {}),
        }

    def loaded_in(self, pid: int) -> bool:
        """Whether the process ``pid`` runs this core: the compiled one maps the extensions
        built under ``root``; the pure one maps no extension of the core at all."""
        mapped = {
            line.split()[-1]
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if line.endswith(".so")
        }
        ours = {
            path
            for path in mapped
            if path.startswith((str(self.root), str(ROOT / "webhook"))) or "__mypyc" in path
        }
        if self.name == "compiled":
            return any(path.startswith(str(self.root)) for path in ours)
        return not ours


@dataclass(frozen=True)
class Tree:
    """The two cores (no compiled one where mypyc or a C compiler is missing), and what
    building the compiled one took."""

    compiled: Core | None
    pure: Core
    modules: int
    build_s: float


@contextlib.contextmanager
def compiled_tree() -> Iterator[Tree]:
    """The pure core, and a scratch copy of the package with its core compiled (removed
    afterwards)."""
    scratch = Path(tempfile.mkdtemp(prefix="seguard-mypyc-"))
    empty = Path(tempfile.mkdtemp(prefix="seguard-pure-"))
    # An empty folder first on the path: the checkout's own source (ROOT) is imported.
    pure = Core("pure", empty)
    try:
        mypyc = shutil.which("mypyc", path=str(Path(sys.executable).parent)) or shutil.which(
            "mypyc"
        )
        if mypyc is None:
            print("bench: no mypyc here; the compiled core is not measured")
            yield Tree(compiled=None, pure=pure, modules=0, build_s=0.0)
            return
        shutil.copytree(ROOT / "webhook", scratch / "webhook")
        modules = sorted(
            str(p.relative_to(scratch))
            for p in (scratch / "webhook" / "core").glob("*.py")
            if p.name != "__init__.py"
        )
        started = time.monotonic()
        built = subprocess.run(
            [mypyc, *modules], cwd=scratch, capture_output=True, text=True, check=False
        )
        if built.returncode != 0:
            print(f"bench: mypyc failed: {built.stdout[-500:]}{built.stderr[-500:]}")
            yield Tree(compiled=None, pure=pure, modules=0, build_s=0.0)
            return
        yield Tree(
            compiled=Core("compiled", scratch),
            pure=pure,
            modules=len(modules),
            build_s=time.monotonic() - started,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(empty, ignore_errors=True)


def _measure(core: Core) -> dict[str, Any]:
    """The in-process measurements in an interpreter on ``core``."""
    result = subprocess.run(
        [*core.python(), "-c", _MEASURE],
        env=core.env(),
        capture_output=True,
        text=True,
        check=True,
        cwd=core.root,  # -c puts the working folder first on the path
    )
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def compiled_costs(tree: Tree) -> dict[str, Any] | None:
    """Decision and endpoint costs in process, compiled and pure, with the build time; None
    without a compiled core."""
    if tree.compiled is None:
        return None
    compiled = _measure(tree.compiled)
    pure = _measure(tree.pure)
    if not compiled["compiled"] or pure["compiled"]:
        print(f"bench: the compiled copy was not the one measured ({compiled}, {pure})")
        return None
    return {
        "modules": tree.modules,
        "build_s": round(tree.build_s, 1),
        "compiled": compiled,
        "pure": pure,
        "ratio": {
            kind: round(compiled[part][kind] / pure[part][kind], 2)
            for part in ("decision_us", "endpoint_us")
            for kind in pure[part]
        },
    }
