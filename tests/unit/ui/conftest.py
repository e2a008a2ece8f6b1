"""Fixtures of the dispatch page tests: a real SQLite reporting database and Airflow's real auth.

The page's app is mounted under ``/inexchange`` of a bare FastAPI root, beside the simple auth
manager's own ``/auth`` app, exactly as the api-server mounts plugin apps; users log in with
``POST /auth/token`` and send the JWT as the ``_token`` cookie like the browser does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from dispatch_page_support import (
    HISTORY_ROWS,
    JWT_SECRET,
    NOBODY,
    NOBODY_PASSWORD,
    REPORT_ROWS,
    VIEWER,
    VIEWER_PASSWORD,
    Site,
    create_reporting_database,
    fill_ledger,
)
from dispatch_testing.support import pg_connect_args, pg_url, postgres_conn_env, sqlite_conn_env


@pytest.fixture
def reporting_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The reporting database as a SQLite file, defined as connection ``inexchange_reporting``."""
    path = create_reporting_database(tmp_path / "reporting.db", REPORT_ROWS, HISTORY_ROWS)
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", sqlite_conn_env(path))
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cases_engine(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A reporting database (SQLite file, or a fresh PostgreSQL schema) holding ``LEDGER_CASES`` in
    the ledger and the report, defined as connection ``inexchange_reporting``."""
    if request.param == "sqlite":
        path = tmp_path / "cases.db"
        engine = create_engine(f"sqlite:///{path}")
        monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", sqlite_conn_env(path))
    else:
        schema = request.getfixturevalue("pg_schema")
        engine = create_engine(pg_url(), connect_args=pg_connect_args(schema))
        monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", postgres_conn_env(schema))
    try:
        fill_ledger(engine)
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def site(airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A FastAPI root with the page under ``/inexchange`` and the simple auth manager under ``/auth``."""
    from airflow.api_fastapi import app as airflow_app

    from inexchange.ui.app import create_app
    from inexchange.ui.plugin import URL_PREFIX

    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({VIEWER: VIEWER_PASSWORD, NOBODY: NOBODY_PASSWORD}), encoding="utf-8")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{VIEWER}:viewer,{NOBODY}:")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
    root = FastAPI()
    root.mount(URL_PREFIX, create_app())
    airflow_app.purge_cached_app()
    airflow_app.init_auth_manager(root)
    with TestClient(root, base_url="http://testserver") as client:
        yield Site(client)
    airflow_app.purge_cached_app()
