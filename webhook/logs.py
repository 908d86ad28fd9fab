"""Log lines (shell): one JSON object a line for ``serve``, plain text for the other commands.

Every line names a stable ``event`` (``policy.reload.refused``, ``thread.failed``...) beside its
``level``, ``logger`` and ``message``, so a cluster's log pipeline can keep and select them the
way it keeps the audit records, which are JSON lines of their own (``event: admission.decision``).
A call site gives its event and fields with ``extra=fields("event.name", key=value)``; a line
from a library (uvicorn, the Kubernetes client) reads ``event: log``. An error's traceback is
part of its one line (``error`` and ``traceback``), never a stack dump across many lines.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

JSON = "json"
TEXT = "text"
FORMATS = (JSON, TEXT)

GENERIC_EVENT = "log"
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def fields(event: str, **values: Any) -> dict[str, Any]:
    """The ``extra`` of a log call: its stable event name and the values worth a field."""
    return {"event": event, "fields": values}


def _time(moment: float) -> str:
    whole = int(moment)
    second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{second}.{int((moment - whole) * 1000):03d}Z"


def _plain(value: Any) -> Any:
    """A value orjson can write: the common types as they are, anything else as its text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """One log record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record.created),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", GENERIC_EVENT),
            "logger": record.name,
            "message": record.getMessage(),
        }
        given = getattr(record, "fields", None)
        if isinstance(given, Mapping):
            for key, value in given.items():
                line.setdefault(str(key), _plain(value))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["error"] = f"{type(exc).__name__}: {exc}"
            line["traceback"] = "".join(traceback.format_exception(exc)).rstrip("\n")
        elif record.stack_info:
            line["traceback"] = record.stack_info
        return orjson.dumps(line).decode()


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is written, not when it was made."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure(log_format: str, *, verbose: bool = False) -> None:
    """Send every logger's lines to standard error in ``log_format`` (again: the last call wins)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if log_format == JSON else logging.Formatter(_TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # two servers, one banner of ours
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # our own messages say what failed
    # A warning from the warnings module is a log line too, not a bare text on stderr.
    logging.captureWarnings(True)
