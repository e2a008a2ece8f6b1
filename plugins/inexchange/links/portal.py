"""The "InExchange portal" extra link of the submit task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey


class InExchangePortalLink(BaseOperatorLink):
    """A button on the submit task that opens InExchange's portal (the connection's extra ``portal_url``).

    The task stores the URL in XCom when it runs (:meth:`persist`), so the Airflow UI needs no
    access to the connection to show the link.
    """

    name = "InExchange portal"

    @classmethod
    def persist(cls, context: Context, url: str) -> None:
        """Store the portal URL of this task instance (when there is one: ``execute`` called directly has none)."""
        if (ti := context.get("ti")) is not None:
            ti.xcom_push(key=cls().xcom_key, value=url)

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        value: Any = XCom.get_value(ti_key=ti_key, key=self.xcom_key)
        return str(value) if value else ""
