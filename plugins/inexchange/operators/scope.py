"""The run a task belongs to, read from its Airflow task context: the operators' and the sensor's side of
:class:`~inexchange.ledger.RunScope`, which the domain takes as a plain value.

Imported when a task runs (never when a DAG file is parsed): it loads the ledger.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from inexchange.ledger import RunScope
from inexchange.times import TIMEZONE

log = logging.getLogger(__name__)

#: DAG params a manual run may set (read by :func:`run_scope`)
INVOICE_NUMBERS_PARAM = "invoice_numbers"
RETRY_REJECTED_PARAM = "retry_rejected"
INVOICE_DATE_PARAM = "invoice_date"


def run_scope(context: Any, timezone: str = TIMEZONE) -> RunScope:
    """The scope of the running task's DAG run.

    Invoice dates are compared with the interval's dates in the ERP's time zone. The run's
    params ``invoice_numbers``, ``retry_rejected`` and ``invoice_date`` (see the DAG) are read
    when present. ``invoice_date`` (``YYYY-MM-DD``) makes the run own that invoice day whatever its
    logical date: the interval of that day, at the scheduled interval's time of day.

    :param context: the Airflow task context.
    :param timezone: time zone of the ERP's invoice dates.
    """
    import pendulum

    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        # a run triggered without a logical date (`airflow dags trigger`, the UI's Trigger) has none
        start, end = unscheduled_interval(context)
    tz = pendulum.timezone(timezone)
    run_type = getattr(context.get("dag_run"), "run_type", None) or "scheduled"
    params = context.get("params") or {}
    day = invoice_day(params.get(INVOICE_DATE_PARAM))
    if day is not None:
        local = pendulum.instance(start).in_timezone(tz)
        start = pendulum.datetime(day.year, day.month, day.day, local.hour, local.minute, local.second, tz=tz)
        end = start.add(days=1)
    scope = RunScope(
        dag_run_id=context["run_id"],
        start=start,
        end=end,
        start_date=pendulum.instance(start).in_timezone(tz).date(),
        end_date=pendulum.instance(end).in_timezone(tz).date(),
        run_type=str(getattr(run_type, "value", run_type)),
        try_number=int(getattr(context.get("ti"), "try_number", None) or 1),
        invoice_numbers=_invoice_numbers(params.get(INVOICE_NUMBERS_PARAM)),
        retry_rejected=bool(params.get(RETRY_REJECTED_PARAM, True)),
        listed=bool(params.get(INVOICE_NUMBERS_PARAM)),
        timezone=timezone,
    )
    log.info("this run: %s (%s)", scope.describe(), timezone)
    return scope


def invoice_day(value: Any) -> date | None:
    """The ``invoice_date`` param as a date (``YYYY-MM-DD``), or None when it is empty.

    :raises ValueError: naming the param and the expected form, for any other text.
    """
    if value is None or not str(value).strip():
        return None
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"param {INVOICE_DATE_PARAM} must be a date such as 2026-11-20, not {value!r}") from None


def unscheduled_interval(context: Any) -> tuple[datetime, datetime]:
    """The data interval of a run Airflow gave none (triggered without a logical date): the last whole
    interval of the DAG's cron schedule before the run was due, the one a scheduled run then would own.

    :raises ValueError: when the DAG's schedule is no cron data-interval timetable.
    """
    import pendulum
    from airflow.sdk import CronDataIntervalTimetable as DeclaredCronTimetable

    timetable = getattr(context.get("dag"), "timetable", None)
    if not isinstance(timetable, DeclaredCronTimetable):
        raise ValueError(
            "this run has no data interval and the DAG's schedule gives none; give the run the param "
            f"{INVOICE_DATE_PARAM} (YYYY-MM-DD) or {INVOICE_NUMBERS_PARAM}"
        )
    from airflow.timetables.interval import CronDataIntervalTimetable  # the scheduler's own interval arithmetic

    run_after = getattr(context.get("dag_run"), "run_after", None) or pendulum.now("UTC")
    interval = CronDataIntervalTimetable(timetable.expression, timetable.timezone).infer_manual_data_interval(
        run_after=pendulum.instance(run_after)
    )
    return interval.start, interval.end


def _invoice_numbers(value: Any) -> tuple[str, ...]:
    """The listed invoice numbers, trimmed, without blanks and repeats; a string may separate them by commas."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
