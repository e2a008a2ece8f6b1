"""SQLAlchemy engines for Airflow connections (ERP and reporting databases)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from inexchange.exceptions import ErpDatabaseMissing, ReportingConnectionMissing

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def engine_for(conn_id: str, *, read_only: bool = False) -> Engine:
    """Return a SQLAlchemy engine for an Airflow database connection.

    The connection's own DB-API hook (common-sql) builds the engine, so any database Airflow's
    SQL providers support works. A PostgreSQL connection may name a schema to work in with extra
    ``{"search_path": "..."}``.

    :param conn_id: Airflow connection id (SQLite, PostgreSQL, ...).
    :param read_only: open the database for reading only (see :func:`erp_engine`).
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    hook = conn.get_hook()
    # a pooled connection the server dropped (a restart, a failover) is replaced when it is taken,
    # instead of failing the task's next statement
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    search_path = (conn.extra_dejson or {}).get("search_path")
    if search_path and conn.conn_type in ("postgres", "postgresql"):
        engine_kwargs["connect_args"] = {"options": f"-csearch_path={search_path}"}
    if read_only and conn.conn_type == "sqlite":
        from sqlalchemy.engine import make_url

        # the file the hook's own engine would open, whichever form the connection has
        engine = _read_only_sqlite_engine(conn_id, make_url(hook.get_uri()).database or "", engine_kwargs)
    else:
        engine = hook.get_sqlalchemy_engine(engine_kwargs=engine_kwargs)
    if engine.dialect.name == "sqlite":
        from sqlalchemy import event

        event.listen(engine, "connect", _sqlite_read_pragmas if read_only else _sqlite_pragmas)
    elif read_only and engine.dialect.name == "postgresql":
        # every transaction begins READ ONLY (psycopg2: BEGIN READ ONLY), so the server refuses any
        # write; set per transaction, it also holds behind a pooler such as PgBouncer
        engine = engine.execution_options(postgresql_readonly=True)
    return engine


def erp_engine(conn_id: str) -> Engine:
    """Engine of the ERP database, which is only ever read.

    SQLite: the file is opened read-only (``mode=ro``), so a write fails and a mistyped path is an
    error naming the connection and the path instead of a new empty database. PostgreSQL: every
    transaction is read-only. Other databases are opened as the connection says: give it a user that
    may only read.

    :param conn_id: the ERP connection id.
    """
    return engine_for(conn_id, read_only=True)


def _read_only_sqlite_engine(conn_id: str, path: str, engine_kwargs: dict[str, Any]) -> Engine:
    """A SQLite engine on an existing file, opened read-only through a ``file:`` URI.

    :param conn_id: the connection id, for the error.
    :param path: the database file the connection names.
    :param engine_kwargs: further arguments of :func:`sqlalchemy.create_engine`.
    """
    from pathlib import Path
    from urllib.parse import quote

    from sqlalchemy import create_engine
    from sqlalchemy.engine import URL

    if not path or not Path(path).is_file():
        raise ErpDatabaseMissing(conn_id, path)
    # mode=ro opens the file without write access and never creates it (should it vanish meanwhile)
    url = URL.create("sqlite", database="file:" + quote(path), query={"mode": "ro", "uri": "true"})
    return create_engine(url, **engine_kwargs)


#: SQLite text as str, bytes that are not UTF-8 as U+FFFD (C code: no Python call per value)
_decode_text = partial(bytes.decode, encoding="utf-8", errors="replace")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead log, a busy timeout and lenient text decoding for SQLite files.

    With WAL, readers never block the writer and a commit appends to the log instead of rewriting
    pages; the busy timeout lets parallel tasks (mapped submit batches) wait for each other's short
    transactions instead of failing with "database is locked". SQLite does not check that TEXT is
    UTF-8: one undecodable value would otherwise stop every read of its table ("Could not decode
    to UTF-8"), so its bad bytes are read as U+FFFD, which validation names in the invoice's message.
    """
    _sqlite_read_pragmas(dbapi_connection, _record)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def _sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The busy timeout and lenient text decoding of :func:`_sqlite_pragmas`, for a read-only connection.

    The journal mode is the writer's to choose: a read-only connection cannot change it.
    """
    dbapi_connection.text_factory = _decode_text
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def reporting_engine(reporting_conn_id: str) -> Engine:
    """Engine of the reporting database, which holds the ledger and the report.

    There is no fallback: an undefined connection raises
    :class:`~inexchange.exceptions.ReportingConnectionMissing`, which fails the task without retries.

    :param reporting_conn_id: connection holding the ledger and the report.
    """
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return engine_for(reporting_conn_id)
    except AirflowNotFoundException:
        raise ReportingConnectionMissing(reporting_conn_id) from None
