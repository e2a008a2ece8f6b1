"""One definition of "needs a person" in three places that must agree row for row.

``needs_attention.sql`` (the ledger, for people and scripts), the page's default filter
(``ui_report_page.sql`` over the report) and :func:`inexchange.pipeline.needs_person` (which turns a
run red) are read on the same data, SQLite and PostgreSQL: a ledger holding every case, whose report
rows the report task's own code wrote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from dispatch_page_support import CASES_SCOPE, LEDGER_CASES, fill_ledger
from inexchange.states import MAX_ATTEMPTS, LedgerState
from inexchange.attention import COLUMNS, needs_attention
from inexchange.ledger import Ledger
from inexchange.pipeline import needs_person
from inexchange.ui.queries import ALL_STATES, ATTENTION, ReportFilter, report_page
from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER, pg_connect_args, pg_url

ROOT = Path(__file__).resolve().parents[3]
#: how the SQL file is run by hand (its header and inexchange.attention's docstring say so)
SQL_FILE = "include/sql/needs_attention.sql"
REQUIRED_COLUMNS = {
    "invoice_number", "invoice_date", "customer_number", "customer_name", "state", "inexchange_status",
    "message", "attempts", "inexchange_document_id", "updated_at", "dag_run_id",
}


def by_sql(engine: Engine, max_attempts: int) -> set[str]:
    return {row["invoice_number"] for row in needs_attention(engine, max_attempts)}


def by_page(engine: Engine, max_attempts: int) -> set[str]:
    page = report_page(engine, ReportFilter(state=ATTENTION, max_attempts=max_attempts))
    assert page.total == page.attention == len(page.rows)
    return {row["invoice_number"] for row in page.rows}


def by_pipeline(engine: Engine, max_attempts: int) -> set[str]:
    """The report task's rows (``Ledger.refresh_report``, as ``pipeline.report`` reads them), filtered."""
    rows = Ledger(engine, CASES_SCOPE).refresh_report()
    return {row["invoice_number"] for row in rows if needs_person(row, max_attempts)}


def test_the_cases_cover_every_ledger_state() -> None:
    """A state added to the ledger fails here until the cases (and the SQL definitions) cover it."""
    assert {case.state for case in LEDGER_CASES} == {state.value for state in LedgerState}


@pytest.mark.parametrize("max_attempts", [MAX_ATTEMPTS, 1, 2, MAX_ATTEMPTS + 1])
def test_sql_page_and_pipeline_agree_row_for_row(cases_engine: Engine, max_attempts: int) -> None:
    sql = by_sql(cases_engine, max_attempts)
    assert sql == by_page(cases_engine, max_attempts) == by_pipeline(cases_engine, max_attempts)
    if max_attempts == MAX_ATTEMPTS:
        assert sql == {case.number for case in LEDGER_CASES if case.needs_person}


def test_the_page_flags_every_row_as_the_pipeline_does(cases_engine: Engine) -> None:
    """Under "all states" each row carries the page's own verdict; it is the pipeline's."""
    page = report_page(cases_engine, ReportFilter(state=ALL_STATES))
    assert page.total == len(LEDGER_CASES)
    flags = {row["invoice_number"]: row["needs_person"] for row in page.rows}
    assert flags == {row["invoice_number"]: needs_person(row, MAX_ATTEMPTS) for row in page.rows}
    assert flags == {case.number: case.needs_person for case in LEDGER_CASES}
    assert page.attention == sum(flags.values())


def test_ledger_rows_are_judged_as_report_rows(cases_engine: Engine) -> None:
    """``needs_person`` applied to the ledger's own rows finds what the SQL finds."""
    with cases_engine.connect() as conn:
        ledger = [dict(row._mapping) for row in conn.execute(text("SELECT * FROM inexchange_dispatch"))]
    assert by_sql(cases_engine, MAX_ATTEMPTS) == {
        row["invoice_number"] for row in ledger if needs_person(row, MAX_ATTEMPTS)}


def test_rows_have_the_documented_columns_oldest_invoice_first(cases_engine: Engine) -> None:
    rows = needs_attention(cases_engine)
    assert [tuple(row) for row in rows] == [COLUMNS] * len(rows)
    assert REQUIRED_COLUMNS <= set(COLUMNS)
    assert [row["invoice_number"] for row in rows] == ["20001", "20002", "20003", "20004", "20005"]
    reasons = {row["invoice_number"]: row["reason"] for row in rows}
    assert reasons == {
        "20001": "rejected by validation: fix the invoice or customer in the ERP",
        "20002": "stopped at InExchange: act in the InExchange portal",
        "20003": "send in doubt: check the InExchange portal",
        "20004": "InExchange reported an error: never resent automatically",
        "20005": "failed after its last automatic attempt",
    }
    failed = next(row for row in rows if row["invoice_number"] == "20004")
    assert (failed["inexchange_document_id"], failed["inexchange_status"], failed["attempts"]) == ("9b1e-0004", "Error", 1)
    assert failed["message"] == "Error: Duplicate invoice number"
    assert failed["updated_at"] == "2026-11-18T05:24:00.000000Z"
    assert failed["dag_run_id"] == CASES_SCOPE.dag_run_id and str(failed["invoice_date"]) == "2026-11-17"


def test_every_day_of_the_ledger_counts(cases_engine: Engine) -> None:
    """The query is not limited to a data interval: an old rejected invoice is still listed."""
    with cases_engine.begin() as conn:
        conn.execute(text("UPDATE inexchange_dispatch SET invoice_date = '2025-01-02' WHERE invoice_id = 2003"))
    rows = needs_attention(cases_engine)
    assert [row["invoice_number"] for row in rows][0] == "20003"
    assert len(rows) == 5


def test_sqlite3_shell_runs_the_file_as_documented(tmp_path: Path) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 shell is not installed")
    path = tmp_path / "reporting.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        fill_ledger(engine)
        expected = by_sql(engine, MAX_ATTEMPTS)
    finally:
        engine.dispose()
    out = subprocess.run(["sqlite3", "-csv", str(path), f".parameter set :max_attempts {MAX_ATTEMPTS}",
                          f".read {SQL_FILE}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert {line.split(",")[1] for line in out.splitlines()} == expected


@pytest.mark.postgres
def test_psql_runs_the_file_as_documented(pg_schema: str) -> None:
    if shutil.which("psql") is None:
        pytest.skip("the psql client is not installed")
    engine = create_engine(pg_url(), connect_args=pg_connect_args(pg_schema))
    try:
        fill_ledger(engine)
        expected = by_sql(engine, MAX_ATTEMPTS)
    finally:
        engine.dispose()
    env = {**os.environ, "PGOPTIONS": f"-csearch_path={pg_schema}"}
    out = subprocess.run(["psql", f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={PG_DB}", "-X", "-A", "-t",
                          "-v", "ON_ERROR_STOP=1", "-v", f"max_attempts={MAX_ATTEMPTS}", "-f", SQL_FILE],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    assert {line.split("|")[1] for line in out.splitlines() if line} == expected
