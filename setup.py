"""The build: the pure core (``webhook/core``) compiled with mypyc into C extensions, beside
its Python source. ``SEGUARD_PURE=1`` at build time builds none; a missing C compiler or mypyc
leaves the core Python (each extension is optional); ``SEGUARD_PURE=1`` at run time picks the
Python source even where the extensions are built (``webhook/__init__.py``)."""

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup


def compiled_core() -> list[Any]:
    if os.environ.get("SEGUARD_PURE") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("seguard: mypyc is not available; the core stays Python", file=sys.stderr)
        return []
    modules = sorted(
        str(path) for path in Path("webhook/core").glob("*.py") if path.name != "__init__.py"
    )
    extensions: list[Any] = mypycify(modules, opt_level="3", group_name="webhook.core.native")
    for extension in extensions:
        extension.optional = True  # no compiler: a warning, and the Python core
    return extensions


setup(ext_modules=compiled_core())
