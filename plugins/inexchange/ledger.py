"""The dispatch ledger: one row per invoice, its state, and the history of every change.

The ledger is the only hand-over between tasks. Every state change is a compare-and-set
(``ledger_transition.sql``) written together with its history row in one transaction, so a change is
either fully recorded or not at all, and two workers can never both move the same invoice.

Rows are written in sets: a batch of changes is one ``UPDATE ... FROM`` of their values and one
multi-row ``INSERT`` of their history rows, up to :data:`~inexchange.sql.MAX_ROWS` rows a statement,
so a batch costs a few round trips to the database, not two per invoice.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, NotRequired, TypedDict

from sqlalchemy import String, bindparam, func, inspect, select, text
from sqlalchemy.exc import OperationalError
from uuid6 import uuid7

from inexchange.api import parse_time
from inexchange.sql import (
    MAX_ROWS,
    SELECTION,
    listing,
    row_counts,
    rows_statement,
    script,
    selection,
    statement,
)
from inexchange.states import LedgerState, ledger_state_for
from inexchange.times import TIMEZONE, now_text, utc_text
from inexchange.values import integer_id, read_date, text_or_none

if TYPE_CHECKING:
    from decimal import Decimal
    from typing import Unpack

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.sql.elements import TextClause
    from sqlalchemy.sql.selectable import Subquery

log = logging.getLogger(__name__)


class IntervalText(TypedDict):
    """A run's data interval as ledger text (UTC ISO, see :func:`inexchange.times.utc_text`)."""

    data_interval_start: str
    data_interval_end: str


class InvoiceColumns(TypedDict):
    """The ledger's columns of an extracted ERP invoice, as :meth:`Ledger.register` stores them.

    ``invoice_date`` is ``YYYY-MM-DD`` (``''`` for an ERP row without a readable date);
    ``total_amount`` is read as a Decimal on PostgreSQL, a float on SQLite.
    """

    invoice_id: int
    invoice_number: str
    invoice_type: str
    customer_id: int
    customer_number: str | None
    customer_name: str | None
    invoice_date: str
    currency: str | None
    total_amount: Decimal | float | None
    erp_document_id: str


class LedgerRow(InvoiceColumns):
    """One row of the ledger (``inexchange_dispatch``), as its reads return it.

    ``state`` is a :class:`~inexchange.states.LedgerState` value; times are UTC ISO text.
    """

    state: str
    delivery_method: str | None
    document_uri: str | None
    inexchange_document_id: str | None
    inexchange_status: str | None
    status_time: str | None
    message: str | None
    attempts: int
    doubt_lookups: int
    next_retry_at: str | None
    submitted_at: str | None
    sent_at: str | None
    created_at: str
    updated_at: str
    dag_run_id: str | None
    data_interval_start: str | None
    data_interval_end: str | None


class RegisteredInvoice(InvoiceColumns, IntervalText):
    """The bind parameters of ``ledger_register.sql``: one extracted ERP row as the ledger stores it
    (``pending``, no attempts, created and updated ``now``)."""

    state: str
    attempts: int
    now: str
    dag_run_id: str


class RegisterCounts(TypedDict):
    """What :meth:`Ledger.register` did: rows new, checked again and left as they were, and the ERP rows
    left out because their ``invoice_id`` is no whole number (only when there are any)."""

    new: int
    rechecked: int
    unchanged: int
    without_id: NotRequired[int]


class HistoryChange(TypedDict):
    """What a row of the ledger's history (``inexchange_dispatch_history``) records: the invoice's move
    from one state (None when the change was made from either of two) to another, the InExchange status
    and message it set, and what made it (``source``)."""

    history_id: str
    invoice_id: int
    from_state: str | None
    to_state: str
    inexchange_status: str | None
    message: str | None
    source: str


class HistoryRow(HistoryChange):
    """A history row as ``ledger_insert_history.sql`` binds it (``now`` is its ``changed_at``)."""

    now: str
    dag_run_id: str
    run_type: str
    try_number: int


#: the values of a row of ``ledger_register.sql``, in the order of its column list
_REGISTER_ROW = (
    "invoice_id", "invoice_number", "invoice_type", "customer_id", "customer_number", "customer_name",
    "invoice_date", "currency", "total_amount", "erp_document_id", "state", "attempts", "now", "now",
    "dag_run_id", "data_interval_start", "data_interval_end",
)  # fmt: skip
#: the values of a row of ``ledger_insert_history.sql``, in the order of its column list
_HISTORY_ROW = (
    "history_id", "invoice_id", "from_state", "to_state", "inexchange_status", "message", "source", "now",
    "dag_run_id", "run_type", "try_number",
)  # fmt: skip
#: the values of a row of ``ledger_save_recipients.sql``
_RECIPIENT_ROW = ("dag_run_id", "customer_id", "inputs", "resolved", "now")
#: how long the recipients another run resolved are kept (its submit tasks have ended long before)
RECIPIENTS_KEPT = timedelta(days=2)
#: the values of a change of ``ledger_transition.sql``, in the order of its ``change`` columns
_CHANGE_ROW = (
    "invoice_id", "from_state", "other_from_state", "to_state", "message", "delivery_method", "document_uri",
    "inexchange_document_id", "inexchange_status", "status_time", "attempt", "stays_submitting", "doubt_lookup",
    "next_retry_at", "submitted_at", "sent_at", "check_status", "expected_status",
)  # fmt: skip


class DocumentState(TypedDict):
    """Where the ledger has an invoice InExchange knows (``ledger_select_by_document.sql``)."""

    invoice_id: int
    inexchange_document_id: str
    state: str
    inexchange_status: str | None


class StatusChange(TypedDict):
    """One InExchange status change of a document, as a trigger event carries it
    (:meth:`inexchange.api.OutboundDocument.to_event`): the time is ISO text, or None."""

    id: str
    erp_document_id: str | None
    status: str | None
    time: str | None
    message: str | None


class ReportRow(TypedDict):
    """One row of the run's report ("Elektroniska utskick", ``report_select.sql``)."""

    document_type: str
    invoice_number: str
    customer_number: str | None
    customer_name: str | None
    delivery_type: str
    delivery_method: str | None
    state: str
    inexchange_status: str | None
    sent_at: str | None
    message: str | None
    inexchange_document_id: str | None
    attempts: int


class Watch(NamedTuple):
    """The rows a run's delivery sensor follows, as :meth:`Ledger.watch` counts them."""

    #: how many rows wait
    waiting: int
    #: their first and last submission (UTC text), or None when none was recorded
    first_submitted: str | None
    last_submitted: str | None


@dataclass(frozen=True)
class RunScope:
    """The DAG run a ledger change belongs to.

    :param dag_run_id: Airflow run id.
    :param start: data interval start (aware).
    :param end: data interval end (aware).
    :param start_date: first invoice date of the interval.
    :param end_date: first invoice date after the interval.
    :param run_type: how the run was started: ``scheduled``, ``manual``, ``backfill``...
    :param try_number: the task's try (above 1 after a retry or a person's clear).
    :param invoice_numbers: a manual run's own list of invoices to (re)send; when given, the run
        handles these invoices, whatever their date, and no others.
    :param retry_rejected: whether rejected invoices are checked again (and sent when they pass).
    :param listed: the run was given a list of invoice numbers, even one holding only blanks: it
        then handles the listed invoices (perhaps none), never its whole interval.
    :param timezone: time zone of the ERP's invoice dates (the interval's invoice days are in it).
    """

    dag_run_id: str
    start: datetime
    end: datetime
    start_date: date
    end_date: date
    run_type: str = "scheduled"
    try_number: int = 1
    invoice_numbers: tuple[str, ...] = ()
    retry_rejected: bool = True
    listed: bool = False
    timezone: str = TIMEZONE

    def describe(self) -> str:
        """The run's invoices in words, for every log line: "invoices dated 2026-11-20" (the
        interval's invoice days, in the ERP's time zone), or the listed numbers."""
        if self.by_number:
            return f"invoices {', '.join(self.invoice_numbers) or '(none listed)'} (listed, whatever their date)"
        if self.last_date == self.start_date:
            return f"invoices dated {self.start_date.isoformat()}"
        return f"invoices dated {self.start_date.isoformat()} to {self.last_date.isoformat()}"

    @property
    def last_date(self) -> date:
        """The interval's last invoice day (its first one when the interval is shorter than a day)."""
        return max(self.start_date, self.end_date - timedelta(days=1))

    @property
    def by_number(self) -> bool:
        """The run handles a list of invoice numbers (perhaps empty after blanks), not its interval."""
        return self.listed or bool(self.invoice_numbers)

    @property
    def started_by_person(self) -> bool:
        """A manual or backfill run: failed invoices are retried at once, not at their retry time."""
        return self.run_type in ("manual", "backfill")

    @property
    def bounds(self) -> dict[str, Any]:
        """Bind parameters selecting the run's invoices: the interval's dates, or the listed numbers.

        Statements using them bind ``numbers`` as an expanding parameter (:data:`SELECTION`).
        """
        return {
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            **selection(self.invoice_numbers, by_number=self.by_number),
        }

    @property
    def interval(self) -> IntervalText:
        """The interval as ledger text."""
        return {"data_interval_start": utc_text(self.start), "data_interval_end": utc_text(self.end)}


#: the tables ``ledger_schema.sql`` creates
LEDGER_TABLES = ("inexchange_dispatch", "inexchange_dispatch_history", "inexchange_report", "inexchange_recipient")
#: columns added to tables after their first release, for ledgers created before: table -> name -> type
_ADDED_COLUMNS = {
    "inexchange_dispatch_history": {"run_type": "VARCHAR(20)", "try_number": "INTEGER"},
    "inexchange_dispatch": {"doubt_lookups": "INTEGER NOT NULL DEFAULT 0"},
}
#: indexes later versions added (``ledger_schema.sql`` creates them when missing), per table
_ADDED_INDEXES = {"inexchange_dispatch": ("ix_inexchange_dispatch_state_id",)}

#: how long :meth:`Ledger.refresh_statistics` waits for the table's maintenance lock (PostgreSQL's lock_timeout)
ANALYZE_LOCK_TIMEOUT = "5s"
#: how long another run's claim (``submitting``) is respected by default (SubmitInvoicesOperator's ``claim_lease``)
CLAIM_LEASE = timedelta(minutes=15)
#: how long after its claim a send may still be in flight by default (SubmitInvoicesOperator's ``settle_time``)
SETTLE_TIME = timedelta(seconds=90)


class TransitionFields(TypedDict, total=False):
    """The columns a ledger change may set besides the state (see ``ledger_transition.sql``).

    ``attempt`` adds to the row's attempts; ``doubt_lookup`` 1 counts one more failed look-up of a
    send in doubt; ``expected_status``, when given, makes the change happen only while the row's
    InExchange status is still this (``''`` for none).
    """

    message: str | None
    delivery_method: str | None
    document_uri: str | None
    inexchange_document_id: str | None
    inexchange_status: str | None
    status_time: str | None
    attempt: int
    doubt_lookup: int
    next_retry_at: str | None
    submitted_at: str | None
    sent_at: str | None
    expected_status: str | None


class Transition(NamedTuple):
    """One ledger change, as :meth:`Ledger.transition_many` applies it.

    :param invoice_id: the invoice's ledger row.
    :param from_states: the states it may be in (one or two).
    :param to_state: the state it moves to.
    :param fields: the other columns it sets.
    """

    invoice_id: int
    from_states: Sequence[LedgerState]
    to_state: LedgerState
    fields: TransitionFields


class IdRange(NamedTuple):
    """The invoice_ids of a run's rows in some states, as :meth:`Ledger.id_range` finds them.

    :param first_id: the lowest invoice_id.
    :param last_id: the highest invoice_id.
    :param row_count: how many rows there are.
    """

    first_id: int
    last_id: int
    row_count: int


def erp_document_id(invoice_id: int) -> str:
    """The stable key InExchange knows an invoice by (``erpDocumentId``)."""
    return f"invoice-{invoice_id}"


_TRANSITION_DEFAULTS: TransitionFields = {
    "message": None,
    "delivery_method": None,
    "document_uri": None,
    "inexchange_document_id": None,
    "inexchange_status": None,
    "status_time": None,
    "attempt": 0,
    "doubt_lookup": 0,  # 1: one more failed look-up of a send in doubt (the row stays submitting)
    "next_retry_at": None,
    "submitted_at": None,
    "sent_at": None,
    "expected_status": None,  # when set, the row moves only if its InExchange status is still this ('' for none)
}


class Ledger:
    """Read and change the dispatch ledger in the reporting database.

    :param engine: SQLAlchemy engine of the reporting database.
    :param scope: the DAG run whose changes this ledger records.
    """

    def __init__(self, engine: Engine, scope: RunScope) -> None:
        self.engine = engine
        self.scope = scope

    def ensure_schema(self) -> None:
        """Create the ledger, history and report tables when missing; add columns later versions added.

        Every task calls this, and the tasks of several runs start at once (a backfill), so the usual
        case reads the catalogue only. The DDL runs when something is missing, one task at a time: on
        PostgreSQL two concurrent ``CREATE TABLE IF NOT EXISTS`` of a new table can both try to create
        it and one fails, so the DDL transaction first takes a transaction-scoped advisory lock.
        """
        with self.engine.connect() as conn:
            if not self._missing_schema(conn):
                return
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(statement("ledger_schema_lock"))
            for clause in script("ledger_schema"):
                conn.execute(clause)
            for table, columns in self._missing_schema(conn).items():
                for name in columns:  # names and types are the constants of _ADDED_COLUMNS, never input
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {_ADDED_COLUMNS[table][name]}"))

    def refresh_statistics(self) -> bool:
        """On PostgreSQL, analyse the ledger table when its statistics miss more of its changes than
        autovacuum lets pass (``ledger_statistics_stale.sql``), so that the planner reads document ids
        by their index; nothing on other databases. Returns whether ANALYZE was run.

        Waits at most :data:`ANALYZE_LOCK_TIMEOUT` for the table's maintenance lock (an autovacuum
        gives it up to a waiting ANALYZE); a lock not had in time leaves the statistics as they were,
        with a warning. A user who may not analyse the table leaves them too: PostgreSQL skips the
        table with a warning in its own log.
        """
        if self.engine.dialect.name != "postgresql":
            return False
        try:
            with self.engine.begin() as conn:
                if not conn.execute(statement("ledger_statistics_stale")).scalar_one():
                    return False
                conn.execute(
                    text("SELECT set_config('lock_timeout', :timeout, true)"), {"timeout": ANALYZE_LOCK_TIMEOUT}
                )
                conn.execute(statement("ledger_analyze"))
        except OperationalError as exc:
            log.warning("the ledger's statistics were not refreshed (%s); its reads may be slower", exc.orig)
            return False
        return True

    @staticmethod
    def _missing_schema(conn: Connection) -> dict[str, list[str]]:
        """Tables missing (with no columns) and columns of :data:`_ADDED_COLUMNS` missing, per table; a
        table that lacks an index of :data:`_ADDED_INDEXES` is listed too (its schema script runs again)."""
        catalogue = inspect(conn)
        present = set(catalogue.get_table_names())
        missing: dict[str, list[str]] = {table: [] for table in LEDGER_TABLES if table not in present}
        for table, columns in _ADDED_COLUMNS.items():
            if table in present:
                have = {column["name"] for column in catalogue.get_columns(table)}
                absent = [name for name in columns if name not in have]
                if absent:
                    missing[table] = absent
        for table, indexes in _ADDED_INDEXES.items():
            if table in present and not set(indexes) <= {index["name"] for index in catalogue.get_indexes(table)}:
                missing.setdefault(table, [])
        return missing

    # ---- reads -----------------------------------------------------------------------------
    def rows(self, *states: LedgerState) -> list[LedgerRow]:
        """Return the interval's rows in the given states."""
        query = statement("ledger_select_by_state").bindparams(bindparam("states", expanding=True), SELECTION)
        with self.engine.connect() as conn:
            return _records(conn.execute(query, {"states": [s.value for s in states], **self.scope.bounds}))

    def iter_rows(self, *states: LedgerState, chunk: int) -> Iterable[list[LedgerRow]]:
        """The rows of :meth:`rows`, in invoice_id order, in pages of at most ``chunk`` rows, each page
        read when the previous one has been taken: a caller holds one page at a time.

        The interval's rows are read by key (:meth:`rows_page`): each page starts after the previous
        page's last id, so rows that the caller moves to another state between pages shift nothing.
        Rows that fit one page, and a manual run's listed invoices (which may lie anywhere in the
        ledger; as many as its list), are read at once with :meth:`rows`.

        :param chunk: most rows a page.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        found = None if self.scope.by_number else self.id_range(*states)
        if self.scope.by_number or (found is not None and found.row_count <= chunk):
            rows = self.rows(*states)
            for start in range(0, len(rows), chunk):
                yield rows[start : start + chunk]
            return
        if found is None:
            return
        from_id, to_id = found.first_id, found.last_id
        while True:
            page = self.rows_page(*states, from_id=from_id, to_id=to_id, limit=chunk)
            if page:
                yield page
            if len(page) < chunk or int(page[-1]["invoice_id"]) >= to_id:
                return
            from_id = int(page[-1]["invoice_id"]) + 1

    def id_range(self, *states: LedgerState) -> IdRange | None:
        """The lowest and highest invoice_id of the run's rows in the given states and how many there
        are, or None when there are none."""
        query = statement("ledger_select_id_range").bindparams(bindparam("states", expanding=True), SELECTION)
        with self.engine.connect() as conn:
            found = conn.execute(query, {"states": [s.value for s in states], **self.scope.bounds}).one()
        if not found.row_count:
            return None
        return IdRange(first_id=int(found.first_id), last_id=int(found.last_id), row_count=int(found.row_count))

    def rows_page(self, *states: LedgerState, from_id: int, to_id: int, limit: int) -> list[LedgerRow]:
        """The first ``limit`` of the run's rows in the given states whose invoice_id lies in
        ``[from_id, to_id]``, in invoice_id order (one page of :meth:`iter_rows`)."""
        query = statement("ledger_select_page").bindparams(bindparam("states", expanding=True), SELECTION)
        params = {
            "states": [s.value for s in states],
            "from_id": from_id,
            "to_id": to_id,
            "limit": limit,
            **self.scope.bounds,
        }
        with self.engine.connect() as conn:
            return _records(conn.execute(query, params))

    def report_pages(self, chunk: int) -> Iterable[list[ReportRow]]:
        """The run's report rows (as :meth:`refresh_report` wrote them), in invoice_id order, in pages of
        at most ``chunk`` rows, each read by key when the previous one has been taken.

        :param chunk: most rows a page.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        query = statement("report_select_page")
        from_id = _LOWEST_ID
        while True:
            params = {"data_interval_start": self.scope.interval["data_interval_start"], "from_id": from_id}
            with self.engine.connect() as conn:
                page = _records(conn.execute(query, {**params, "limit": chunk}))
            if not page:
                return
            last = int(page[-1]["invoice_id"])
            for row in page:  # the key only pages; the rows are report rows
                del row["invoice_id"]
            yield page
            if len(page) < chunk or last >= _HIGHEST_ID:
                return
            from_id = last + 1

    def watched(self) -> list[LedgerRow]:
        """Rows ``waiting`` that the run's sensor follows: the interval's, and any this run moved last."""
        query = statement("ledger_select_watched").bindparams(SELECTION)
        with self.engine.connect() as conn:
            return _records(conn.execute(query, self._watch_params))

    def watch(self) -> Watch:
        """What the run's sensor follows (the rows of :meth:`watched`), counted by the database: how
        many, and the span of their submissions; never the rows themselves, so a day of a million
        invoices costs the sensor one aggregate query."""
        watched = self._watched_rows()
        span = select(func.count(), func.min(text("submitted_at")), func.max(text("submitted_at"))).select_from(watched)
        with self.engine.connect() as conn:
            waiting, first, last = conn.execute(span, self._watch_params).one()
        return Watch(int(waiting), first, last)

    def watched_documents(self, document_ids: Iterable[str]) -> set[str]:
        """Which of ``document_ids`` are documents of the rows the run's sensor follows (:meth:`watched`);
        read by the document index, so the cost follows the ids asked about, not the day."""
        query = listing(statement("ledger_select_watched_documents"), "document_ids", self.engine.dialect.name)
        query = query.bindparams(SELECTION)
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(document_ids)), 900):
                found.update(
                    str(d) for d in conn.execute(query, {**self._watch_params, "document_ids": list(chunk)}).scalars()
                )
        return found

    @staticmethod
    def _watched_rows() -> Subquery:
        """The rows of :meth:`watched` (``ledger_select_watched.sql``), to select from."""
        return statement("ledger_select_watched").bindparams(SELECTION).columns().subquery("watched")

    @property
    def _watch_params(self) -> dict[str, Any]:
        return {**self.scope.bounds, "dag_run_id": self.scope.dag_run_id}

    def state_counts(self, *states: LedgerState) -> dict[str, int]:
        """How many of the interval's rows are in each of ``states`` (as :meth:`rows` selects them),
        counted by the database; a state without rows counts 0."""
        query = statement("ledger_select_by_state").bindparams(bindparam("states", expanding=True), SELECTION)
        rows = query.columns().subquery("rows")
        counted = select(text("state"), func.count()).select_from(rows).group_by(text("state"))
        with self.engine.connect() as conn:
            result = conn.execute(counted, {"states": [s.value for s in states], **self.scope.bounds})
            found = {str(state): int(count) for state, count in result}
        return {state.value: int(found.get(state.value, 0)) for state in states}

    def waiting_elsewhere(self) -> list[LedgerRow]:
        """Rows of other intervals still ``waiting`` (left by a sensor that timed out)."""
        with self.engine.connect() as conn:
            return _records(conn.execute(statement("ledger_select_waiting_elsewhere"), self.scope.bounds))

    def in_doubt(self) -> list[LedgerRow]:
        """Rows of any interval whose send stayed in doubt (``in_doubt``): a look-up may still settle them."""
        with self.engine.connect() as conn:
            return _records(conn.execute(statement("ledger_select_in_doubt")))

    def claiming_runs(self) -> list[str]:
        """The other runs whose claims are left in the ledger (rows ``submitting`` under their run id)."""
        with self.engine.connect() as conn:
            result = conn.execute(statement("ledger_select_claiming_runs"), {"dag_run_id": self.scope.dag_run_id})
            return [str(row.dag_run_id) for row in result]

    def due_rows(
        self,
        *,
        max_attempts: int,
        shard: int = 0,
        shards: int = 1,
        first_id: int | None = None,
        last_id: int | None = None,
        lease: timedelta = CLAIM_LEASE,
        settle: timedelta = SETTLE_TIME,
        finished_runs: Sequence[str] = (),
    ) -> list[LedgerRow]:
        """Rows to submit: ready, failed and due, or left in ``submitting`` (see ``ledger_select_due.sql``).

        :param max_attempts: failed rows with this many attempts are left for a person.
        :param shard: which shard of the work, ``0 <= shard < shards`` (``invoice_id % shards``,
            unless the shard is a range of ids).
        :param shards: into how many shards the work is split.
        :param first_id: the shard's lowest invoice id (a range of :meth:`shard_ranges`), or None.
        :param last_id: the shard's highest invoice id, or None.
        :param lease: how long another run's claim (``submitting``) is respected before the row is
            reconciled here; longer than any send with all its retries.
        :param settle: how long after its claim a row of this run may still have a send in flight
            (a request that timed out at the client can still be processed by InExchange); only
            older rows are looked up, so that "not found" can be trusted.
        :param finished_runs: other runs known to have ended (Airflow says so): nothing of theirs is
            in flight any more, so their claims are reconciled once the settle time has passed,
            without waiting for the lease.
        """
        query, params = self._due_query(
            max_attempts=max_attempts,
            shard=shard,
            shards=shards,
            lease=lease,
            settle=settle,
            finished_runs=finished_runs,
        )
        if first_id is not None or last_id is not None:  # a range of ids: no modulo
            params.update(
                shard=0, shards=1, first_id=_id_or(first_id, _LOWEST_ID), last_id=_id_or(last_id, _HIGHEST_ID)
            )
        with self.engine.connect() as conn:
            return _records(conn.execute(query, params))

    def shard_ranges(
        self,
        rows_per_shard: int,
        *,
        max_attempts: int,
        lease: timedelta = CLAIM_LEASE,
        settle: timedelta = SETTLE_TIME,
        finished_runs: Sequence[str] = (),
    ) -> list[tuple[int | None, int | None]]:
        """Cut the due rows (as :meth:`due_rows` finds them now) into ranges of invoice ids of about
        ``rows_per_shard`` rows each, for :meth:`due_rows` ``first_id``/``last_id``.

        The ranges follow each other without a gap, the first open below and the last open above, so a
        row that becomes due after the planning still falls in exactly one of them. Each shard is then
        read through the primary key: the mapped tasks together read the day once, whatever its size.
        The ids are streamed from the database, never all held.

        :param rows_per_shard: due rows per range (the last may have fewer).
        """
        if rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be at least 1, got {rows_per_shard}")
        query, params = self._due_query(
            max_attempts=max_attempts, shard=0, shards=1, lease=lease, settle=settle, finished_runs=finished_runs
        )
        ids = select(text("invoice_id")).select_from(query.columns().subquery("due")).order_by(text("invoice_id"))
        starts: list[int] = []
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=10_000).execute(ids, params)
            for position, (invoice_id,) in enumerate(result):
                if position % rows_per_shard == 0:
                    starts.append(int(invoice_id))
        if not starts:
            return [(None, None)]
        lows: list[int | None] = [None, *starts[1:]]
        highs: list[int | None] = [start - 1 for start in starts[1:]]
        return list(zip(lows, [*highs, None], strict=True))

    def count_due(
        self,
        *,
        max_attempts: int,
        lease: timedelta = CLAIM_LEASE,
        settle: timedelta = SETTLE_TIME,
        finished_runs: Sequence[str] = (),
    ) -> int:
        """How many rows :meth:`due_rows` would return (all shards), counted by the database.

        Planning the batches needs only this number; loading 100,000 rows to count them would cost
        hundreds of MiB.
        """
        query, params = self._due_query(
            max_attempts=max_attempts, shard=0, shards=1, lease=lease, settle=settle, finished_runs=finished_runs
        )
        counted = select(func.count()).select_from(query.columns().subquery("due"))
        with self.engine.connect() as conn:
            return int(conn.execute(counted, params).scalar_one())

    def _due_query(
        self,
        *,
        max_attempts: int,
        shard: int,
        shards: int,
        lease: timedelta,
        settle: timedelta,
        finished_runs: Sequence[str],
    ) -> tuple[TextClause, dict[str, Any]]:
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
        now = datetime.now(UTC)
        params = {
            "now": utc_text(now),
            "lease_cutoff": utc_text(now - lease),
            "settle_cutoff": utc_text(now - settle),
            "max_attempts": max_attempts,
            "shard": shard,
            "shards": shards,
            "first_id": _LOWEST_ID,
            "last_id": _HIGHEST_ID,
            "dag_run_id": self.scope.dag_run_id,
            "retry_now": int(self.scope.started_by_person),
            "finished_runs": list(finished_runs),
            **self.scope.bounds,
        }
        query = statement("ledger_select_due").bindparams(
            SELECTION, bindparam("finished_runs", expanding=True, type_=String())
        )
        return query, params

    # ---- writes ----------------------------------------------------------------------------
    def register(self, invoices: Iterable[Mapping[str, Any]]) -> RegisterCounts:
        """Put extracted invoices in the ledger as ``pending``.

        Rows already sent or in flight are left as they are; rejected rows are checked again unless
        the run says otherwise (``retry_rejected``). Returns counts of new, re-checked and untouched
        rows, and of rows left out because their ``invoice_id`` is no whole number (``without_id``:
        the ledger and InExchange know an invoice by that id, so such a row can never be sent).

        The other columns are raw ERP values and may be anything: they are stored as text that fits
        the ledger's columns (NULL or unreadable as empty or NULL), never converted in a way that fails.
        Validation names what is wrong with them.
        """
        invoices = list(invoices)
        now = now_text()
        params = [self._register_params(i, now) for i in invoices if integer_id(i["invoice_id"]) is not None]
        existing = self._states([p["invoice_id"] for p in params])
        counts: RegisterCounts = {"new": 0, "rechecked": 0, "unchanged": 0}
        if len(params) < len(invoices):
            counts["without_id"] = len(invoices) - len(params)
        rechecked = {LedgerState.PENDING.value} | ({LedgerState.REJECTED.value} if self.scope.retry_rejected else set())
        if self.scope.by_number:  # a person who checked InExchange's portal lists an invoice in doubt to send it
            rechecked.add(LedgerState.IN_DOUBT.value)
        history = []
        for p in params:
            before = existing.get(p["invoice_id"])
            if before is None:
                counts["new"] += 1
            elif before in rechecked:
                counts["rechecked"] += 1
            else:
                counts["unchanged"] += 1
                if self.scope.by_number:
                    log.info("invoice %s is %s already; not sent again", p["invoice_number"], before)
                continue
            if before != LedgerState.PENDING.value:
                history.append(self._history(p["invoice_id"], before, LedgerState.PENDING, None, None, "extract", now))
        shared = {
            "retry_rejected": int(self.scope.retry_rejected),
            "listed": int(self.scope.by_number),
        }
        with self.engine.begin() as conn:
            for run in _sets(params, "invoice_id"):
                for rows in _pieces(run):
                    query, bound = _rows(conn, "ledger_register", _REGISTER_ROW, rows)
                    conn.execute(query, {**bound, **shared})
            _insert_history(conn, history)
        return counts

    def _register_params(self, invoice: Mapping[str, Any], now: str) -> RegisteredInvoice:
        """The bind parameters of ``ledger_register.sql`` for one extracted ERP row."""
        invoice_id = integer_id(invoice["invoice_id"])
        assert invoice_id is not None
        day = read_date(invoice.get("invoice_date"))
        return {
            "invoice_id": invoice_id,
            "invoice_number": _fitted(invoice.get("invoice_number"), 50) or "",
            "invoice_type": _fitted(invoice.get("invoice_type"), 10) or "",
            # a customer_id that is no whole number is stored as 0 (nothing looks customers up by this column)
            "customer_id": integer_id(invoice.get("customer_id")) or 0,
            "customer_number": _fitted(invoice.get("customer_number"), 50),
            "customer_name": _fitted(invoice.get("customer_name"), 200),
            # no readable date: '' (only a manual run by number reaches such an invoice)
            "invoice_date": day.isoformat() if day else "",
            "currency": _fitted(invoice.get("currency"), 3, cut=False),
            "total_amount": _amount(invoice.get("total_amount")),
            "erp_document_id": erp_document_id(invoice_id),
            "state": LedgerState.PENDING.value,
            "attempts": 0,
            "now": now,
            "dag_run_id": self.scope.dag_run_id,
            **self.scope.interval,
        }

    def transition(
        self,
        invoice_id: int,
        from_states: Sequence[LedgerState],
        to_state: LedgerState,
        *,
        source: str,
        conn: Connection | None = None,
        **fields: Unpack[TransitionFields],
    ) -> bool:
        """Move one invoice to ``to_state`` if it is still in one of ``from_states`` (one or two).

        The change and its history row commit together. Returns whether the row moved.

        :param source: what made the change (extract, validate, submit, status poll, manual rerun).
        :param conn: an open transaction to join, else a new one is committed here.
        :param fields: columns of ``ledger_transition.sql`` to set (message, inexchange_document_id, ...).
        """
        change = Transition(invoice_id, from_states, to_state, fields)
        if conn is None:
            with self.engine.begin() as own:
                return self._transitions(own, [change], source)[0]
        return self._transitions(conn, [change], source)[0]

    def transition_many(self, changes: Iterable[Transition], *, source: str) -> list[bool]:
        """Apply several compare-and-set changes in one transaction; return which rows moved.

        :param changes: the changes, as for :meth:`transition`.
        """
        with self.engine.begin() as conn:
            return self._transitions(conn, list(changes), source)

    def _transitions(self, conn: Connection, changes: list[Transition], source: str) -> list[bool]:
        """Each change is its own compare-and-set; a set of changes (one per invoice) is one statement,
        and the history rows of those that moved are inserted together."""
        now = now_text()
        values: list[dict[str, Any]] = []
        for change in changes:
            fields, from_states = change.fields, change.from_states
            unknown = set(fields) - set(_TRANSITION_DEFAULTS)
            if unknown:
                raise TypeError(f"unknown ledger fields: {sorted(unknown)}")
            if not 1 <= len(from_states) <= 2:
                raise ValueError(f"one or two expected states, got {list(from_states)}")
            values.append(
                {
                    **_TRANSITION_DEFAULTS,
                    **fields,
                    "expected_status": fields.get("expected_status") or "",
                    "invoice_id": change.invoice_id,
                    "from_state": from_states[0].value,
                    "other_from_state": from_states[-1].value,
                    "to_state": change.to_state.value,
                    "stays_submitting": int(change.to_state is LedgerState.SUBMITTING),
                    "check_status": 0 if fields.get("expected_status") is None else 1,
                }
            )
        shared = {"now": now, "dag_run_id": self.scope.dag_run_id}
        moved: list[bool] = []
        history: list[HistoryRow] = []
        # an invoice changed twice in one batch: its changes go in order, in separate statements
        for rows in _sets(values, "invoice_id"):
            # a VALUES list (on neither PostgreSQL nor SQLite) is padded to a power of two with changes of no
            # invoice (they match no row): few statements to prepare
            query, bound = _rows(conn, "ledger_transition", _CHANGE_ROW, rows, padded=True)
            moved_ids = {int(found) for found in conn.execute(query, {**bound, **shared}).scalars()}
            for row in rows:
                ok = row["invoice_id"] in moved_ids
                moved.append(ok)
                if ok:
                    history.append(
                        self._history(
                            row["invoice_id"],
                            row["from_state"] if row["from_state"] == row["other_from_state"] else None,
                            LedgerState(row["to_state"]),
                            row["inexchange_status"],
                            row["message"],
                            source,
                            now,
                        )
                    )
        _insert_history(conn, history)
        return moved

    def apply_statuses(self, changes: Iterable[StatusChange], *, source: str = "status poll") -> int:
        """Write InExchange status changes (trigger event items) to the ledger in one transaction.

        Only invoices still ``waiting`` (or ``failed``, which a later status may clear) are moved, and
        only when the status differs from the one recorded; each move is a compare-and-set on state
        and status, so two pollers never record the same change twice. Documents the ledger does not
        know are ignored. Returns the number of rows changed.

        :param changes: the status changes (of them, ``id``, ``status``, ``time`` and ``message`` are read).
        """
        changes = list(changes)
        if not changes:
            return 0
        moves: list[Transition] = []
        with self.engine.begin() as conn:
            known = self._by_document([c["id"] for c in changes], conn)
            for change in changes:
                row = known.get(change["id"])
                if row is None or row["state"] not in (LedgerState.WAITING.value, LedgerState.FAILED.value):
                    continue
                if row["inexchange_status"] == change["status"]:
                    continue
                state = ledger_state_for(change["status"])
                status_time = parse_time(change.get("time"))
                fields: TransitionFields = {
                    "inexchange_status": change["status"],
                    "status_time": utc_text(status_time) if status_time else None,
                    "message": change.get("message") if state is not LedgerState.SENT else None,
                    "sent_at": utc_text(status_time) if state is LedgerState.SENT and status_time else None,
                    "expected_status": row["inexchange_status"] or "",
                }
                moves.append(Transition(row["invoice_id"], [LedgerState(row["state"])], state, fields))
                row["state"], row["inexchange_status"] = state.value, change["status"]  # later items see this one
            return sum(self._transitions(conn, moves, source))

    def refresh_report(self, *, read_back: bool = True) -> list[ReportRow]:
        """Upsert the run's report rows from the ledger, bring other runs' rows up to date, return the run's.

        Rows that already say what the ledger says are not written, so a rerun changes nothing.

        :param read_back: return the run's report rows, all at once, in invoice number order; when
            off, return none (``[]``): a large run reads them in pages with :meth:`report_pages`.
        """
        params = {**self.scope.bounds, **self.scope.interval, "dag_run_id": self.scope.dag_run_id}
        with self.engine.begin() as conn:
            conn.execute(statement("report_refresh").bindparams(SELECTION), params)
            conn.execute(statement("report_sync"), {"dag_run_id": self.scope.dag_run_id})
            if not read_back:
                return []
            return _records(conn.execute(statement("report_select"), self.scope.interval))

    # ---- recipients ------------------------------------------------------------------------
    def recipients(self, customer_ids: Iterable[int]) -> dict[int, tuple[str, dict[str, Any]]]:
        """The recipients this run resolved already (:meth:`remember_recipients`), of ``customer_ids``:
        per customer, the inputs the resolution read and what it resolved. A row that cannot be read
        is left out (resolved again)."""
        ids = sorted({int(i) for i in customer_ids})
        query = listing(statement("ledger_select_recipients"), "ids", self.engine.dialect.name)
        found: dict[int, tuple[str, dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(ids, 900):
                for row in conn.execute(query, {"dag_run_id": self.scope.dag_run_id, "ids": list(chunk)}):
                    try:
                        resolved = json.loads(row.resolved)
                    except ValueError:
                        continue
                    if isinstance(resolved, dict):
                        found[int(row.customer_id)] = (str(row.inputs), resolved)
        return found

    def remember_recipients(self, resolved: Mapping[int, tuple[str, Mapping[str, Any]]]) -> None:
        """Keep the recipients this run resolved, per customer: the inputs the resolution read and what
        it resolved (JSON values); forget other runs' older than :data:`RECIPIENTS_KEPT`."""
        if not resolved:
            return
        now = now_text()
        rows = [
            {"dag_run_id": self.scope.dag_run_id, "customer_id": int(customer_id), "inputs": inputs,
             "resolved": json.dumps(value, sort_keys=True), "now": now}
            for customer_id, (inputs, value) in sorted(resolved.items())
        ]  # fmt: skip
        cutoff = utc_text(datetime.now(UTC) - RECIPIENTS_KEPT)
        with self.engine.begin() as conn:
            conn.execute(statement("ledger_prune_recipients"), {"dag_run_id": self.scope.dag_run_id, "cutoff": cutoff})
            for piece in _pieces(rows):
                conn.execute(*_rows(conn, "ledger_save_recipients", _RECIPIENT_ROW, piece))

    # ---- helpers ---------------------------------------------------------------------------
    def _states(self, invoice_ids: list[int]) -> dict[int, str]:
        if not invoice_ids:
            return {}
        query = listing(statement("ledger_select_states"), "ids", self.engine.dialect.name)
        found: dict[int, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(invoice_ids, 900):
                found.update({int(r.invoice_id): r.state for r in conn.execute(query, {"ids": chunk})})
        return found

    def _by_document(self, document_ids: list[str], conn: Connection) -> dict[str, DocumentState]:
        query = listing(statement("ledger_select_by_document"), "document_ids", conn.dialect.name)
        found: dict[str, DocumentState] = {}
        for chunk in _chunks(document_ids, 900):
            for row in _records(conn.execute(query, {"document_ids": chunk})):
                found[row["inexchange_document_id"]] = row
        return found

    def _history(
        self,
        invoice_id: int,
        from_state: str | None,
        to_state: LedgerState,
        status: str | None,
        message: str | None,
        source: str,
        now: str,
    ) -> HistoryRow:
        return {
            # a UUID ordered by time (version 7): a new row's key goes at the end of the key's index, not
            # at a random page of it, which costs more as the history grows (4 rows an invoice)
            "history_id": str(uuid7()),
            "invoice_id": invoice_id,
            "from_state": from_state,
            "to_state": to_state.value,
            "inexchange_status": status,
            "message": message,
            "source": source,
            "now": now,
            "dag_run_id": self.scope.dag_run_id,
            "run_type": self.scope.run_type,
            "try_number": self.scope.try_number,
        }


def ledger_text(value: Any) -> str | None:
    """An ERP text as the ledger stores it: :func:`~inexchange.values.text_or_none` (NULL as None, bytes
    decoded, nothing stripped), with NUL (which PostgreSQL refuses in text) as U+FFFD."""
    text = text_or_none(value)
    return None if text is None else text.replace("\x00", "\ufffd")


def _fitted(value: Any, width: int, *, cut: bool = True) -> str | None:
    """:func:`ledger_text` within a VARCHAR(width) column: cut to ``width``, or None when ``cut`` is off."""
    text = ledger_text(value)
    if text is None or len(text) <= width:
        return text
    return text[:width] if cut else None


def _amount(value: Any) -> float | None:
    """A NUMERIC(18,2) value for the ledger: None when it is no finite amount that fits the column."""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return None
    return amount if math.isfinite(amount) and abs(amount) < 1e16 else None


def _records(result: Iterable[Any]) -> list[Any]:
    """The rows of a query result as dicts of column name to value, for the row type the caller names
    (:class:`LedgerRow`, :class:`ReportRow`...): its query selects that type's columns."""
    return [dict(row._mapping) for row in result]


#: the bounds of a BIGINT invoice id, for a shard range open at one end
_LOWEST_ID, _HIGHEST_ID = -(2**63), 2**63 - 1


def _id_or(value: int | None, default: int) -> int:
    return default if value is None else int(value)


def _insert_history(conn: Connection, history: Sequence[HistoryRow]) -> None:
    """Insert history rows, in statements of :func:`~inexchange.sql.row_counts` rows."""
    for rows in _pieces(history):
        conn.execute(*_rows(conn, "ledger_insert_history", _HISTORY_ROW, rows))


#: the PostgreSQL types of the ledger's values that are not text (see :func:`~inexchange.sql.rows_statement`)
_NOT_TEXT = {
    "invoice_id": "BIGINT", "customer_id": "BIGINT", "total_amount": "NUMERIC", "attempts": "INTEGER",
    "attempt": "INTEGER", "stays_submitting": "INTEGER", "doubt_lookup": "INTEGER", "check_status": "INTEGER",
    "try_number": "INTEGER",
}  # fmt: skip


def _rows(
    conn: Connection, name: str, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]], *, padded: bool = False
) -> tuple[Any, dict[str, Any]]:
    """:func:`~inexchange.sql.rows_statement` of the ledger's statement ``name`` on ``conn``'s database."""
    return rows_statement(name, columns, rows, dialect=conn.dialect.name, types=_NOT_TEXT, padded=padded)


def _pieces(rows: Sequence[Any]) -> Iterable[Sequence[Any]]:
    """``rows`` in consecutive pieces of :func:`~inexchange.sql.row_counts` rows (powers of two):
    whatever a batch's size, the statements that write it are among a few, each prepared once."""
    start = 0
    for count in row_counts(len(rows)):
        yield rows[start : start + count]
        start += count


def _sets(rows: Sequence[Mapping[str, Any]], key: str) -> Iterable[Sequence[Mapping[str, Any]]]:
    """``rows`` in order, cut into runs of at most :data:`~inexchange.sql.MAX_ROWS` rows in which no
    ``key`` appears twice: one statement can write each run (a statement cannot change a row twice)."""
    run: list[Mapping[str, Any]] = []
    keys: set[Any] = set()
    for row in rows:
        if len(run) == MAX_ROWS or row[key] in keys:
            yield run
            run, keys = [], set()
        run.append(row)
        keys.add(row[key])
    if run:
        yield run


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
