"""Tests of DeliveryStatusSensor with a real SQLite ledger and InExchange stubbed by respx."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pendulum
import pytest
import respx
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from sqlalchemy import Engine, create_engine, text

from dispatch_testing.unit_fixtures import STOPPED_ERROR, outbound_document, outbound_list, sqlite_connection_json
from inexchange.states import LedgerState
from inexchange.exceptions import InExchangeApiError
from inexchange.ledger import Ledger
from inexchange.operators.scope import run_scope
from inexchange.sensors.delivery import DeliveryStatusSensor
from inexchange.triggers.delivery import DeliveryStatusTrigger

pytestmark = pytest.mark.timeout(10)

ROOT = Path(__file__).resolve().parents[3]

LIST = "documents/outbound/list"
RUN_ID = "scheduled__2026-11-24T23:00:00+00:00"
#: the run's data interval: invoice date 2026-11-25 in Stockholm
START = pendulum.datetime(2026, 11, 24, 23, 0, tz="UTC")
END = pendulum.datetime(2026, 11, 25, 23, 0, tz="UTC")

#: invoice id -> (InExchange document id, submitted at, status at submission)
SUBMITTED = {
    1: ("d1", "2026-11-25T06:00:00.000000Z", "PendingInPlatform"),
    2: ("d2", "2026-11-25T06:10:00.000000Z", "PendingInPlatform"),
}


class TaskInstanceStub:
    """The part of the task instance the sensor asks: when the first reschedule happened."""

    def __init__(self, first_reschedule: datetime | None = None) -> None:
        self.first_reschedule = first_reschedule

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self.first_reschedule


def make_context(first_reschedule: datetime | None = None) -> dict[str, Any]:
    return {
        "data_interval_start": START,
        "data_interval_end": END,
        "run_id": RUN_ID,
        "ti": TaskInstanceStub(first_reschedule),
    }


def invoice(invoice_id: int, invoice_date: str = "2026-11-25") -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "invoice_number": f"{10000 + invoice_id}",
        "invoice_type": "Debet",
        "customer_id": 500 + invoice_id,
        "customer_number": f"C-{500 + invoice_id}",
        "customer_name": f"Kund {invoice_id} AB",
        "invoice_date": invoice_date,
        "currency": "SEK",
        "total_amount": 1250.0,
    }


def submit(ledger: Ledger, invoice_id: int, document_id: str, submitted_at: str, status: str) -> None:
    """Move a registered invoice to ``waiting`` as the submit step leaves it."""
    moved = ledger.transition(
        invoice_id, [LedgerState.PENDING], LedgerState.WAITING, source="submit",
        inexchange_document_id=document_id, inexchange_status=status, submitted_at=submitted_at,
        status_time=submitted_at, delivery_method="Electronic", attempt=1,
    )
    assert moved


@pytest.fixture
def ledger_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """A SQLite ledger with two invoices of the run's interval waiting for InExchange."""
    path = tmp_path / "ledger.db"
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", sqlite_connection_json(path))
    engine = create_engine(f"sqlite:///{path}")
    ledger = Ledger(engine, run_scope(make_context()))
    ledger.ensure_schema()
    ledger.register([invoice(1), invoice(2)])
    for invoice_id, (document_id, submitted_at, status) in SUBMITTED.items():
        submit(ledger, invoice_id, document_id, submitted_at, status)
    return engine


def dispatch(engine: Engine) -> dict[int, dict[str, Any]]:
    """Return the ledger rows by invoice id."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM inexchange_dispatch ORDER BY invoice_id"))
        return {row.invoice_id: dict(row._mapping) for row in rows}


def poll_history(engine: Engine) -> list[dict[str, Any]]:
    """Return the history rows the status polling wrote, by invoice."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT invoice_id, from_state, to_state, inexchange_status, message, dag_run_id "
            "FROM inexchange_dispatch_history WHERE source = 'status poll' ORDER BY invoice_id, changed_at"
        ))
        return [dict(row._mapping) for row in rows]


def make_sensor(**kwargs: Any) -> DeliveryStatusSensor:
    return DeliveryStatusSensor(**{"task_id": "wait_for_delivery", "poll_interval": 5.0,
                                   "timeout": timedelta(hours=1), "deferrable": True, **kwargs})


def change(document_id: str, status: str, time: str, message: str | None = None) -> dict[str, Any]:
    """One item of a trigger's ``changes`` event."""
    return {"id": document_id, "erp_document_id": None, "status": status, "time": time, "message": message}


def summary(*, sent: int = 0, waiting: int = 0, stopped: int = 0, failed: int = 0,
            timed_out: bool = False) -> dict[str, Any]:
    return {"sent": sent, "waiting": waiting, "stopped": stopped, "failed": failed, "timed_out": timed_out}


# ---- deferrable: execute -------------------------------------------------------------------
def test_execute_defers_with_small_trigger_arguments(api: respx.MockRouter, ledger_db: Engine) -> None:
    listed = api.post(LIST).respond(200, json=outbound_list([
        outbound_document("d1", "Pending", "2026-11-25T06:20:00Z"),
        outbound_document("d2", "PendingInPlatform", "2026-11-25T06:10:00Z"),
    ]))
    sensor = make_sensor(poll_interval="7")  # as rendered from a template
    before = datetime.now(timezone.utc)

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(make_context())

    trigger = deferred.value.trigger
    assert isinstance(trigger, DeliveryStatusTrigger)
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = trigger.serialize()
    assert kwargs["inexchange_conn_id"] == "inexchange_default"
    assert kwargs["created_from"] == "2026-11-25T05:55:00+00:00"  # first submission less the margin
    assert kwargs["created_to"] == "2026-11-25T06:15:00+00:00"  # last submission plus the margin
    assert kwargs["updated_after"] == "2026-11-25T06:20:00+00:00"
    assert kwargs["poll_interval"] == 7.0 and sensor.poke_interval == 7.0
    assert kwargs["first_poll_after"] == 7.0  # the sensor has just polled: the trigger waits an interval
    assert kwargs["page_size"] == 100
    end_time = datetime.fromisoformat(kwargs["end_time"])
    assert before + timedelta(hours=1) <= end_time <= datetime.now(timezone.utc) + timedelta(hours=1)
    assert deferred.value.kwargs == {"end_time": kwargs["end_time"]}
    encoded = json.dumps(kwargs)
    assert "d1" not in encoded and "d2" not in encoded and "invoice-" not in encoded
    assert len(encoded) < 400

    body = json.loads(listed.calls.last.request.content)
    assert body["createdFrom"] == "2026-11-25T05:55:00+00:00"
    assert "updatedAfter" not in body
    assert api["revoke_token"].call_count == 1
    rows = dispatch(ledger_db)
    assert [rows[i]["state"] for i in (1, 2)] == ["waiting", "waiting"]
    assert rows[1]["inexchange_status"] == "Pending"
    assert poll_history(ledger_db) == [
        {"invoice_id": 1, "from_state": "waiting", "to_state": "waiting", "inexchange_status": "Pending",
         "message": None, "dag_run_id": RUN_ID},
    ]


def test_execute_returns_when_the_first_poll_finds_all_final(api: respx.MockRouter, ledger_db: Engine) -> None:
    api.post(LIST).respond(200, json=outbound_list([
        outbound_document("d1", "Delivered", "2026-11-25T07:00:00Z"),
        outbound_document("d2", "Stopped", "2026-11-25T07:30:00Z", error=STOPPED_ERROR),
    ]))

    result = make_sensor().execute(make_context())

    assert result == summary(sent=1, stopped=1)
    rows = dispatch(ledger_db)
    assert (rows[1]["state"], rows[1]["inexchange_status"], rows[1]["message"]) == ("sent", "Delivered", None)
    assert rows[1]["sent_at"] == "2026-11-25T07:00:00.000000Z"
    assert rows[1]["status_time"] == "2026-11-25T07:00:00.000000Z"
    assert (rows[2]["state"], rows[2]["inexchange_status"]) == ("stopped", "Stopped")
    assert rows[2]["message"] == "InvalidEmail: The recipient e-mail address bounced"
    assert rows[2]["sent_at"] is None
    assert poll_history(ledger_db) == [
        {"invoice_id": 1, "from_state": "waiting", "to_state": "sent", "inexchange_status": "Delivered",
         "message": None, "dag_run_id": RUN_ID},
        {"invoice_id": 2, "from_state": "waiting", "to_state": "stopped", "inexchange_status": "Stopped",
         "message": "InvalidEmail: The recipient e-mail address bounced", "dag_run_id": RUN_ID},
    ]


def test_execute_ignores_rows_of_other_intervals_and_runs(api: respx.MockRouter, ledger_db: Engine) -> None:
    ledger = Ledger(ledger_db, replace(run_scope(make_context()), dag_run_id="scheduled__2026-11-19"))
    ledger.register([invoice(3, invoice_date="2026-11-20")])
    submit(ledger, 3, "d3", "2026-11-20T06:00:00.000000Z", "Pending")  # by that day's own run
    listed = api.post(LIST).respond(200, json=outbound_list([
        outbound_document("d1", "Sent", "2026-11-25T07:00:00Z"),
        outbound_document("d2", "Delivered", "2026-11-25T07:05:00Z"),
    ]))

    result = make_sensor().execute(make_context())

    assert result == summary(sent=2)
    assert dispatch(ledger_db)[3]["state"] == "waiting"
    assert json.loads(listed.calls.last.request.content)["createdFrom"] == "2026-11-25T05:55:00+00:00"


def test_execute_follows_a_row_of_another_interval_that_this_run_sent(api: respx.MockRouter,
                                                                      ledger_db: Engine) -> None:
    ledger = Ledger(ledger_db, run_scope(make_context()))
    ledger.register([invoice(3, invoice_date="2026-11-20")])
    submit(ledger, 3, "d3", "2026-11-20T06:00:00.000000Z", "Pending")  # an earlier day's invoice, sent again
    listed = api.post(LIST).respond(200, json=outbound_list([
        outbound_document("d1", "Sent", "2026-11-25T07:00:00Z"),
        outbound_document("d2", "Delivered", "2026-11-25T07:05:00Z"),
        outbound_document("d3", "Delivered", "2026-11-25T07:06:00Z"),
    ]))

    result = make_sensor().execute(make_context())

    assert result == summary(sent=2)  # the summary counts the interval's rows
    assert dispatch(ledger_db)[3]["state"] == "sent"
    assert json.loads(listed.calls.last.request.content)["createdFrom"] == "2026-11-20T05:55:00+00:00"


def test_execute_without_waiting_rows_calls_nothing(api: respx.MockRouter, ledger_db: Engine) -> None:
    with ledger_db.begin() as conn:
        conn.execute(text("UPDATE inexchange_dispatch SET state = 'sent'"))

    result = make_sensor().execute(make_context())

    assert result == summary(sent=2)
    assert not api.calls


def test_execute_fails_when_polling_fails(api: respx.MockRouter, ledger_db: Engine) -> None:
    api.post(LIST).respond(400, json={"message": "The request is invalid."})

    with pytest.raises(InExchangeApiError, match="HTTP 400"):
        make_sensor().execute(make_context())

    assert api["revoke_token"].call_count == 1  # the token is revoked even then
    assert [row["state"] for row in dispatch(ledger_db).values()] == ["waiting", "waiting"]


@pytest.mark.postgres
def test_the_first_poll_has_postgresql_analyse_a_ledger_whose_statistics_lag(
    api: respx.MockRouter, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The day's rows were given their document ids just before (the submit stage), before autovacuum
    came round: the sensor has the ledger table analysed before it reads them by id."""
    from dispatch_testing.support import (
        counted_changes,
        ledger_statistics,
        pg_connect_args,
        pg_url,
        postgres_conn_env,
        without_autovacuum,
    )

    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", postgres_conn_env(pg_schema))
    engine = create_engine(pg_url(), connect_args=pg_connect_args(pg_schema))
    ledger = Ledger(engine, run_scope(make_context()))
    ledger.ensure_schema()
    without_autovacuum(engine)
    ids = range(1, 101)
    ledger.register([invoice(i) for i in ids])
    for i in ids:
        submit(ledger, i, f"d{i}", f"2026-11-25T06:{i % 60:02d}:00.000000Z", "PendingInPlatform")
    counted_changes(engine, 200)  # 100 rows inserted, then each updated
    api.post(LIST).respond(200, json=outbound_list(
        [outbound_document(f"d{i}", "Pending", "2026-11-25T07:00:00Z") for i in ids]))
    try:
        assert ledger_statistics(engine) == (None, 200)
        with pytest.raises(TaskDeferred):
            make_sensor().execute(make_context())
        assert ledger_statistics(engine)[0] is not None
        assert [row["inexchange_status"] for row in dispatch(engine).values()] == ["Pending"] * 100
    finally:
        engine.dispose()


# ---- deferrable: execute_complete ----------------------------------------------------------
END_TIME = "2026-11-25T12:00:00+00:00"


def test_execute_complete_writes_changes_then_defers_then_returns(ledger_db: Engine) -> None:
    sensor = make_sensor()
    first = {
        "status": "changes",
        "changes": [
            change("d1", "Stopped", "2026-11-25T08:00:00+00:00", "InvalidEmail: The recipient e-mail address bounced"),
            change("d-unknown", "Sent", "2026-11-25T08:01:00+00:00"),
        ],
        "cursor": "2026-11-25T08:01:00+00:00",
    }

    with respx.mock(assert_all_mocked=True, using="httpx") as router, pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete(make_context(), first, end_time=END_TIME)

    assert not router.calls
    trigger = deferred.value.trigger
    assert isinstance(trigger, DeliveryStatusTrigger)
    assert trigger.updated_after == "2026-11-25T08:01:00+00:00"
    assert trigger.end_time == END_TIME
    assert trigger.created_from == "2026-11-25T06:05:00+00:00"  # only invoice 2 still waits
    assert trigger.first_poll_after == float(sensor.poll_interval)
    assert deferred.value.kwargs == {"end_time": END_TIME}
    rows = dispatch(ledger_db)
    assert (rows[1]["state"], rows[1]["inexchange_status"]) == ("stopped", "Stopped")
    assert rows[1]["message"] == "InvalidEmail: The recipient e-mail address bounced"
    assert rows[1]["status_time"] == "2026-11-25T08:00:00.000000Z"
    assert rows[2]["state"] == "waiting"

    second = {
        "status": "changes",
        "changes": [change("d2", "Error", "2026-11-25T09:00:00+00:00", "Error: Invalid delivery method")],
        "cursor": "2026-11-25T09:00:00+00:00",
    }
    result = sensor.execute_complete(make_context(), second, end_time=END_TIME)

    assert result == summary(stopped=1, failed=1)
    rows = dispatch(ledger_db)
    assert (rows[2]["state"], rows[2]["inexchange_status"]) == ("failed", "Error")
    assert rows[2]["message"] == "Error: Invalid delivery method"
    assert [(h["invoice_id"], h["from_state"], h["to_state"], h["message"]) for h in poll_history(ledger_db)] == [
        (1, "waiting", "stopped", "InvalidEmail: The recipient e-mail address bounced"),
        (2, "waiting", "failed", "Error: Invalid delivery method"),
    ]


def test_execute_complete_returns_once_all_are_sent(ledger_db: Engine) -> None:
    event = {
        "status": "changes",
        "changes": [change("d1", "Sent", "2026-11-25T08:00:00+00:00"),
                    change("d2", "Delivered", "2026-11-25T08:05:00+00:00")],
        "cursor": "2026-11-25T08:05:00+00:00",
    }

    result = make_sensor().execute_complete(make_context(), event, end_time=END_TIME)

    assert result == summary(sent=2)
    rows = dispatch(ledger_db)
    assert [rows[i]["sent_at"] for i in (1, 2)] == ["2026-11-25T08:00:00.000000Z", "2026-11-25T08:05:00.000000Z"]
    assert len(poll_history(ledger_db)) == 2


def test_execute_complete_raises_on_an_error_event(ledger_db: Engine) -> None:
    event = {"status": "error", "message": "InExchangeApiError: HTTP 503 from InExchange documents/outbound/list"}

    with pytest.raises(AirflowException, match="polling InExchange failed: InExchangeApiError: HTTP 503"):
        make_sensor().execute_complete(make_context(), event, end_time=END_TIME)

    assert [row["state"] for row in dispatch(ledger_db).values()] == ["waiting", "waiting"]
    assert poll_history(ledger_db) == []


def test_execute_complete_on_timeout_leaves_rows_waiting(ledger_db: Engine) -> None:
    event = {"status": "timeout", "cursor": "2026-11-25T06:20:00+00:00"}

    result = make_sensor().execute_complete(make_context(), event, end_time=END_TIME)

    assert result == summary(waiting=2, timed_out=True)
    assert [row["state"] for row in dispatch(ledger_db).values()] == ["waiting", "waiting"]


# ---- not deferrable: poke ------------------------------------------------------------------
def test_poke_is_not_done_while_invoices_wait_then_done(api: respx.MockRouter, ledger_db: Engine) -> None:
    sensor = make_sensor(deferrable=False)
    context = make_context(first_reschedule=datetime.now(timezone.utc) - timedelta(minutes=10))
    listed = api.post(LIST)
    listed.side_effect = [
        httpx.Response(200, json=outbound_list([outbound_document("d1", "Pending", "2026-11-25T06:20:00Z"),
                                                outbound_document("d2", "Pending", "2026-11-25T06:21:00Z")])),
        httpx.Response(200, json=outbound_list([
            outbound_document("d1", "Delivered", "2026-11-25T07:00:00Z"),
            outbound_document("d2", "Stopped", "2026-11-25T07:10:00Z", error=STOPPED_ERROR),
        ])),
    ]

    waiting = sensor.poke(context)

    assert sensor.mode == "reschedule"
    assert isinstance(waiting, PokeReturnValue)
    assert waiting.is_done is False
    assert waiting.xcom_value is None
    rows = dispatch(ledger_db)
    assert [(rows[i]["state"], rows[i]["inexchange_status"]) for i in (1, 2)] == [("waiting", "Pending")] * 2

    done = sensor.poke(context)

    assert done.is_done is True
    assert done.xcom_value == summary(sent=1, stopped=1)
    rows = dispatch(ledger_db)
    assert (rows[1]["state"], rows[1]["sent_at"]) == ("sent", "2026-11-25T07:00:00.000000Z")
    assert (rows[2]["state"], rows[2]["message"]) == ("stopped", "InvalidEmail: The recipient e-mail address bounced")
    assert [(h["invoice_id"], h["to_state"], h["inexchange_status"]) for h in poll_history(ledger_db)] == [
        (1, "waiting", "Pending"), (1, "sent", "Delivered"),
        (2, "waiting", "Pending"), (2, "stopped", "Stopped"),
    ]
    assert api["revoke_token"].call_count == 2  # one token per poke, revoked after it


def test_poke_finishes_at_the_timeout_with_rows_waiting(api: respx.MockRouter, ledger_db: Engine) -> None:
    sensor = make_sensor(deferrable=False, timeout=timedelta(hours=1))
    api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Pending", "2026-11-25T06:20:00Z")]))

    result = sensor.poke(make_context(first_reschedule=datetime.now(timezone.utc) - timedelta(hours=2)))

    assert result.is_done is True
    assert result.xcom_value == summary(waiting=2, timed_out=True)
    assert [row["state"] for row in dispatch(ledger_db).values()] == ["waiting", "waiting"]


def test_first_poke_counts_from_now(api: respx.MockRouter, ledger_db: Engine) -> None:
    api.post(LIST).respond(200, json=outbound_list([]))

    result = make_sensor(deferrable=False, timeout=timedelta(minutes=1)).poke(make_context(first_reschedule=None))

    assert result.is_done is False


# ---- deferrable by default -----------------------------------------------------------------
@pytest.mark.parametrize("setting", [None, "False", "true", "0"])
def test_deferrable_whatever_the_deployments_default_deferrable(
        setting: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's default is to defer; ``[operators] default_deferrable`` (False as generated) is not read."""
    if setting is None:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", setting)

    sensor = DeliveryStatusSensor(task_id="wait", timeout=timedelta(hours=1))

    assert (sensor.deferrable, sensor.mode) == (True, "poke")
    assert (DeliveryStatusSensor(task_id="wait2", deferrable=None).deferrable) is True
    off = DeliveryStatusSensor(task_id="wait3", deferrable=False)
    assert (off.deferrable, off.mode) == (False, "reschedule")


TEMPLATED_DEFERRABLE = "{{ params.deferrable }}"


def test_a_templated_deferrable_defers_when_the_run_says_so(api: respx.MockRouter, ledger_db: Engine) -> None:
    api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Pending", "2026-11-25T06:20:00Z")]))
    sensor = make_sensor(deferrable=TEMPLATED_DEFERRABLE)
    context = {**make_context(), "params": {"deferrable": True}}
    sensor.render_template_fields(context)

    with pytest.raises(TaskDeferred):
        sensor.execute(context)

    assert (sensor.deferrable, sensor.mode) == (True, "poke")


def test_a_templated_deferrable_that_is_off_reschedules(api: respx.MockRouter, ledger_db: Engine) -> None:
    """Decided when the task runs: the sensor pokes in reschedule mode, with the same ledger writes."""
    from airflow.sdk.exceptions import AirflowRescheduleException

    api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Pending", "2026-11-25T06:20:00Z")]))
    sensor = make_sensor(deferrable=TEMPLATED_DEFERRABLE)
    assert sensor.mode == "poke"  # until rendered, the template stands for the default
    context = {**make_context(), "params": {"deferrable": False}}
    sensor.render_template_fields(context)

    with pytest.raises(AirflowRescheduleException):
        sensor.execute(context)

    assert (sensor.deferrable, sensor.mode) == (False, "reschedule")
    assert [h["inexchange_status"] for h in poll_history(ledger_db)] == ["Pending"]


def test_a_mode_given_is_kept_when_the_sensor_does_not_defer(ledger_db: Engine) -> None:
    sensor = make_sensor(deferrable=TEMPLATED_DEFERRABLE, mode="poke")
    sensor.render_template_fields({**make_context(), "params": {"deferrable": False}})

    sensor._use_rendered_settings()

    assert (sensor.deferrable, sensor.mode) == (False, "poke")


@pytest.mark.parametrize("value", ["maybe", ""])
def test_a_rendered_deferrable_that_is_no_flag_fails_the_task(value: str, ledger_db: Engine) -> None:
    sensor = make_sensor(deferrable=value)

    with pytest.raises(ValueError, match="deferrable must be true or false"):
        sensor.execute(make_context())


def test_the_dags_sensor_defers_although_default_deferrable_is_off(
        api: respx.MockRouter, ledger_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated airflow.cfg says ``default_deferrable = False``: the DAG's own sensor defers anyway."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import conf

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert conf.getboolean("operators", "default_deferrable") is False
    api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Pending", "2026-11-25T06:20:00Z")]))
    dag = DagBag(dag_folder=str(ROOT / "dags" / "inexchange_dispatch.py")).dags["inexchange_dispatch"]
    sensor = dag.get_task("await_delivery")
    # the params of a scheduled run, and the Variables (a dict's get() stands for Airflow's accessor)
    context = {**make_context(), "params": dag.params.validate(), "var": {"value": {"inexchange_poll_interval": "5"}}}
    sensor.render_template_fields(context)

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)

    assert isinstance(deferred.value.trigger, DeliveryStatusTrigger)
    assert (sensor.deferrable, sensor.mode) == (True, "poke")


def test_without_the_reporting_connection_the_sensor_fails_without_retry(
        api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.delenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", sqlite_connection_json(Path("/nonexistent/erp.db")))

    with pytest.raises(AirflowFailException, match="connection 'inexchange_reporting' is not defined"):
        make_sensor().execute(make_context())

    assert not api.calls


# ---- earlier intervals: rechecked by the next run --------------------------------------------
def test_recheck_records_statuses_of_earlier_intervals_only(api: respx.MockRouter, ledger_db: Engine) -> None:
    from inexchange import pipeline

    ledger = Ledger(ledger_db, run_scope(make_context()))
    ledger.register([invoice(3, "2026-11-20")])  # an earlier day whose sensor timed out
    submit(ledger, 3, "d3", "2026-11-20T06:00:00.000000Z", "Pending")
    listed = api.post(LIST).respond(200, json=outbound_list([
        outbound_document("d1", "Sent", "2026-11-25T07:00:00Z"),  # this interval's: left to the sensor
        outbound_document("d3", "Delivered", "2026-11-25T07:05:00Z"),
    ]))

    result = pipeline.recheck_waiting(run_scope(make_context()), reporting_conn_id="inexchange_reporting",
                                      inexchange_conn_id="inexchange_default")

    assert result == {"rechecked": 1, "still_waiting": 0}
    rows = dispatch(ledger_db)
    assert (rows[3]["state"], rows[3]["inexchange_status"]) == ("sent", "Delivered")
    assert rows[1]["state"] == "waiting"
    assert json.loads(listed.calls.last.request.content)["createdFrom"].startswith("2026-11-20T05:55")
    with ledger_db.connect() as conn:
        sources = [r[0] for r in conn.execute(text(
            "SELECT source FROM inexchange_dispatch_history WHERE invoice_id = 3 ORDER BY changed_at"))]
    assert sources[-1] == "recheck"


# ---- the declaration a DAG file imports ------------------------------------------------------
def test_the_default_connection_is_the_hooks() -> None:
    from inexchange.hooks.inexchange import InExchangeHook
    from inexchange.sensors import delivery

    sensor = DeliveryStatusSensor(task_id="wait")

    assert sensor.inexchange_conn_id == InExchangeHook.default_conn_name == delivery.DEFAULT_INEXCHANGE_CONN_ID
    assert sensor.hook.inexchange_conn_id == InExchangeHook.default_conn_name


# ---- the delivery timeout, templated ---------------------------------------------------------
TEMPLATED_TIMEOUT = "{{ params.delivery_timeout_minutes * 60 }}"


def rendered_sensor(minutes: int, first_reschedule: datetime | None = None,
                    **kwargs: Any) -> tuple[DeliveryStatusSensor, dict[str, Any]]:
    """A sensor whose delivery timeout is rendered by Jinja from the run's params, and its context."""
    sensor = make_sensor(timeout=None, delivery_timeout=TEMPLATED_TIMEOUT, **kwargs)
    context = {**make_context(first_reschedule), "params": {"delivery_timeout_minutes": minutes}}
    sensor.render_template_fields(context)
    assert sensor.delivery_timeout == str(minutes * 60)
    return sensor, context


def test_a_rendered_delivery_timeout_sets_the_triggers_end_time(api: respx.MockRouter, ledger_db: Engine) -> None:
    api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Pending", "2026-11-25T06:20:00Z")]))
    sensor, context = rendered_sensor(30)
    before = datetime.now(timezone.utc)

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)

    end_time = datetime.fromisoformat(deferred.value.trigger.end_time)
    assert before + timedelta(minutes=30) <= end_time <= datetime.now(timezone.utc) + timedelta(minutes=30)
    assert deferred.value.kwargs == {"end_time": deferred.value.trigger.end_time}
    assert sensor.timeout == 30 * 60 + 2 * 5.0  # Airflow's own timeout: two poll intervals beyond ours


def test_a_resumed_sensor_keeps_its_end_time_and_falls_back_to_the_rendered_timeout(ledger_db: Engine) -> None:
    sensor, context = rendered_sensor(30)
    event = {"status": "changes", "changes": [change("d1", "Sent", "2026-11-25T08:00:00+00:00")],
             "cursor": "2026-11-25T08:00:00+00:00"}

    with pytest.raises(TaskDeferred) as kept:
        sensor.execute_complete(context, event, end_time=END_TIME)
    before = datetime.now(timezone.utc)
    with pytest.raises(TaskDeferred) as fallback:
        sensor.execute_complete(context, {**event, "changes": []}, end_time=None)

    assert kept.value.trigger.end_time == END_TIME  # the deadline set at the first deferral
    end_time = datetime.fromisoformat(fallback.value.trigger.end_time)
    assert before + timedelta(minutes=30) <= end_time <= datetime.now(timezone.utc) + timedelta(minutes=30)


@pytest.mark.parametrize(("minutes_ago", "done"), [(29, False), (31, True)])
def test_a_rendered_delivery_timeout_ends_the_pokes(api: respx.MockRouter, ledger_db: Engine,
                                                     minutes_ago: int, done: bool) -> None:
    api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Pending", "2026-11-25T06:20:00Z")]))
    sensor, context = rendered_sensor(30, deferrable=False,
                                      first_reschedule=datetime.now(timezone.utc) - timedelta(minutes=minutes_ago))

    result = sensor.poke(context)

    assert result.is_done is done
    assert result.xcom_value == (summary(waiting=2, timed_out=True) if done else None)


def test_in_reschedule_mode_the_rendered_timeout_ends_the_task_before_airflows_own(
        api: respx.MockRouter, ledger_db: Engine) -> None:
    from airflow.sdk.exceptions import AirflowRescheduleException

    api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Pending", "2026-11-25T06:20:00Z")]))
    sensor, early = rendered_sensor(30, deferrable=False,
                                    first_reschedule=datetime.now(timezone.utc) - timedelta(minutes=29))
    late = {**early, "ti": TaskInstanceStub(datetime.now(timezone.utc) - timedelta(minutes=30, seconds=5))}

    with pytest.raises(AirflowRescheduleException):
        sensor.execute(early)
    result = sensor.execute(late)  # past ours (30 min), within Airflow's (30 min + 2 polls): a success

    assert sensor.mode == "reschedule" and sensor.timeout == 30 * 60 + 2 * 5.0
    assert result == summary(waiting=2, timed_out=True)


def test_a_rendered_delivery_timeout_that_is_not_a_number_fails_the_task(ledger_db: Engine) -> None:
    sensor = make_sensor(timeout=None, delivery_timeout="{{ params.delivery_timeout_minutes }} minutes")
    context = {**make_context(), "params": {"delivery_timeout_minutes": 30}}
    sensor.render_template_fields(context)

    with pytest.raises(ValueError, match="must be a timedelta or a number of seconds, not '30 minutes'"):
        sensor.execute(context)


@pytest.mark.parametrize(("value", "expected"), [
    (timedelta(minutes=5), timedelta(minutes=5)), (300, timedelta(minutes=5)), (90.5, timedelta(seconds=90.5)),
    ("300", timedelta(minutes=5)), (" 300.0\n", timedelta(minutes=5)), (0, timedelta(0)),
])
def test_delivery_timeout_values(value: Any, expected: timedelta) -> None:
    from inexchange.values import as_delivery_timeout

    assert as_delivery_timeout(value) == expected


@pytest.mark.parametrize("value", ["six hours", "", "nan", "inf", None, -1, timedelta(seconds=-1)])
def test_bad_delivery_timeout_values(value: Any) -> None:
    from inexchange.values import as_delivery_timeout

    with pytest.raises(ValueError, match="delivery_timeout must"):
        as_delivery_timeout(value)


def test_the_delivery_timeout_is_checked_when_it_is_not_a_template() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        DeliveryStatusSensor(task_id="wait", delivery_timeout=-60)
    with pytest.raises(ValueError, match="not both"):
        DeliveryStatusSensor(task_id="wait", delivery_timeout=60, timeout=timedelta(minutes=1))


def test_airflows_own_timeout_backs_up_the_delivery_timeout() -> None:
    by_default = DeliveryStatusSensor(task_id="wait")
    literal = DeliveryStatusSensor(task_id="wait2", delivery_timeout=timedelta(minutes=10), poll_interval=30)
    earlier_name = DeliveryStatusSensor(task_id="wait3", timeout=600, poll_interval=30)
    templated = DeliveryStatusSensor(task_id="wait4", delivery_timeout=TEMPLATED_TIMEOUT, poll_interval="{{ 1 }}")

    assert by_default.timeout == 6 * 3600 + 2 * 60
    assert literal.timeout == earlier_name.timeout == 600 + 2 * 30
    assert earlier_name.delivery_timeout == 600
    assert templated.timeout == 6 * 3600 + 2 * 60  # the defaults stand in until the templates are rendered
    assert "delivery_timeout" in DeliveryStatusSensor.template_fields


def test_an_event_cut_at_its_limit_is_followed_by_a_poll_soon(ledger_db: Engine) -> None:
    """The changes a full event could not carry are listed a few seconds later, not an interval later."""
    from inexchange.tracking import MAX_EVENT_CHANGES

    sensor = make_sensor(poll_interval=60)
    full = {"status": "changes", "cursor": "2026-11-25T08:00:00+00:00",
            "changes": [change(f"x{n}", "Pending", "2026-11-25T08:00:00+00:00") for n in range(MAX_EVENT_CHANGES)]}

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete(make_context(), full, end_time=END_TIME)

    assert 0 < deferred.value.trigger.first_poll_after <= 5.0


def test_unreadable_documents_are_counted_across_deferrals_into_xcom(ledger_db: Engine) -> None:
    sensor = make_sensor()
    first = {"status": "changes", "changes": [change("d1", "Sent", "2026-11-25T08:00:00+00:00")],
             "cursor": "2026-11-25T08:00:00+00:00", "unreadable": ["d-odd"], "unreadable_count": 1}

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete(make_context(), first, end_time=END_TIME)
    assert deferred.value.kwargs == {"end_time": END_TIME, "unreadable": ["d-odd"]}

    second = {"status": "changes", "changes": [change("d2", "Delivered", "2026-11-25T09:00:00+00:00")],
              "cursor": "2026-11-25T09:00:00+00:00", "unreadable": ["d-odd", "d-other"], "unreadable_count": 2}
    result = sensor.execute_complete(make_context(), second, **deferred.value.kwargs)

    assert result == {**summary(sent=2), "unreadable_documents": 2, "unreadable_ids": ["d-odd", "d-other"]}
