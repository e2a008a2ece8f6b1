"""Values as the project reads them: database and ERP values as text, dates and keys, task arguments
given as values or as rendered templates' text, and the settings every InExchange task shares. The ledger,
validation, the notifier, the operators, the sensor and their run-time modules read them here (a
leaf module: it imports nothing of the project).

A NULL (:func:`is_null`) becomes text in one of two ways: :func:`text_or_empty` for a value read as
the ERP shows it (``''`` for NULL, surrounding spaces removed), :func:`text_or_none` for a value kept
as it is (``None`` for NULL, nothing removed). Both decode bytes as UTF-8.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, Self, TypedDict

#: what a text column may hold instead of text: raw bytes (decoded as UTF-8 when read as text)
BINARY = (bytes, bytearray, memoryview)


def is_null(value: Any) -> bool:
    """Whether a value is NULL: None, a float NaN (pandas' NULL in a number column), or pandas' NA or NaT.

    A Decimal NaN or a text such as ``'nan'`` is a value, not NULL.
    """
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    pandas = sys.modules.get("pandas")  # pandas' NA and NaT exist only once pandas is loaded
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def _decoded(value: Any) -> str:
    """A value that is not NULL as text: bytes decoded as UTF-8 (undecodable bytes as U+FFFD), else ``str``."""
    if isinstance(value, BINARY):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def text_or_empty(value: Any) -> str:
    """A value as the ERP shows it: ``''`` for NULL, bytes decoded as UTF-8 (undecodable bytes as U+FFFD),
    surrounding white space removed.

    For texts that are read, compared and named in messages (validation, a customer's fields sent to
    InExchange).
    """
    return "" if is_null(value) else _decoded(value).strip()


def text_or_none(value: Any) -> str | None:
    """A value as text, kept as it is: ``None`` for NULL, bytes decoded as UTF-8 (undecodable bytes as
    U+FFFD), nothing removed.

    For texts that are stored or passed on (the ledger's columns, the notifier's list).
    """
    return None if is_null(value) else _decoded(value)


def one_line(value: Any) -> str:
    """A text on one line: its line breaks and runs of white space as one space, none around it; ``''``
    for ``None``.

    For texts shown in a table cell or a line of their own (the run's report table, the notifier's e-mail).
    """
    return "" if value is None else " ".join(str(value).split())


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


@dataclass(frozen=True)
class TaskSettings:
    """What every task that follows invoices at InExchange works with: the ledger's database, the
    InExchange connection and the time zone of the ERP's invoice dates."""

    reporting_conn_id: str
    inexchange_conn_id: str
    timezone: str

    @classmethod
    def of(cls, task: object, **rendered: Any) -> Self:
        """The settings of a task: each field is the task's attribute of the same name, or the value
        given for it here (an argument converted once its template is rendered).

        :param task: the operator or sensor (its arguments are attributes, see :func:`keep_arguments`).
        :param rendered: values that stand for the task's attributes of the same names.
        """
        return cls(
            **{
                name: rendered[name] if name in rendered else getattr(task, name)
                for name in (field.name for field in fields(cls))
            }
        )


class TaskLog(Protocol):
    """What a task's work writes its log with: the task's logger (Airflow's), or any :class:`logging.Logger`."""

    def info(self, message: Any, /, *args: Any) -> Any: ...

    def warning(self, message: Any, /, *args: Any) -> Any: ...

    def error(self, message: Any, /, *args: Any) -> Any: ...


def keep_arguments(task: object, arguments: Mapping[str, Any]) -> None:
    """Keep a task's arguments as its attributes of the same names: Airflow renders the templated ones
    there, and :meth:`TaskSettings.of` reads them.

    :param task: the operator or sensor.
    :param arguments: name -> value, such as the constructor's ``locals()``: ``self``, ``kwargs`` (the
        arguments the constructor hands to its base class) and private names are left out.
    """
    for name, value in arguments.items():
        if name not in ("self", "kwargs") and not name.startswith("_"):
            setattr(task, name, value)


def as_flag(value: bool | str, name: str) -> bool:
    """A yes/no argument, as given or as a rendered template's text (``"True"``, ``"false"``...).

    :param value: the argument.
    :param name: its name, for the error.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


def as_delivery_timeout(value: timedelta | float | str) -> timedelta:
    """The delivery timeout as a timedelta.

    :param value: a timedelta, or a number of seconds (a number, or text such as a rendered template).
    """
    if isinstance(value, timedelta):
        span = value
    else:
        try:
            seconds = float(value)
            if not math.isfinite(seconds):
                raise ValueError(seconds)
            span = timedelta(seconds=seconds)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"delivery_timeout must be a timedelta or a number of seconds, not {value!r}") from None
    if span < timedelta(0):
        raise ValueError(f"delivery_timeout must not be negative, not {value!r}")
    return span


class LedgerConnections(TypedDict):
    """The connections of a ledger stage: the ERP's (only read) and the reporting database's (the ledger
    and the report). The DAG hands them to each task as one mapping."""

    erp_conn_id: str
    reporting_conn_id: str


class LedgerTaskArguments(LedgerConnections):
    """The arguments every task of the DAG that works through the ledger takes: its connections and the
    time zone of the ERP's invoice dates."""

    timezone: str
