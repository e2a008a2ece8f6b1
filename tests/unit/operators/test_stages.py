"""Tests of the ledger stage operators of the dispatch DAG, with a real SQLite ledger.

Every stage also runs in the end-to-end ``dag.test()`` runs of tests/integration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest
from sqlalchemy import create_engine

from dispatch_testing.unit_fixtures import sqlite_connection_json
from inexchange.states import LedgerState
from inexchange.ledger import Ledger
from inexchange.operators.scope import run_scope
from inexchange.operators.stages import (
    DispatchReportOperator,
    ExtractInvoicesOperator,
    PlanBatchesOperator,
    RecheckWaitingOperator,
    ValidateInvoicesOperator,
)
from inexchange.values import as_flag

CONTEXT = {
    "data_interval_start": pendulum.datetime(2026, 11, 24, 23, 0, tz="UTC"),
    "data_interval_end": pendulum.datetime(2026, 11, 25, 23, 0, tz="UTC"),
    "run_id": "scheduled__2026-11-24T23:00:00+00:00",
}


@pytest.fixture
def ready_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    """A SQLite ledger (the reporting connection) with five invoices of the interval ``ready``."""
    path = tmp_path / "ledger.db"
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", sqlite_connection_json(path))
    ledger = Ledger(create_engine(f"sqlite:///{path}"), run_scope(CONTEXT))
    ledger.ensure_schema()
    ledger.register([
        {"invoice_id": i, "invoice_number": f"{10000 + i}", "invoice_type": "Debet", "customer_id": 500 + i,
         "customer_number": f"C-{500 + i}", "customer_name": f"Kund {i} AB", "invoice_date": "2026-11-25",
         "currency": "SEK", "total_amount": 100.0}
        for i in range(1, 6)
    ])
    for i in range(1, 6):
        assert ledger.transition(i, [LedgerState.PENDING], LedgerState.READY, source="validate")
    return ledger


def render(operator: Any, **params: Any) -> dict[str, Any]:
    """Render the operator's templates with the run's params, as Airflow does before ``execute``."""
    context = {**CONTEXT, "params": params}
    operator.render_template_fields(context)
    return context


def test_plan_batches_takes_the_rendered_params(ready_ledger: Ledger) -> None:
    operator = PlanBatchesOperator(task_id="plan_batches", batch_size="{{ params.batch_size }}",
                                   dry_run="{{ params.dry_run }}")
    context = render(operator, batch_size=2, dry_run=True)

    assert (operator.batch_size, operator.dry_run_batches) == ("2", "True")
    # five ready invoices, ids 1 to 5, two a batch: three adjacent ranges of ids, open at both ends
    ranges = [(None, 2), (3, 4), (5, None)]
    assert operator.execute(context) == [
        {"shard": k, "shards": 3, "first_id": first, "last_id": last, "dry_run": True}
        for k, (first, last) in enumerate(ranges)
    ]


def test_plan_batches_refuses_a_batch_size_that_is_not_a_number(ready_ledger: Ledger) -> None:
    operator = PlanBatchesOperator(task_id="plan_batches", batch_size="{{ params.batch_size }}")

    with pytest.raises(ValueError, match="invalid literal for int"):
        operator.execute(render(operator, batch_size="many"))


def test_xcom_as_task_gives_it() -> None:
    """A stage returning a dict pushes each key too (as @task does for ``-> dict``); the batch list does not."""
    dict_stages = [RecheckWaitingOperator(task_id="r"), ExtractInvoicesOperator(task_id="e"),
                   ValidateInvoicesOperator(task_id="v"), DispatchReportOperator(task_id="rep")]

    assert all(stage.multiple_outputs for stage in dict_stages)
    assert PlanBatchesOperator(task_id="p").multiple_outputs is False
    assert ExtractInvoicesOperator(task_id="e2", multiple_outputs=False).multiple_outputs is False


def test_the_report_flag_is_rendered_from_the_params() -> None:
    operator = DispatchReportOperator(task_id="report", fail_on_action_needed="{{ params.fail_on_action_needed }}")
    render(operator, fail_on_action_needed=False)

    assert operator.fail_on_action_needed == "False"
    assert as_flag(operator.fail_on_action_needed, "fail_on_action_needed") is False


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("True", True), ("false", False), (" FALSE ", False), ("1", True), ("off", False),
])
def test_flags(value: Any, expected: bool) -> None:
    assert as_flag(value, "dry_run") is expected


@pytest.mark.parametrize("value", ["", "None", "maybe", None])
def test_a_flag_that_is_neither_true_nor_false_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="dry_run must be true or false"):
        as_flag(value, "dry_run")


def test_connections_are_templated() -> None:
    recheck = RecheckWaitingOperator(task_id="recheck", inexchange_conn_id="{{ params.conn }}")
    render(recheck, conn="inexchange_test")

    assert recheck.inexchange_conn_id == "inexchange_test"
    assert {"erp_conn_id", "reporting_conn_id"} <= set(ExtractInvoicesOperator.template_fields)
