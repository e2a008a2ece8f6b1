"""The recheck, extract, validate, plan and report stages, as plain functions the DAG's tasks call.

Each takes the run's :class:`~inexchange.ledger.RunScope` and connection ids (never the task context:
the operators of :mod:`inexchange.operators.stages` build the scope and do the XCom), works through
the ledger, and returns a small JSON-friendly summary for XCom (counts and invoice numbers, never
invoice data).
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from inexchange.db import erp_engine, reporting_engine
from inexchange.erp import INEXCHANGE_BILLING_METHOD, ErpReader
from inexchange.exceptions import InExchangeError
from inexchange.ledger import Ledger, LedgerRow, ReportRow, RunScope, Transition, ledger_text
from inexchange.states import ACTION_STATES, MAX_ATTEMPTS, LedgerState
from inexchange.times import TIMEZONE, local_time, utc_text
from inexchange.tracking import record_statuses
from inexchange.validation import CheckedCustomers, ValidationTally, customer_label, shown
from inexchange.validation import validate as validate_invoices
from inexchange.values import integer_id, one_line, read_date, text_or_none

log = logging.getLogger(__name__)


def recheck_waiting(scope: RunScope, *, reporting_conn_id: str, inexchange_conn_id: str) -> dict[str, int]:
    """Poll InExchange once for invoices of earlier intervals still ``waiting`` and record their statuses.

    A run's sensor that reached its timeout leaves its invoices waiting; the next run looks at them
    before it extracts new work, so the ledger and the report tell the truth about them too.
    """
    from inexchange.hooks.inexchange import InExchangeHook

    ledger = Ledger(reporting_engine(reporting_conn_id), scope)
    ledger.ensure_schema()
    waiting, doubtful = ledger.waiting_elsewhere(), ledger.in_doubt()
    if not waiting and not doubtful:
        return {"rechecked": 0, "still_waiting": 0}
    hook = InExchangeHook(inexchange_conn_id)
    try:
        if waiting:
            record_statuses(ledger, hook, waiting, source="recheck")
        settled = _look_up_in_doubt(ledger, hook, doubtful)
    finally:
        hook.close()
    if doubtful:
        log.info(
            "looked up %d sends in doubt: %d found at InExchange, %d still in doubt for a person",
            len(doubtful),
            settled,
            len(doubtful) - settled,
        )
    still = len(ledger.waiting_elsewhere())
    log.info(
        "rechecked %d invoices of earlier intervals still waiting: %d now final, %d still waiting",
        len(waiting),
        len(waiting) - still,
        still,
    )
    result = {"rechecked": len(waiting), "still_waiting": still}
    if doubtful:
        result["in_doubt"] = len(doubtful) - settled
    if hook.unreadable:  # each was logged with its id by the hook
        result["unreadable_documents"] = len({item.id or item.problem for item in hook.unreadable})
    return result


def _look_up_in_doubt(ledger: Ledger, hook: Any, rows: list[LedgerRow]) -> int:
    """Look each send in doubt up once more by its ERP id; record the ones InExchange has. Return how many.

    Nothing is sent: an invoice InExchange does not show stays ``in_doubt`` for a person.
    """
    settled = 0
    for row in rows:
        try:
            found = hook.find_by_erp_id(row["erp_document_id"])
        except InExchangeError as exc:
            log.warning("invoice %s: still in doubt, the look-up failed (%s)", row["invoice_number"], exc)
            continue
        if found is None:
            log.warning(
                "invoice %s: still in doubt, InExchange does not know it; a person decides whether to send "
                "it (a manual run listing it)",
                row["invoice_number"],
            )
            continue
        settled += ledger.transition(
            int(row["invoice_id"]),
            [LedgerState.IN_DOUBT],
            found.ledger_state,
            source="recheck",
            inexchange_document_id=found.id,
            inexchange_status=found.status,
            message=found.message,
            status_time=utc_text(found.status_time) if found.status_time else None,
            sent_at=utc_text(found.status_time)
            if found.status_time and found.ledger_state is LedgerState.SENT
            else None,
        )
    return settled


def extract(
    scope: RunScope, *, erp_conn_id: str, reporting_conn_id: str, billing_method: str = INEXCHANGE_BILLING_METHOD
) -> dict[str, int]:
    """Put the interval's posted InExchange invoices in the ledger as ``pending``.

    Invoices already sent or in flight are left alone; rejected ones are checked again. The ERP's rows
    are read through one streaming cursor and registered :data:`CHUNK_SIZE` at a time (never splitting
    the rows of one invoice_id, :func:`_whole_invoices`), so the task holds one chunk whatever the
    interval's size; the ledger's counts are the sums of the chunks'.
    """
    ledger = Ledger(reporting_engine(reporting_conn_id), scope)
    ledger.ensure_schema()
    chunks = ErpReader(erp_engine(erp_conn_id)).extract_chunks(
        start_date=scope.start_date.isoformat(),
        end_date=scope.end_date.isoformat(),
        numbers=scope.invoice_numbers,
        billing_method=billing_method,
        by_number=scope.by_number,
        size=CHUNK_SIZE,
    )
    listed, found = set(scope.invoice_numbers), set()
    extracted = 0
    counts: dict[str, int] | None = None
    without_id: list[str] = []  # at most a page of them for XCom; the log has every one
    for chunk in _whole_invoices(chunks):
        extracted += len(chunk)
        counts = _summed(counts, ledger.register(chunk))
        for invoice in chunk:
            if integer_id(invoice["invoice_id"]) is None:
                message = _without_id_message(invoice)
                log.warning("not sent: %s", message)
                if len(without_id) < _MAX_LISTED:
                    without_id.append(message)
            if listed and (number := ledger_text(invoice["invoice_number"])) in listed:
                found.add(number)
    if counts is None:  # nothing extracted: the ledger's counts of nothing
        counts = _summed(None, ledger.register([]))
    result: dict[str, Any] = {"extracted": extracted, **counts}
    if without_id:
        result["without_id"] = without_id
    if scope.by_number:
        missing = [shown(n, None) for n in scope.invoice_numbers if n not in found]
        if missing:
            log.warning("not among the ERP's posted InExchange invoices, so not sent: %s", ", ".join(missing))
        log.info(
            "manual run for invoices %s: %d found in the ERP, ledger %s",
            ", ".join(shown(n, None) for n in scope.invoice_numbers),
            extracted,
            counts,
        )
        return {**result, "not_found": missing}
    log.info("extract, %s: %d invoices in the ERP, ledger %s", scope.describe(), extracted, counts)
    return result


CHUNK_SIZE = 9_000
"""Invoices a chunk of the extract, validate and report stages.

Each of them holds one chunk of the run's invoices in memory at a time (the ERP's rows, the frames
validation builds, the report rows), so its peak memory follows this number, not the day's size:
20 to 40 MiB of Python objects a stage at 9,000 (``bench/bench_memory.py``), where a day of 28,000
invoices read at once took 60 to 95 MiB, and 1,000,000 would not fit a task's 1 GiB. Smaller chunks
cost more per invoice: each pays for its queries and its ledger transaction, and validation takes
about 0.13 s a call for setting up its rules and checks every customer of a chunk again (a customer
with invoices in several chunks is checked in each). At 9,000, validate costs 1.1 to 1.3 times the
CPU per invoice of the whole day at once, extract and report about the same as at once. It is a
multiple of the 900 ids the ERP is asked for a statement, so validation loads the ERP with the same
statements as when the day is loaded at once.
"""


def _whole_invoices(chunks: Iterable[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    """The ERP rows of ``chunks``, in chunks that never split the rows of one invoice_id.

    A view without keys may repeat an invoice's row; the extract orders by invoice_id, so the repeats
    are neighbours, and the ledger counts them as it would in one chunk. The rows at the end of a chunk
    that share its last invoice_id go on with the next chunk.
    """
    held: list[dict[str, Any]] = []
    for chunk in chunks:
        rows = [*held, *chunk] if held else chunk
        cut = len(rows)
        last = integer_id(rows[-1]["invoice_id"]) if rows else None
        if last is not None:
            while cut and integer_id(rows[cut - 1]["invoice_id"]) == last:
                cut -= 1
        held = rows[cut:]
        if cut:
            yield rows[:cut]
    if held:
        yield held


def _summed(total: dict[str, int] | None, counts: Mapping[str, Any]) -> dict[str, int]:
    """The ledger's counts of the chunks so far plus those of one more, keys in the order first given."""
    summed = dict(total or {})
    for key, value in counts.items():
        summed[key] = summed.get(key, 0) + int(value)
    return summed


#: most invoices named one by one in a task's XCom
_MAX_LISTED = 100
#: the report columns of each invoice in the XCom ``needs_person`` (inexchange.notifications.ActionRow)
_ListedColumn = Literal["invoice_number", "customer_number", "customer_name", "state", "inexchange_status", "message"]


def _without_id_message(invoice: dict[str, Any]) -> str:
    """Why an extracted ERP row without a whole-number invoice_id is never sent, in the ERP's words."""
    raw = invoice["invoice_id"]
    number = shown(invoice.get("invoice_number"), 40) or "utan nummer"
    customer = customer_label(
        invoice.get("customer_id"), invoice.get("customer_number"), invoice.get("customer_name")
    ).removeprefix("Kund ")
    problem = "invoice_id saknas" if raw is None else f"invoice_id '{shown(raw, 40)}' är inget heltal"
    return (
        f"Faktura {number} (kund {customer}): {problem}; ge fakturan ett id i ERP "
        "(utan id kan den inte följas och skickas)"
    )


def validate(scope: RunScope, *, erp_conn_id: str, reporting_conn_id: str) -> dict[str, Any]:
    """Validate the interval's ``pending`` invoices; failures become ``rejected`` with one message each.

    The pending rows are taken :data:`CHUNK_SIZE` at a time, in invoice_id order: each chunk is loaded
    from the ERP, validated, and moved to ``ready`` or ``rejected`` in one transaction, so the task holds
    one chunk whatever the interval's size. No check spans the invoices of two chunks: an invoice is
    checked with its own customer and lines, and whether its number is used twice is asked of the ERP.
    The summary in the log counts every chunk; ``rejected_invoices`` names the first
    :data:`_MAX_LISTED` invoices rejected, ``rejected`` counts them all.
    """
    ledger = Ledger(reporting_engine(reporting_conn_id), scope)
    start, end = scope.start_date, scope.end_date
    chunks: Iterable[list[LedgerRow]]
    if scope.by_number:
        # a manual run's listed invoices (as many as its list) may be of any earlier date, up to today:
        # never one dated after it (an invoice dated 9999-12-31 is an error in the ERP, not a future invoice)
        pending = ledger.rows(LedgerState.PENDING)
        end = max(end, datetime.now(ZoneInfo(scope.timezone)).date() + timedelta(days=1))
        dates = [day for row in pending if (day := read_date(row["invoice_date"])) is not None]
        start = min([*dates, end - timedelta(days=1)])
        chunks = (pending[first : first + CHUNK_SIZE] for first in range(0, len(pending), CHUNK_SIZE))
    else:
        chunks = ledger.iter_rows(LedgerState.PENDING, chunk=CHUNK_SIZE)
    reader: ErpReader | None = None
    tally = ValidationTally()
    checked, rejected = 0, 0
    listed: list[str] = []  # at most a page of the rejected invoices' numbers for XCom; the log has every one
    seen = CheckedCustomers()  # each customer checked once, in the first chunk holding one of its invoices
    for chunk in chunks:
        reader = reader or ErpReader(erp_engine(erp_conn_id))
        batch = reader.load([row["invoice_id"] for row in chunk])
        duplicates = reader.duplicate_invoice_numbers(row["invoice_number"] for row in chunk)
        report = validate_invoices(batch, start=start, end=end, duplicate_numbers=duplicates, checked=seen)
        del batch
        tally.add(report)
        changes = []
        for row in chunk:
            invoice_id = int(row["invoice_id"])
            message = report.messages.get(invoice_id, f"Faktura {row['invoice_number']}: finns inte längre i ERP")
            if message is None:
                changes.append(Transition(invoice_id, [LedgerState.PENDING], LedgerState.READY, {}))
                continue
            changes.append(Transition(invoice_id, [LedgerState.PENDING], LedgerState.REJECTED, {"message": message}))
            rejected += 1
            if len(listed) < _MAX_LISTED:
                listed.append(row["invoice_number"])
            log.warning("rejected: %s", message)
        ledger.transition_many(changes, source="validate")  # the chunk's changes commit together
        checked += len(chunk)
    if not checked:
        return {"ready": 0, "rejected": 0, "rejected_invoices": []}
    log.info("validation, %s:\n%s", scope.describe(), tally.summary())
    return {"ready": checked - rejected, "rejected": rejected, "rejected_invoices": listed}


def plan_batches(
    scope: RunScope, *, reporting_conn_id: str, batch_size: int, dry_run: bool = False, max_attempts: int = MAX_ATTEMPTS
) -> list[dict[str, Any]]:
    """Split the rows due for submission into shards of about ``batch_size`` invoices.

    Returns one ``{"shard": k, "shards": n, "first_id": a, "last_id": b, "dry_run": dry_run}`` per
    batch (at least one, so that rows left in ``submitting`` are always reconciled), for
    ``SubmitInvoicesOperator.partial(...).expand_kwargs``. A shard is a range of invoice ids
    (:meth:`~inexchange.ledger.Ledger.shard_ranges`: adjacent, the first and last open), so the
    batches never overlap, each task reads its rows through the primary key, and XCom carries four
    numbers per batch instead of invoice ids.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    ledger = Ledger(reporting_engine(reporting_conn_id), scope)
    ledger.ensure_schema()
    ranges = ledger.shard_ranges(batch_size, max_attempts=max_attempts)
    log.info("invoices due for submission: %d batches of at most %d", len(ranges), batch_size)
    return [
        {"shard": shard, "shards": len(ranges), "first_id": first, "last_id": last, "dry_run": dry_run}
        for shard, (first, last) in enumerate(ranges)
    ]


def report(
    scope: RunScope,
    *,
    reporting_conn_id: str,
    fail_on_action_needed: bool,
    without_id: Sequence[str] = (),
    publish: Callable[[dict[str, Any]], None] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> dict[str, Any]:
    """Refresh the interval's report rows, log a summary, and fail when invoices need a person.

    Before it may fail, the invoices that need a person go to ``publish`` (at most a page, each with
    its whole message): the report task pushes them to XCom ``needs_person``, for
    :class:`inexchange.notifications.ActionNeededNotifier`.

    The report rows are written by one set-based statement and read back :data:`CHUNK_SIZE` at a
    time, in invoice_id order (:meth:`~inexchange.ledger.Ledger.report_pages`), so the task holds one
    page whatever the run's size. The table goes to the log as one block when the run fits a page,
    else page by page ("part 1", "part 2"..., each page in invoice number order); the invoices that
    need a person as one block while a chunk holds their lines, else read again page by page. The
    summary's ``action_needed`` and the published list name the first :data:`_MAX_LISTED` of them by
    invoice number; the counts count them all.

    :param fail_on_action_needed: raise when any invoice needs a person (:func:`needs_person`), so
        the run shows red in the Airflow UI.
    :param without_id: the extract's messages of ERP rows it could not take into the ledger (no usable
        ``invoice_id``): they need a person too.
    :param publish: takes the list of the invoices that need a person, before the task may fail.
    :param max_attempts: the submit task's attempts per invoice (a failed invoice with attempts
        left is retried automatically and needs nobody yet).
    """
    from airflow.sdk.exceptions import AirflowFailException

    ledger = Ledger(reporting_engine(reporting_conn_id), scope)
    ledger.ensure_schema()
    ledger.refresh_report(read_back=False)
    counts: Counter[str] = Counter()
    total = needing_count = part = 0
    listed: list[ReportRow] = []  # the first invoices needing a person by number, at most a page
    lines: list[tuple[str, str]] | None = []  # (number, log line) of every one while they fit a chunk
    for page in ledger.report_pages(CHUNK_SIZE):
        part += 1
        page.sort(key=_invoice_number)
        # a first page that is not full is the only one: titled as the run's whole table
        title = scope.describe() if part == 1 and len(page) < CHUNK_SIZE else f"{scope.describe()}, part {part}"
        log.info("Elektroniska utskick, %s:\n%s", title, format_report(page, scope.timezone))
        total += len(page)
        counts.update(row["state"] for row in page)
        page_needing = [row for row in page if needs_person(row, max_attempts)]
        needing_count += len(page_needing)
        listed = heapq.nsmallest(_MAX_LISTED, [*listed, *page_needing], key=_invoice_number)
        if lines is not None:
            lines += [(_invoice_number(row), _action_line(row)) for row in page_needing]
            if len(lines) > CHUNK_SIZE:
                lines = None  # too many to hold: logged page by page below
    if not part:
        log.info("Elektroniska utskick, %s:\n%s", scope.describe(), format_report([], scope.timezone))
    log.info("per state: %s", dict(sorted(counts.items())))
    action = [str(row["invoice_number"]) for row in listed]
    # rows of the ERP the extract could not take into the ledger (no usable invoice_id) need a person too
    action += [message.split(" (", 1)[0].removeprefix("Faktura ") for message in without_id]
    count = needing_count + len(without_id)
    if count:
        if lines is not None:  # one block, every invoice in number order
            lines.sort(key=itemgetter(0))
            log.warning("%s", _action_text(count, [line for _, line in lines], without_id))
        else:
            for block in _action_blocks(ledger.report_pages(CHUNK_SIZE), count, without_id, max_attempts):
                log.warning("%s", block)
    # the list the notifier e-mails (inexchange.notifications.ActionList), pushed before the task may fail
    # on it; at most a page of invoices, each with its whole message
    if publish is not None:
        columns: tuple[_ListedColumn, ...] = get_args(_ListedColumn)
        publish(
            {
                "run": scope.describe(),
                "first_day": scope.start_date.isoformat(),
                "last_day": scope.last_date.isoformat(),
                "interval_start": scope.interval["data_interval_start"],
                "count": count,
                "invoices": [{key: text_or_none(row[key]) for key in columns} for row in listed],
                "without_id": [str(message) for message in without_id],
            },
        )
    summary = {"total": total, "states": dict(counts), "action_needed": action, "without_id": len(without_id)}
    if count and fail_on_action_needed:
        # not retryable: a retry finds the same invoices; the list is in the log block above
        unnamed = f" and {count - len(action)} more (see the log)" if count > len(action) else ""
        raise AirflowFailException(
            f"{count} invoices need a person in the ERP or InExchange: {', '.join(action)}{unnamed}"
        )
    return summary


def _invoice_number(row: ReportRow) -> str:
    """A report row's sort key: its invoice number."""
    return str(row["invoice_number"])


def action_block(rows: list[ReportRow], without_id: Sequence[str]) -> str:
    """One log block of every invoice that needs a person: its number, customer, state and whole
    message (the report table cuts long messages), then the ERP rows never taken into the ledger.

    :param rows: the report rows that need a person (:func:`needs_person`).
    :param without_id: the extract's messages of ERP rows without a usable ``invoice_id``.
    """
    lines = [_action_line(row) for row in sorted(rows, key=_invoice_number)]
    return _action_text(len(rows) + len(without_id), lines, without_id)


def _action_text(count: int, lines: Sequence[str], without_id: Sequence[str]) -> str:
    """:func:`action_block`'s text: the count, the invoices' lines, then the ERP rows without an id."""
    return "\n".join(
        [
            f"{count} invoices need a person:",
            *lines,
            *(_without_id_line(message) for message in without_id),
        ]
    )


def _without_id_line(message: str) -> str:
    """An ERP row without a usable invoice_id in :func:`action_block`: the extract's message."""
    return f"  {message} (not in the ledger, never sent)"


def _action_blocks(
    pages: Iterable[list[ReportRow]], count: int, without_id: Sequence[str], max_attempts: int
) -> Iterator[str]:
    """:func:`action_block` of more invoices than a chunk holds, read again page by page: the same
    lines in blocks of about :data:`CHUNK_SIZE` lines, each page's invoices in number order.

    :param count: how many invoices need a person, the ERP rows without an id included.
    """
    lines = [f"{count} invoices need a person:"]
    for page in pages:
        needing = [row for row in page if needs_person(row, max_attempts)]
        lines += [_action_line(row) for row in sorted(needing, key=_invoice_number)]
        if len(lines) >= CHUNK_SIZE:
            yield "\n".join(lines)
            lines = []
    lines += [_without_id_line(message) for message in without_id]
    if lines:
        yield "\n".join(lines)


def _action_line(row: ReportRow) -> str:
    """One invoice of :func:`action_block`: number, customer, state, InExchange status and whole message."""
    customer = " ".join(str(part) for part in (row["customer_number"], row["customer_name"]) if part)
    status = f", InExchange {row['inexchange_status']}" if row["inexchange_status"] else ""
    return (
        f"  Faktura {row['invoice_number']} (kund {customer}): {row['state']}{status}: "
        f"{row['message'] or 'inget meddelande'}"
    )


#: the ledger states of :data:`ACTION_STATES`, as the report rows hold them
_ACTION_STATE_VALUES = frozenset(state.value for state in ACTION_STATES)


def needs_person(row: ReportRow, max_attempts: int) -> bool:
    """Rejected, stopped, or failed for good: failed after InExchange got it, or after its last attempt."""
    if row["state"] not in _ACTION_STATE_VALUES:
        return False
    if row["state"] != LedgerState.FAILED.value:
        return True
    return bool(row["inexchange_document_id"]) or int(row["attempts"] or 0) >= max_attempts


def format_report(rows: list[ReportRow], timezone: str = TIMEZONE) -> str:
    """Render report rows as a plain-text table; "Skickat" in ``timezone``, with its abbreviation.

    Long names and messages are wrapped within their column at word boundaries, never cut: every
    word of every message is in the table.
    """
    from tabulate import tabulate

    headers = ["Typ", "Nummer", "Kundnr", "Kund", "Leveranssätt", "Status", "InExchange", "Skickat", "Meddelande"]
    table = [
        [
            r["document_type"],
            r["invoice_number"],
            r["customer_number"],
            one_line(r["customer_name"]),
            r["delivery_method"] or "",
            r["state"],
            r["inexchange_status"] or "",
            local_time(r["sent_at"], timezone),
            one_line(r["message"]),
        ]
        for r in rows
    ]
    widths = [None, None, None, NAME_WIDTH, None, None, None, None, MESSAGE_WIDTH]
    # numbers right-aligned, as tabulate would find them, without its number parsing of every cell (half its time)
    align = ["right" if _all_digits(column) else "left" for column in zip(*table, strict=True)] if table else None
    return tabulate(
        table, headers=headers, tablefmt="simple", maxcolwidths=widths, disable_numparse=True, colalign=align
    )


def _all_digits(column: Iterable[Any]) -> bool:
    """Whether a column holds numbers only (whole ones, as invoice and customer numbers are), blanks aside."""
    filled = [str(value) for value in column if value not in (None, "")]
    return bool(filled) and all(value.isascii() and value.isdigit() for value in filled)


#: the report table's widest name and message columns; longer texts wrap onto more lines
NAME_WIDTH = 28
MESSAGE_WIDTH = 72
