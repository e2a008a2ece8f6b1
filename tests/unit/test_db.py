"""Database helpers: engines from Airflow connections, and reading the ERP's keys and dates leniently."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from inexchange.db import engine_for, integer_id, read_date
from inexchange.erp import ErpReader
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

    from support import pg_url, postgres_conn_env

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
