"""The dispatch DAG's ledger stages as operators: recheck, extract, validate, plan the batches, report.

Each calls its function of :mod:`inexchange.pipeline` (imported when the task runs) and returns the
function's summary to XCom, with one XCom per key as ``@task`` gives a function returning a dict.
Declaring them costs no more than any operator; ``@task`` would import Airflow's whole Python
operator module (virtualenv and requirement parsing included) at every parse of the DAG file, about
half of what the file costs to parse (see bench/bench_parse.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, TaskInstanceState

from inexchange.times import TIMEZONE
from inexchange.values import LedgerConnections, as_flag

if TYPE_CHECKING:
    from airflow.sdk import Context

    from inexchange.ledger import RunScope


class _LedgerStageOperator(BaseOperator):
    """A stage that works through the ledger, in the reporting database.

    :param erp_conn_id: connection of the ERP database (only read).
    :param reporting_conn_id: connection of the database holding the ledger and the report (it must be defined).
    :param timezone: time zone of the ERP's invoice dates.
    """

    template_fields: Sequence[str] = ("erp_conn_id", "reporting_conn_id")
    ui_color = "#eef5fb"
    #: the stage's result is a dict: push each key as an XCom too, as ``@task`` does for a dict
    returns_dict = True

    def __init__(
        self,
        *,
        erp_conn_id: str = "erp_default",
        reporting_conn_id: str = "inexchange_reporting",
        timezone: str = TIMEZONE,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", self.returns_dict)
        super().__init__(**kwargs)
        self.erp_conn_id = erp_conn_id
        self.reporting_conn_id = reporting_conn_id
        self.timezone = timezone

    def _connections(self) -> LedgerConnections:
        return {"erp_conn_id": self.erp_conn_id, "reporting_conn_id": self.reporting_conn_id}

    def _scope(self, context: Context) -> RunScope:
        """The run's scope: its interval (or invoice day, or listed invoices) in the ERP's time zone."""
        from inexchange.operators.scope import run_scope

        return run_scope(context, self.timezone)


class PreflightOperator(_LedgerStageOperator):
    """Check the run's configuration before any invoice is touched (:func:`inexchange.preflight.preflight`).

    Every problem (seller Variable, ERP, reporting database, API key, the submit tasks' pool) is
    named at once, one line each, and the task fails without retries: a retry finds the same
    configuration. An outage (the API unreachable, a crashed worker) is retried like in any task.

    :param inexchange_conn_id: ``inexchange`` connection.
    :param api_pool: the pool the submit tasks take slots of, if any; it is read from Airflow's REST
        API through ``airflow_api_conn_id`` (a task cannot read pools otherwise).
    :param airflow_api_conn_id: ``http`` connection to Airflow's REST API (the api-server's URL, and a
        user who may read pools); needed only with ``api_pool``.
    """

    template_fields: Sequence[str] = (
        *_LedgerStageOperator.template_fields,
        "inexchange_conn_id",
        "api_pool",
        "airflow_api_conn_id",
    )
    returns_dict = False

    def __init__(
        self,
        *,
        inexchange_conn_id: str = "inexchange_default",
        api_pool: str | None = None,
        airflow_api_conn_id: str = "airflow_api",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inexchange_conn_id = inexchange_conn_id
        self.api_pool = api_pool
        self.airflow_api_conn_id = airflow_api_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from functools import partial

        from airflow.sdk.exceptions import AirflowFailException

        from inexchange.operators.airflow_reads import airflow_api_connection, read_seller_variable
        from inexchange.preflight import PreflightFailed, preflight

        pool = self.api_pool or None
        try:
            return preflight(
                erp_conn_id=self.erp_conn_id,
                reporting_conn_id=self.reporting_conn_id,
                inexchange_conn_id=self.inexchange_conn_id,
                read_seller=read_seller_variable,
                pool=pool,
                read_api_connection=partial(airflow_api_connection, self.airflow_api_conn_id, pool) if pool else None,
            )
        except PreflightFailed as exc:  # logged as one block by preflight
            raise AirflowFailException(str(exc)) from None


class RecheckWaitingOperator(_LedgerStageOperator):
    """Look up once the invoices of earlier intervals still ``waiting`` (:func:`inexchange.pipeline.recheck_waiting`).

    :param inexchange_conn_id: ``inexchange`` connection.
    """

    template_fields: Sequence[str] = (*_LedgerStageOperator.template_fields, "inexchange_conn_id")

    def __init__(self, *, inexchange_conn_id: str = "inexchange_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inexchange_conn_id = inexchange_conn_id

    def execute(self, context: Context) -> dict[str, int]:
        from inexchange import pipeline

        return pipeline.recheck_waiting(
            self._scope(context), reporting_conn_id=self.reporting_conn_id, inexchange_conn_id=self.inexchange_conn_id
        )


class ExtractInvoicesOperator(_LedgerStageOperator):
    """Put the interval's posted InExchange invoices in the ledger as ``pending`` (:func:`inexchange.pipeline.extract`)."""

    def execute(self, context: Context) -> dict[str, Any]:
        from inexchange import pipeline

        return pipeline.extract(self._scope(context), **self._connections())


class ValidateInvoicesOperator(_LedgerStageOperator):
    """Validate the ``pending`` invoices: ``ready`` or ``rejected`` (:func:`inexchange.pipeline.validate`)."""

    def execute(self, context: Context) -> dict[str, Any]:
        from inexchange import pipeline

        return pipeline.validate(self._scope(context), **self._connections())


class PlanBatchesOperator(_LedgerStageOperator):
    """Split the invoices due for submission into batches for the mapped submit task.

    Returns :func:`inexchange.pipeline.plan_batches`' list, for ``SubmitInvoicesOperator.partial(...).expand_kwargs``.

    :param batch_size: invoices per batch (templated, e.g. ``"{{ params.batch_size }}"``).
    :param dry_run: whether the batches only say what they would send (templated, e.g. ``"{{ params.dry_run }}"``).
    """

    # "dry_run_batches", not "dry_run": BaseOperator.dry_run() is a method of every operator
    template_fields: Sequence[str] = (*_LedgerStageOperator.template_fields, "batch_size", "dry_run_batches")
    returns_dict = False

    def __init__(self, *, batch_size: int | str = 2000, dry_run: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_size = batch_size
        self.dry_run_batches = dry_run

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from inexchange import pipeline

        return pipeline.plan_batches(
            self._scope(context),
            reporting_conn_id=self.reporting_conn_id,
            batch_size=int(self.batch_size),
            dry_run=as_flag(self.dry_run_batches, "dry_run"),
        )


class DispatchReportOperator(_LedgerStageOperator):
    """Refresh the interval's report rows, log them and fail when invoices need a person (:func:`inexchange.pipeline.report`).

    :param fail_on_action_needed: end the task failed when an invoice needs a person (templated, e.g.
        ``"{{ params.fail_on_action_needed }}"``).
    """

    template_fields: Sequence[str] = (*_LedgerStageOperator.template_fields, "fail_on_action_needed")

    def __init__(self, *, fail_on_action_needed: bool | str = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_on_action_needed = fail_on_action_needed

    def execute(self, context: Context) -> dict[str, Any]:
        from inexchange import pipeline

        ti = context.get("ti")
        without_id = ti.xcom_pull(task_ids="extract", key="without_id") if ti is not None else None
        return pipeline.report(
            self._scope(context),
            reporting_conn_id=self.reporting_conn_id,
            fail_on_action_needed=as_flag(self.fail_on_action_needed, "fail_on_action_needed"),
            # rows of the ERP the extract could not take into the ledger (no usable invoice_id)
            without_id=list(without_id) if isinstance(without_id, (list, tuple)) else [],
            # the list the notifier e-mails (inexchange.notifications.ActionList), before the task may fail on it
            publish=(lambda needs_person: ti.xcom_push(key="needs_person", value=needs_person)) if ti else None,
        )


class RunStateWatcherOperator(BaseOperator):
    """Fail the run when any stage failed: Airflow's watcher pattern.

    A DAG run takes its state from its leaves. ``report`` runs after a failure too
    (``trigger_rule="all_done"``), so without a watcher a day whose submit or sensor failed would end
    green. Put this task downstream of every stage but ``report``: it is skipped when they all
    succeed, and otherwise runs (``one_failed``) and fails without retries, naming the stages.
    """

    ui_color = "#fde8e8"
    #: states of an upstream stage that make the run red
    FAILED_STATES = frozenset({TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "one_failed")
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)

    def execute(self, context: Context) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        stages = self._failed_stages(context)
        named = f": {', '.join(stages)}" if stages else ""
        raise AirflowFailException(
            f"stages of this run did not succeed{named}; see their logs (report ran and lists every invoice's "
            "outcome). A run for the same invoice day sends only what has not been sent."
        )

    def _failed_stages(self, context: Context) -> list[str]:
        """The upstream stages that failed or could not run, as the Execution API reports them
        (``task_id`` or ``task_id_<map index>``); empty when it cannot say."""
        ti = context["ti"]
        try:
            by_run = ti.get_task_states(dag_id=ti.dag_id, task_ids=sorted(self.upstream_task_ids), run_ids=[ti.run_id])
        except Exception as exc:  # the names only enrich the message; the run fails without them
            self.log.warning("could not read the stages' states: %s", exc)
            return []
        states = by_run.get(ti.run_id, {}) if isinstance(by_run, dict) else {}
        return sorted(task for task, state in states.items() if str(state) in self.FAILED_STATES)
