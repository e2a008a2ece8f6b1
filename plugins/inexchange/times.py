"""Ledger times: the ledger stores UTC ISO text ('2026-11-20T08:12:00.000000Z', :func:`utc_text`, read
back by :func:`parse_utc`), people read it in the company's zone with its abbreviation ('2026-11-20
09:12 CET', :func:`local_time`). Used by the ledger, the run's report table, the dispatch page and the
e-mail alike (a leaf module: it imports nothing of the project)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

#: the zone of the ERP's invoice dates and of every time shown to a person (the DAG's schedule zone)
TIMEZONE = "Europe/Stockholm"


def local_time(value: Any, zone: str = TIMEZONE) -> str:
    """A ledger time as ``2026-11-20 09:12 CET`` in ``zone``; empty when there is none.

    Text that is not a time the ledger writes is shown as it is (cut to 16 characters).

    :param value: UTC ISO text as the ledger stores it.
    :param zone: IANA zone name.
    """
    if not value:
        return ""
    moment = parse_utc(value)
    if moment is None:
        return str(value)[:16]
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def parse_utc(value: Any) -> datetime | None:
    """A ledger time as an aware datetime; ``None`` when it is not one (naive text counts as UTC)."""
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def utc_text(moment: datetime) -> str:
    """Format a time as the sortable UTC text the ledger stores ('...T06:00:00.000000Z')."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware time")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_text() -> str:
    """The current time as ledger text."""
    return utc_text(datetime.now(UTC))
