"""SQLAlchemy engines for Airflow connections (ERP and reporting databases)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import TYPE_CHECKING, Any

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

    from inexchange.exceptions import ErpDatabaseMissing

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

    from inexchange.exceptions import ReportingConnectionMissing

    try:
        return engine_for(reporting_conn_id)
    except AirflowNotFoundException:
        raise ReportingConnectionMissing(reporting_conn_id) from None


def utc_text(moment: datetime) -> str:
    """Format a time as the sortable UTC text the ledger stores ('...T06:00:00.000000Z')."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware time")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_text() -> str:
    """The current time as ledger text."""
    return utc_text(datetime.now(UTC))


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


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: keys beyond a BIGINT are none (no database column could hold them)
_BIGINT = 2**63


def read_date(value: Any) -> date | None:
    """Like :func:`as_date`, but None for a NULL or a value that is no date ('igår', 20261117, bytes)."""
    if isinstance(value, date):
        return as_date(value)
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        return None
    try:
        return as_date(value)
    except ValueError:
        return None


def integer_id(value: Any) -> int | None:
    """An ERP key (invoice_id, customer_id) as int, or None when it is NULL or not a whole number.

    A view over a messy ERP may give 17, 17.0, Decimal('17') or '17' for the same key; 17.5, 'abc',
    bytes or 1e20 are no key at all (17.5 is never rounded into another invoice's id 17).
    """
    if value is None or isinstance(value, bool | bytes | bytearray | memoryview):
        return None
    if isinstance(value, int):
        return value if -_BIGINT <= value < _BIGINT else None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value() or not -_BIGINT <= number < _BIGINT:
        return None
    return int(number)
