"""Reason codes: one table says what each means, and the README lists each."""

from __future__ import annotations

from pathlib import Path

from webhook.core import findings
from webhook.core.policy import Action
from webhook.core.policyfile import _CONFLICT_FIELDS, default_policy


def _readme_reasons() -> dict[str, str]:
    """The README's table of reason codes: code to its action column."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = text.split("### Reason codes", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|") for line in table.splitlines()[2:]]
    return {cells[1].strip().strip("`"): cells[3].strip() for cells in rows}


def test_every_reason_code_is_one_row_of_the_table_and_one_line_of_the_readme() -> None:
    assert set(findings.REASONS) == set(findings.Code)
    documented = _readme_reasons()
    assert set(documented) == {str(code) for code in findings.Code}
    fields = {snake: camel for camel, snake in _CONFLICT_FIELDS.items()}
    for code, reason in findings.REASONS.items():
        action = documented[str(code)]
        assert reason.always_deny is action.startswith("always Deny"), code
        if reason.conflict:
            assert action == f"`conflicts.{fields[reason.conflict]}`", code
            assert findings.conflict_action(code, default_policy().rules) in Action
