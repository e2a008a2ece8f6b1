"""Helpers shared by tests (the package ``dispatch_testing``: tests/ is on sys.path through conftest.py)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

PG_HOST, PG_PORT, PG_USER, PG_DB = "127.0.0.1", 5432, "postgres", "test"


def pg_url() -> str:
    """SQLAlchemy URL of the test database (use with :func:`pg_connect_args`)."""
    return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB}"


def pg_connect_args(schema: str) -> dict[str, str]:
    """Connect arguments that put ``schema`` first on the search path."""
    return {"options": f"-csearch_path={schema}"}


def sqlite_conn_env(path: Path) -> str:
    """AIRFLOW_CONN_* value of a SQLite database file."""
    return json.dumps({"conn_type": "sqlite", "host": str(path)})


def erp_database(backend: str, tmp_path: Path, schema: str | None = None) -> tuple[Any, str]:
    """A test ERP's engine and its AIRFLOW_CONN_* value: a SQLite file in ``tmp_path``, or ``schema`` of
    the PostgreSQL test database."""
    from sqlalchemy import create_engine

    if backend == "sqlite":
        path = tmp_path / "erp.db"
        return create_engine(f"sqlite:///{path}"), sqlite_conn_env(path)
    assert schema is not None, "a PostgreSQL ERP needs its schema"
    return create_engine(pg_url(), connect_args=pg_connect_args(schema)), postgres_conn_env(schema)


def bound(value: Any) -> Any:
    """A value as a bound parameter of any backend: decimals and dates as text (sqlite3 adapts neither)."""
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def postgres_conn_env(schema: str) -> str:
    """AIRFLOW_CONN_* value of the test database, working in ``schema``."""
    return json.dumps({"conn_type": "postgres", "host": PG_HOST, "port": PG_PORT, "login": PG_USER,
                       "schema": PG_DB, "extra": {"search_path": schema}})



def ledger_statistics(engine: Any) -> tuple[Any, int]:
    """When PostgreSQL last analysed the ledger table by hand (None: never), and its changes since."""
    from sqlalchemy import text

    with engine.connect() as conn:
        last, changed = conn.execute(text(
            "SELECT last_analyze, n_mod_since_analyze FROM pg_stat_user_tables "
            "WHERE relid = CAST('inexchange_dispatch' AS REGCLASS)")).one()
    return last, int(changed)


def without_autovacuum(engine: Any) -> None:
    """Keep autovacuum off the ledger table, so that it cannot analyse it between a test's writes and checks."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE inexchange_dispatch SET (autovacuum_enabled = false)"))


def counted_changes(engine: Any, at_least: int) -> None:
    """Close the engine's connections (a server process hands its table statistics over as it ends)
    and wait, up to 10 s, until PostgreSQL counts at least ``at_least`` changes of the ledger table."""
    import time

    engine.dispose()
    deadline = time.monotonic() + 10
    while ledger_statistics(engine)[1] < at_least and time.monotonic() < deadline:
        time.sleep(0.05)

#: the ERP adapter contract: columns per table, keys, and columns by kind of value
COLUMNS = {
    "customer": (
        "customer_id", "customer_number", "name", "is_active", "is_private_person", "org_number",
        "vat_number", "country_code", "language", "currency", "billing_method", "invoice_email", "gln",
        "marking", "attach_documents", "street", "postal_code", "city",
    ),
    "customer_invoice": (
        "invoice_id", "invoice_number", "customer_id", "invoice_type", "status", "invoice_date",
        "due_date", "currency", "amount_ex_vat", "vat_amount", "total_amount", "your_reference",
        "order_number", "credited_invoice_number",
    ),
    "customer_invoice_line": (
        "invoice_id", "line_number", "article_number", "description", "quantity", "unit", "unit_price",
        "vat_rate", "line_amount",
    ),
    "invoice_attachment": ("invoice_id", "file_name", "mime_type", "content"),
}
KEYS = {
    "customer": ("customer_id",),
    "customer_invoice": ("invoice_id",),
    "customer_invoice_line": ("invoice_id", "line_number"),
    "invoice_attachment": ("invoice_id", "file_name"),
}
DECIMALS = {
    "amount_ex_vat", "vat_amount", "total_amount", "quantity", "unit_price", "vat_rate", "line_amount",
}
BOOLEANS = {"is_active", "is_private_person", "attach_documents"}
DATES = {"invoice_date", "due_date"}


def _normal(name: str, value: Any) -> Any:
    """Bring a value read from SQLite or PostgreSQL to one Python type per column."""
    if value is None:
        return None
    if name in DECIMALS:
        return Decimal(str(value))
    if name in BOOLEANS:
        return bool(value)
    if name in DATES:
        return date.fromisoformat(str(value))
    if name == "content":
        return bytes(value)
    return value


def dump(engine: Any) -> dict[str, list[dict[str, Any]]]:
    """Return every row of the four ERP tables, ordered by primary key, with normalised values."""
    from sqlalchemy import column, select, table

    result = {}
    with engine.connect() as connection:
        for name in COLUMNS:
            query = select(table(name, *(column(c) for c in COLUMNS[name]))).order_by(
                *(column(key) for key in KEYS[name])
            )
            result[name] = [
                {key: _normal(key, value) for key, value in row._mapping.items()}
                for row in connection.execute(query)
            ]
    return result


#: our company in every test that sends invoices (the ``inexchange_seller`` Variable)
SELLER = {
    "name": "Testbolaget AB", "org_number": "556677-8899", "vat_number": "SE556677889901",
    "street": "Storgatan 1", "postal_code": "111 22", "city": "Stockholm", "bankgiro": "5050-1055",
}


def generated_erp(path: Path, **settings: Any) -> Any:
    """Generate an ERP into the SQLite file ``path`` (``inexchange_devkit.erpgen.generate`` settings); return its summary."""
    from inexchange_devkit.erpgen import generate
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{path}")
    try:
        return generate(engine, **settings)
    finally:
        engine.dispose()
