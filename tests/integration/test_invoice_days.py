"""Which command sends which invoice days: docs/operations.md's table, run on real Airflow components.

The Backfills section of docs/operations.md lists, for the week of 16 to 22 November 2026, commands
a person runs one after the other (``airflow dags test``, ``airflow dags trigger`` with ``invoice_date``,
``airflow backfill create``) and the invoice days each one sends. This test reads that table, runs
each command as written against a deployment (a PostgreSQL metadata database, api-server,
scheduler, dag-processor, triggerer; the simulator; a SQLite ERP holding the whole week), waits for
the runs it started, and checks, from the ledger's history, that every run took exactly the
invoices of the days its row names, and that every day of the week was taken by one run only.

About 3 minutes; skipped without PostgreSQL unless INEXCHANGE_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from inexchange_devkit.services import Deployment, PostgresServer, dispatch_deployment

from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER, SELLER, generated_erp

pytestmark = [pytest.mark.system, pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(900)]

DAG_ID = "inexchange_dispatch"
WEEK = [date(2026, 11, 16) + timedelta(days=n) for n in range(7)]
TABLE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
RUN_TIMEOUT_S = 300.0


def table_rows() -> list[tuple[str, list[date]]]:
    """The command and invoice days of each row of the invoice-days table of docs/operations.md, in order."""
    text = TABLE_PAGE.read_text(encoding="utf-8")
    block = re.search(r"<!-- invoice-days:.*?-->\n(.*?)<!-- /invoice-days -->", text, re.DOTALL)
    assert block, "docs/operations.md has no invoice-days table"
    rows = []
    for line in block.group(1).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        command = re.fullmatch(r"`(airflow .+)`", cells[0])
        if command:
            rows.append((command.group(1), [date.fromisoformat(day) for day in re.findall(r"\d{4}-\d{2}-\d{2}", cells[1])]))
    return rows


def test_the_table_covers_the_week_once() -> None:
    rows = table_rows()
    assert {shlex.split(command)[1] for command, _ in rows} == {"dags", "backfill"}
    assert any(" trigger " in command and "invoice_date" in command for command, _ in rows)
    days = [day for _, row_days in rows for day in row_days]
    assert sorted(days) == WEEK, "every day of the week once"


@pytest.fixture(scope="module")
def deployment(postgres_server: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    from inexchange_devkit.simulator.testing import run_simulator

    erp = tmp_path_factory.mktemp("erp") / "erp.db"
    generated_erp(erp, seed=23, customers=30, invoices=70, start_date=WEEK[0], days=len(WEEK), drafts=4)
    home = tmp_path_factory.mktemp("invoice-days") / "home"
    home.mkdir()
    pg = PostgresServer(PG_HOST, PG_PORT, PG_USER, maintenance_db=PG_DB)
    with run_simulator(seed=3, status_step_ms=200, stop_rate=0.0, error_rate=0.0, api_key="days-key") as simulator, \
            dispatch_deployment(home, erp, simulator, pg=pg, erp_id="days-erp", seller=SELLER) as deployment:
        yield deployment


def _runs(deployment: Deployment) -> dict[str, tuple[str, str]]:
    """Every run of the DAG but the scheduled ones: run id to (run type, state)."""
    return {run_id: (run_type, state) for run_id, run_type, state in deployment.query(
        "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = %s AND run_type <> 'scheduled'", DAG_ID)}


def _wait_until_ended(deployment: Deployment, run_ids: set[str]) -> None:
    started = time.monotonic()
    while True:
        deployment.stack.check_running()
        states = {run_id: state for run_id, (_, state) in _runs(deployment).items() if run_id in run_ids}
        if len(states) == len(run_ids) and all(state in ("success", "failed") for state in states.values()):
            return
        assert time.monotonic() - started < RUN_TIMEOUT_S, (
            f"runs {states} did not end within {RUN_TIMEOUT_S:g} s\n{deployment.diagnostics(*run_ids)}")
        time.sleep(0.5)


def args_of(command: str) -> list[str]:
    """A table command's words, as a shell splits them."""
    return shlex.split(command)


def _run(deployment: Deployment, command: str) -> set[str]:
    """Run one table command as written; return the ids of the runs it made, once they ended."""
    args = args_of(command)
    assert args[0] == "airflow"
    before = set(_runs(deployment))
    if args[1:3] == ["dags", "test"]:
        # the scheduler leaves the DAG's runs alone while it is paused; `dags test` runs every task itself
        deployment.stack.cli("dags", "pause", DAG_ID)
        try:
            # it exits 1 when the run ends red: the generated ERP holds invoices that need a person
            deployment.stack.cli(*args[1:], timeout=RUN_TIMEOUT_S, check=False)
        finally:
            deployment.stack.cli("dags", "unpause", DAG_ID)
    else:
        deployment.stack.cli(*args[1:])
    deadline = time.monotonic() + 60
    while not (made := set(_runs(deployment)) - before):
        assert time.monotonic() < deadline, f"`{command}` made no run"
        time.sleep(0.5)
    if args[1] == "backfill":
        # the backfill's runs exist once the command returns; wait for the scheduler to finish them all
        _wait_for_backfill(deployment)
        made = set(_runs(deployment)) - before
    _wait_until_ended(deployment, made)
    return made


def _wait_for_backfill(deployment: Deployment) -> None:
    started = time.monotonic()
    while deployment.query("SELECT 1 FROM backfill WHERE dag_id = %s AND completed_at IS NULL", DAG_ID):
        assert time.monotonic() - started < RUN_TIMEOUT_S, f"the backfill did not end\n{deployment.diagnostics()}"
        time.sleep(0.5)


def test_each_command_sends_the_invoice_days_the_table_names(deployment: Deployment) -> None:
    days_by_run: dict[str, set[str]] = {}
    expected: dict[str, set[str]] = {}
    for command, days in table_rows():
        made = _run(deployment, command)
        for run_id in made:
            expected[run_id] = {day.isoformat() for day in days}
        taken = _extracted_days(deployment, made)
        days_by_run.update(taken)
        assert set().union(*taken.values()) == {day.isoformat() for day in days}, (
            f"`{command}` sent the invoices dated {sorted(set().union(*taken.values()))}, docs/operations.md says "
            f"{[day.isoformat() for day in days]}\n{deployment.diagnostics(*made)}")
        # a run ends red only for the invoices that need a person (the report task), never for a stage
        failed = deployment.query("SELECT run_id, task_id FROM task_instance WHERE dag_id = %s AND state = 'failed'",
                                  DAG_ID)
        assert {task_id for run_id, task_id in failed if run_id in made} <= {"report"}, failed
        # every invoice the run extracted went out (or was refused by validation) within the run
        if args_of(command)[1:3] != ["dags", "test"]:  # `dags test` logs to its own output, not to task log files
            for run_id in made:
                named = {line.split("this run: ", 1)[1].split(" (", 1)[0]
                         for path in deployment.task_logs(run_id)
                         for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                         if "this run: " in line}
                assert named == {f"invoices dated {day}" for day in expected[run_id] if day in taken[run_id]}, (
                    run_id, named)
        unfinished = deployment.rows(
            "SELECT invoice_number, state FROM inexchange_dispatch WHERE state NOT IN ('sent', 'rejected')")
        assert not unfinished, unfinished

    # each day was taken by one run only, and the week's InExchange invoices all went into the ledger
    owners = [day for days in days_by_run.values() for day in days]
    assert sorted(owners) == [day.isoformat() for day in WEEK]
    ledger_days = {row["invoice_date"][:10] for row in deployment.rows("SELECT invoice_date FROM inexchange_dispatch")}
    assert ledger_days == {day.isoformat() for day in WEEK}


def _extracted_days(deployment: Deployment, run_ids: set[str]) -> dict[str, set[str]]:
    """The invoice days each run took into the ledger (its extract's history rows)."""
    rows = deployment.rows(
        "SELECT h.dag_run_id, d.invoice_date FROM inexchange_dispatch_history h "
        "JOIN inexchange_dispatch d ON d.invoice_id = h.invoice_id "
        "WHERE h.source = 'extract' AND h.from_state IS NULL")
    taken: dict[str, set[str]] = {run_id: set() for run_id in run_ids}
    for row in rows:
        if row["dag_run_id"] in taken:
            taken[row["dag_run_id"]].add(str(row["invoice_date"])[:10])
    return taken
