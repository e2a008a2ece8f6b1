"""What :class:`~inexchange.sensors.delivery.DeliveryStatusSensor` does when it runs, loaded only then.

The ledger, the synchronous poll, the deferral to :class:`~inexchange.triggers.delivery.DeliveryStatusTrigger`
and the handling of its events: none of it is imported when a DAG file declaring the sensor is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowException

from inexchange.api import LedgerState, parse_time
from inexchange.db import reporting_engine
from inexchange.ledger import Ledger, RunScope
from inexchange.tracking import MAX_UNREADABLE_IDS, creation_window, of_rows, record_statuses, unreadable_of
from inexchange.triggers.delivery import MAX_EVENT_CHANGES, DeliveryStatusTrigger
from inexchange.values import TaskSettings

if TYPE_CHECKING:
    from logging import Logger

    from airflow.sdk import Context

    from inexchange.hooks.inexchange import InExchangeHook

#: seconds before the next trigger lists the changes an event could not carry
MORE_CHANGES_AFTER = 5.0


@dataclass(frozen=True)
class DeliverySettings(TaskSettings):
    """The rendered arguments of a delivery sensor a run works with; see
    :class:`~inexchange.sensors.delivery.DeliveryStatusSensor` for each."""

    page_size: int
    #: seconds between two polls
    poll_interval: float
    #: how long the documents are followed, from the try's first poke (poke path) or first deferral
    delivery_timeout: timedelta


class DeliveryRun:
    """One execution, poke or resumption of a delivery sensor
    (:class:`~inexchange.sensors.delivery.DeliveryStatusSensor`).

    :param settings: the sensor's rendered arguments.
    :param context: the task's context.
    :param hook: returns the task's InExchange hook.
    :param defer: the sensor's ``defer`` (hands the task to a trigger).
    :param log: the task's logger.
    """

    def __init__(self, settings: DeliverySettings, context: Context, hook: Callable[[], InExchangeHook],
                 defer: Callable[..., Any], log: Logger) -> None:
        self.settings = settings
        self.context = context
        self._hook = hook
        self._defer_task = defer
        self.log = log
        #: ids of listed documents that could not be read (skipped), over the try's deferrals
        self.unreadable: list[str] = []

    def _ledger(self) -> Ledger:
        ledger = Ledger(reporting_engine(self.settings.reporting_conn_id),
                        RunScope.from_context(self.context, self.settings.timezone))
        ledger.ensure_schema()
        return ledger

    def _poll(self, ledger: Ledger) -> tuple[list[dict[str, Any]], datetime | None]:
        """The rows still waiting and the cursor, after one synchronous poll written to the ledger."""
        waiting = ledger.watched()
        if not waiting:
            return waiting, None
        hook = self._hook()
        try:
            cursor = record_statuses(ledger, hook, waiting, page_size=self.settings.page_size)
        finally:
            hook.close()
        self._note_unreadable(unreadable_of(hook))
        return ledger.watched(), cursor

    def _note_unreadable(self, found: dict[str, Any]) -> None:
        """Add the documents a listing skipped as unreadable to the try's tally (kept across deferrals)."""
        ids = found.get("unreadable") or []
        if not ids:
            return
        self.unreadable = sorted({*self.unreadable, *ids})
        self.log.warning("%d documents InExchange listed could not be read and were skipped: %s",
                         int(found.get("unreadable_count") or len(ids)), ", ".join(ids))

    def poke(self) -> PokeReturnValue:
        """Poll once; done when nothing waits any more or ``delivery_timeout`` has passed since the first poke."""
        ledger = self._ledger()
        waiting, _ = self._poll(ledger)
        started = self.context["ti"].get_first_reschedule_date(self.context) or datetime.now(timezone.utc)
        timed_out = datetime.now(timezone.utc) - started >= self.settings.delivery_timeout
        done = not waiting or timed_out
        return PokeReturnValue(is_done=done, xcom_value=self._summary(ledger, timed_out) if done else None)

    def execute(self) -> dict[str, Any]:
        """Poll once, then defer until ``delivery_timeout`` from now (or return when nothing waits)."""
        ledger = self._ledger()
        waiting, cursor = self._poll(ledger)
        if not waiting:
            return self._summary(ledger, timed_out=False)
        self._defer(waiting, cursor, datetime.now(timezone.utc) + self.settings.delivery_timeout)
        raise AssertionError("unreachable")  # pragma: no cover - defer() raises

    def resume(self, event: dict[str, Any], end_time: str | None, unreadable: list[str] | None = None) -> dict[str, Any]:
        """Write the trigger's changes to the ledger, then finish or defer again with the same deadline.

        :param unreadable: ids of unreadable documents skipped by the try's earlier listings.
        """
        if event.get("status") == "error":
            raise AirflowException(f"polling InExchange failed: {event.get('message')}")
        self.unreadable = list(unreadable or [])
        self._note_unreadable(event)
        ledger = self._ledger()
        if event.get("status") == "changes":
            moved = ledger.apply_statuses(of_rows(event.get("changes") or [], ledger.watched()))
            self.log.info("%d ledger rows changed from %d status updates", moved, len(event.get("changes") or []))
        waiting = ledger.watched()
        if not waiting or event.get("status") == "timeout":
            return self._summary(ledger, timed_out=bool(waiting))
        deadline = parse_time(end_time) or datetime.now(timezone.utc) + self.settings.delivery_timeout
        # an event cut at its limit leaves changes behind: list them soon, not a whole interval later
        more = len(event.get("changes") or []) >= MAX_EVENT_CHANGES
        self._defer(waiting, parse_time(event.get("cursor")), deadline,
                    first_poll_after=min(MORE_CHANGES_AFTER, self.settings.poll_interval) if more else None)
        raise AssertionError("unreachable")  # pragma: no cover - defer() raises

    def _defer(self, waiting: list[dict[str, Any]], cursor: datetime | None, end_time: datetime,
               first_poll_after: float | None = None) -> None:
        """Defer to the trigger; its first listing comes a poll interval after this one (or ``first_poll_after``)."""
        self.log.info("%d invoices waiting for InExchange; deferring until %s", len(waiting), end_time.isoformat())
        created_from, created_to = creation_window(waiting)
        settings = self.settings
        self._defer_task(
            trigger=DeliveryStatusTrigger(
                inexchange_conn_id=settings.inexchange_conn_id,
                created_from=created_from.isoformat(),
                created_to=created_to.isoformat(),
                updated_after=cursor.isoformat() if cursor else None,
                end_time=end_time.isoformat(),
                poll_interval=settings.poll_interval,
                page_size=settings.page_size,
                first_poll_after=settings.poll_interval if first_poll_after is None else first_poll_after,
            ),
            method_name="execute_complete",
            kwargs={"end_time": end_time.isoformat(),
                    **({"unreadable": self.unreadable[:MAX_UNREADABLE_IDS]} if self.unreadable else {})},
        )

    def _summary(self, ledger: Ledger, timed_out: bool) -> dict[str, Any]:
        counts: dict[str, Any] = {
            state.value: len(ledger.rows(state))
            for state in (LedgerState.SENT, LedgerState.WAITING, LedgerState.STOPPED, LedgerState.FAILED)
        }
        counts["timed_out"] = timed_out
        if self.unreadable:  # listed documents that could not be read: each logged, skipped, counted here
            counts["unreadable_documents"] = len(self.unreadable)
            counts["unreadable_ids"] = self.unreadable[:MAX_UNREADABLE_IDS]
        if timed_out:
            self.log.warning("timeout reached; %d invoices stay waiting for the next run", counts["waiting"])
        return counts
