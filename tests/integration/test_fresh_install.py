"""The dispatch DAG on real Airflow components configured as a fresh install leaves them.

Nothing a demo or a test stack sets beyond the connections and Variables: no ``[inexchange]
api_pool`` (so the DAG names no pool of its own; the ``inexchange_api`` pool the stack creates is not
used), no ``[operators] default_deferrable`` (False, as a generated ``airflow.cfg`` has it). A real
scheduler must then schedule the mapped submit tasks in ``default_pool`` (a task in a pool that does
not exist is never scheduled), and ``await_delivery`` must defer to the real triggerer by itself.

The components are those of ``inexchange_devkit.services.dispatch_deployment`` (a fresh PostgreSQL
metadata database, api-server, scheduler with the LocalExecutor, dag-processor, triggerer); the ERP is
a SQLite file, opened read-only, and the reporting connection names the same file for the ledger.
About 80 s; skipped without PostgreSQL unless INEXCHANGE_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from inexchange_devkit.services import Deployment, PostgresServer, dispatch_deployment

from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER, SELLER, generated_erp

pytestmark = [pytest.mark.system, pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(300)]

DAG_ID = "inexchange_dispatch"
START = DAY = date(2026, 11, 17)
#: statuses move slowly enough that the sensor's first poll finds documents pending
STATUS_STEP_MS = 3000
RUN_TIMEOUT_S = 150.0
BAD_TASK_STATES = {"failed", "up_for_retry", "upstream_failed", "removed"}


@pytest.fixture(scope="module")
def deployment(postgres_server: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The components as a fresh install has them: no pool named, default_deferrable not set."""
    from inexchange_devkit.simulator.testing import run_simulator

    erp = tmp_path_factory.mktemp("erp") / "erp.db"
    generated_erp(erp, seed=11, customers=40, invoices=60, start_date=START, days=1, drafts=6)
    home = tmp_path_factory.mktemp("fresh-install") / "home"
    home.mkdir()
    pg = PostgresServer(PG_HOST, PG_PORT, PG_USER, maintenance_db=PG_DB)
    with run_simulator(seed=5, status_step_ms=STATUS_STEP_MS, stop_rate=0.0, error_rate=0.0,
                       api_key="fresh-key") as simulator, \
            dispatch_deployment(home, erp, simulator, pg=pg, erp_id="fresh-erp", seller=SELLER,
                                extra_env={"AIRFLOW__INEXCHANGE__API_POOL": ""}) as deployment:
        yield deployment


def _wait_for_the_run(deployment: Deployment, run_id: str) -> tuple[str, dict[str, str], list[str]]:
    """Poll the metadata database until the run ends; return its state, its tasks' and the sensor's states."""
    sensor_states: list[str] = []
    started = time.monotonic()
    while True:
        deployment.stack.check_running()
        tis = deployment.query("SELECT task_id, map_index, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                               DAG_ID, run_id)
        states = {f"{t}[{m}]" if m >= 0 else t: s for t, m, s in tis}
        sensor = states.get("await_delivery")
        if sensor is not None and (not sensor_states or sensor_states[-1] != sensor):
            sensor_states.append(sensor)
        bad = {k: v for k, v in states.items() if v in BAD_TASK_STATES}
        assert not bad, f"tasks went wrong: {bad}; all: {states}\n{deployment.diagnostics(run_id)}"
        run = deployment.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id)
        if run and run[0][0] in ("success", "failed"):
            return run[0][0], states, sensor_states
        assert time.monotonic() - started < RUN_TIMEOUT_S, (
            f"{run_id} did not end within {RUN_TIMEOUT_S:g} s; tasks: {states}\n{deployment.diagnostics(run_id)}")
        time.sleep(0.2)


def test_a_fresh_install_schedules_the_submit_tasks_and_defers_the_sensor(deployment: Deployment) -> None:
    run_id = deployment.trigger(DAY, {"fail_on_action_needed": False, "batch_size": 8},
                                run_id=f"fresh__{DAY.isoformat()}__{uuid.uuid4().hex[:6]}")

    state, tasks, sensor_states = _wait_for_the_run(deployment, run_id)

    assert state == "success", f"{tasks}\n{deployment.diagnostics(run_id)}"
    assert {state for task, state in tasks.items() if task != "watcher"} == {"success"}, tasks
    assert tasks.get("watcher") == "skipped", tasks
    pools = deployment.query("SELECT task_id, map_index, pool FROM task_instance WHERE dag_id = %s AND run_id = %s",
                             DAG_ID, run_id)
    submits = [pool for task_id, _index, pool in pools if task_id == "submit"]
    assert len(submits) >= 2, pools  # several mapped batches
    assert {pool for _task, _index, pool in pools} == {"default_pool"}
    assert "deferred" in sensor_states, sensor_states  # [operators] default_deferrable is False here
    scheduler_log = Path(deployment.stack.log_dir, "scheduler.log").read_text(encoding="utf-8", errors="replace")
    assert "non-existent pool" not in scheduler_log
    sent = deployment.rows("SELECT COUNT(*) AS n FROM inexchange_dispatch WHERE state = 'sent'")[0]["n"]
    assert sent >= 5 and not deployment.simulator.stats()["duplicates"]
    assert not deployment.rows("SELECT invoice_id FROM inexchange_dispatch WHERE state IN ('waiting', 'submitting')")


def test_the_stack_runs_as_generated(deployment: Deployment) -> None:
    """The settings this test relies on are Airflow's own defaults in the components' environment."""
    env: dict[str, Any] = deployment.stack.env
    assert "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE" not in env
    assert env.get("AIRFLOW__INEXCHANGE__API_POOL", "") == ""
