"""The "InExchange dispatch" page of the Airflow UI: the report table and each invoice's history.

Registered through the ``airflow.plugins`` entry point (:class:`inexchange.ui.plugin.InExchangeDispatchPlugin`).
"""
