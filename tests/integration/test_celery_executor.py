"""The dispatch DAG on the native CeleryExecutor stack of ``make celery-up``, two workers.

The test starts the stack with ``celery_up`` of ``inexchange_devkit.services`` (what ``make
celery-up`` runs) in a temporary state directory, on:

* two fresh PostgreSQL databases on 127.0.0.1:5432, ``af_celery_<random>`` for the Airflow metadata
  (and the Celery result backend) and ``rep_celery_<random>`` for the ledger and the report
  (connection ``inexchange_reporting``), both dropped at the end;
* Redis DB ``INEXCHANGE_TEST_REDIS_DB`` (default 6, ``make celery-up`` uses 5) on 127.0.0.1:6379 as
  the broker, flushed first;
* the InExchange simulator (statuses one step per 300 ms) and a generated SQLite ERP with one day of
  posted invoices, 56 of them billed through InExchange;
* ``airflow api-server``, ``scheduler`` (CeleryExecutor), ``dag-processor``, ``triggerer`` and two
  ``airflow celery worker`` processes, ``worker1@<host>`` and ``worker2@<host>``, each with its own
  ``INEXCHANGE_HOSTNAME`` for ``[core] hostname_callable = inexchange.deploy.hostname``.

It logs in as admin through the REST API, triggers ``inexchange_dispatch`` for the day with
``batch_size`` 8 (five mapped ``submit`` tasks in the 4-slot pool ``inexchange_api``; each worker runs
two tasks at a time and reserves no more), waits for the run and checks: every task succeeded and
ran on one of the two workers, the mapped ``submit`` tasks ran on both (``task_instance.hostname``,
which the task processes report through the Execution API), the simulator received each invoice
the ledger sent exactly once and no other, and ``inexchange_report`` has one row per ledger row of
the day. Last, ``celery_down`` (``make celery-down``) leaves no process of the stack behind; the
fixture runs it again (and drops the databases) whatever happened.

Run from the repository root (about 40-50 s on 2 CPUs; skipped without PostgreSQL or Redis
unless INEXCHANGE_REQUIRE_POSTGRES=1)::

    INEXCHANGE_REQUIRE_POSTGRES=1 .venv/bin/python -m pytest tests/integration/test_celery_executor.py -v

Component logs go to ``<pytest basetemp>/celery-stack0/state/logs/`` (task logs under
``state/home/logs``); a failure prints their tails.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import NamedTuple

import httpx
import psutil
import pytest
from inexchange_devkit.services import (
    CelerySettings,
    Deployment,
    PostgresServer,
    celery_down,
    celery_nodes,
    celery_status,
    celery_up,
    free_port,
)

from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER, SELLER, generated_erp

pytestmark = [pytest.mark.system, pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(300)]

DAG_ID = "inexchange_dispatch"
DAY = date(2026, 11, 10)
BATCH_SIZE = 8
POOL_SLOTS = 4
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = int(os.environ.get("INEXCHANGE_TEST_REDIS_DB", "6"))
BAD_TASK_STATES = {"failed", "up_for_retry", "upstream_failed", "removed"}
RUN_TIMEOUT_S = 150.0
REQUIRE = os.environ.get("INEXCHANGE_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="module")
def redis_url() -> str:
    """The test's Redis DB, flushed; skip (fail when INEXCHANGE_REQUIRE_POSTGRES=1) without Redis."""
    import redis

    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        message = f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}: {exc}"
        if REQUIRE:
            pytest.fail(message + " (INEXCHANGE_REQUIRE_POSTGRES=1 makes these tests mandatory)")
        pytest.skip(message)
    finally:
        client.close()
    return url


@pytest.fixture(scope="module")
def erp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One day of 60 posted invoices: 56 billed through InExchange (some fail validation), 4 otherwise."""
    path = tmp_path_factory.mktemp("erp") / "erp.db"
    generated_erp(path, seed=21, customers=30, invoices=60, start_date=DAY, days=1, drafts=3)
    return path


class CeleryRun(NamedTuple):
    settings: CelerySettings
    deployment: Deployment


@pytest.fixture(scope="module")
def stack(postgres_server: None, redis_url: str, tmp_path_factory: pytest.TempPathFactory,
          erp_file: Path) -> Iterator[CeleryRun]:
    """The stack on fresh databases, a flushed Redis DB and free ports; stopped whatever happens."""
    state_dir = tmp_path_factory.mktemp("celery-stack") / "state"
    pg = PostgresServer(PG_HOST, PG_PORT, PG_USER, maintenance_db=PG_DB)
    with pg.temporary_database("af_celery_") as metadata_db, pg.temporary_database("rep_celery_") as reporting_db:
        settings = CelerySettings(
            state_dir=state_dir, pg=pg, metadata_db=metadata_db, reporting_db=reporting_db, redis_url=redis_url,
            api_port=free_port(), simulator_port=free_port(),
            log_server_ports=(free_port(), free_port(), free_port()),
            workers=2, worker_concurrency=2, pool_slots=POOL_SLOTS, simulator_status_step_ms=300,
            poll_interval_s=5, erp_path=erp_file, seller=SELLER, erp_id="celery-erp", api_key="celery-key",
        )
        deployment = None
        try:
            deployment = celery_up(settings, say=lambda line: None)
            yield CeleryRun(settings, deployment)
        finally:
            celery_down(settings)
            if deployment is not None:
                deployment.close()


# ---- helpers ---------------------------------------------------------------------------------
def trigger_run(deployment: Deployment, day: date) -> str:
    """Trigger the DAG as admin for the invoices dated ``day`` (interval 06:00 to 06:00 Stockholm), small batches."""
    return deployment.trigger(day, {"fail_on_action_needed": False, "batch_size": BATCH_SIZE},
                              run_id=f"celery__{day.isoformat()}__{uuid.uuid4().hex[:6]}")


def wait_for_run(deployment: Deployment, run_id: str) -> tuple[str, list[tuple[str, int, str, str]]]:
    """Poll the metadata database until the run ends; fail early when a task goes wrong or a component dies."""
    started = time.monotonic()
    while True:
        deployment.stack.check_running()
        tis = deployment.query("SELECT task_id, map_index, state, hostname FROM task_instance "
                               "WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index", DAG_ID, run_id)
        bad = [t for t in tis if t[2] in BAD_TASK_STATES]
        if bad:
            raise AssertionError(f"tasks went wrong in {run_id}: {bad}; all: {tis}\n{deployment.diagnostics(run_id)}")
        run = deployment.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id)
        if run and run[0][0] in ("success", "failed"):
            return run[0][0], tis
        if time.monotonic() - started > RUN_TIMEOUT_S:
            raise AssertionError(f"{run_id} did not end within {RUN_TIMEOUT_S:g} s; run {run}, tasks {tis}\n"
                                 f"{deployment.diagnostics(run_id)}")
        time.sleep(0.5)


# ---- the test --------------------------------------------------------------------------------
def test_mapped_batches_spread_over_two_celery_workers(stack: CeleryRun) -> None:
    settings, deployment = stack
    workers = {settings.worker_hostname(w) for w in settings.worker_names()}
    assert len(workers) == 2, workers
    assert celery_nodes(settings) == sorted(f"{w}@{socket.gethostname()}" for w in settings.worker_names())

    run_id = trigger_run(deployment, DAY)
    state, tis = wait_for_run(deployment, run_id)
    context = f"{run_id}: {tis}"
    assert state == "success", f"{context}\n{deployment.diagnostics(run_id)}"
    assert {t[2] for t in tis if t[0] != "watcher"} == {"success"}, context
    assert [t[2] for t in tis if t[0] == "watcher"] == ["skipped"], context

    # every task ran on one of the two workers (the skipped watcher ran nowhere), and the mapped batches on both
    assert {t[3] for t in tis if t[0] != "watcher"} <= workers, f"task hostnames outside {workers}: {context}"
    submits = {t[1]: t[3] for t in tis if t[0] == "submit"}
    assert len(submits) >= 5, f"expected at least 5 mapped submit tasks with batch_size {BATCH_SIZE}: {context}"
    assert set(submits.values()) == workers, f"the submit batches did not run on both workers: {submits}"

    # the ledger of the day, the simulator's sends and the report agree; nothing was sent twice
    ledger = deployment.rows("SELECT invoice_id, erp_document_id, state, invoice_date FROM inexchange_dispatch")
    day_rows = {r["invoice_id"]: r for r in ledger if str(r["invoice_date"])[:10] == DAY.isoformat()}
    assert len(day_rows) == len(ledger) == 56, f"the ledger should hold the day's 56 InExchange invoices: {ledger}"
    sent = {r["erp_document_id"] for r in day_rows.values() if r["state"] != "rejected"}
    assert len(sent) > 4 * BATCH_SIZE, f"too few invoices were sent for several batches: {sorted(sent)}"
    assert {r["state"] for r in day_rows.values()} <= {"sent", "stopped", "failed", "rejected"}, day_rows

    stats = httpx.get(f"{settings.simulator_root}_sim/stats", timeout=10.0).json()
    assert not stats["duplicates"], stats["duplicates"]
    assert all(count == 1 for count in stats["sends"].values()), \
        {k: v for k, v in stats["sends"].items() if v != 1}
    assert set(stats["sends"]) == sent, (f"only at the simulator {set(stats['sends']) - sent}, "
                                         f"only in the ledger {sent - set(stats['sends'])}")

    report = deployment.rows("SELECT invoice_id, state FROM inexchange_report")
    assert sorted(r["invoice_id"] for r in report) == sorted(day_rows), "inexchange_report is not one row per ledger row"
    assert {r["invoice_id"]: r["state"] for r in report} == {i: r["state"] for i, r in day_rows.items()}

    print(f"{run_id}: submit batches by map index {dict(sorted(submits.items()))}; "
          f"all tasks {[(t[0], t[1], t[3]) for t in tis]}")

    # `celery_down` (make celery-down) stops every process the stack started (task processes included)
    components = {"simulator", "api-server", "scheduler", "dag-processor", "triggerer", *settings.worker_names()}
    processes = deployment.stack.processes()
    assert len(processes) > len(components), f"the components and their children: {processes}"
    stopped = celery_down(settings)
    assert set(stopped) == components
    left = [p for p in [*processes, *deployment.stack.marked()] if running(p)]
    assert not left, f"processes left after down: {left}"
    assert celery_status(settings) == {}


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
