"""SEGUARD_PURE=1: import the pure core from its Python source, not from the C extensions
mypyc built beside it (setup.py)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_CORE = Path(__file__).resolve().parent / "core"


class _SourceFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,  # noqa: ARG002 - the finder protocol's
        target: ModuleType | None = None,  # noqa: ARG002
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("webhook.core."):
            return None
        source = _CORE / f"{fullname.rsplit('.', 1)[1]}.py"
        return importlib.util.spec_from_file_location(fullname, source) if source.exists() else None


def prefer_source() -> None:
    if not any(isinstance(finder, _SourceFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())
