"""Delivery tracking: InExchange's listed documents turned into the ledger's status changes.

Shared by the delivery sensor (its poke path and the events of its trigger), the trigger itself and
the next run's recheck of waiting invoices, so all of them see and record changes the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from inexchange.api import OutboundDocument
from inexchange.db import parse_utc_text

if TYPE_CHECKING:
    from inexchange.hooks.inexchange import InExchangeHook
    from inexchange.ledger import Ledger, LedgerRow, StatusChange

#: how far before the earliest submission of the run the creation window opens (clock skew)
CREATED_MARGIN = timedelta(minutes=5)
#: the most status changes one trigger event carries (a few hundred kB of JSON)
MAX_EVENT_CHANGES = 2000


def status_changes(
    documents: Iterable[OutboundDocument], cursor: datetime | None, *, limit: int | None = None
) -> tuple[list[StatusChange], datetime | None]:
    """Turn listed documents into status-change items and the cursor after them.

    Shared by the sensor's poke path and the trigger, so both see changes the same way.

    Documents stamped at or before the cursor are dropped, so the cursor always moves forward
    whether InExchange treats ``updatedAfter`` as exclusive or inclusive. A document without a status
    time cannot be placed after a cursor: it counts only in a listing without one (the sensor's first
    poll of a try, a recheck), never again in every later poll.

    :param documents: documents from ``documents/outbound/list``.
    :param cursor: the ``updatedAfter`` cursor the documents were listed with.
    :param limit: the most changes to return: the earliest ones, cut where the time changes so that
        the cursor after them passes none of the rest, which the next poll lists again (at least one
        time's worth, whatever ``limit`` says).
    """
    fresh = [
        document
        for document in documents
        if (document.status_time is None and cursor is None)
        or (document.status_time is not None and (cursor is None or document.status_time > cursor))
    ]
    if limit is not None and len(fresh) > limit:
        timed = sorted((d for d in fresh if d.status_time is not None), key=_status_time)
        untimed = [d for d in fresh if d.status_time is None]
        take = max(limit - len(untimed), 1)
        if take < len(timed):
            edge = _status_time(timed[take - 1])
            timed = [d for d in timed if _status_time(d) <= edge]
        fresh = untimed + timed
    times = [document.status_time for document in fresh if document.status_time is not None]
    changes = cast("list[StatusChange]", [document.to_event() for document in fresh])
    return changes, max([cursor, *times] if cursor else times, default=None)


def _status_time(document: OutboundDocument) -> datetime:
    """The status time of a document listed with one."""
    if document.status_time is None:
        raise ValueError(f"document {document.id} has no status time")
    return document.status_time


#: the most ids of unreadable documents an event or a summary names
MAX_UNREADABLE_IDS = 100


def unreadable_of(hook: InExchangeHook) -> dict[str, Any]:
    """The documents the hook's listings skipped as unreadable, for an event: their count and ids.

    A document listed again by every poll counts once.
    """
    ids = sorted({item.id or f"({item.problem})" for item in hook.unreadable})
    return {"unreadable": ids[:MAX_UNREADABLE_IDS], "unreadable_count": len(ids)} if ids else {}


def record_statuses(
    ledger: Ledger,
    hook: InExchangeHook,
    rows: Sequence[LedgerRow],
    *,
    page_size: int = 100,
    source: str = "status poll",
) -> datetime | None:
    """Poll the documents of ``rows`` once and write their status changes to the ledger.

    The synchronous twin of one :class:`~inexchange.triggers.delivery.DeliveryStatusTrigger` cycle:
    the same listing (the hook's paging of ``documents/outbound/list`` over the rows' creation
    window) and the same :func:`status_changes`. Returns the cursor after the changes seen.
    """
    created_from, created_to = creation_window(rows)
    documents = hook.all_outbound(page_size=page_size, created_from=created_from, created_to=created_to)
    changes, cursor = status_changes(documents, None)
    ledger.apply_statuses(of_rows(changes, rows), source=source)
    return cursor


def of_rows(changes: Iterable[StatusChange], rows: Iterable[LedgerRow]) -> list[StatusChange]:
    """The changes of the rows' documents: other documents in the window belong to other runs."""
    ids = {row["inexchange_document_id"] for row in rows}
    return [change for change in changes if change["id"] in ids]


def creation_window(rows: Iterable[LedgerRow]) -> tuple[datetime, datetime]:
    """The creation window of the rows' documents: their first and last submission, widened by a margin.

    Documents of other runs outside it are never listed; the margin covers clock skew.
    """
    known = [t for t in (parse_utc_text(row.get("submitted_at")) for row in rows) if t is not None]
    now = datetime.now(UTC)
    first, last = (min(known), max(known)) if known else (now - timedelta(days=1), now)
    return first - CREATED_MARGIN, last + CREATED_MARGIN
