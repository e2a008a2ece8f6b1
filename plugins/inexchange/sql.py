"""Load the SQL statements kept in ``include/sql/``.

Every statement the project runs lives in one ``.sql`` file per purpose and uses named bind
parameters (``:name``) only; SQLAlchemy's ``text()`` turns them into the driver's paramstyle, so the
same file runs on SQLite and PostgreSQL.

The folder is found through ``INEXCHANGE_SQL_DIR`` when set (a deployment that copies ``include/``
elsewhere), else ``include/sql`` of the source tree this package is installed from (editable install).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import String, TextClause, bindparam, text

_DEFAULT_SQL_DIR = Path(__file__).resolve().parents[2] / "include" / "sql"
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


def sql_dir() -> Path:
    """Return the folder holding the project's SQL files."""
    return Path(os.environ.get("INEXCHANGE_SQL_DIR") or _DEFAULT_SQL_DIR)


@lru_cache(maxsize=None)
def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"SQL file {path} not found; set INEXCHANGE_SQL_DIR to the folder holding include/sql"
        ) from None


def load_sql(name: str) -> str:
    """Return the text of ``include/sql/<name>.sql``.

    :param name: file name without the ``.sql`` suffix.
    """
    return _read(sql_dir() / f"{name}.sql")


def statement(name: str) -> TextClause:
    """Return ``include/sql/<name>.sql`` as one SQLAlchemy ``text()`` clause.

    The clause is made once per folder and name: parsing the text again for every execution costs
    more than running a small statement.
    """
    return _clause(sql_dir(), name)


@lru_cache(maxsize=None)
def _clause(folder: Path, name: str) -> TextClause:
    return text(_read(folder / f"{name}.sql"))


def script(name: str) -> list[TextClause]:
    """Split a multi-statement file (DDL) on ``;`` at line ends into separate clauses.

    Comment lines (``--``) are dropped; statements must not contain ``;`` inside literals.
    """
    body = "\n".join(
        line for line in load_sql(name).splitlines() if not line.lstrip().startswith("--")
    )
    return [text(part.strip()) for part in body.split(";") if part.strip()]
