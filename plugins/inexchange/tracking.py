"""Delivery tracking: InExchange's listed documents turned into the ledger's status changes.

Shared by the delivery sensor (its poke path and the events of its trigger), the trigger itself and
the next run's recheck of waiting invoices, so all of them see and record changes the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence, Set
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import islice
from typing import TYPE_CHECKING, Required, TypedDict, cast

from inexchange.api import OutboundDocument
from inexchange.ledger import Watch
from inexchange.times import parse_utc

if TYPE_CHECKING:
    from inexchange.hooks.inexchange import InExchangeHook
    from inexchange.ledger import Ledger, LedgerRow, StatusChange

#: how far before the earliest submission of the run the creation window opens (clock skew)
CREATED_MARGIN = timedelta(minutes=5)
#: the most status changes one trigger event carries (a few hundred kB of JSON)
MAX_EVENT_CHANGES = 2000
#: listed documents read and written to the ledger at a time by a synchronous poll
RECORD_CHUNK = 5000
#: pages of a synchronous poll's listing asked for at once (:meth:`InExchangeHook.iter_outbound`)
LIST_WORKERS = 4


class EventStatus(StrEnum):
    """What a delivery trigger's event reports (its ``status``; the values are the serialized event's)."""

    #: documents changed status: the event carries the changes and the cursor after them
    CHANGES = "changes"
    #: the deadline passed with no change
    TIMEOUT = "timeout"
    #: a listing failed: the event carries the error's message
    ERROR = "error"


class Unreadable(TypedDict, total=False):
    """The documents a hook's listings skipped as unreadable (:func:`unreadable_of`): none, or their ids and count."""

    unreadable: list[str]
    unreadable_count: int


class DeliveryEvent(Unreadable, total=False):
    """The payload of a :class:`~inexchange.triggers.delivery.DeliveryStatusTrigger` event, as the delivery
    sensor resumes with it.

    ``changes`` comes with :attr:`EventStatus.CHANGES`, ``message`` with :attr:`EventStatus.ERROR`, ``cursor``
    (ISO time of the latest change seen, or None) with the others.
    """

    status: Required[EventStatus]
    changes: list[StatusChange]
    cursor: str | None
    message: str


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


def unreadable_of(hook: InExchangeHook) -> Unreadable:
    """The documents the hook's listings skipped as unreadable, for an event: their count and ids.

    A document listed again by every poll counts once.
    """
    ids = sorted({item.id or f"({item.problem})" for item in hook.unreadable})
    return {"unreadable": ids[:MAX_UNREADABLE_IDS], "unreadable_count": len(ids)} if ids else {}


def record_statuses(
    ledger: Ledger,
    hook: InExchangeHook,
    rows: Sequence[LedgerRow] | Watch,
    *,
    page_size: int = 100,
    source: str = "status poll",
    workers: int = LIST_WORKERS,
) -> datetime | None:
    """Poll the documents of ``rows`` once and write their status changes to the ledger.

    The synchronous twin of one :class:`~inexchange.triggers.delivery.DeliveryStatusTrigger` cycle:
    the same listing (``documents/outbound/list`` over the rows' creation window) and the same
    :func:`status_changes`. The listing is read ``workers`` pages at a time
    (:meth:`~inexchange.hooks.inexchange.InExchangeHook.iter_outbound`) and written
    :data:`RECORD_CHUNK` documents at a time, so a day's window costs a few pages and two chunks of
    memory, not the day: while one chunk is written, the listing reads on, up to a chunk ahead.
    Returns the cursor after the changes seen.

    :param rows: the rows followed, or the sensor's :class:`~inexchange.ledger.Watch` of them.
    :param workers: the listing's pages asked for at once.
    """
    if isinstance(rows, Watch):  # counted by the database
        created_from, created_to = submission_window(rows.first_submitted, rows.last_submitted)
        followed: Callable[[list[str]], Set[str]] = ledger.watched_documents
    else:
        created_from, created_to = creation_window(rows)
        ids = {str(row["inexchange_document_id"]) for row in rows}
        followed = ids.intersection
    documents = hook.iter_outbound(
        page_size=page_size,
        workers=workers,
        ahead=math.ceil(RECORD_CHUNK / page_size),
        created_from=created_from,
        created_to=created_to,
    )
    cursor: datetime | None = None
    while chunk := list(islice(documents, RECORD_CHUNK)):
        changes, after = status_changes(chunk, None)
        ours = followed([change["id"] for change in changes])
        ledger.apply_statuses([change for change in changes if change["id"] in ours], source=source)
        cursor = max((t for t in (cursor, after) if t is not None), default=None)
    return cursor


def creation_window(rows: Iterable[LedgerRow]) -> tuple[datetime, datetime]:
    """The creation window of the rows' documents: their first and last submission, widened by a margin.

    Documents of other runs outside it are never listed; the margin covers clock skew.
    """
    known = [t for t in (parse_utc(row.get("submitted_at")) for row in rows) if t is not None]
    return _window(min(known, default=None), max(known, default=None))


def submission_window(first: str | None, last: str | None) -> tuple[datetime, datetime]:
    """:func:`creation_window` of rows whose first and last submission (UTC text) the database found."""
    return _window(parse_utc(first), parse_utc(last))


def _window(first: datetime | None, last: datetime | None) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    if first is None or last is None:
        first, last = now - timedelta(days=1), now
    return first - CREATED_MARGIN, last + CREATED_MARGIN
