"""Task arguments given as values or as rendered templates' text, and the settings every InExchange task
shares: the operators, the sensor and their run-time modules read them here (a leaf module: it
imports nothing of the project)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class TaskSettings:
    """What every task that follows invoices at InExchange works with: the ledger's database, the
    InExchange connection and the time zone of the ERP's invoice dates."""

    reporting_conn_id: str
    inexchange_conn_id: str
    timezone: str


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
