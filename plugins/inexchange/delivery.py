"""Following submitted invoices until InExchange sends or stops them: the delivery sensor's work.

The domain's side of :class:`~inexchange.sensors.delivery.DeliveryStatusSensor`, which imports it when
its task runs: the ledger, the synchronous poll, the next deferral's arguments and the handling of
the trigger's events; none of it is imported when a DAG file declaring the sensor is parsed. It
knows no sensor, trigger or task context: it takes the sensor's rendered arguments as
:class:`DeliverySettings` and the run as a :class:`~inexchange.ledger.RunScope`, and returns plain
values (a summary, or the :class:`Deferral` the sensor defers with).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from inexchange.api import parse_time
from inexchange.db import reporting_engine
from inexchange.exceptions import DeliveryPollingFailed
from inexchange.ledger import Ledger, RunScope, Watch
from inexchange.states import LedgerState
from inexchange.tracking import (
    MAX_EVENT_CHANGES,
    MAX_UNREADABLE_IDS,
    DeliveryEvent,
    EventStatus,
    Unreadable,
    record_statuses,
    submission_window,
    unreadable_of,
)
from inexchange.values import TaskLog, TaskSettings

if TYPE_CHECKING:
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


@dataclass(frozen=True)
class Deferral:
    """What the sensor defers with: the arguments of its trigger
    (:class:`~inexchange.triggers.delivery.DeliveryStatusTrigger`) and those its ``execute_complete``
    is resumed with."""

    #: the trigger's keyword arguments
    trigger: dict[str, Any]
    #: the keyword arguments ``execute_complete`` gets besides the event
    resume: dict[str, Any]


@dataclass(eq=False)
class DeliveryRun:
    """One execution, poke or resumption of a delivery sensor
    (:class:`~inexchange.sensors.delivery.DeliveryStatusSensor`).

    :param settings: the sensor's rendered arguments.
    :param scope: the DAG run the task belongs to.
    :param get_hook: returns the task's InExchange hook.
    :param log: the task's logger.
    """

    settings: DeliverySettings
    scope: RunScope
    get_hook: Callable[[], InExchangeHook]
    log: TaskLog
    #: ids of listed documents that could not be read (skipped), over the try's deferrals
    unreadable: list[str] = field(default_factory=list, init=False)

    def _ledger(self) -> Ledger:
        ledger = Ledger(reporting_engine(self.settings.reporting_conn_id), self.scope)
        ledger.ensure_schema()
        return ledger

    def _poll(self, ledger: Ledger) -> tuple[Watch, datetime | None]:
        """The rows still waiting (counted) and the cursor, after one synchronous poll written to the ledger.

        The ledger's statistics are refreshed first when they lag behind its changes: the first poll
        comes right after the submit stage gave the day's rows their document ids, which the poll
        reads them by.
        """
        watch = ledger.watch()
        if not watch.waiting:
            return watch, None
        ledger.refresh_statistics()
        hook = self.get_hook()
        try:
            cursor = record_statuses(ledger, hook, watch, page_size=self.settings.page_size)
        finally:
            hook.close()
        self._note_unreadable(unreadable_of(hook))
        return ledger.watch(), cursor

    def _note_unreadable(self, found: Unreadable) -> None:
        """Add the documents a listing skipped as unreadable to the try's tally (kept across deferrals)."""
        ids = found.get("unreadable") or []
        if not ids:
            return
        self.unreadable = sorted({*self.unreadable, *ids})
        self.log.warning(
            "%d documents InExchange listed could not be read and were skipped: %s",
            int(found.get("unreadable_count") or len(ids)),
            ", ".join(ids),
        )

    def poke(self, first_poke: datetime | None) -> dict[str, Any] | None:
        """Poll once; the summary when nothing waits any more or ``delivery_timeout`` has passed since
        the first poke, else None (poke again).

        :param first_poke: when the try's first poke was (its first reschedule); None for the first poke itself.
        """
        ledger = self._ledger()
        watch, _ = self._poll(ledger)
        started = first_poke or datetime.now(UTC)
        timed_out = datetime.now(UTC) - started >= self.settings.delivery_timeout
        return self._summary(ledger, timed_out) if not watch.waiting or timed_out else None

    def start(self) -> dict[str, Any] | Deferral:
        """Poll once; the summary when nothing waits, else the deferral until ``delivery_timeout`` from now."""
        ledger = self._ledger()
        watch, cursor = self._poll(ledger)
        if not watch.waiting:
            return self._summary(ledger, timed_out=False)
        return self._deferral(watch, cursor, datetime.now(UTC) + self.settings.delivery_timeout)

    def resume(
        self, event: DeliveryEvent, end_time: str | None, unreadable: list[str] | None = None
    ) -> dict[str, Any] | Deferral:
        """Write the trigger's changes to the ledger; the summary when done, else the next deferral with
        the same deadline.

        :param event: the trigger's event.
        :param end_time: the deadline of the try's deferrals (ISO time).
        :param unreadable: ids of unreadable documents skipped by the try's earlier listings.
        :raises DeliveryPollingFailed: the event says the trigger's polling failed.
        """
        if event.get("status") == EventStatus.ERROR:
            raise DeliveryPollingFailed(event.get("message"))
        self.unreadable = list(unreadable or [])
        self._note_unreadable(event)
        ledger = self._ledger()
        if event.get("status") == EventStatus.CHANGES:
            changes = event.get("changes") or []
            # other documents in the window belong to other runs
            ours = ledger.watched_documents(change["id"] for change in changes)
            moved = ledger.apply_statuses([change for change in changes if change["id"] in ours])
            self.log.info("%d ledger rows changed from %d status updates", moved, len(changes))
        watch = ledger.watch()
        if not watch.waiting or event.get("status") == EventStatus.TIMEOUT:
            return self._summary(ledger, timed_out=bool(watch.waiting))
        deadline = parse_time(end_time) or datetime.now(UTC) + self.settings.delivery_timeout
        # an event cut at its limit leaves changes behind: list them soon, not a whole interval later
        more = len(event.get("changes") or []) >= MAX_EVENT_CHANGES
        return self._deferral(
            watch,
            parse_time(event.get("cursor")),
            deadline,
            first_poll_after=min(MORE_CHANGES_AFTER, self.settings.poll_interval) if more else None,
        )

    def _deferral(
        self,
        watch: Watch,
        cursor: datetime | None,
        end_time: datetime,
        first_poll_after: float | None = None,
    ) -> Deferral:
        """The deferral to the trigger; its first listing comes a poll interval after this one (or
        ``first_poll_after``)."""
        self.log.info("%d invoices waiting for InExchange; deferring until %s", watch.waiting, end_time.isoformat())
        created_from, created_to = submission_window(watch.first_submitted, watch.last_submitted)
        settings = self.settings
        return Deferral(
            trigger={
                "inexchange_conn_id": settings.inexchange_conn_id,
                "created_from": created_from.isoformat(),
                "created_to": created_to.isoformat(),
                "updated_after": cursor.isoformat() if cursor else None,
                "end_time": end_time.isoformat(),
                "poll_interval": settings.poll_interval,
                "page_size": settings.page_size,
                "first_poll_after": settings.poll_interval if first_poll_after is None else first_poll_after,
            },
            resume={
                "end_time": end_time.isoformat(),
                **({"unreadable": self.unreadable[:MAX_UNREADABLE_IDS]} if self.unreadable else {}),
            },
        )

    def _summary(self, ledger: Ledger, timed_out: bool) -> dict[str, Any]:
        counts: dict[str, Any] = dict(
            ledger.state_counts(LedgerState.SENT, LedgerState.WAITING, LedgerState.STOPPED, LedgerState.FAILED)
        )
        counts["timed_out"] = timed_out
        if self.unreadable:  # listed documents that could not be read: each logged, skipped, counted here
            counts["unreadable_documents"] = len(self.unreadable)
            counts["unreadable_ids"] = self.unreadable[:MAX_UNREADABLE_IDS]
        if timed_out:
            self.log.warning("timeout reached; %d invoices stay waiting for the next run", counts["waiting"])
        return counts
