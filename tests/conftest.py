from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

DATA = Path(__file__).parent / "data"


def load_fixture_review(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "admission-reviews" / name).read_text())
    return data


@pytest.fixture
def data_dir() -> Path:
    return DATA


# Property and fuzz tests run briefly in CI; HYPOTHESIS_PROFILE=long runs them for real.
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long profile runs one property for many minutes: the per-test timeout, a guard
    against a hung test in CI, would cut it short."""
    if PROFILE == "long":
        for item in items:
            item.add_marker(pytest.mark.timeout(0))
