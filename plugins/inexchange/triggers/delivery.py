"""DeliveryStatusTrigger: poll InExchange's outbound list until documents change status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from inexchange.api import OutboundDocument, parse_time
from inexchange.hooks.inexchange import InExchangeHook


def status_changes(documents: Iterable[OutboundDocument], cursor: datetime | None) -> tuple[list[dict[str, Any]], datetime | None]:
    """Turn listed documents into status-change items and the cursor after them.

    Shared by the sensor's poke path and the trigger, so both see changes the same way.

    Documents stamped at or before the cursor are dropped, so the cursor always moves forward
    whether InExchange treats ``updatedAfter`` as exclusive or inclusive.

    :param documents: documents from ``documents/outbound/list``.
    :param cursor: the ``updatedAfter`` cursor the documents were listed with.
    """
    fresh = [
        document for document in documents
        if cursor is None or document.status_time is None or document.status_time > cursor
    ]
    times = [document.status_time for document in fresh if document.status_time is not None]
    return [document.to_event() for document in fresh], max([cursor, *times] if cursor else times, default=None)


class DeliveryStatusTrigger(BaseTrigger):
    """Poll ``documents/outbound/list`` and fire once status changes are found.

    The run's documents are selected by their creation window (``created_from`` to ``created_to``), not by a list of
    ids, so the trigger's arguments stay small whatever the number of documents. It has no side
    effects: the sensor writes what it reports to the ledger, then defers again with the new cursor.

    :param inexchange_conn_id: ``inexchange`` connection.
    :param created_from: ISO time; documents created from then on are watched.
    :param created_to: ISO time; documents created after it are not watched (None: no end).
    :param updated_after: ISO time cursor; only changes after it are reported.
    :param end_time: ISO time at which the trigger fires a ``timeout`` event.
    :param poll_interval: seconds between two polls.
    :param page_size: documents per page (``take``).
    """

    def __init__(
        self,
        *,
        inexchange_conn_id: str,
        created_from: str,
        updated_after: str | None,
        created_to: str | None = None,
        end_time: str,
        poll_interval: float = 60.0,
        page_size: int = 100,
    ) -> None:
        super().__init__()
        self.inexchange_conn_id = inexchange_conn_id
        self.created_from = created_from
        self.created_to = created_to
        self.updated_after = updated_after
        self.end_time = end_time
        self.poll_interval = poll_interval
        self.page_size = page_size

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "inexchange_conn_id": self.inexchange_conn_id,
                "created_from": self.created_from,
                "created_to": self.created_to,
                "updated_after": self.updated_after,
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
                "page_size": self.page_size,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._next_event())

    async def _next_event(self) -> dict[str, Any]:
        """Poll until something changed, the deadline passed or a call failed; the hook is closed
        before the event is yielded (a consumer need not close the generator for it)."""
        hook = InExchangeHook(self.inexchange_conn_id)
        cursor = parse_time(self.updated_after)
        end_time = parse_time(self.end_time)
        try:
            while True:
                documents = await hook.aall_outbound(
                    page_size=self.page_size, created_from=parse_time(self.created_from),
                    created_to=parse_time(self.created_to), updated_after=cursor,
                )
                changes, new_cursor = status_changes(documents, cursor)
                if changes:
                    return {"status": "changes", "changes": changes,
                            "cursor": new_cursor.isoformat() if new_cursor else None}
                if end_time is not None and datetime.now(timezone.utc) >= end_time:
                    return {"status": "timeout", "cursor": self.updated_after}
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:
            return {"status": "error", "message": f"{type(exc).__name__}: {exc}"}
        finally:
            await hook.aclose()
