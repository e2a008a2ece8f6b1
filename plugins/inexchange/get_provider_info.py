"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

#: the ``inexchange`` connection form: which fields to hide, relabel and prefill (hook and provider)
CONNECTION_FORM: dict[str, Any] = {
    "hidden_fields": ["schema", "port", "login"],
    "relabeling": {"host": "API base URL", "password": "API key"},
    "placeholders": {"host": "https://testapi.inexchange.se/v1/api/", "password": "API key from InExchange"},
}


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: its hook, operators, sensor, trigger, notifier and the ``inexchange`` connection."""
    return {
        "package-name": "airflow-provider-inexchange",
        "name": "InExchange",
        "description": "Send ERP invoices as Peppol BIS Billing 3.0 documents through InExchange.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "InExchange",
                "external-doc-url": "https://www.inexchange.se/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "InExchange", "python-modules": ["inexchange.hooks.inexchange"]}],
        "operators": [
            {
                "integration-name": "InExchange",
                "python-modules": ["inexchange.operators.submit", "inexchange.operators.stages"],
            }
        ],
        "sensors": [{"integration-name": "InExchange", "python-modules": ["inexchange.sensors.delivery"]}],
        "triggers": [{"integration-name": "InExchange", "python-modules": ["inexchange.triggers.delivery"]}],
        "extra-links": ["inexchange.links.portal.InExchangePortalLink"],
        "notifications": ["inexchange.notifications.ActionNeededNotifier"],
        "config": {
            "inexchange": {
                "description": "Settings of the InExchange dispatch DAG: api_pool is read when its file is "
                "parsed, peppol_rules when a submit task runs.\n",
                "options": {
                    "api_pool": {
                        "description": "An Airflow pool you created for the DAG's submit tasks (e.g. inexchange_api). "
                        "Empty: they run in default_pool, at most 4 at once over all runs. A pool that "
                        "does not exist stops them, so create it first.\n",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "inexchange_api",
                        "default": "",
                    },
                    "peppol_rules": {
                        "description": "The folder of the official Peppol BIS 3 validation artefacts "
                        "(CEN-EN16931-UBL.xsl and PEPPOL-EN16931-UBL.xsl, release 3.0.19) that the DAG param "
                        "check_peppol runs over each document before upload (needs the extra [peppol]). "
                        "Unset: a run with check_peppol on fails as misconfigured.\n",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "/opt/airflow/peppol-artefacts/3.0.19",
                        "default": None,
                    },
                },
            }
        },
        "connection-types": [
            {
                "hook-class-name": "inexchange.hooks.inexchange.InExchangeHook",
                "hook-name": "InExchange",
                "connection-type": "inexchange",
                "ui-field-behaviour": {key.replace("_", "-"): value for key, value in CONNECTION_FORM.items()},
                "conn-fields": {
                    "erp_id": {
                        "label": "ERP id",
                        "description": "The id InExchange knows your ERP installation by (clientTokens/create).",
                        "schema": {"type": ["string", "null"]},
                    }
                },
            }
        ],
    }
