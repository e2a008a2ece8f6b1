"""DeliveryStatusTrigger: poll InExchange's outbound list until documents change status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from inexchange.api import parse_time
from inexchange.hooks.inexchange import InExchangeHook
from inexchange.tracking import MAX_EVENT_CHANGES, DeliveryEvent, EventStatus, status_changes, unreadable_of


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
    :param max_changes: the most changes one event carries (the earliest; the next trigger, deferred
        with the cursor after them, lists the rest), so that an event stays small whatever the number
        of documents that changed between two polls.
    :param first_poll_after: seconds to wait before the first listing (0: list at once). The sensor,
        which has just polled or applied an event, waits: a trigger that fires within moments of its
        deferral can reach the scheduler before the executor has reported the deferring task's
        process finished, and Airflow then takes the task for changed externally and fails the try.
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
        max_changes: int = MAX_EVENT_CHANGES,
        first_poll_after: float = 0.0,
    ) -> None:
        super().__init__()
        self.inexchange_conn_id = inexchange_conn_id
        self.created_from = created_from
        self.created_to = created_to
        self.updated_after = updated_after
        self.end_time = end_time
        self.poll_interval = poll_interval
        self.page_size = page_size
        self.max_changes = max_changes
        self.first_poll_after = first_poll_after

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
                "max_changes": self.max_changes,
                "first_poll_after": self.first_poll_after,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._next_event())

    async def _next_event(self) -> DeliveryEvent:
        """Poll until something changed, the deadline passed or a call failed; the hook is closed
        before the event is yielded (a consumer need not close the generator for it)."""
        hook = InExchangeHook(self.inexchange_conn_id)
        cursor = parse_time(self.updated_after)
        end_time = parse_time(self.end_time)
        try:
            if self.first_poll_after > 0:
                await asyncio.sleep(self.first_poll_after)
            while True:
                documents = await hook.aall_outbound(
                    page_size=self.page_size,
                    created_from=parse_time(self.created_from),
                    created_to=parse_time(self.created_to),
                    updated_after=cursor,
                )
                changes, new_cursor = status_changes(documents, cursor, limit=self.max_changes)
                if changes:
                    return {
                        "status": EventStatus.CHANGES,
                        "changes": changes,
                        **unreadable_of(hook),
                        "cursor": new_cursor.isoformat() if new_cursor else None,
                    }
                now = datetime.now(UTC)
                if end_time is not None and now >= end_time:
                    return {"status": EventStatus.TIMEOUT, "cursor": self.updated_after, **unreadable_of(hook)}
                left = (end_time - now).total_seconds() if end_time is not None else self.poll_interval
                await asyncio.sleep(max(0.0, min(self.poll_interval, left)))
        except Exception as exc:
            return {"status": EventStatus.ERROR, "message": f"{type(exc).__name__}: {exc}"}
        finally:
            await hook.aclose()
