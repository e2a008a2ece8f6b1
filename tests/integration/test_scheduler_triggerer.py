"""The dispatch DAG on real Airflow components: the delivery sensor defers to a real triggerer.

What runs (all as subprocesses, with a private AIRFLOW_HOME and environment; see
``inexchange_devkit.services.airflow_env`` for the settings and why each is needed):

* a fresh PostgreSQL database ``af_<random>`` on 127.0.0.1:5432 for the Airflow metadata
  (``airflow db migrate``), dropped at the end;
* ``airflow api-server`` (the Execution API the task processes talk to), ``airflow scheduler``
  with the LocalExecutor, ``airflow dag-processor`` and ``airflow triggerer``;
* the InExchange simulator with slow status progression, so the documents stay pending for
  several seconds and ``await_delivery`` has to defer;
* the ERP as a SQLite file generated like the end-to-end test's; the reporting connection names the
  same file, so the ledger lives in it too.

Runs are triggered through the api-server's REST API with an explicit data interval (``airflow
dags trigger --logical-date`` in Airflow 3.3 takes the data interval from the current time).

``test_sensor_defers_to_the_triggerer`` triggers ``inexchange_dispatch`` for one day, watches the
metadata database until ``await_delivery`` has been ``deferred`` and the run has ended, and checks
the run, the tasks, that every invoice the simulator received is final in the ledger (with the
simulator's status) and was sent once, and that the ledger history holds no status twice and never
goes back from a final state to waiting. ``test_triggerer_killed_while_deferred`` does the same for
another day, but SIGKILLs the triggerer (its process group) while the sensor is deferred on a
trigger that has not fired, waits 3 s, starts a new triggerer and checks that it takes the trigger
over. Both tests share one deployment (module-scoped fixtures), which takes about 40 s to start.

Run from the repository root (about 100-120 s on 2 CPUs; skipped without PostgreSQL unless
INEXCHANGE_REQUIRE_POSTGRES=1, which ``make test`` in CI sets)::

    INEXCHANGE_REQUIRE_POSTGRES=1 .venv/bin/python -m pytest tests/integration/test_scheduler_triggerer.py -v

``-k killed`` runs the restart test alone (about 80 s). Each component's output goes to
``<pytest basetemp>/airflow-services0/home/component-logs/<name>.log`` (task logs under
``home/logs``); a failure prints the tail of every log in its message. Add ``--basetemp=/tmp/st``
to keep the logs at a known place (pytest empties that folder at the start of each run).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from inexchange_devkit.services import Deployment, PostgresServer, dispatch_deployment

from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER, SELLER, generated_erp

pytestmark = [pytest.mark.system, pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(300)]

DAG_ID = "inexchange_dispatch"
SENSOR = "await_delivery"
START = date(2026, 11, 16)
#: the ERP's days of invoices; each test dispatches its own day
FIRST_DAY, RESTART_DAY = date(2026, 11, 17), date(2026, 11, 18)
API_KEY = "services-key"
ERP_ID = "services-erp"
#: Pending after one step, final after two: the sensor waits at least 2 steps after the last send
STATUS_STEP_MS = 4000
#: the restart test's documents move slower, so the trigger still has work after the takeover
RESTART_STATUS_STEP_MS = 6000
SIM_TO_LEDGER = {"Delivered": "sent", "Sent": "sent", "Stopped": "stopped", "Error": "failed"}
FINAL_STATES = {"sent", "stopped", "failed"}
TASKS = {"extract", "validate", "plan_batches", "submit", SENSOR, "report"}
#: task states that mean the run went wrong (the DAG retries after 2 minutes: fail fast instead)
BAD_TASK_STATES = {"failed", "up_for_retry", "upstream_failed", "removed"}
RUN_TIMEOUT_S = 150.0


@pytest.fixture(scope="module")
def erp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ERP (and ledger) as a SQLite file, generated like the end-to-end test's."""
    path = tmp_path_factory.mktemp("erp") / "erp.db"
    generated_erp(path, seed=11, customers=40, invoices=90, start_date=START, days=3, drafts=9)
    return path


@pytest.fixture(scope="module")
def simulator() -> Iterator[Any]:
    from inexchange_devkit.simulator.testing import run_simulator

    with run_simulator(seed=5, status_step_ms=STATUS_STEP_MS, stop_rate=0.1, error_rate=0.05,
                       api_key=API_KEY) as sim:
        yield sim


@pytest.fixture(scope="module")
def deployment(postgres_server: None, tmp_path_factory: pytest.TempPathFactory, erp_file: Path,
               simulator: Any) -> Iterator[Deployment]:
    """Metadata database, api-server, scheduler, dag-processor and triggerer; all gone afterwards."""
    home = tmp_path_factory.mktemp("airflow-services") / "home"
    home.mkdir()
    pg = PostgresServer(PG_HOST, PG_PORT, PG_USER, maintenance_db=PG_DB)
    with dispatch_deployment(home, erp_file, simulator, pg=pg, erp_id=ERP_ID, seller=SELLER) as deployment:
        yield deployment


# ---- watching a run --------------------------------------------------------------------------
@dataclass
class RunWatch:
    """What was seen of a run: the sensor's state changes and the final states."""

    run_id: str
    sensor_states: list[str] = field(default_factory=list)
    run_state: str | None = None
    task_states: dict[str, str] = field(default_factory=dict)
    took_s: float = 0.0

    @property
    def deferred(self) -> int:
        """How many times the sensor was seen entering ``deferred``."""
        return self.sensor_states.count("deferred")


def trigger_run(deployment: Deployment, day: date) -> str:
    """Trigger the DAG for the invoices dated ``day`` (``Deployment.trigger``: an explicit data interval)."""
    return deployment.trigger(day, {"fail_on_action_needed": False},
                              run_id=f"services__{day.isoformat()}__{uuid.uuid4().hex[:6]}")


def watch_run(deployment: Deployment, run_id: str, *, on_deferred: Callable[[RunWatch], None] | None = None,
              timeout: float = RUN_TIMEOUT_S) -> RunWatch:
    """Poll the metadata database until the run ends; call ``on_deferred`` each time the sensor defers."""
    watch = RunWatch(run_id)
    started = time.monotonic()
    while True:
        deployment.stack.check_running()
        tis = deployment.query(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
            DAG_ID, run_id)
        states = {f"{t}[{m}]" if m >= 0 else t: s for t, m, s in tis}
        sensor = states.get(SENSOR)
        entered = sensor is not None and (not watch.sensor_states or watch.sensor_states[-1] != sensor)
        if entered:
            watch.sensor_states.append(sensor)
        bad = {k: v for k, v in states.items() if v in BAD_TASK_STATES}
        if bad:
            raise AssertionError(f"tasks went wrong in {run_id}: {bad}; all: {states}\n"
                                 f"{deployment.diagnostics(run_id)}")
        if entered and sensor == "deferred" and on_deferred is not None:
            on_deferred(watch)
        run = deployment.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id)
        if run and run[0][0] in ("success", "failed"):
            watch.run_state, watch.task_states = run[0][0], states
            watch.took_s = time.monotonic() - started
            return watch
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{run_id} did not end within {timeout:g} s; run: {run}, tasks: {states}, "
                                 f"sensor states seen: {watch.sensor_states}\n{deployment.diagnostics(run_id)}")
        time.sleep(0.2)


# ---- checks ----------------------------------------------------------------------------------
def _rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def check_run(deployment: Deployment, watch: RunWatch) -> None:
    context = f"{watch.run_id}: sensor states {watch.sensor_states}, tasks {watch.task_states}"
    assert watch.run_state == "success", f"{context}\n{deployment.diagnostics(watch.run_id)}"
    assert watch.deferred >= 1, f"{SENSOR} never seen deferred; {context}\n{deployment.diagnostics(watch.run_id)}"
    assert watch.task_states.get(SENSOR) == "success", context
    assert TASKS <= {name.split("[")[0] for name in watch.task_states}, context
    assert {state for task, state in watch.task_states.items() if task != "watcher"} == {"success"}, context
    assert watch.task_states.get("watcher") == "skipped", context


def check_ledger(deployment: Deployment, day: date, sends_before: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Every invoice the simulator received is final in the ledger, with its status, sent once.

    Returns the day's ledger rows by invoice id.
    """
    stats = deployment.simulator.stats()
    sends: dict[str, int] = stats["sends"]
    assert not stats["duplicates"], stats["duplicates"]
    assert all(count == 1 for count in sends.values()), {k: v for k, v in sends.items() if v != 1}
    ledger = _rows(deployment.reporting, "SELECT * FROM inexchange_dispatch")
    by_document = {row["erp_document_id"]: row for row in ledger}
    day_rows = {row["invoice_id"]: row for row in ledger if str(row["invoice_date"])[:10] == day.isoformat()}
    assert len(day_rows) >= 15, f"the ERP should give {day} enough invoices, got {len(day_rows)}"

    new = {doc for doc in sends if doc not in sends_before}
    submitted = {row["erp_document_id"] for row in day_rows.values() if row["state"] != "rejected"}
    assert len(submitted) >= 5, f"too few invoices of {day} were sent: {len(submitted)}"
    assert new == submitted, (f"sends of this run vs. the day's submitted ledger rows: only sent {new - submitted}, "
                              f"only in the ledger {submitted - new}")

    with httpx.Client(base_url=deployment.simulator.base_url, timeout=10.0) as client:
        token = client.post("clientTokens/create", headers={"APIKey": deployment.simulator.api_key},
                            json={"erpId": ERP_ID}).json()["token"]
        for document in sends:  # every send so far, also the earlier tests'
            row = by_document.get(document)
            assert row is not None, f"{document} reached InExchange but is not in the ledger"
            assert row["state"] in FINAL_STATES and row["inexchange_status"], (document, row)
            at_sim = client.post(f"invoices/outbound/byerpid/{document}", headers={"ClientToken": token},
                                 json={"includeFileInfo": False}).json()
            status = at_sim["currentStatus"]["status"]
            assert row["inexchange_document_id"] == at_sim["id"], (document, row, at_sim["id"])
            assert (row["inexchange_status"], row["state"]) == (status, SIM_TO_LEDGER[status]), (document, row, status)
    return day_rows


def check_history(deployment: Deployment, day_rows: dict[int, dict[str, Any]]) -> None:
    """No status written twice, and nothing goes back from a final state to waiting."""
    history = _rows(deployment.reporting,
                    "SELECT invoice_id, from_state, to_state, inexchange_status, source, changed_at "
                    "FROM inexchange_dispatch_history ORDER BY invoice_id, changed_at")
    problems = []
    for invoice_id, row in day_rows.items():
        entries = [h for h in history if h["invoice_id"] == invoice_id]
        trail = [(h["to_state"], h["inexchange_status"], h["source"]) for h in entries]
        assert entries and entries[0]["to_state"] == "pending" and entries[-1]["to_state"] == row["state"], \
            (invoice_id, trail, row["state"])
        seen: set[tuple[str, str | None]] = set()
        final_reached = False
        for entry in entries:
            key = (entry["to_state"], entry["inexchange_status"])
            if key in seen:
                problems.append(f"invoice {invoice_id}: {key} written twice: {trail}")
            seen.add(key)
            if final_reached and entry["to_state"] == "waiting":
                problems.append(f"invoice {invoice_id}: back to waiting after a final state: {trail}")
            final_reached = final_reached or entry["to_state"] in FINAL_STATES
    assert not problems, "\n".join(problems)


# ---- tests -----------------------------------------------------------------------------------
def test_sensor_defers_to_the_triggerer(deployment: Deployment) -> None:
    sends_before = dict(deployment.simulator.stats()["sends"])
    run_id = trigger_run(deployment, FIRST_DAY)
    watch = watch_run(deployment, run_id)
    check_run(deployment, watch)
    day_rows = check_ledger(deployment, FIRST_DAY, sends_before)
    check_history(deployment, day_rows)
    print(f"{run_id}: {watch.took_s:.1f} s, sensor states {watch.sensor_states}")


def test_triggerer_killed_while_deferred(deployment: Deployment) -> None:
    """SIGKILL the triggerer while the sensor is deferred; a new triggerer takes the trigger over."""
    deployment.simulator.configure(status_step_ms=RESTART_STATUS_STEP_MS)
    sends_before = dict(deployment.simulator.stats()["sends"])
    stack = deployment.stack
    kills: list[dict[str, Any]] = []

    def sensor_row(run_id: str) -> tuple[str, int | None]:
        rows = deployment.query("SELECT state, trigger_id FROM task_instance WHERE dag_id = %s AND run_id = %s "
                                "AND task_id = %s AND map_index = -1", DAG_ID, run_id, SENSOR)
        return rows[0][0], rows[0][1]

    def kill_triggerer(watch: RunWatch) -> None:
        """Kill the triggerer (whole process group) while the sensor waits on its trigger, start a new one.

        Done again at a later deferral when the trigger fired just before the kill (then the
        kill proved nothing).
        """
        if any(k["taken_over"] for k in kills):
            return
        state, trigger_id = sensor_row(watch.run_id)
        if state != "deferred" or trigger_id is None:
            return
        old_jobs = [r[0] for r in deployment.query("SELECT id FROM job WHERE job_type = 'TriggererJob'")]
        stack.kill("triggerer")
        kill = {"trigger_id": trigger_id, "after_kill": None, "taken_over": False, "resumed_after_s": None}
        kills.append(kill)
        killed_at = time.monotonic()
        time.sleep(3)
        kill["after_kill"] = sensor_row(watch.run_id)
        stack.start("triggerer", "triggerer")
        if kill["after_kill"] != ("deferred", trigger_id):
            return  # the trigger fired before it was killed: try again at the next deferral

        # still deferred on the same trigger with no triggerer alive: only a new one can fire it
        def new_owner() -> str | None:
            owner = deployment.query("SELECT triggerer_id FROM trigger WHERE id = %s AND triggerer_id <> ALL(%s)",
                                     trigger_id, old_jobs)
            if owner:
                return f"job {owner[0][0]}"
            return None if sensor_row(watch.run_id) == ("deferred", trigger_id) else "fired before seen assigned"

        kill["new_owner"] = stack.wait_for("a new triggerer to take the trigger over", new_owner, timeout=60,
                                           interval=0.1)
        stack.wait_for("the taken-over trigger to fire",
                       lambda: sensor_row(watch.run_id) != ("deferred", trigger_id), timeout=60, interval=0.1)
        kill["taken_over"] = True
        kill["resumed_after_s"] = round(time.monotonic() - killed_at, 1)

    run_id = trigger_run(deployment, RESTART_DAY)
    try:
        watch = watch_run(deployment, run_id, on_deferred=kill_triggerer)
    finally:
        deployment.simulator.configure(status_step_ms=STATUS_STEP_MS)
    context = f"kills {kills}; sensor states {watch.sensor_states}"
    check_run(deployment, watch)
    assert kills, f"{SENSOR} was never deferred, the triggerer was not killed; {context}"
    assert any(k["taken_over"] for k in kills), f"no kill happened while a trigger was pending; {context}"
    day_rows = check_ledger(deployment, RESTART_DAY, sends_before)
    check_history(deployment, day_rows)
    print(f"{run_id}: {watch.took_s:.1f} s, {context}")
