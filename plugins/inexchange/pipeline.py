"""The recheck, extract, validate, plan and report stages, as plain functions the DAG's tasks call.

Each takes the run's :class:`~inexchange.ledger.RunScope` and connection ids (never the task context:
the operators of :mod:`inexchange.operators.stages` build the scope and do the XCom), works through
the ledger, and returns a small JSON-friendly summary for XCom (counts and invoice numbers, never
invoice data).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from inexchange.db import erp_engine, integer_id, read_date, reporting_engine
from inexchange.erp import INEXCHANGE_BILLING_METHOD, ErpReader
from inexchange.ledger import Ledger, LedgerRow, ReportRow, RunScope, ledger_text
from inexchange.states import ACTION_STATES, MAX_ATTEMPTS, LedgerState
from inexchange.times import TIMEZONE, local_time
from inexchange.tracking import record_statuses
from inexchange.validation import customer_label, shown
from inexchange.validation import validate as validate_invoices

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
    from inexchange.db import utc_text
    from inexchange.exceptions import InExchangeError

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

    Invoices already sent or in flight are left alone; rejected ones are checked again.
    """
    ledger = Ledger(reporting_engine(reporting_conn_id), scope)
    ledger.ensure_schema()
    invoices = ErpReader(erp_engine(erp_conn_id)).extract(
        start_date=scope.start_date.isoformat(),
        end_date=scope.end_date.isoformat(),
        numbers=scope.invoice_numbers,
        billing_method=billing_method,
        by_number=scope.by_number,
    )
    counts = ledger.register(invoices)
    result: dict[str, Any] = {"extracted": len(invoices), **counts}
    without_id = [_without_id_message(i) for i in invoices if integer_id(i["invoice_id"]) is None]
    for message in without_id:
        log.warning("not sent: %s", message)
    if without_id:  # at most a page of them in XCom; the log has every one
        result["without_id"] = without_id[:_MAX_LISTED]
    if scope.by_number:
        found = {ledger_text(i["invoice_number"]) for i in invoices}
        missing = [shown(n, None) for n in scope.invoice_numbers if n not in found]
        if missing:
            log.warning("not among the ERP's posted InExchange invoices, so not sent: %s", ", ".join(missing))
        log.info(
            "manual run for invoices %s: %d found in the ERP, ledger %s",
            ", ".join(shown(n, None) for n in scope.invoice_numbers),
            len(invoices),
            counts,
        )
        return {**result, "not_found": missing}
    log.info("extract, %s: %d invoices in the ERP, ledger %s", scope.describe(), len(invoices), counts)
    return result


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
    """Validate the interval's ``pending`` invoices; failures become ``rejected`` with one message each."""
    ledger = Ledger(reporting_engine(reporting_conn_id), scope)
    pending = ledger.rows(LedgerState.PENDING)
    if not pending:
        return {"ready": 0, "rejected": 0, "rejected_invoices": []}
    reader = ErpReader(erp_engine(erp_conn_id))
    batch = reader.load([row["invoice_id"] for row in pending])
    duplicates = reader.duplicate_invoice_numbers(row["invoice_number"] for row in pending)
    start, end = scope.start_date, scope.end_date
    if scope.by_number:
        # a manual run's listed invoices may be of any earlier date, up to today: never one dated
        # after it (an invoice dated 9999-12-31 is an error in the ERP, not a future invoice)
        end = max(end, datetime.now(ZoneInfo(scope.timezone)).date() + timedelta(days=1))
        dates = [day for row in pending if (day := read_date(row["invoice_date"])) is not None]
        start = min([*dates, end - timedelta(days=1)])
    report = validate_invoices(batch, start=start, end=end, duplicate_numbers=duplicates)
    results = report.messages
    rejected = []
    with ledger.engine.begin() as conn:
        for row in pending:
            invoice_id = int(row["invoice_id"])
            message = results.get(invoice_id, f"Faktura {row['invoice_number']}: finns inte längre i ERP")
            if message is None:
                ledger.transition(invoice_id, [LedgerState.PENDING], LedgerState.READY, source="validate", conn=conn)
            else:
                ledger.transition(
                    invoice_id,
                    [LedgerState.PENDING],
                    LedgerState.REJECTED,
                    source="validate",
                    conn=conn,
                    message=message,
                )
                rejected.append(row["invoice_number"])
                log.warning("rejected: %s", message)
    log.info("validation, %s:\n%s", scope.describe(), report.summary())
    return {"ready": len(pending) - len(rejected), "rejected": len(rejected), "rejected_invoices": rejected}


def plan_batches(
    scope: RunScope, *, reporting_conn_id: str, batch_size: int, dry_run: bool = False, max_attempts: int = MAX_ATTEMPTS
) -> list[dict[str, Any]]:
    """Split the rows due for submission into shards of about ``batch_size`` invoices.

    Returns one ``{"shard": k, "shards": n, "dry_run": dry_run}`` per batch (at least one, so that rows left in
    ``submitting`` are always reconciled), for ``SubmitInvoicesOperator.partial(...).expand_kwargs``.
    A shard is the invoices whose id modulo ``n`` is ``k``, so the batches never overlap and XCom
    carries two numbers per batch instead of invoice ids.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    ledger = Ledger(reporting_engine(reporting_conn_id), scope)
    ledger.ensure_schema()
    due = ledger.count_due(max_attempts=max_attempts)
    shards = max(1, -(-due // batch_size))
    log.info("%d invoices due for submission: %d batches of at most about %d", due, shards, batch_size)
    return [{"shard": shard, "shards": shards, "dry_run": dry_run} for shard in range(shards)]


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
    rows = ledger.refresh_report()
    counts = Counter(row["state"] for row in rows)
    needing = [row for row in rows if needs_person(row, max_attempts)]
    action = sorted(str(row["invoice_number"]) for row in needing)
    log.info("Elektroniska utskick, %s:\n%s", scope.describe(), format_report(rows, scope.timezone))
    log.info("per state: %s", dict(sorted(counts.items())))
    # rows of the ERP the extract could not take into the ledger (no usable invoice_id) need a person too
    action += [message.split(" (", 1)[0].removeprefix("Faktura ") for message in without_id]
    if action:
        log.warning("%s", action_block(needing, without_id))
    # the list the notifier e-mails (inexchange.notifications.ActionList), pushed before the task may fail
    # on it; at most a page of invoices, each with its whole message
    if publish is not None:
        columns: tuple[_ListedColumn, ...] = get_args(_ListedColumn)
        listed = sorted(needing, key=lambda r: str(r["invoice_number"]))[:_MAX_LISTED]
        publish(
            {
                "run": scope.describe(),
                "first_day": scope.start_date.isoformat(),
                "last_day": scope.last_date.isoformat(),
                "interval_start": scope.interval["data_interval_start"],
                "count": len(action),
                "invoices": [{key: None if row[key] is None else str(row[key]) for key in columns} for row in listed],
                "without_id": [str(message) for message in without_id],
            },
        )
    summary = {"total": len(rows), "states": dict(counts), "action_needed": action, "without_id": len(without_id)}
    if action and fail_on_action_needed:
        # not retryable: a retry finds the same invoices; the list is in the log block above
        raise AirflowFailException(
            f"{len(action)} invoices need a person in the ERP or InExchange: {', '.join(action)}"
        )
    return summary


def action_block(rows: list[ReportRow], without_id: Sequence[str]) -> str:
    """One log block of every invoice that needs a person: its number, customer, state and whole
    message (the report table cuts long messages), then the ERP rows never taken into the ledger.

    :param rows: the report rows that need a person (:func:`needs_person`).
    :param without_id: the extract's messages of ERP rows without a usable ``invoice_id``.
    """
    lines = [f"{len(rows) + len(without_id)} invoices need a person:"]
    for row in sorted(rows, key=lambda r: str(r["invoice_number"])):
        customer = " ".join(str(part) for part in (row["customer_number"], row["customer_name"]) if part)
        status = f", InExchange {row['inexchange_status']}" if row["inexchange_status"] else ""
        lines.append(
            f"  Faktura {row['invoice_number']} (kund {customer}): {row['state']}{status}: "
            f"{row['message'] or 'inget meddelande'}"
        )
    lines += [f"  {message} (not in the ledger, never sent)" for message in without_id]
    return "\n".join(lines)


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
            _one_line(r["customer_name"]),
            r["delivery_method"] or "",
            r["state"],
            r["inexchange_status"] or "",
            local_time(r["sent_at"], timezone),
            _one_line(r["message"]),
        ]
        for r in rows
    ]
    widths = [None, None, None, NAME_WIDTH, None, None, None, None, MESSAGE_WIDTH]
    return tabulate(table, headers=headers, tablefmt="simple", maxcolwidths=widths)


#: the report table's widest name and message columns; longer texts wrap onto more lines
NAME_WIDTH = 28
MESSAGE_WIDTH = 72


def _one_line(text: Any) -> str:
    """``text`` with its line breaks as spaces (the table wraps it itself); empty for ``None``."""
    return "" if text is None else " ".join(str(text).split())
