"""Every invoice of the dispatch ledger that needs a person now (``include/sql/needs_attention.sql``).

The definition is :func:`inexchange.pipeline.needs_person`'s, over the ledger of all days: state
``rejected``, ``stopped`` or ``in_doubt``; or ``failed`` after InExchange received the invoice (it
has an InExchange document id) or after the last automatic attempt. A ``failed`` row with attempts
left is retried by the submit task at its ``next_retry_at`` and needs nobody yet.

The query runs by hand too, on the reporting database (connection ``inexchange_reporting``),
from the repository's root (``include/sql`` holds the package's SQL files)::

    sqlite3 -header -column reporting.db '.parameter set :max_attempts 5' '.read include/sql/needs_attention.sql'
    psql "host=db.example dbname=reporting user=airflow" -v max_attempts=5 -f include/sql/needs_attention.sql
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict, cast

from sqlalchemy import Integer, bindparam

from inexchange.sql import statement
from inexchange.states import MAX_ATTEMPTS

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


class AttentionRow(TypedDict):
    """An invoice that needs a person (a row of ``needs_attention.sql``): its ledger columns, and
    ``reason``, why it needs a person, in words."""

    invoice_id: int
    invoice_number: str
    invoice_type: str
    invoice_date: str
    customer_number: str | None
    customer_name: str | None
    state: str
    reason: str
    inexchange_status: str | None
    message: str | None
    attempts: int
    inexchange_document_id: str | None
    updated_at: str
    dag_run_id: str | None


#: the columns of every row :func:`needs_attention` returns, in order
COLUMNS: tuple[str, ...] = tuple(AttentionRow.__annotations__)


def needs_attention(engine: Engine, max_attempts: int = MAX_ATTEMPTS) -> list[AttentionRow]:
    """Read the ledger's invoices that need a person, oldest invoice first.

    :param engine: the reporting database (connection ``inexchange_reporting``), holding the ledger.
    :param max_attempts: the submit task's attempts per invoice; a failed invoice with fewer
        attempts (and no InExchange document id) is retried automatically.
    """
    query = statement("needs_attention").bindparams(bindparam("max_attempts", type_=Integer()))
    with engine.connect() as conn:
        result = conn.execute(query, {"max_attempts": int(max_attempts)})
        return cast("list[AttentionRow]", [dict(row._mapping) for row in result])
