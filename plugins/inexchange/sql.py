"""Load the SQL statements kept in ``include/sql/``.

Every statement the project runs lives in one ``.sql`` file per purpose and uses named bind
parameters (``:name``) only; SQLAlchemy's ``text()`` turns them into the driver's paramstyle, so the
same file runs on SQLite and PostgreSQL.

The files are package data of ``inexchange`` (the folder ``sql_files``; the repository's
``include/sql`` is a link to it), read with :mod:`importlib.resources`: they travel with the package,
in the wheel and in a copied or mounted plugins folder alike, and need no setting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import cache, lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from sqlalchemy import String, TextClause, bindparam, text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: the package folder holding the ``.sql`` files
SQL_FILES = "sql_files"
#: the expanding bind parameter ``:numbers`` of a manual run's invoice numbers (``RunScope.bounds``);
#: typed, so that an empty list still compares with a text column on PostgreSQL
SELECTION = bindparam("numbers", expanding=True, type_=String())


def selection(numbers: Sequence[str], *, by_number: bool = False) -> dict[str, Any]:
    """The bind parameters ``:selected`` and ``:numbers`` of statements that take :data:`SELECTION`:
    the listed invoice numbers, or none (the statement then selects by the interval's dates).

    A number holding NUL is bound as no number at all: PostgreSQL refuses NUL in text, and no
    invoice number of its can hold one. The run still selects by its list (``:selected`` stays 1),
    so a list of such numbers selects nothing rather than the whole interval.

    :param numbers: the listed invoice numbers.
    :param by_number: select by the list even when it is empty (a list that held only blanks).
    """
    return {"selected": int(by_number or bool(numbers)), "numbers": [n for n in numbers if "\x00" not in n]}


def sql_dir() -> Traversable:
    """Return the package folder holding the project's SQL files."""
    return files("inexchange").joinpath(SQL_FILES)


@cache
def _read(name: str) -> str:
    resource = sql_dir().joinpath(f"{name}.sql")
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"SQL file {name}.sql is not in the package inexchange ({resource})") from None


def load_sql(name: str) -> str:
    """Return the text of ``include/sql/<name>.sql``.

    :param name: file name without the ``.sql`` suffix.
    """
    return _read(name)


def statement(name: str) -> TextClause:
    """Return ``include/sql/<name>.sql`` as one SQLAlchemy ``text()`` clause.

    The clause is made once per name: parsing the text again for every execution costs more than
    running a small statement.
    """
    return _clause(name)


@cache
def _clause(name: str) -> TextClause:
    return text(_read(name))


#: where a statement's select list may take optional columns (a comment: the file runs as it is)
OPTIONAL_COLUMNS_MARK = "/* optional columns */"


def listing(query: TextClause, name: str, dialect: str) -> TextClause:
    """``query`` whose ``IN :<name>`` takes a list of values.

    On PostgreSQL the list is one array (``= ANY(:<name>)``), on SQLite one JSON array read with
    ``json_each`` (:class:`JsonList`), elsewhere an expanding parameter (one bound value an item):
    psycopg parses the placeholders of a statement holding more than 50 of them in Python, every
    time, and SQLAlchemy renders and binds each of an expanding list's values, every time.

    :param query: a statement holding ``IN :<name>``.
    :param name: the list's parameter.
    :param dialect: the SQLAlchemy dialect's name.
    """
    if dialect in ("postgresql", "sqlite"):
        return _as_one_value(query.text, name, dialect)
    return query.bindparams(bindparam(name, expanding=True))


class JsonList(TypeDecorator[Sequence[Any]]):
    """A list bound as the text of one JSON array (for SQLite's ``json_each``)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Sequence[Any] | None, dialect: Dialect) -> str | None:
        return None if value is None else _json(list(value))


@lru_cache(maxsize=64)
def _as_one_value(body: str, name: str, dialect: str) -> TextClause:
    marked = f"IN :{name}"
    if marked not in body:
        raise ValueError(f"the statement holds no {marked!r}")
    if dialect == "postgresql":
        return text(body.replace(marked, f"= ANY(:{name})"))
    return text(body.replace(marked, f"IN (SELECT value FROM json_each(:{name}))")).bindparams(
        bindparam(name, type_=JsonList())
    )


#: a NUL in JSON text: ``\u0000`` not itself escaped (after an even number of backslashes)
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _json(values: list[Any]) -> str:
    """``values`` as JSON text for SQLite's JSON functions (numbers stay numbers, None null).

    :raises ValueError: for a text holding NUL, which SQLite's JSON functions cut short (the ledger
        stores none: PostgreSQL refuses it too).
    """
    encoded = json.dumps(values, ensure_ascii=False, separators=(",", ":"), default=str)
    if "\\u0000" in encoded and _NUL.search(encoded):
        raise ValueError("a value holds NUL, which SQLite's JSON functions cannot carry")
    return encoded


@cache
def with_columns(name: str, columns: tuple[str, ...]) -> TextClause:
    """``include/sql/<name>.sql`` with ``columns`` added to its select list at :data:`OPTIONAL_COLUMNS_MARK`.

    The columns are names the code fixes (optional columns of the ERP adapter contract that the
    database has), never input.

    :param name: file name without the ``.sql`` suffix.
    :param columns: the column names to add, in order.
    """
    body = _read(name)
    if OPTIONAL_COLUMNS_MARK not in body:
        raise ValueError(f"{name}.sql has no {OPTIONAL_COLUMNS_MARK} in its select list")
    if not all(column.isidentifier() for column in columns):
        raise ValueError(f"not column names: {columns!r}")
    return text(body.replace(OPTIONAL_COLUMNS_MARK, "".join(f", {column}" for column in columns), 1))


#: where a statement takes its rows of values (a comment: the file does not run without them)
ROWS_MARK = "/* rows */"
#: most rows of values in one statement: 512 rows of 18 values stay far below SQLite's 32,766
#: bound parameters, and one round trip carries them all
MAX_ROWS = 512


def with_rows(name: str, columns: tuple[str, ...], count: int) -> TextClause:
    """``include/sql/<name>.sql`` with ``count`` rows of bound values at :data:`ROWS_MARK`.

    Row ``i`` binds ``:<column>_<i>`` for each of ``columns``: bind its values with
    :func:`row_params`. One statement then writes a whole set of rows (a multi-row ``VALUES``), on
    SQLite and PostgreSQL alike, instead of one statement per row.

    :param name: file name without the ``.sql`` suffix.
    :param columns: the names of the values of a row, in the order the statement lists them.
    :param count: how many rows, 1 to :data:`MAX_ROWS`. Each count is its own statement, which the
        database and SQLAlchemy prepare once: callers use the counts of :func:`row_counts` (powers of
        two), so a process prepares at most ten of them, whatever sizes its batches have.
    """
    if not 1 <= count <= MAX_ROWS:
        raise ValueError(f"{count} rows for {name}.sql: 1 to {MAX_ROWS} rows a statement")
    return _with_rows(name, columns, count)


@lru_cache(maxsize=64)
def _with_rows(name: str, columns: tuple[str, ...], count: int) -> TextClause:
    body = _read(name)
    if body.count(ROWS_MARK) != 1:
        raise ValueError(f"{name}.sql must hold {ROWS_MARK} once, where its rows go")
    rows = ",\n".join("(" + ", ".join(f":{column}_{i}" for column in columns) + ")" for i in range(count))
    return text(body.replace(ROWS_MARK, rows, 1))


def row_counts(total: int) -> list[int]:
    """``total`` rows as counts of :func:`with_rows` statements: powers of two, largest first, each
    at most :data:`MAX_ROWS` (5 rows: 4 and 1; 1,100 rows: 512, 512, 64, 8, 4)."""
    counts = [MAX_ROWS] * (total // MAX_ROWS)
    rest = total % MAX_ROWS
    return counts + [1 << bit for bit in range(rest.bit_length() - 1, -1, -1) if rest >> bit & 1]


def padded_count(total: int) -> int:
    """The power of two at or above ``total`` (1 to :data:`MAX_ROWS`): the rows of a statement that
    takes padding rows matching nothing (an ``UPDATE ... FROM`` its values)."""
    if not 1 <= total <= MAX_ROWS:
        raise ValueError(f"{total} rows: 1 to {MAX_ROWS} rows a statement")
    return 1 << (total - 1).bit_length()


def row_params(columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The bind parameters of :func:`with_rows` for ``rows`` (each a mapping holding ``columns``)."""
    return {f"{column}_{i}": row[column] for i, row in enumerate(rows) for column in columns}


def rows_statement(
    name: str,
    columns: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
    *,
    dialect: str,
    types: Mapping[str, str],
    padded: bool = False,
) -> tuple[TextClause, dict[str, Any]]:
    """``include/sql/<name>.sql`` with ``rows`` as its rows of values, and their bind parameters.

    The rows take a handful of bound values, however many they are: on PostgreSQL one array per
    column, unnested in place of ``VALUES``; on SQLite one JSON array of rows, read with
    ``json_each`` (``:rows_json``). A bound value per row and column cost as much as the rest of a
    write of 512 rows: psycopg parses the placeholders of a statement holding more than 50 of them
    in Python, every time, and SQLAlchemy compiles a statement of thousands of placeholders once per
    shape and binds each value, every time. Elsewhere the rows are a multi-row ``VALUES``
    (:func:`with_rows`, :func:`row_params`).

    :param columns: the names of the values of a row, in the order the statement lists them.
    :param rows: 1 to :data:`MAX_ROWS` mappings holding ``columns``.
    :param dialect: the SQLAlchemy dialect's name.
    :param types: the PostgreSQL type of each column whose values are not text (``BIGINT``...).
    :param padded: fill a ``VALUES`` up to :func:`padded_count` rows of NULLs (for a statement
        whose rows match existing ones, where a row of NULLs matches none).
    """
    if dialect == "postgresql":
        arrays = {column: [row[column] for row in rows] for column in dict.fromkeys(columns)}
        return _with_arrays(name, columns, tuple(sorted(types.items()))), {f"{c}_rows": v for c, v in arrays.items()}
    if dialect == "sqlite":
        return _with_json(name, len(columns)), {"rows_json": _json([[row[c] for c in columns] for row in rows])}
    count = padded_count(len(rows)) if padded else len(rows)
    filled = [*rows, *[dict.fromkeys(columns)] * (count - len(rows))]
    return with_rows(name, columns, count), row_params(columns, filled)


def _values_replaced(name: str, rows: str) -> str:
    """``include/sql/<name>.sql`` with ``rows`` (a query) in place of its ``VALUES /* rows */``."""
    body = _read(name)
    marked = f"VALUES {ROWS_MARK}"
    if body.count(marked) != 1:
        raise ValueError(f"{name}.sql must hold {marked!r} once, where its rows go")
    return body.replace(marked, rows, 1)


@lru_cache(maxsize=16)
def _with_json(name: str, width: int) -> TextClause:
    # WHERE true: an INSERT taking a SELECT's rows reads a following ON CONFLICT as the SELECT's join
    # constraint without it (SQLite's documented parsing ambiguity of UPSERT)
    values = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(width))
    return text(_values_replaced(name, f"SELECT {values} FROM json_each(:rows_json) WHERE true"))


@lru_cache(maxsize=16)
def _with_arrays(name: str, columns: tuple[str, ...], types: tuple[tuple[str, str], ...]) -> TextClause:
    typed = dict(types)
    arrays = ", ".join(f"CAST(:{column}_rows AS {typed.get(column, 'TEXT')}[])" for column in columns)
    return text(_values_replaced(name, f"SELECT * FROM unnest({arrays})"))


def script(name: str) -> list[TextClause]:
    """Split a multi-statement file (DDL) on ``;`` at line ends into separate clauses.

    Comment lines (``--``) are dropped; statements must not contain ``;`` inside literals.
    """
    body = "\n".join(line for line in load_sql(name).splitlines() if not line.lstrip().startswith("--"))
    return [text(part.strip()) for part in body.split(";") if part.strip()]
