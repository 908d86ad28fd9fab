from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"


def load_fixture_review(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "admission-reviews" / name).read_text())
    return data


@pytest.fixture
def data_dir() -> Path:
    return DATA
