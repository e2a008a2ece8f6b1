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

from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, bindparam

from inexchange.api import MAX_ATTEMPTS
from inexchange.sql import statement

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

#: the columns of every row :func:`needs_attention` returns, in order
COLUMNS: tuple[str, ...] = (
    "invoice_id", "invoice_number", "invoice_type", "invoice_date", "customer_number", "customer_name",
    "state", "reason", "inexchange_status", "message", "attempts", "inexchange_document_id", "updated_at",
    "dag_run_id",
)


def needs_attention(engine: Engine, max_attempts: int = MAX_ATTEMPTS) -> list[dict[str, Any]]:
    """Read the ledger's invoices that need a person, oldest invoice first.

    :param engine: the reporting database (connection ``inexchange_reporting``), holding the ledger.
    :param max_attempts: the submit task's attempts per invoice; a failed invoice with fewer
        attempts (and no InExchange document id) is retried automatically.
    """
    query = statement("needs_attention").bindparams(bindparam("max_attempts", type_=Integer()))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query, {"max_attempts": int(max_attempts)})]
