"""The checks a run makes before it touches any invoice: the configuration a person must set.

Each check returns the problems it found, one line each, saying what to set; :func:`preflight`
runs them all and names every problem at once. Nothing here writes to the ERP or sends an invoice:
the ERP is read through the statements the run itself uses (over an empty selection), the
reporting database is written inside a transaction that is rolled back, the API key is tried
by creating a client token and revoking it, and a pool the submit tasks take slots of is read from
Airflow's REST API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import quote

from inexchange.exceptions import first_line

log = logging.getLogger(__name__)

#: the Airflow Variable holding our company's details
SELLER_VARIABLE = "inexchange_seller"
#: the connection to Airflow's own REST API through which the preflight reads the submit tasks' pool
AIRFLOW_API_CONN_ID = "airflow_api"
#: seconds the preflight waits for each reply of Airflow's REST API
AIRFLOW_API_TIMEOUT = 10.0
#: the URL schemes a connection's ``schema`` field may name
_URL_SCHEMES = ("http", "https")
#: what a database error says when the server is down or restarting rather than misconfigured: such an
#: error is raised (the task is retried) instead of being named as a configuration problem
OUTAGE_SIGNS = (
    "connection refused",
    "server closed the connection",
    "the database system is starting up",
    "the database system is shutting down",
    "terminating connection",
    "could not receive data",
    "timeout expired",
    "connection timed out",
)
#: what a problem of the pool check offers besides fixing it
POOL_UNSET = "or unset [inexchange] api_pool (the submit tasks then run in default_pool, 4 at a time)"


@dataclass(frozen=True)
class ApiConnection:
    """The fields of the ``http`` connection to Airflow's REST API the pool is read through (see
    :func:`pool_problems`).

    :param conn_id: the connection's id, for the problems.
    :param host: the api-server's URL, or its name (completed by ``schema`` and ``port``).
    :param login: a user who may read pools; None: the token is asked for without credentials.
    """

    conn_id: str = AIRFLOW_API_CONN_ID
    host: str | None = None
    schema: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)


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
        return [
            f"Variable {SELLER_VARIABLE} cannot be read ({first_line(exc) or type(exc).__name__}): set it to "
            "our company's details as a JSON object (name, org_number, vat_number, street, postal_code, city, "
            "and one of bankgiro, plusgiro, iban)"
        ]
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
        return [
            f"connection {erp_conn_id!r} (the ERP) cannot be read as the adapter contract says: "
            f"{first_line(exc)}; see the ERP adapter contract (docs/erp-contract.md)"
        ]
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
    from airflow.sdk.exceptions import AirflowNotFoundException

    from inexchange.exceptions import InExchangeApiError, InExchangeConfigError
    from inexchange.hooks.inexchange import InExchangeHook

    hook = InExchangeHook(inexchange_conn_id=inexchange_conn_id)
    try:
        hook.authenticate()
    except AirflowNotFoundException:
        return [
            f"connection {inexchange_conn_id!r} is not defined: define it with the API base URL (host), the "
            "API key (password) and the ERP id (extra erp_id)"
        ]
    except InExchangeConfigError as exc:
        return [f"connection {inexchange_conn_id!r} (InExchange): {first_line(exc)}"]
    except InExchangeApiError as exc:
        if 400 <= exc.status_code < 500 and exc.status_code not in (408, 429):
            return [f"InExchange did not accept the connection {inexchange_conn_id!r}: {first_line(exc)}"]
        raise
    finally:
        hook.close()  # revokes the token
    return []


def pool_problems(pool: str | None, read_connection: Callable[[], ApiConnection]) -> list[str]:
    """Problems with the pool the submit tasks take slots of (``[inexchange] api_pool``).

    A task in a pool that does not exist is never scheduled, and a task cannot read pools through
    Airflow 3's Execution API; so the pool is read from Airflow's REST API
    (``GET /api/v2/pools/{pool}``) through the connection ``airflow_api``: host, the api-server's URL;
    login and password, a user who may read pools (a viewer will do). Without a login the token is
    asked for without credentials, which only an api-server with ``simple_auth_manager_all_admins``
    grants. No pool named: nothing to check (the submit tasks run in ``default_pool``).

    An api-server that cannot be reached or refuses the login is a problem to name (the task reaches
    its own api-server, so the URL or the user is wrong); one failing (5xx) or timing out is raised,
    so the task is retried like in any outage.

    :param pool: the pool named in ``[inexchange] api_pool``, if any.
    :param read_connection: returns the connection's fields (called only when a pool is named); it
        raises :class:`PreflightFailed` naming what to define when the connection cannot be read.
    """
    if not pool:
        return []
    import httpx
    from airflow.sdk.log import mask_secret

    try:
        conn = read_connection()
    except PreflightFailed as exc:
        return exc.problems
    base = airflow_api_url(conn.host, conn.schema, conn.port)
    where = f"connection {conn.conn_id!r} (Airflow's REST API at {base or 'no host'})"
    if not base:
        return [f"{where}: set its host to the api-server's URL, e.g. http://airflow-apiserver:8080"]
    try:
        with httpx.Client(base_url=base, timeout=AIRFLOW_API_TIMEOUT) as client:
            if conn.login:
                reply = client.post("auth/token", json={"username": conn.login, "password": conn.password or ""})
            else:
                reply = client.get("auth/token")
            if 400 <= reply.status_code < 500:
                return [
                    f"{where} gave no token (HTTP {reply.status_code}): set the login and password of a user "
                    "who may read pools, and the api-server's URL as host"
                ]
            reply.raise_for_status()
            token = _reply_field(reply, "access_token", str)
            mask_secret(token)  # a login of Airflow's own: never in a log
            reply = client.get(f"api/v2/pools/{quote(pool, safe='')}", headers={"Authorization": f"Bearer {token}"})
            if reply.status_code == 404:
                return [
                    f"the pool {pool!r} named in [inexchange] api_pool does not exist, so the submit tasks would "
                    f"never be scheduled: create it (airflow pools set {pool} 4 'InExchange API') {POOL_UNSET}"
                ]
            if reply.status_code in (401, 403):
                return [
                    f"{where}: the user {conn.login or '(all admins)'} may not read pools "
                    f"(HTTP {reply.status_code}): give the user a role that may, e.g. viewer"
                ]
            reply.raise_for_status()
            slots = _reply_field(reply, "slots", int)
    except httpx.TimeoutException:
        raise
    except httpx.TransportError as exc:
        return [
            f"{where} cannot be reached ({type(exc).__name__}: {first_line(exc)}): set its host to the api-server's URL"
        ]
    except ValueError as exc:  # a reply that is not the REST API's
        return [
            f"{where} did not answer as Airflow's REST API ({first_line(exc)}): set its host to the api-server's URL"
        ]
    if slots == 0:
        return [
            f"the pool {pool!r} named in [inexchange] api_pool has no slots, so the submit tasks would never "
            f"run: give it slots (airflow pools set {pool} 4 'InExchange API') {POOL_UNSET}"
        ]
    log.info("preflight: the pool %r has %s slots", pool, "unlimited" if slots < 0 else slots)
    return []


def airflow_api_url(host: str | None, schema: str | None, port: int | None) -> str:
    """The base URL of Airflow's REST API from an ``http`` connection's fields ('' without a host).

    ``host`` may be a whole URL (``http://airflow-apiserver:8080/``, with a path where the api-server
    is served under one) or a name, completed by ``schema`` (``http`` or ``https``; ``http`` otherwise)
    and ``port``.
    """
    import httpx

    host = (host or "").strip()
    if not host:
        return ""
    if "://" not in host:
        scheme = (schema or "").strip().lower()
        host = f"{scheme if scheme in _URL_SCHEMES else 'http'}://{host}"
    url = httpx.URL(host)
    if port and url.port is None:
        url = url.copy_with(port=port)
    return str(url).rstrip("/") + "/"


def _reply_field(reply: Any, name: str, kind: type) -> Any:
    """The field ``name`` of a JSON reply, of type ``kind``; :class:`ValueError` when it is not there."""
    try:
        value = reply.json()[name]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"HTTP {reply.status_code} without {name!r}") from None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{name!r} is not a {kind.__name__}")
    return value


def preflight(
    *,
    erp_conn_id: str,
    reporting_conn_id: str,
    inexchange_conn_id: str,
    read_seller: Callable[[], Any],
    pool: str | None = None,
    read_api_connection: Callable[[], ApiConnection] | None = None,
) -> dict[str, Any]:
    """Run every check; raise :class:`PreflightFailed` naming every problem at once.

    :param read_seller: returns the seller Variable's value (deserialized JSON).
    :param pool: the pool of the submit tasks, if they take slots of one (see :func:`pool_problems`).
    :param read_api_connection: returns the fields of the connection to Airflow's REST API the pool is
        read through; needed only with ``pool``.
    """
    if pool and read_api_connection is None:
        raise ValueError(f"the pool {pool!r} is read through Airflow's REST API: give read_api_connection")
    problems = [
        *seller_problems(read_seller),
        *erp_problems(erp_conn_id),
        *reporting_problems(reporting_conn_id),
        *api_problems(inexchange_conn_id),
        *(pool_problems(pool, read_api_connection) if read_api_connection is not None else []),
    ]
    if problems:
        failed = PreflightFailed(problems)
        log.error("%s", failed)
        raise failed
    checked = ["seller", erp_conn_id, reporting_conn_id, inexchange_conn_id, *([f"pool {pool}"] if pool else [])]
    log.info(
        "preflight: the seller Variable, %s (read), %s (written), %s (API key)%s are in order",
        erp_conn_id,
        reporting_conn_id,
        inexchange_conn_id,
        f" and the pool {pool!r}" if pool else "",
    )
    return {"checked": checked}
