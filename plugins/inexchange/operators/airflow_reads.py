"""What the operators read of Airflow for the domain: the seller Variable, the connection to Airflow's
REST API and the option naming the Peppol rules folder. The domain gets the values, never Airflow.

Imported when a task runs (never when a DAG file is parsed).
"""

from __future__ import annotations

from typing import Any

from inexchange.peppol import RULES_OPTION
from inexchange.preflight import POOL_UNSET, SELLER_VARIABLE, ApiConnection, PreflightFailed


def read_seller_variable() -> Any:
    """The Variable :data:`~inexchange.preflight.SELLER_VARIABLE`, deserialized from JSON (the preflight
    and the submit task read it)."""
    from airflow.sdk import Variable

    return Variable.get(SELLER_VARIABLE, deserialize_json=True)


def airflow_api_connection(conn_id: str, pool: str) -> ApiConnection:
    """The fields of the connection ``conn_id`` to Airflow's REST API, through which the preflight reads
    the pool ``pool`` (see :func:`inexchange.preflight.pool_problems`).

    :raises PreflightFailed: naming what to define, when the connection is not defined.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise PreflightFailed(
            [
                f"[inexchange] api_pool names the pool {pool!r}, which a task can read only through Airflow's REST "
                f"API: define the connection {conn_id!r} (host: the api-server's URL; login and "
                f"password: a user who may read pools), {POOL_UNSET}"
            ]
        ) from None
    return ApiConnection(
        conn_id=conn_id, host=conn.host, schema=conn.schema, port=conn.port, login=conn.login, password=conn.password
    )


def peppol_rules_folder() -> str | None:
    """The folder of the Peppol rules the option ``[inexchange] peppol_rules`` names, or None when it is not set."""
    from airflow.sdk import conf

    return conf.get("inexchange", RULES_OPTION, fallback=None)
