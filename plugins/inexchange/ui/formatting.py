"""Ledger times and "what happens next" as the dispatch page shows them.

The ledger stores times as UTC ISO text ('2026-11-20T08:12:00.000000Z'); people read them in the
company's zone with its abbreviation ('2026-11-20 09:12 CET'), as the run's report table does
(``inexchange.pipeline.format_report``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from inexchange.states import LedgerState
from inexchange.times import TIMEZONE, local_time, parse_utc

if TYPE_CHECKING:
    from inexchange.ui.queries import ReportPageRow

__all__ = ["TIMEZONE", "local_time", "next_step"]


def next_step(row: ReportPageRow, now: datetime | None = None, zone: str = TIMEZONE) -> str:
    """What happens next to a report row: nothing to do, a person's action, or an automatic retry.

    :param row: a row of the report listing (of it, ``state``, ``needs_person``, ``inexchange_document_id``,
        and the ledger's ``next_retry_at`` and ``ledger_state`` are read).
    :param now: the current time (UTC); defaults to the clock.
    :param zone: the zone retry times are shown in.
    """
    if row["needs_person"]:
        if row["state"] != LedgerState.FAILED.value:
            return "needs a person"
        if row["inexchange_document_id"]:
            return "needs a person: InExchange reported an error, never resent automatically"
        return "needs a person: no automatic attempts left"
    if row["state"] != LedgerState.FAILED.value:
        return ""
    ledger_state = row.get("ledger_state")
    if ledger_state and ledger_state != LedgerState.FAILED.value:
        return f"being retried (now {ledger_state} in the ledger)"
    retry_at = row.get("next_retry_at")
    if not retry_at:
        return "retried automatically at the next run"
    moment = parse_utc(retry_at)
    current = now or datetime.now(UTC)
    if moment is not None and moment <= current:
        return f"retried automatically at the next run (due since {local_time(retry_at, zone)})"
    return f"retried automatically at {local_time(retry_at, zone)}"
