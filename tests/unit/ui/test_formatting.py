"""Local times and the "Next step" text of the dispatch page."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from inexchange.ui.formatting import local_time, next_step

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("value", "shown"), [
    ("2026-11-20T08:12:00.000000Z", "2026-11-20 09:12 CET"),
    ("2026-07-01T08:12:00.000000Z", "2026-07-01 10:12 CEST"),
    ("2026-03-29T00:59:59.000000Z", "2026-03-29 01:59 CET"),  # the last minute before summer time
    ("2026-03-29T01:00:00.000000Z", "2026-03-29 03:00 CEST"),
    ("2026-10-25T00:30:00.000000Z", "2026-10-25 02:30 CEST"),  # 02:30 comes twice that night
    ("2026-10-25T01:30:00.000000Z", "2026-10-25 02:30 CET"),
    ("2026-11-20T08:12:00", "2026-11-20 09:12 CET"),  # naive text is UTC
    ("2026-11-20T08:12:00+00:00", "2026-11-20 09:12 CET"),
    ("not a time at all, longer", "not a time at al"),
    ("", ""),
    (None, ""),
])
def test_local_time_in_stockholm(value: Any, shown: str) -> None:
    """The page shows times as the run's report table in the task log does (both use inexchange.times)."""
    assert local_time(value) == shown


def test_local_time_in_another_zone() -> None:
    assert local_time("2026-11-20T08:12:00.000000Z", "America/New_York") == "2026-11-20 03:12 EST"


def row(state: str, needs_person: bool = False, **fields: Any) -> dict[str, Any]:
    return {"state": state, "needs_person": needs_person, "inexchange_document_id": None, "next_retry_at": None,
            "ledger_state": state, **fields}


@pytest.mark.parametrize(("report_row", "step"), [
    (row("rejected", True), "needs a person"),
    (row("stopped", True), "needs a person"),
    (row("in_doubt", True), "needs a person"),
    (row("failed", True, inexchange_document_id="d1"),
     "needs a person: InExchange reported an error, never resent automatically"),
    (row("failed", True, next_retry_at="2026-11-20T09:00:00.000000Z"), "needs a person: no automatic attempts left"),
    (row("failed", next_retry_at="2026-11-20T08:12:00.000000Z"), "retried automatically at 2026-11-20 09:12 CET"),
    (row("failed", next_retry_at="2026-11-20T08:00:00.000000Z"),
     "retried automatically at the next run (due since 2026-11-20 09:00 CET)"),
    (row("failed"), "retried automatically at the next run"),
    (row("failed", ledger_state=None), "retried automatically at the next run"),  # no ledger row
    (row("failed", ledger_state="submitting", next_retry_at="2026-11-20T08:12:00.000000Z"),
     "being retried (now submitting in the ledger)"),
    (row("sent"), ""),
    (row("waiting"), ""),
])
def test_next_step(report_row: dict[str, Any], step: str) -> None:
    assert next_step(report_row, now=NOW) == step
