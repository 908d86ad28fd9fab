"""Log lines: one JSON object a line with a stable event, tracebacks inside the line."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.test_supervise import fail_then_run_well
from webhook import logs, supervise

PATIENCE_S = 30.0


class Stderr:
    """What was written to standard error so far (pytest's capture, read and kept)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._text = ""

    def getvalue(self) -> str:
        self._text += self._capsys.readouterr().err
        return self._text


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Stderr]:
    """Standard error as the JSON handler writes it; the handler is taken away afterwards."""
    root = logging.getLogger()
    level = root.level
    logs.configure(logs.JSON)
    yield Stderr(capsys)
    for handler in [h for h in root.handlers if isinstance(h, logs._Stderr)]:
        root.removeHandler(handler)
    root.setLevel(level)


def lines(buffer: Stderr) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_line_carries_its_event_level_logger_message_and_fields(stderr: Stderr) -> None:
    logging.getLogger("seguard.reload").warning(
        "policy %s refused", "p.yaml", extra=logs.fields("policy.reload.refused", generation=3)
    )
    (line,) = lines(stderr)
    assert line["event"] == "policy.reload.refused"
    assert line["level"] == "warning"
    assert line["logger"] == "seguard.reload"
    assert line["message"] == "policy p.yaml refused"
    assert line["generation"] == 3
    assert isinstance(line["time"], str) and line["time"].endswith("Z")
    assert time.strftime("%Y-%m-%dT", time.gmtime()) in line["time"]


def test_a_library_line_is_json_too_with_the_generic_event(stderr: Stderr) -> None:
    logging.getLogger("uvicorn.error").error("something from %s", "uvicorn")
    (line,) = lines(stderr)
    assert line["event"] == logs.GENERIC_EVENT
    assert line["message"] == "something from uvicorn"


def test_a_field_that_json_cannot_hold_is_written_as_its_text(stderr: Stderr) -> None:
    logging.getLogger("seguard").info(
        "x", extra=logs.fields("e", path=Path("/etc/p.yaml"), kinds={"Service"}, n=None)
    )
    (line,) = lines(stderr)
    assert line["path"] == "/etc/p.yaml"
    assert line["kinds"] == ["Service"]
    assert line["n"] is None


def test_a_field_never_replaces_the_line_s_own_keys(stderr: Stderr) -> None:
    logging.getLogger("seguard").info("real", extra=logs.fields("e", message="fake", level="x"))
    (line,) = lines(stderr)
    assert line["message"] == "real" and line["level"] == "info"


def test_a_traceback_is_inside_its_one_line(stderr: Stderr) -> None:
    def deep() -> None:
        raise KeyError("lost")

    try:
        deep()
    except KeyError:
        logging.getLogger("seguard.app").exception("failed", extra=logs.fields("admission.x"))
    text = stderr.getvalue()
    assert text.count("\n") == 1, text  # one line, whatever the traceback holds
    (line,) = lines(stderr)
    assert line["error"] == "KeyError: 'lost'"
    assert isinstance(line["traceback"], str)
    assert "in deep" in line["traceback"] and line["traceback"].startswith("Traceback")


def test_debug_lines_show_only_when_verbose(stderr: Stderr) -> None:
    logging.getLogger("seguard").debug("hidden")
    logs.configure(logs.JSON, verbose=True)
    logging.getLogger("seguard").debug("shown")
    assert [line["message"] for line in lines(stderr)] == ["shown"]


def test_configure_again_replaces_its_handler_and_leaves_others(stderr: Stderr) -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    try:
        logs.configure(logs.TEXT)
        logs.configure(logs.JSON)
        handlers = logging.getLogger().handlers
        assert sum(isinstance(h, logs._Stderr) for h in handlers) == 1
        assert other in handlers
    finally:
        logging.getLogger().removeHandler(other)
    logging.getLogger("seguard").info("once")
    assert len(lines(stderr)) == 1


def test_text_lines_read_as_before(stderr: Stderr) -> None:
    logs.configure(logs.TEXT)
    logging.getLogger("seguard.scan").info("scan %d done", 4, extra=logs.fields("scan.completed"))
    assert stderr.getvalue().rstrip().endswith("INFO seguard.scan: scan 4 done")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one of json, text"):
        logs.configure("xml")


def test_a_failing_thread_logs_its_traceback_once_as_a_json_line(stderr: Stderr) -> None:
    """Supervision's report of an unforeseen error: one JSON line with the traceback, then one
    short line for each repeat of the same error."""
    fail_then_run_well(supervise.Health())
    failed = [line for line in lines(stderr) if line["event"] == "thread.failed"]
    assert len(failed) == 3
    assert all(line["thread"] == "worker" and line["level"] == "error" for line in failed)
    assert "traceback" in failed[0] and "in loop" in str(failed[0]["traceback"])
    assert failed[0]["error"] == "RuntimeError: a bug nobody foresaw"
    assert not any("traceback" in line for line in failed[1:])
    assert [line["crashes"] for line in failed] == [1, 2, 3]


def test_every_event_the_code_logs_is_listed_in_the_docs() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    events = {
        match.group(1)
        for path in (root / "webhook").rglob("*.py")
        for match in re.finditer(r'logs\.fields\(\s*"([a-z_.]+)"', path.read_text())
    }
    assert len(events) > 30  # the pattern finds them
    listed = (root / "docs" / "audit.md").read_text()
    assert sorted(e for e in events if f"`{e}`" not in listed) == []
