"""The ERP schema and generator on PostgreSQL give the same rows as on SQLite."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.exc import IntegrityError

from inexchange_devkit.erpgen import ERP_TABLES, TablesNotEmptyError, create_tables, generate
from inexchange.sql import statement
from dispatch_testing.support import dump, pg_connect_args, pg_url

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

POSTGRES_URL = pg_url()


@pytest.fixture
def schema(pg_schema: str) -> str:
    """A fresh schema (tests/conftest.py: skipped, or failed in CI, without the server)."""
    return pg_schema


@pytest.fixture
def postgres(schema: str) -> Iterator[Engine]:
    """Return an engine whose search_path is the fresh schema."""
    engine = create_engine(POSTGRES_URL, connect_args=pg_connect_args(schema))
    yield engine
    engine.dispose()


def test_same_rows_as_sqlite(postgres: Engine, tmp_path: Path) -> None:
    lite = create_engine(f"sqlite:///{tmp_path / 'erp.db'}")
    expected = generate(lite, seed=11)
    lite_rows = dump(lite)
    lite.dispose()

    summary = generate(postgres, seed=11, chunk_size=50)
    assert summary == expected
    assert dump(postgres) == lite_rows
    assert set(inspect(postgres).get_table_names()) == set(ERP_TABLES)


def test_schema_types_and_constraints(postgres: Engine) -> None:
    create_tables(postgres)
    create_tables(postgres)
    inspector = inspect(postgres)
    columns = {
        (name, item["name"]): str(item["type"]) for name in ERP_TABLES for item in inspector.get_columns(name)
    }
    assert columns[("customer", "customer_id")] == "BIGINT"
    assert columns[("customer", "is_active")] == "BOOLEAN"
    assert columns[("customer_invoice", "invoice_date")] == "DATE"
    assert columns[("customer_invoice", "total_amount")] == "NUMERIC(18, 2)"
    assert columns[("customer_invoice_line", "quantity")] == "NUMERIC(18, 4)"
    assert columns[("customer_invoice_line", "vat_rate")] == "NUMERIC(5, 2)"
    assert columns[("invoice_attachment", "content")] == "BYTEA"
    indexes = {index["name"] for index in inspect(postgres).get_indexes("customer_invoice")}
    assert {"ix_customer_invoice_invoice_date", "ix_customer_invoice_customer_id"} <= indexes
    assert inspect(postgres).get_pk_constraint("customer_invoice_line")["constrained_columns"] == [
        "invoice_id",
        "line_number",
    ]

    generate(postgres, create_schema=False)
    with pytest.raises(TablesNotEmptyError):
        generate(postgres)
    with pytest.raises(IntegrityError), postgres.begin() as connection:
        connection.execute(
            statement("erp_insert_invoice_line"),
            {
                "invoice_id": 999999,
                "line_number": 1,
                "article_number": "1001",
                "description": "Konsulttimmar",
                "quantity": Decimal(1),
                "unit": "tim",
                "unit_price": Decimal("900.00"),
                "vat_rate": Decimal("25.00"),
                "line_amount": Decimal("900.00"),
                "vat_category": None,
                "vat_exemption_reason_code": None,
                "vat_exemption_reason": None,
            },
        )


def test_cli_replace_on_postgres(postgres: Engine, schema: str) -> None:
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    command = [sys.executable, "-m", "inexchange_devkit.erpgen", "--url", url, "--invoices", "30", "--drafts", "3"]
    command += ["--days", "3"]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *extra], capture_output=True, text=True, timeout=120)

    first = run()
    assert first.returncode == 0, first.stderr
    refused = run()
    assert refused.returncode == 1 and "--replace" in refused.stderr
    replaced = run("--seed", "9", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    rows = dump(postgres)
    assert len(rows["customer_invoice"]) == 33
    assert rows["customer"][0]["customer_number"] == "1001"
