"""DeliveryStatusSensor: follow submitted invoices until InExchange sends or stops them.

This module is what a DAG file imports: the sensor's arguments, template fields and defer target.
What it does when it runs (:mod:`inexchange.delivery`, with the hook and the ledger, and the trigger)
is imported by :meth:`~DeliveryStatusSensor.execute`, :meth:`~DeliveryStatusSensor.poke` and
:meth:`~DeliveryStatusSensor.execute_complete`, so parsing a DAG does not load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from inexchange.times import TIMEZONE
from inexchange.values import as_delivery_timeout, as_flag, keep_arguments

if TYPE_CHECKING:
    from airflow.sdk import Context

    from inexchange.delivery import Deferral, DeliveryRun
    from inexchange.hooks.inexchange import InExchangeHook
    from inexchange.tracking import DeliveryEvent

#: ``InExchangeHook.default_conn_name``, written out so that declaring the sensor does not import the hook
DEFAULT_INEXCHANGE_CONN_ID = "inexchange_default"
DEFAULT_DELIVERY_TIMEOUT = timedelta(hours=6)
#: how many poll intervals Airflow's own sensor timeout lies beyond the delivery timeout
BACKUP_POLLS = 2


class DeliveryStatusSensor(BaseSensorOperator):
    """Wait until every invoice of the run's interval that was sent to InExchange is final (and every
    invoice of an earlier day that this run sent again or reconciled).

    Deferrable unless told otherwise by its own ``deferrable`` argument (Airflow's
    ``[operators] default_deferrable``, False in a generated ``airflow.cfg``, is not read): the
    trigger polls while no worker slot is held; every change it reports is written to the ledger and
    its history before the sensor defers again with the advanced cursor, so a restart loses nothing.
    Without deferral the sensor pokes in reschedule mode with the same polling and ledger writes. After
    ``delivery_timeout`` it finishes successfully and leaves the remaining invoices ``waiting`` for
    the next run. Airflow's own sensor ``timeout``, which fails the task, is set from it: two poll
    intervals longer, as a back-up only.

    :param reporting_conn_id: connection of the database holding the ledger (it must be defined).
    :param erp_conn_id: the ERP connection; the sensor does not read the ERP, the argument lets a DAG
        give every dispatch task the same connection arguments.
    :param inexchange_conn_id: ``inexchange`` connection.
    :param poll_interval: seconds between polls (templated, e.g. from a Variable). On a real
        deployment keep it at 5 s or more: the trigger's first listing waits one interval, and a
        resume that reaches the scheduler before the deferring process is reported finished is
        failed by Airflow as a task changed externally (then retried).
    :param page_size: documents per ``documents/outbound/list`` page.
    :param delivery_timeout: how long to follow the documents before leaving them waiting, counted
        from the first poll of the task's try: a timedelta, or seconds as a number or as text
        (templated, e.g. ``"{{ params.delivery_timeout_minutes * 60 }}"``); 6 hours by default.
    :param timeout: the earlier name of ``delivery_timeout`` (give one of the two).
    :param deferrable: defer to the triggerer instead of poking: True (the default; None means the
        same) or False, or text decided when the task runs (templated, e.g. ``"{{ params.deferrable }}"``).
        Without deferral the sensor pokes in ``reschedule`` mode unless ``mode`` is given.
    :param timezone: time zone of the ERP's invoice dates.
    """

    template_fields: Sequence[str] = (
        "reporting_conn_id",
        "erp_conn_id",
        "inexchange_conn_id",
        "poll_interval",
        "delivery_timeout",
        "deferrable",
    )

    # every argument is kept as an attribute of its name (the run's settings are read from them); these the
    # sensor reads itself, the templated ones as given (or as rendered text) until execute converts them
    inexchange_conn_id: str
    poll_interval: float | str
    delivery_timeout: timedelta | float | str
    deferrable: bool | str

    def __init__(
        self,
        *,
        reporting_conn_id: str = "inexchange_reporting",
        erp_conn_id: str = "erp_default",
        inexchange_conn_id: str = DEFAULT_INEXCHANGE_CONN_ID,
        poll_interval: float | str = 60.0,
        page_size: int = 100,
        delivery_timeout: timedelta | float | str | None = None,
        timeout: timedelta | float | None = None,
        deferrable: bool | str | None = True,
        timezone: str = TIMEZONE,
        **kwargs: Any,
    ) -> None:
        if delivery_timeout is not None and timeout is not None:
            raise ValueError("give delivery_timeout or its earlier name timeout, not both")
        if delivery_timeout is None:
            delivery_timeout = DEFAULT_DELIVERY_TIMEOUT if timeout is None else timeout
        if not isinstance(delivery_timeout, str):
            as_delivery_timeout(delivery_timeout)  # refuse a bad value now; text is checked once rendered
        if deferrable is None:
            deferrable = True
        elif not isinstance(deferrable, str):
            deferrable = as_flag(deferrable, "deferrable")
        mode_by_deferral = "mode" not in kwargs
        kwargs.setdefault("mode", "reschedule" if deferrable is False else "poke")
        # until the templates are rendered (execute), a template stands for the default it replaces
        interval = _number_or(poll_interval, 60.0)
        span = _number_or(delivery_timeout, DEFAULT_DELIVERY_TIMEOUT.total_seconds())
        super().__init__(poke_interval=interval, timeout=backup_timeout(span, interval), **kwargs)
        keep_arguments(
            self,
            {
                "reporting_conn_id": reporting_conn_id,
                "erp_conn_id": erp_conn_id,
                "inexchange_conn_id": inexchange_conn_id,
                "poll_interval": poll_interval,
                "page_size": page_size,
                "delivery_timeout": delivery_timeout,
                "deferrable": deferrable,
                "timezone": timezone,
            },
        )  # the arguments as given (deferrable and delivery_timeout as resolved above)
        #: whether the mode was left to the sensor, which then reschedules whenever it does not defer
        self._mode_by_deferral = mode_by_deferral

    @cached_property
    def hook(self) -> InExchangeHook:
        """The InExchange hook, created at run time."""
        from inexchange.hooks.inexchange import InExchangeHook

        return InExchangeHook(self.inexchange_conn_id)

    def _use_rendered_settings(self) -> None:
        """Apply the rendered poll interval and delivery timeout to the base class' poke interval and timeout,
        and the rendered ``deferrable`` to the mode."""
        self.poke_interval = float(self.poll_interval)
        self.timeout = backup_timeout(as_delivery_timeout(self.delivery_timeout).total_seconds(), self.poke_interval)
        self.deferrable = as_flag(self.deferrable, "deferrable")
        if self._mode_by_deferral:
            self.mode = "poke" if self.deferrable else "reschedule"

    def _run(self, context: Context) -> DeliveryRun:
        from inexchange.delivery import DeliveryRun, DeliverySettings
        from inexchange.operators.scope import run_scope

        settings = DeliverySettings.of(
            self, poll_interval=float(self.poll_interval), delivery_timeout=as_delivery_timeout(self.delivery_timeout)
        )
        return DeliveryRun(settings, run_scope(context, settings.timezone), get_hook=lambda: self.hook, log=self.log)

    def poke(self, context: Context) -> PokeReturnValue:
        summary = self._run(context).poke(context["ti"].get_first_reschedule_date(context))
        return PokeReturnValue(is_done=summary is not None, xcom_value=summary)

    def execute(self, context: Context) -> Any:
        self._use_rendered_settings()
        if not self.deferrable:
            return super().execute(context)
        return self._finish_or_defer(self._run(context).start())

    def execute_complete(
        self, context: Context, event: DeliveryEvent, end_time: str | None = None, unreadable: list[str] | None = None
    ) -> dict[str, Any]:
        """Write the trigger's changes to the ledger, then finish or defer again (until ``end_time``).

        :param unreadable: ids of listed documents that could not be read, from the try's earlier deferrals.
        """
        return self._finish_or_defer(self._run(context).resume(event, end_time, unreadable))

    def _finish_or_defer(self, outcome: dict[str, Any] | Deferral) -> dict[str, Any]:
        """The run's summary, or the deferral to :class:`~inexchange.triggers.delivery.DeliveryStatusTrigger`
        it asks for (``defer`` raises, so nothing returns then)."""
        from inexchange.delivery import Deferral
        from inexchange.triggers.delivery import DeliveryStatusTrigger

        if isinstance(outcome, Deferral):
            self.defer(
                trigger=DeliveryStatusTrigger(**outcome.trigger), method_name="execute_complete", kwargs=outcome.resume
            )
        return outcome


def backup_timeout(delivery_seconds: float, poll_seconds: float) -> float:
    """Airflow's own sensor timeout in seconds: ``BACKUP_POLLS`` poll intervals beyond the delivery timeout.

    :param delivery_seconds: the delivery timeout.
    :param poll_seconds: the poll interval.
    """
    return delivery_seconds + BACKUP_POLLS * poll_seconds


def _number_or(value: timedelta | float | str, default: float) -> float:
    """Seconds of a timedelta or number; ``default`` for text, which is a template until rendered."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return default if isinstance(value, str) else float(value)
