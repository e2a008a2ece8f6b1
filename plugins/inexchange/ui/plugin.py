"""Airflow plugin serving the "InExchange dispatch" page and its entry in the UI's navigation.

The api-server mounts the FastAPI app under :data:`URL_PREFIX`; the external view embeds that page
in the Airflow UI at ``/plugin/inexchange-dispatch``, with its own button in the navigation bar.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/inexchange"
#: the Airflow UI route (``/plugin/<url_route>``) that shows the page inside the UI
URL_ROUTE = "inexchange-dispatch"
PAGE_NAME = "InExchange dispatch"


def _fastapi_app() -> dict[str, Any]:
    """The ``fastapi_apps`` entry; the app is built at plugin load (no connection is read then)."""
    from inexchange.ui.app import create_app

    return {"app": create_app(), "url_prefix": URL_PREFIX, "name": PAGE_NAME}


class InExchangeDispatchPlugin(AirflowPlugin):
    """The report page of the InExchange dispatch DAG in the Airflow UI."""

    name = "inexchange_dispatch"
    fastapi_apps = [_fastapi_app()]
    external_views = [
        {
            "name": PAGE_NAME,
            "href": f"{URL_PREFIX}/",
            "url_route": URL_ROUTE,
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
