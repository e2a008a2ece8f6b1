"""The preflight's checks one by one, on real SQLite files; the API check is stubbed at the HTTP edge."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
import respx
from sqlalchemy import create_engine, text

from inexchange.preflight import PreflightFailed, api_problems, erp_problems, preflight, reporting_problems, seller_problems
from dispatch_testing.support import SELLER, sqlite_conn_env

BASE = "https://api.example/v1/api/"


@pytest.fixture
def erp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from inexchange_devkit.erpgen import generate

    path = tmp_path / "erp.db"
    engine = create_engine(f"sqlite:///{path}")
    generate(engine, seed=3, customers=15, invoices=20, days=1)
    engine.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_ERP_CHECK", sqlite_conn_env(path))
    return path


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> respx.MockRouter:
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_CHECK", json.dumps(
        {"conn_type": "inexchange", "host": BASE, "password": "the-key", "extra": {"erp_id": "erp-1"}}))
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def test_a_good_seller_has_no_problem() -> None:
    assert seller_problems(lambda: dict(SELLER)) == []


def test_seller_problems_are_named_one_per_line() -> None:
    problems = seller_problems(lambda: {**SELLER, "bankgiro": "123", "org_number": "", "bic": "X"})
    assert "Variable inexchange_seller: bankgiro 123 is not valid (7 to 8 digits with a check digit)" in problems
    assert "Variable inexchange_seller: org_number is required" in problems
    assert any(p.startswith("Variable inexchange_seller: bic X is not a valid BIC") for p in problems)


def test_a_missing_seller_variable_says_what_to_set() -> None:
    def missing() -> None:
        raise KeyError("Variable inexchange_seller does not exist")

    (problem,) = seller_problems(missing)
    assert problem.startswith("Variable inexchange_seller cannot be read") and "JSON object" in problem
    assert seller_problems(lambda: ["a list"]) == ["Variable inexchange_seller must be a JSON object, not list"]


def test_the_erp_is_read_as_the_contract_says(erp: Path) -> None:
    assert erp_problems("erp_check") == []
    engine = create_engine(f"sqlite:///{erp}")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE customer RENAME COLUMN org_number TO orgnr"))
    engine.dispose()
    (problem,) = erp_problems("erp_check")
    assert problem.startswith("connection 'erp_check' (the ERP) cannot be read as the adapter contract says")
    assert "org_number" in problem and "\n" not in problem


def test_a_mistyped_erp_path_is_a_problem_and_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ERP_CHECK", sqlite_conn_env(tmp_path / "typo.db"))
    (problem,) = erp_problems("erp_check")
    assert "erp_check" in problem and "typo.db" in problem
    assert not (tmp_path / "typo.db").exists()


def test_a_writable_reporting_database_has_no_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REPORTING_CHECK", sqlite_conn_env(tmp_path / "reporting.db"))
    assert reporting_problems("reporting_check") == []


@pytest.mark.postgres
def test_a_reporting_user_that_may_only_read_is_a_problem(pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL user without the right to create or write in the schema: named, nothing created."""
    import uuid

    from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, pg_url

    role = f"ro_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url())
    with admin.begin() as conn:  # identifiers made here, not user input
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA "{pg_schema}" TO "{role}"'))
    monkeypatch.setenv("AIRFLOW_CONN_REPORTING_CHECK", json.dumps({
        "conn_type": "postgres", "host": PG_HOST, "port": PG_PORT, "login": role, "schema": PG_DB,
        "extra": {"search_path": pg_schema}}))
    try:
        (problem,) = reporting_problems("reporting_check")
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'REVOKE ALL ON SCHEMA "{pg_schema}" FROM "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()
    assert problem.startswith("connection 'reporting_check' (the ledger and the report) is not writable")
    assert "permission denied" in problem and "\n" not in problem


def test_a_missing_reporting_connection_says_to_define_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", raising=False)
    (problem,) = reporting_problems("inexchange_reporting")
    assert problem.startswith("connection 'inexchange_reporting' is not defined: define inexchange_reporting")


def test_the_api_key_is_tried_with_a_token_that_is_revoked(api: respx.MockRouter) -> None:
    create = api.post("clientTokens/create").mock(return_value=httpx.Response(200, json={"token": "tok-1"}))
    revoke = api.post("clientTokens/revoke").mock(return_value=httpx.Response(200))
    assert api_problems("inexchange_check") == []
    assert create.call_count == 1 and json.loads(revoke.calls.last.request.content) == {"clientToken": "tok-1"}


def test_a_refused_api_key_is_a_problem_without_the_key(api: respx.MockRouter) -> None:
    api.post("clientTokens/create").mock(return_value=httpx.Response(401, json={"message": "Invalid API key"}))
    (problem,) = api_problems("inexchange_check")
    assert problem.startswith("InExchange did not accept the connection 'inexchange_check'") and "401" in problem
    assert "the-key" not in problem


def test_an_outage_is_no_configuration_problem_but_an_error_to_retry(api: respx.MockRouter,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange.exceptions import InExchangeApiError
    from inexchange.hooks.inexchange import InExchangeHook

    monkeypatch.setattr(InExchangeHook, "_sleep", staticmethod(lambda seconds: None))
    api.post("clientTokens/create").mock(return_value=httpx.Response(503, json={"message": "down"}))
    with pytest.raises(InExchangeApiError):
        api_problems("inexchange_check")


def test_a_missing_api_connection_says_what_to_define(monkeypatch: pytest.MonkeyPatch) -> None:
    (problem,) = api_problems("inexchange_nowhere")
    assert problem.startswith("connection 'inexchange_nowhere' is not defined: define it with the API base URL")


def test_every_problem_is_named_at_once(erp: Path, api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", raising=False)
    api.post("clientTokens/create").mock(return_value=httpx.Response(401, json={"message": "Invalid API key"}))

    with pytest.raises(PreflightFailed) as failed:
        preflight(erp_conn_id="erp_check", reporting_conn_id="inexchange_reporting",
                  inexchange_conn_id="inexchange_check", read_seller=lambda: {**SELLER, "bankgiro": "123"})

    assert len(failed.value.problems) == 3, failed.value.problems
    lines = str(failed.value).splitlines()
    assert lines[0] == ("the run cannot start: 3 configuration problem(s), nothing was read, written or sent:")
    assert [line[:4] for line in lines[1:]] == ["  - "] * 3


@pytest.mark.postgres
def test_a_database_server_that_is_down_is_an_outage_to_retry(postgres_server: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens on the port (a server restarting): raised for a retry, not named as configuration."""
    import socket

    from dispatch_testing.support import PG_DB, PG_USER

    with socket.socket() as probe:  # a free port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_REPORTING_CHECK", json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": PG_USER, "schema": PG_DB}))
    monkeypatch.setenv("AIRFLOW_CONN_ERP_CHECK", os.environ["AIRFLOW_CONN_REPORTING_CHECK"])
    with pytest.raises(Exception, match="(?i)connection refused"):
        reporting_problems("reporting_check")
    with pytest.raises(Exception, match="(?i)connection refused"):
        erp_problems("erp_check")


@pytest.mark.postgres
def test_a_database_that_does_not_exist_is_a_configuration_problem(postgres_server: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from dispatch_testing.support import PG_HOST, PG_PORT, PG_USER

    monkeypatch.setenv("AIRFLOW_CONN_REPORTING_CHECK", json.dumps({
        "conn_type": "postgres", "host": PG_HOST, "port": PG_PORT, "login": PG_USER, "schema": "no_such_db_x"}))
    (problem,) = reporting_problems("reporting_check")
    assert "is not writable" in problem and "no_such_db_x" in problem and "does not exist" in problem
