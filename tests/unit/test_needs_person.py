"""Which report rows turn a run red: the invoices a person has to act on."""

from __future__ import annotations

import pytest

from inexchange.pipeline import needs_person


def row(state: str, document_id: str | None = None, attempts: int = 1) -> dict:
    return {"state": state, "inexchange_document_id": document_id, "attempts": attempts}


@pytest.mark.parametrize(("report_row", "expected"), [
    (row("rejected"), True),
    (row("stopped", "d1"), True),
    (row("failed", "d1"), True),  # InExchange got it and reported Error: never resent automatically
    (row("failed", None, attempts=5), True),  # no attempt left
    (row("failed", None, attempts=2), False),  # retried automatically later
    (row("waiting", "d1"), False),
    (row("sent", "d1"), False),
    (row("ready"), False),
])
def test_needs_person(report_row: dict, expected: bool) -> None:
    assert needs_person(report_row, max_attempts=5) is expected
