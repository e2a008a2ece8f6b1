"""Test session setup: a private Airflow home with SQLite metadata, and the PostgreSQL server.

Airflow reads its configuration when first imported, so the environment is set here, before any
test module imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="inexchange-tests-airflow-"))
os.environ.update({
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(_AIRFLOW_HOME / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
})

from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER, pg_url  # noqa: E402

REQUIRE_POSTGRES = os.environ.get("INEXCHANGE_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the session's Airflow metadata database (SQLite) once."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL, env=os.environ.copy())
    return _AIRFLOW_HOME


def _postgres_error() -> str | None:
    import psycopg2

    try:
        psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_DB, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        return str(exc).strip()
    return None


@pytest.fixture(scope="session")
def postgres_server() -> None:
    """Skip (or fail, when INEXCHANGE_REQUIRE_POSTGRES=1) without the PostgreSQL server."""
    error = _postgres_error()
    if error is None:
        return
    message = f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}/{PG_DB}: {error}"
    if REQUIRE_POSTGRES:
        pytest.fail(message + " (INEXCHANGE_REQUIRE_POSTGRES=1 makes these tests mandatory)")
    pytest.skip(message)


@pytest.fixture
def pg_schema(postgres_server: None) -> Iterator[str]:
    """A fresh PostgreSQL schema in database ``test``, dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url())
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))  # identifier made here, not user input
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The warnings the official Peppol rules gave (as the Peppol tests recorded them, also on
    pytest-xdist's workers), one line per rule id, or a line saying there were none."""
    from dispatch_testing.peppol_warnings import summary_lines

    reports = [report for category in terminalreporter.stats.values() for report in category
               if getattr(report, "when", None) == "call"]
    lines = summary_lines(reports)
    if lines:
        terminalreporter.section("official Peppol rules", sep="-")
        for line in lines:
            terminalreporter.write_line(line)
