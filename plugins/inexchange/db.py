"""SQLAlchemy engines for Airflow connections (ERP and reporting databases)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def engine_for(conn_id: str) -> Engine:
    """Return a SQLAlchemy engine for an Airflow database connection.

    The connection's own DB-API hook (common-sql) builds the engine, so any database Airflow's
    SQL providers support works. A PostgreSQL connection may name a schema to work in with extra
    ``{"search_path": "..."}``.

    :param conn_id: Airflow connection id (SQLite, PostgreSQL, ...).
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    hook = conn.get_hook()
    engine_kwargs: dict[str, Any] = {}
    search_path = (conn.extra_dejson or {}).get("search_path")
    if search_path and conn.conn_type in ("postgres", "postgresql"):
        engine_kwargs["connect_args"] = {"options": f"-csearch_path={search_path}"}
    engine = hook.get_sqlalchemy_engine(engine_kwargs=engine_kwargs)
    if engine.dialect.name == "sqlite":
        from sqlalchemy import event

        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead log and a busy timeout for SQLite files.

    With WAL, readers never block the writer and a commit appends to the log instead of rewriting
    pages; the busy timeout lets parallel tasks (mapped submit batches) wait for each other's short
    transactions instead of failing with "database is locked".
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def reporting_engine(reporting_conn_id: str, erp_conn_id: str) -> Engine:
    """Engine of the reporting database: ``reporting_conn_id``, or the ERP's when it is not defined.

    :param reporting_conn_id: connection holding the ledger and the report.
    :param erp_conn_id: the ERP connection, used when the reporting one does not exist.
    """
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return engine_for(reporting_conn_id)
    except AirflowNotFoundException:
        return engine_for(erp_conn_id)


def utc_text(moment: datetime) -> str:
    """Format a time as the sortable UTC text the ledger stores ('...T06:00:00.000000Z')."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware time")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_text() -> str:
    """The current time as ledger text."""
    return utc_text(datetime.now(timezone.utc))


def parse_utc_text(value: str | None) -> datetime | None:
    """Parse ledger time text back into an aware datetime."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def as_date(value: Any) -> date:
    """Normalise a DATE column value (a ``date`` on PostgreSQL, text on SQLite)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
