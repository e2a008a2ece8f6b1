"""DeliveryStatusSensor: follow submitted invoices until InExchange sends or stops them.

This module is what a DAG file imports: the sensor's arguments, template fields and defer target.
What it does when it runs (:mod:`inexchange.sensors.delivery_run`, with the hook, the ledger and the
trigger) is imported by :meth:`~DeliveryStatusSensor.execute`, :meth:`~DeliveryStatusSensor.poke`
and :meth:`~DeliveryStatusSensor.execute_complete`, so parsing a DAG does not load it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from configparser import RawConfigParser
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, conf

if TYPE_CHECKING:
    from airflow.sdk import Context, PokeReturnValue

    from inexchange.hooks.inexchange import InExchangeHook
    from inexchange.sensors.delivery_run import DeliveryRun

#: ``InExchangeHook.default_conn_name``, written out so that declaring the sensor does not import the hook
DEFAULT_INEXCHANGE_CONN_ID = "inexchange_default"
#: run-time helpers of :mod:`inexchange.sensors.delivery_run` still importable from here (the pipeline uses one)
_RUN_TIME_NAMES = frozenset({"record_statuses"})


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
        inexchange_conn_id: str = DEFAULT_INEXCHANGE_CONN_ID,
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
        from inexchange.hooks.inexchange import InExchangeHook

        return InExchangeHook(self.inexchange_conn_id)

    def _use_rendered_interval(self) -> float:
        """Apply the rendered poll interval to the base class' poke interval."""
        self.poke_interval = float(self.poll_interval)
        return self.poke_interval

    def _run(self, context: Context) -> DeliveryRun:
        from inexchange.sensors.delivery_run import DeliveryRun

        return DeliveryRun(self, context)

    def poke(self, context: Context) -> PokeReturnValue:
        return self._run(context).poke()

    def execute(self, context: Context) -> Any:
        self._use_rendered_interval()
        if not self.deferrable:
            return super().execute(context)
        return self._run(context).execute()

    def execute_complete(self, context: Context, event: dict[str, Any], end_time: str | None = None) -> dict[str, Any]:
        """Write the trigger's changes to the ledger, then finish or defer again (until ``end_time``)."""
        return self._run(context).resume(event, end_time)


def deferrable_default() -> bool:
    """Defer unless the deployment turns it off with ``[operators] default_deferrable = False``.

    Airflow's shipped default for that option is False; this sensor only holds a worker slot while
    it waits when a deployment says so explicitly (environment variable or ``airflow.cfg``).
    """
    value = os.environ.get("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
    if value is None and RawConfigParser.has_option(conf, "operators", "default_deferrable"):
        value = RawConfigParser.get(conf, "operators", "default_deferrable", raw=True)
    return value is None or value.strip().lower() in ("true", "t", "1", "yes", "on")


def __getattr__(name: str) -> Any:
    """The run-time helpers of :mod:`inexchange.sensors.delivery_run`, loaded on first use."""
    if name in _RUN_TIME_NAMES:
        from inexchange.sensors import delivery_run

        return getattr(delivery_run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
