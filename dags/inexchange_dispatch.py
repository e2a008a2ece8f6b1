"""Daily dispatch of the ERP's posted invoices through InExchange (wiring only)."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, chain, dag, task

from inexchange.operators.submit import SubmitInvoicesOperator
from inexchange.sensors.delivery import DeliveryStatusSensor

ERP_CONN_ID = "erp_default"
REPORTING_CONN_ID = "inexchange_reporting"
INEXCHANGE_CONN_ID = "inexchange_default"
TIMEZONE = "Europe/Stockholm"

DOC_MD = """
### InExchange dispatch

Sends the ERP's posted customer invoices whose customer has the billing method
**InExchange utskrift (API)** as Peppol BIS Billing 3.0 documents, once, and follows them until
InExchange reports them sent ("Skickad") or stopped.

Each run owns one day of invoice dates (06:00 to 06:00, Europe/Stockholm):

1. **extract**: the day's posted invoices go into the ledger (`inexchange_dispatch`) as *pending*;
   invoices already sent or in flight are skipped.
2. **validate**: customer prerequisites and invoice integrity; failures become *rejected* with one
   message per invoice saying what to fix in the ERP.
3. **submit**: build, upload and send each *ready* invoice exactly once; it becomes *waiting*.
4. **await_delivery**: a deferrable sensor follows the documents until they are *sent* or *stopped*.
5. **report**: refreshes `inexchange_report` ("Elektroniska utskick") and logs a summary. The run
   turns red when an invoice needs a person, unless `fail_on_action_needed` is off.

Connections: `erp_default`, `inexchange_default`, `inexchange_reporting`.
Variable: `inexchange_seller` (our company, as JSON). See the README.
"""


@dag(
    dag_id="inexchange_dispatch",
    schedule=CronDataIntervalTimetable("0 6 * * *", timezone=TIMEZONE),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["inexchange", "invoices"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "fail_on_action_needed": Param(
            True, type="boolean", description="End the run red when an invoice is rejected, stopped or failed."
        ),
    },
)
def inexchange_dispatch():
    @task
    def extract(**context) -> dict:
        from inexchange import pipeline

        return pipeline.extract(context, erp_conn_id=ERP_CONN_ID, reporting_conn_id=REPORTING_CONN_ID,
                                timezone=TIMEZONE)

    @task
    def validate(**context) -> dict:
        from inexchange import pipeline

        return pipeline.validate(context, erp_conn_id=ERP_CONN_ID, reporting_conn_id=REPORTING_CONN_ID,
                                 timezone=TIMEZONE)

    submit = SubmitInvoicesOperator(
        task_id="submit",
        erp_conn_id=ERP_CONN_ID,
        reporting_conn_id=REPORTING_CONN_ID,
        inexchange_conn_id=INEXCHANGE_CONN_ID,
        timezone=TIMEZONE,
        pool="inexchange_api",
    )

    await_delivery = DeliveryStatusSensor(
        task_id="await_delivery",
        erp_conn_id=ERP_CONN_ID,
        reporting_conn_id=REPORTING_CONN_ID,
        inexchange_conn_id=INEXCHANGE_CONN_ID,
        poll_interval="{{ var.value.get('inexchange_poll_interval', 60) }}",
        timeout=timedelta(hours=6),
        timezone=TIMEZONE,
    )

    @task(trigger_rule="all_done")
    def report(**context) -> dict:
        from inexchange import pipeline

        return pipeline.report(context, erp_conn_id=ERP_CONN_ID, reporting_conn_id=REPORTING_CONN_ID,
                               fail_on_action_needed=context["params"]["fail_on_action_needed"],
                               timezone=TIMEZONE)

    chain(extract(), validate(), submit, await_delivery, report())


inexchange_dispatch()
