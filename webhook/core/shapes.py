"""Words for JSON values in error messages (pure)."""

from __future__ import annotations


def type_name(value: object) -> str:
    """The JSON type of a value, with its article: 'a string', 'an object', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def describe(value: object) -> str:
    """A short rendering of a value: scalars as written, containers by their type."""
    if isinstance(value, str):
        return repr(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return repr(value)
    return type_name(value)
