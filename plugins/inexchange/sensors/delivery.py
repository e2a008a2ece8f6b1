"""DeliveryStatusSensor: follow submitted invoices until InExchange sends or stops them."""

from __future__ import annotations

import os
from configparser import RawConfigParser
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException

from inexchange.api import LedgerState, parse_time
from inexchange.db import parse_utc_text, reporting_engine
from inexchange.hooks.inexchange import InExchangeHook
from inexchange.ledger import Ledger, RunScope
from inexchange.triggers.delivery import DeliveryStatusTrigger, status_changes

if TYPE_CHECKING:
    from airflow.sdk import Context

#: how far before the earliest submission of the run the creation window opens (clock skew)
CREATED_MARGIN = timedelta(minutes=5)


class DeliveryStatusSensor(BaseSensorOperator):
    """Wait until every invoice of the run's interval that was sent to InExchange is final.

    Deferrable unless told otherwise (see :func:`deferrable_default`): the trigger polls while no worker
    slot is held; every change it reports is written to the ledger and its history before the
    sensor defers again with the advanced cursor, so a restart loses nothing. Without deferral the
    sensor pokes in reschedule mode with the same polling and ledger writes. At ``timeout`` it
    finishes and leaves the remaining invoices ``waiting`` for the next run.

    :param reporting_conn_id: connection of the database holding the ledger.
    :param erp_conn_id: the ERP connection, which holds the ledger when ``reporting_conn_id`` is undefined.
    :param inexchange_conn_id: ``inexchange`` connection.
    :param poll_interval: seconds between polls (templated, e.g. from a Variable).
    :param page_size: documents per ``documents/outbound/list`` page.
    :param timeout: how long to follow the documents before leaving them waiting.
    :param deferrable: defer to the triggerer instead of poking; by default yes, unless
        ``[operators] default_deferrable`` is set to False.
    :param timezone: time zone of the ERP's invoice dates.
    """

    template_fields: Sequence[str] = ("reporting_conn_id", "erp_conn_id", "inexchange_conn_id", "poll_interval")

    def __init__(
        self,
        *,
        reporting_conn_id: str = "inexchange_reporting",
        erp_conn_id: str = "erp_default",
        inexchange_conn_id: str = InExchangeHook.default_conn_name,
        poll_interval: float | str = 60.0,
        page_size: int = 100,
        timeout: timedelta = timedelta(hours=6),
        deferrable: bool | None = None,
        timezone: str = "Europe/Stockholm",
        **kwargs: Any,
    ) -> None:
        if deferrable is None:
            deferrable = deferrable_default()
        kwargs.setdefault("mode", "poke" if deferrable else "reschedule")
        # the base class' own timeout only backs up ours, which ends the task successfully
        numeric = float(poll_interval) if not isinstance(poll_interval, str) else 60.0
        super().__init__(poke_interval=numeric, timeout=timeout + timedelta(seconds=2 * numeric), **kwargs)
        self.reporting_conn_id = reporting_conn_id
        self.erp_conn_id = erp_conn_id
        self.inexchange_conn_id = inexchange_conn_id
        self.poll_interval = poll_interval
        self.page_size = page_size
        self.delivery_timeout = timeout
        self.deferrable = deferrable
        self.timezone = timezone

    @cached_property
    def hook(self) -> InExchangeHook:
        """The InExchange hook, created at run time."""
        return InExchangeHook(self.inexchange_conn_id)

    def _ledger(self, context: Context) -> Ledger:
        ledger = Ledger(reporting_engine(self.reporting_conn_id, self.erp_conn_id), RunScope.from_context(context, self.timezone))
        ledger.ensure_schema()
        return ledger

    def _poll(self, ledger: Ledger) -> tuple[list[dict[str, Any]], datetime | None]:
        """The rows still waiting and the cursor, after one synchronous poll written to the ledger."""
        waiting = ledger.rows(LedgerState.WAITING)
        if not waiting:
            return waiting, None
        try:
            cursor = record_statuses(ledger, self.hook, waiting, page_size=self.page_size)
        finally:
            self.hook.close()
        return ledger.rows(LedgerState.WAITING), cursor

    def _use_rendered_interval(self) -> float:
        """Apply the rendered poll interval to the base class' poke interval."""
        self.poke_interval = float(self.poll_interval)
        return self.poke_interval

    def poke(self, context: Context) -> PokeReturnValue:
        ledger = self._ledger(context)
        waiting, _ = self._poll(ledger)
        started = context["ti"].get_first_reschedule_date(context) or datetime.now(timezone.utc)
        timed_out = datetime.now(timezone.utc) - started >= self.delivery_timeout
        done = not waiting or timed_out
        return PokeReturnValue(is_done=done, xcom_value=self._summary(ledger, timed_out) if done else None)

    def execute(self, context: Context) -> Any:
        self._use_rendered_interval()
        if not self.deferrable:
            return super().execute(context)
        ledger = self._ledger(context)
        waiting, cursor = self._poll(ledger)
        if not waiting:
            return self._summary(ledger, timed_out=False)
        end_time = datetime.now(timezone.utc) + self.delivery_timeout
        self._defer(waiting, cursor, end_time)

    def _defer(self, waiting: list[dict[str, Any]], cursor: datetime | None, end_time: datetime) -> None:
        self.log.info("%d invoices waiting for InExchange; deferring", len(waiting))
        created_from, created_to = _window(waiting)
        self.defer(
            trigger=DeliveryStatusTrigger(
                inexchange_conn_id=self.inexchange_conn_id,
                created_from=created_from.isoformat(),
                created_to=created_to.isoformat(),
                updated_after=cursor.isoformat() if cursor else None,
                end_time=end_time.isoformat(),
                poll_interval=float(self.poll_interval),
                page_size=self.page_size,
            ),
            method_name="execute_complete",
            kwargs={"end_time": end_time.isoformat()},
        )

    def execute_complete(self, context: Context, event: dict[str, Any], end_time: str | None = None) -> dict[str, Any]:
        """Write the trigger's changes to the ledger, then finish or defer again."""
        if event.get("status") == "error":
            raise AirflowException(f"polling InExchange failed: {event.get('message')}")
        ledger = self._ledger(context)
        if event.get("status") == "changes":
            moved = ledger.apply_statuses(_of_rows(event.get("changes") or [], ledger.rows(LedgerState.WAITING)))
            self.log.info("%d ledger rows changed from %d status updates", moved, len(event.get("changes") or []))
        waiting = ledger.rows(LedgerState.WAITING)
        if not waiting or event.get("status") == "timeout":
            return self._summary(ledger, timed_out=bool(waiting))
        deadline = parse_time(end_time) or datetime.now(timezone.utc) + self.delivery_timeout
        self._defer(waiting, parse_time(event.get("cursor")), deadline)
        raise AssertionError("unreachable")  # pragma: no cover - defer() raises

    def _summary(self, ledger: Ledger, timed_out: bool) -> dict[str, Any]:
        counts: dict[str, Any] = {
            state.value: len(ledger.rows(state))
            for state in (LedgerState.SENT, LedgerState.WAITING, LedgerState.STOPPED, LedgerState.FAILED)
        }
        counts["timed_out"] = timed_out
        if timed_out:
            self.log.warning("timeout reached; %d invoices stay waiting for the next run", counts["waiting"])
        return counts


def record_statuses(ledger: Ledger, hook: InExchangeHook, rows: list[dict[str, Any]], *, page_size: int = 100,
                    source: str = "status poll") -> datetime | None:
    """Poll the documents of ``rows`` once and write their status changes to the ledger.

    The synchronous twin of one :class:`DeliveryStatusTrigger` cycle: the same listing (the hook's
    paging of ``documents/outbound/list`` over the rows' creation window) and the same
    :func:`status_changes`. Returns the cursor after the changes seen.
    """
    created_from, created_to = _window(rows)
    documents = hook.all_outbound(page_size=page_size, created_from=created_from, created_to=created_to)
    changes, cursor = status_changes(documents, None)
    ledger.apply_statuses(_of_rows(changes, rows), source=source)
    return cursor


def _of_rows(changes: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes of the rows' documents: other documents in the window belong to other runs."""
    ids = {row["inexchange_document_id"] for row in rows}
    return [change for change in changes if change["id"] in ids]


def deferrable_default() -> bool:
    """Defer unless the deployment turns it off with ``[operators] default_deferrable = False``.

    Airflow's shipped default for that option is False; this sensor only holds a worker slot while
    it waits when a deployment says so explicitly (environment variable or ``airflow.cfg``).
    """
    value = os.environ.get("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
    if value is None and RawConfigParser.has_option(conf, "operators", "default_deferrable"):
        value = RawConfigParser.get(conf, "operators", "default_deferrable", raw=True)
    return value is None or value.strip().lower() in ("true", "t", "1", "yes", "on")


def _window(rows: list[dict[str, Any]]) -> tuple[datetime, datetime]:
    """The creation window of the rows' documents: their first and last submission, widened by a margin.

    Documents of other runs outside it are never listed; the margin covers clock skew.
    """
    known = [t for t in (parse_utc_text(row.get("submitted_at")) for row in rows) if t is not None]
    now = datetime.now(timezone.utc)
    first, last = (min(known), max(known)) if known else (now - timedelta(days=1), now)
    return first - CREATED_MARGIN, last + CREATED_MARGIN
