"""Read the report and the dispatch history for the "InExchange dispatch" page.

The page filters the report by the date its data interval starts (UTC), by state and by customer.
For the daily 06:00 Europe/Stockholm schedule the interval of the invoices dated D starts on D at
04:00 or 05:00 UTC, so the date filter is the invoice date of the run that dispatched them.

The state filter is one of :data:`ATTENTION` (the default: the rows that need a person, as
:func:`inexchange.pipeline.needs_person` and ``needs_attention.sql`` define it), :data:`ALL_STATES`,
or one ledger state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Integer, String, TextClause, bindparam

from inexchange.ledger import HistoryChange, ReportRow
from inexchange.sql import statement
from inexchange.states import MAX_ATTEMPTS, LedgerState
from inexchange.times import utc_text

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

#: rows per page of the report listing
PAGE_SIZE = 100
#: the longest customer search text taken into account
MAX_CUSTOMER_TEXT = 100
#: the ledger states a person can filter by, in the order the pipeline reaches them
STATES: tuple[str, ...] = tuple(state.value for state in LedgerState)
#: state filter value: the rows that need a person (the page's default)
ATTENTION = "attention"
#: state filter value: rows of every state
ALL_STATES = "all"
#: the state filter when the query string names none
DEFAULT_STATE = ATTENTION


class InvoiceReportRow(ReportRow):
    """A row of the report table (``ui_report_invoice.sql``): a run's report row, its invoice and data
    interval, and the run that changed it last."""

    invoice_id: int
    data_interval_start: str
    data_interval_end: str
    dag_run_id: str | None


class ReportPageRow(InvoiceReportRow):
    """A row of the report listing (``ui_report_page.sql``): the report row, whether it needs a person,
    and from the ledger when a failed row is retried (``next_retry_at``) and where it is now
    (``ledger_state``; None when the ledger no longer has the invoice)."""

    next_retry_at: str | None
    ledger_state: str | None
    needs_person: bool


class HistoryEntry(HistoryChange):
    """One state change of an invoice (``ui_invoice_history.sql``): when it happened, and the run that made it."""

    changed_at: str
    dag_run_id: str | None


class FilterError(ValueError):
    """A filter value the page cannot use (shown to the user, never raised past the page)."""


@dataclass(frozen=True)
class ReportFilter:
    """What the user asked to see.

    :param date_from: first data interval start date (UTC), inclusive.
    :param date_to: last data interval start date (UTC), inclusive.
    :param state: :data:`ATTENTION`, :data:`ALL_STATES` or one ledger state.
    :param customer: text found in the customer number or name, case-insensitive.
    :param page: 1-based page number.
    :param max_attempts: the submit task's attempts per invoice (a failed row with fewer attempts
        and no InExchange document id is retried automatically and needs nobody yet).
    """

    date_from: date | None = None
    date_to: date | None = None
    state: str = DEFAULT_STATE
    customer: str | None = None
    page: int = 1
    max_attempts: int = MAX_ATTEMPTS

    def parameters(self) -> dict[str, Any]:
        """Bound parameters of ``ui_report_page.sql`` for this filter."""
        return {
            "interval_from": _day_start(self.date_from) if self.date_from else None,
            "interval_until": _day_start(self.date_to + timedelta(days=1)) if self.date_to else None,
            "state": self.state if self.state in STATES else None,
            "attention": int(self.state == ATTENTION),
            "max_attempts": self.max_attempts,
            "customer": like_pattern(self.customer) if self.customer else None,
            "row_limit": PAGE_SIZE,
            "row_offset": (self.page - 1) * PAGE_SIZE,
        }


@dataclass(frozen=True)
class ReportPage:
    """One page of matching report rows.

    :param rows: the rows.
    :param total: how many rows match the filter (0 when the page is past the last one).
    :param page: the page number shown.
    :param attention: how many of the matching rows need a person.
    """

    rows: list[ReportPageRow]
    total: int
    page: int
    attention: int = 0

    @property
    def pages(self) -> int:
        """Number of pages the matching rows fill (at least one)."""
        return max(1, -(-self.total // PAGE_SIZE))


def parse_filter(*, date_from: str, date_to: str, state: str, customer: str, page: int) -> ReportFilter:
    """Turn the page's query string values into a :class:`ReportFilter`.

    Empty values mean "no filter" (an HTML form sends empty fields); an empty state means
    :data:`DEFAULT_STATE`, the rows that need a person.

    :param date_from: ``YYYY-MM-DD`` or empty.
    :param date_to: ``YYYY-MM-DD`` or empty.
    :param state: :data:`ATTENTION`, :data:`ALL_STATES`, a ledger state, or empty.
    :param customer: search text or empty.
    :param page: 1-based page number.
    :raises FilterError: when a value cannot be used; the message names it.
    """
    start, end = _parse_day(date_from, "From"), _parse_day(date_to, "To")
    if start and end and end < start:
        raise FilterError(f"To ({end}) is before From ({start})")
    chosen_state = state.strip() or DEFAULT_STATE
    if chosen_state not in (ATTENTION, ALL_STATES, *STATES):
        raise FilterError(
            f"unknown state {chosen_state[:40]}; choose {ATTENTION} (needs a person), "
            f"{ALL_STATES}, or one of {', '.join(STATES)}"
        )
    text = customer.strip()[:MAX_CUSTOMER_TEXT] or None
    return ReportFilter(start, end, chosen_state, text, max(1, page))


def like_pattern(text: str) -> str:
    """A lower-cased LIKE pattern finding ``text`` anywhere, with ``%``, ``_`` and ``\\`` escaped.

    :param text: what the user typed.
    """
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def report_page(engine: Engine, report_filter: ReportFilter) -> ReportPage:
    """Read one page of the report rows matching ``report_filter``.

    :param engine: the reporting database.
    :param report_filter: what to show.
    """
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(_page_statement(), report_filter.parameters())]
    total = int(rows[0]["total_rows"]) if rows else 0
    attention = int(rows[0]["attention_rows"] or 0) if rows else 0
    for row in rows:
        del row["total_rows"], row["attention_rows"]
        row["needs_person"] = bool(row["needs_person"])
    return ReportPage(cast("list[ReportPageRow]", rows), total, report_filter.page, attention)


def invoice_report_rows(engine: Engine, invoice_id: int) -> list[InvoiceReportRow]:
    """Every report row of one invoice, newest data interval first.

    :param engine: the reporting database.
    :param invoice_id: the ERP's invoice id.
    """
    return cast("list[InvoiceReportRow]", _invoice_rows(engine, "ui_report_invoice", invoice_id))


def invoice_history(engine: Engine, invoice_id: int) -> list[HistoryEntry]:
    """The state changes of one invoice, oldest first.

    :param engine: the reporting database.
    :param invoice_id: the ERP's invoice id.
    """
    return cast("list[HistoryEntry]", _invoice_rows(engine, "ui_invoice_history", invoice_id))


def _invoice_rows(engine: Engine, name: str, invoice_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(statement(name), {"invoice_id": invoice_id})]


def _page_statement() -> TextClause:
    """``ui_report_page.sql`` with typed parameters, so that a NULL filter binds on every database."""
    return statement("ui_report_page").bindparams(
        bindparam("interval_from", type_=String()),
        bindparam("interval_until", type_=String()),
        bindparam("state", type_=String()),
        bindparam("attention", type_=Integer()),
        bindparam("max_attempts", type_=Integer()),
        bindparam("customer", type_=String()),
        bindparam("row_limit", type_=Integer()),
        bindparam("row_offset", type_=Integer()),
    )


def _day_start(day: date) -> str:
    """Ledger text of midnight UTC at the start of ``day``."""
    return utc_text(datetime.combine(day, time(0), tzinfo=UTC))


def _parse_day(value: str, label: str) -> date | None:
    """Parse a ``YYYY-MM-DD`` form value; empty means no bound."""
    value = value.strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError(f"{label} must be a date like 2026-11-17 (got {value[:40]})") from None
