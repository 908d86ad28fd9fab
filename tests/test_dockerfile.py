"""The Dockerfile, checked without a Docker engine: it names only files that exist, installs
the project itself (so its dependencies are exactly pyproject.toml's), and runs as non-root."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    found = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_it_copies_only_files_that_exist_and_that_dockerignore_lets_through() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copies = [
        rest for keyword, rest in instructions() if keyword == "COPY" and "--from=" not in rest
    ]
    assert copies
    for rest in copies:
        *sources, _ = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY names {source}, which does not exist"
            assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"


def test_it_is_multi_stage_and_installs_the_project_with_its_declared_dependencies() -> None:
    stages = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(stages) == 2
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(p) for p in requires.removeprefix(">=").split("."))
    for stage in stages:
        version = re.search(r"python:(\d+)\.(\d+)", stage)
        assert version is not None
        assert (int(version.group(1)), int(version.group(2))) >= minimum
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert (
        "pip wheel --no-cache-dir --wheel-dir /wheels ." in runs
    )  # the project, from pyproject.toml
    assert "--no-index --find-links /wheels serviceentry-guard" in runs  # nothing else, no network
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert name == "serviceentry-guard"


def test_it_runs_as_a_numeric_non_root_user_without_writing_bytecode() -> None:
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    env = " ".join(rest for keyword, rest in instructions() if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_it_exposes_both_ports_and_serves_by_default() -> None:
    assert ("EXPOSE", "8443 8080") in instructions()
    assert ("ENTRYPOINT", '["seguard", "serve"]') in instructions()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["seguard"] == "webhook.cli:main"
