"""Database helpers: engines from Airflow connections, and reading the ERP's keys and dates leniently."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from inexchange.db import engine_for
from inexchange.erp import ErpReader
from inexchange.values import integer_id, read_date
from inexchange_devkit.erpgen import create_tables


@pytest.fixture
def sqlite_erp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An empty contract ERP in a SQLite file, reached through the connection ``erp_default``."""
    path = tmp_path / "erp.db"
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    engine = engine_for("erp_default")
    create_tables(engine)
    yield engine
    engine.dispose()


def test_sqlite_text_that_is_not_utf8_is_read_not_fatal(sqlite_erp: Any) -> None:
    """One undecodable name must not stop the reading of every other customer and invoice."""
    with sqlite_erp.begin() as conn:
        for customer_id, name in ((1, "Alingsås kommun".encode()), (2, "Caf\xe9 AB".encode("latin-1"))):
            conn.execute(text(
                "INSERT INTO customer (customer_id, customer_number, name, is_active, is_private_person, "
                "country_code, currency, billing_method, attach_documents) "
                "VALUES (:id, :number, CAST(:name AS TEXT), 1, 0, 'SE', 'SEK', 'x', 0)"),
                {"id": customer_id, "number": str(4000 + customer_id), "name": name})
    frame = ErpReader(sqlite_erp)._frame("erp_select_customers", [1, 2])
    assert sorted(frame["name"]) == ["Alingsås kommun", "Caf\ufffd AB"]


@pytest.mark.parametrize(("value", "expected"), [
    (17, 17), (17.0, 17), (Decimal("17"), 17), (Decimal("17.00"), 17), ("17", 17), (" 17 ", 17), (-3, -3),
    (None, None), (17.5, None), ("17.5", None), ("abc", None), ("", None), (b"17", None), (True, None),
    (float("nan"), None), (float("inf"), None), (Decimal("NaN"), None), (1e20, None), (2**63, None),
    (2**63 - 1, 2**63 - 1),
])
def test_integer_id(value: Any, expected: int | None) -> None:
    assert integer_id(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (date(2026, 11, 17), date(2026, 11, 17)), (datetime(2026, 11, 17, 8, tzinfo=timezone.utc), date(2026, 11, 17)),
    ("2026-11-17", date(2026, 11, 17)), ("2026-11-17 00:00:00", date(2026, 11, 17)),
    ("9999-12-31", date(9999, 12, 31)), (date(9999, 12, 31), date(9999, 12, 31)),
    (None, None), ("", None), ("igår", None), ("2026-13-45", None), ("20261117", None), (20261117, None),
    ("10000-01-01", None), (b"2026-11-17", None),
])
def test_read_date(value: Any, expected: date | None) -> None:
    assert read_date(value) == expected


@pytest.mark.postgres
def test_a_connection_the_server_dropped_is_replaced_when_taken(pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a server restart every pooled connection is dead: the next task statement must not fail."""
    from sqlalchemy import create_engine

    from dispatch_testing.support import pg_url, postgres_conn_env

    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", postgres_conn_env(pg_schema))
    engine = engine_for("erp_default")
    admin = create_engine(pg_url())
    try:
        with engine.connect() as conn:  # back in the pool afterwards
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.begin() as conn:  # as a restart of the server would
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        engine.dispose()
        admin.dispose()


# ---- the ERP is only read; the ledger's database must be named -----------------------------
def test_the_erp_engine_reads_a_sqlite_erp_and_refuses_to_write(sqlite_erp: Any) -> None:
    from sqlalchemy.exc import OperationalError

    from inexchange.db import erp_engine

    with sqlite_erp.begin() as conn:
        conn.execute(text("INSERT INTO customer (customer_id, customer_number, name, is_active, is_private_person, "
                          "country_code, currency, billing_method, attach_documents) "
                          "VALUES (1, '4001', 'Alingsås kommun', 1, 0, 'SE', 'SEK', 'x', 0)"))
    erp = erp_engine("erp_default")
    try:
        assert list(ErpReader(erp)._frame("erp_select_customers", [1])["name"]) == ["Alingsås kommun"]
        with pytest.raises(OperationalError, match="readonly database"), erp.begin() as conn:
            conn.execute(text("DELETE FROM customer"))
        with pytest.raises(OperationalError, match="readonly database"), erp.begin() as conn:
            conn.execute(text("CREATE TABLE inexchange_dispatch (invoice_id INTEGER)"))
    finally:
        erp.dispose()
    with sqlite_erp.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM customer")).scalar() == 1


def test_a_read_only_erp_and_a_writable_ledger_share_one_sqlite_file(sqlite_erp: Any, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's setup: the ERP's connection reads the file the reporting connection writes the ledger to."""
    from inexchange.db import erp_engine, reporting_engine

    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "erp.db")}))
    erp, reporting = erp_engine("erp_default"), reporting_engine("inexchange_reporting")
    try:
        with erp.connect() as reader:
            assert reader.execute(text("SELECT COUNT(*) FROM customer")).scalar() == 0
            with reporting.begin() as writer:  # while the ERP's connection is open
                writer.execute(text("CREATE TABLE ledger_probe (n INTEGER)"))
                writer.execute(text("INSERT INTO ledger_probe VALUES (1)"))
        with erp.connect() as reader:
            assert reader.execute(text("SELECT n FROM ledger_probe")).scalar() == 1
    finally:
        erp.dispose()
        reporting.dispose()


@pytest.mark.parametrize("host", ["{tmp}/erp-typo.db", "{tmp}/no-such-dir/erp.db", ""])
def test_a_mistyped_sqlite_erp_path_is_an_error_and_creates_nothing(
        host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from inexchange.db import erp_engine

    path = host.format(tmp=tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", json.dumps({"conn_type": "sqlite", "host": path}))

    with pytest.raises(AirflowFailException) as failed:
        erp_engine("erp_default")

    message = str(failed.value)
    assert "connection 'erp_default'" in message
    assert (f"no such file: {path}" if path else "names no file") in message
    assert sorted(tmp_path.iterdir()) == []  # no empty database, no directory, no journal


def test_a_missing_reporting_connection_is_a_failure_without_retry(sqlite_erp: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No fallback to the ERP's connection, though it is defined."""
    from airflow.sdk.exceptions import AirflowFailException

    from inexchange.db import reporting_engine

    monkeypatch.delenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", raising=False)

    with pytest.raises(AirflowFailException) as failed:
        reporting_engine("inexchange_reporting")

    assert str(failed.value) == (
        "connection 'inexchange_reporting' is not defined: define inexchange_reporting as the database that holds "
        "the ledger and the report (it may be the ERP's database only if that database is writable)")
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


@pytest.mark.postgres
def test_the_erp_engine_refuses_to_write_on_postgres(pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import DBAPIError

    from inexchange.db import erp_engine
    from dispatch_testing.support import postgres_conn_env

    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", postgres_conn_env(pg_schema))
    writable = engine_for("erp_default")
    create_tables(writable)
    erp = erp_engine("erp_default")
    try:
        with erp.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM customer")).scalar() == 0
            assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
        for statement in ("INSERT INTO customer (customer_id, customer_number, name) VALUES (1, '4001', 'x')",
                          "CREATE TABLE inexchange_dispatch (invoice_id BIGINT)", "DROP TABLE customer"):
            with pytest.raises(DBAPIError, match="read-only transaction"), erp.begin() as conn:
                conn.execute(text(statement))
        with writable.connect() as conn:  # the same connection id opened for writing is not affected
            assert conn.execute(text("SHOW transaction_read_only")).scalar() == "off"
            assert conn.execute(text("SELECT COUNT(*) FROM customer")).scalar() == 0
    finally:
        erp.dispose()
        writable.dispose()
