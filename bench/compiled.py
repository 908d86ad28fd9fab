"""The pure core compiled with mypyc, against the same code as Python, in one run.

The core (``webhook/core``) is ``mypy --strict`` clean, so mypyc can compile it unchanged. This
copies the package to a scratch folder, compiles the core's modules there, and runs the same
in-process measurements (``micro.lookup_costs``: the decision, and the whole endpoint) in two
fresh interpreters, one importing the compiled copy and one this checkout's Python source
(SEGUARD_PURE=1), whatever this checkout's own build is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
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


def _measure(root: Path, *, pure: bool = False) -> dict[str, Any]:
    """The measurements in an interpreter that finds ``webhook`` in ``root`` first. ``-S``: no
    site hooks, so an editable install of this checkout does not win over ``root``."""
    path = ":".join([str(root), str(ROOT), _site_packages()])
    result = subprocess.run(
        [sys.executable, "-S", "-c", _MEASURE],
        env={
            "PYTHONPATH": path,
            "PATH": "/usr/bin:/bin",
            **({"SEGUARD_PURE": "1"} if pure else {}),
        },
        capture_output=True,
        text=True,
        check=True,
        cwd=root,  # -c puts the working folder first on the path
    )
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def compiled_costs() -> dict[str, Any] | None:
    """Decision and endpoint costs, compiled and pure, with the build time; None when mypyc or
    a C compiler is missing."""
    if (
        shutil.which("mypyc") is None
        and shutil.which("mypyc", path=str(Path(sys.executable).parent)) is None
    ):
        return None
    mypyc = shutil.which("mypyc", path=str(Path(sys.executable).parent)) or "mypyc"
    scratch = Path(tempfile.mkdtemp(prefix="seguard-mypyc-"))
    try:
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
            return None
        build_s = time.monotonic() - started
        compiled = _measure(scratch)
        pure = _measure(Path(tempfile.mkdtemp(prefix="seguard-pure-")), pure=True)
        if not compiled["compiled"] or pure["compiled"]:
            print(f"bench: the compiled copy was not the one measured ({compiled}, {pure})")
            return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "modules": len(modules),
        "build_s": round(build_s, 1),
        "compiled": compiled,
        "pure": pure,
        "ratio": {
            kind: round(compiled[part][kind] / pure[part][kind], 2)
            for part in ("decision_us", "endpoint_us")
            for kind in pure[part]
        },
    }
