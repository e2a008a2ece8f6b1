"""The checks a run makes before it touches any invoice: the configuration a person must set.

Each check returns the problems it found, one line each, saying what to set; :func:`preflight`
runs them all and names every problem at once. Nothing here writes to the ERP or sends an invoice:
the ERP is read through the statements the run itself uses (over an empty selection), the
reporting database is written inside a transaction that is rolled back, and the API key is tried
by creating a client token and revoking it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from inexchange.exceptions import first_line

log = logging.getLogger(__name__)

#: the Airflow Variable holding our company's details
SELLER_VARIABLE = "inexchange_seller"
#: what a database error says when the server is down or restarting rather than misconfigured: such an
#: error is raised (the task is retried) instead of being named as a configuration problem
OUTAGE_SIGNS = ("connection refused", "server closed the connection", "the database system is starting up",
                "the database system is shutting down", "terminating connection", "could not receive data",
                "timeout expired", "connection timed out")


def read_seller_variable() -> Any:
    """The Variable :data:`SELLER_VARIABLE`, deserialized from JSON (the submit task reads it too)."""
    from airflow.sdk import Variable

    return Variable.get(SELLER_VARIABLE, deserialize_json=True)


def is_outage(exc: BaseException) -> bool:
    """Whether a database error is the server being unreachable or restarting (see :data:`OUTAGE_SIGNS`)."""
    if getattr(exc, "connection_invalidated", False):
        return True
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(sign in text for sign in OUTAGE_SIGNS)


class PreflightFailed(Exception):
    """The run's configuration has problems; :attr:`problems` names each with what to set."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(preflight_message(problems))


def preflight_message(problems: list[str]) -> str:
    """One block: how many problems, then one line each."""
    lines = [f"the run cannot start: {len(problems)} configuration problem(s), nothing was read, written or sent:"]
    return "\n".join([*lines, *(f"  - {problem}" for problem in problems)])


def seller_problems(read_variable: Callable[[], Any]) -> list[str]:
    """Problems of the seller configuration (the Variable :data:`SELLER_VARIABLE`).

    :param read_variable: returns the Variable's value, deserialized from JSON.
    """
    from inexchange.exceptions import InExchangeConfigError
    from inexchange.ubl import Seller

    try:
        config = read_variable()
    except Exception as exc:
        return [f"Variable {SELLER_VARIABLE} cannot be read ({first_line(exc) or type(exc).__name__}): set it to "
                "our company's details as a JSON object (name, org_number, vat_number, street, postal_code, city, "
                "and one of bankgiro, plusgiro, iban)"]
    if not isinstance(config, dict):
        return [f"Variable {SELLER_VARIABLE} must be a JSON object, not {type(config).__name__}"]
    try:
        Seller.from_config(config)
    except InExchangeConfigError as exc:
        prefix = f"seller configuration (Variable {SELLER_VARIABLE}): "
        return [f"Variable {SELLER_VARIABLE}: {problem}" for problem in str(exc).removeprefix(prefix).split("; ")]
    return []


def erp_problems(erp_conn_id: str) -> list[str]:
    """Problems reading the ERP: every statement the run reads it with, over an empty selection, so
    that every table and column of the adapter contract the run uses is there and readable."""
    from inexchange.db import erp_engine
    from inexchange.erp import ErpReader

    try:
        engine = erp_engine(erp_conn_id)
    except Exception as exc:
        return [f"connection {erp_conn_id!r} (the ERP): {first_line(exc)}"]
    try:
        reader = ErpReader(engine)
        day = date(2000, 1, 1).isoformat()
        reader.extract(start_date=day, end_date=day)
        reader.load([])
        reader.duplicate_invoice_numbers(["preflight"])
    except Exception as exc:
        if is_outage(exc):
            raise
        return [f"connection {erp_conn_id!r} (the ERP) cannot be read as the adapter contract says: "
                f"{first_line(exc)}; see the README's ERP adapter contract"]
    finally:
        engine.dispose()
    return []


def reporting_problems(reporting_conn_id: str) -> list[str]:
    """Problems writing the reporting database: its ledger tables are created when missing, and a
    write to them is tried in a transaction that is rolled back."""
    from sqlalchemy import text

    from inexchange.db import reporting_engine
    from inexchange.ledger import Ledger

    try:
        engine = reporting_engine(reporting_conn_id)
    except Exception as exc:
        return [first_line(exc)]
    try:
        Ledger(engine, None).ensure_schema()  # type: ignore[arg-type]  # the schema needs no run
        with engine.connect() as conn, conn.begin() as transaction:
            conn.execute(text("UPDATE inexchange_dispatch SET state = state WHERE 1 = 0"))
            transaction.rollback()
    except Exception as exc:
        if is_outage(exc):
            raise
        return [f"connection {reporting_conn_id!r} (the ledger and the report) is not writable: {first_line(exc)}"]
    finally:
        engine.dispose()
    return []


def api_problems(inexchange_conn_id: str) -> list[str]:
    """Problems with the InExchange connection: a client token is created with the API key and ERP id,
    then revoked.

    A refusal (4xx: wrong key, unknown ERP id) or a connection without its fields is a problem to
    name. InExchange being unreachable or failing (5xx, after the hook's own retries) is no
    configuration problem: it is raised, so the task is retried like any other outage.
    """
    from inexchange.exceptions import InExchangeApiError, InExchangeConfigError
    from inexchange.hooks.inexchange import InExchangeHook

    from airflow.sdk.exceptions import AirflowNotFoundException

    hook = InExchangeHook(inexchange_conn_id=inexchange_conn_id)
    try:
        hook.authenticate()
    except AirflowNotFoundException:
        return [f"connection {inexchange_conn_id!r} is not defined: define it with the API base URL (host), the "
                "API key (password) and the ERP id (extra erp_id)"]
    except InExchangeConfigError as exc:
        return [f"connection {inexchange_conn_id!r} (InExchange): {first_line(exc)}"]
    except InExchangeApiError as exc:
        if 400 <= exc.status_code < 500 and exc.status_code not in (408, 429):
            return [f"InExchange did not accept the connection {inexchange_conn_id!r}: {first_line(exc)}"]
        raise
    finally:
        hook.close()  # revokes the token
    return []


def preflight(*, erp_conn_id: str, reporting_conn_id: str, inexchange_conn_id: str,
              read_seller: Callable[[], Any]) -> dict[str, Any]:
    """Run every check; raise :class:`PreflightFailed` naming every problem at once.

    :param read_seller: returns the seller Variable's value (deserialized JSON).
    """
    problems = [*seller_problems(read_seller), *erp_problems(erp_conn_id), *reporting_problems(reporting_conn_id),
                *api_problems(inexchange_conn_id)]
    if problems:
        failed = PreflightFailed(problems)
        log.error("%s", failed)
        raise failed
    checked = ["seller", erp_conn_id, reporting_conn_id, inexchange_conn_id]
    log.info("preflight: the seller Variable, %s (read), %s (written) and %s (API key) are in order",
             erp_conn_id, reporting_conn_id, inexchange_conn_id)
    return {"checked": checked}
