"""Daily dispatch of the ERP's posted invoices through InExchange (wiring only)."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, chain, conf, dag

from inexchange.notifications import ActionNeededNotifier
from inexchange.operators.stages import (
    DispatchReportOperator,
    ExtractInvoicesOperator,
    PlanBatchesOperator,
    PreflightOperator,
    RecheckWaitingOperator,
    RunStateWatcherOperator,
    ValidateInvoicesOperator,
)
from inexchange.operators.submit import SubmitInvoicesOperator
from inexchange.sensors.delivery import DeliveryStatusSensor
from inexchange.times import TIMEZONE
from inexchange.values import LedgerTaskArguments

ERP_CONN_ID = "erp_default"
REPORTING_CONN_ID = "inexchange_reporting"
INEXCHANGE_CONN_ID = "inexchange_default"
#: Airflow's own REST API, through which the preflight reads the pool below (only when one is named)
AIRFLOW_API_CONN_ID = "airflow_api"
#: where every task finds the ERP and the ledger, and the time zone of the invoice dates
LEDGER: LedgerTaskArguments = {"erp_conn_id": ERP_CONN_ID, "reporting_conn_id": REPORTING_CONN_ID, "timezone": TIMEZONE}
#: invoices in flight at once in each mapped submit task
CONCURRENCY = 32
#: The Airflow pool of the mapped submit tasks: none by default, because a task in a pool that does not
#: exist is never scheduled and a fresh Airflow has only default_pool. To size the cap in the UI, or share
#: it with other DAGs calling InExchange, create a pool (`airflow pools set inexchange_api 4 ...`) and name
#: it in `[inexchange] api_pool` (AIRFLOW__INEXCHANGE__API_POOL) where the dag-processor runs. The preflight
#: then checks the pool through the connection AIRFLOW_API_CONN_ID (a task has no other way to read pools).
API_POOL = conf.get("inexchange", "api_pool", fallback="").strip() or None
#: without that pool, at most this many submit tasks run at once, over all runs of the DAG
API_SLOTS = 4
#: how the submit tasks' concurrency is capped: by the named pool, or by API_SLOTS
SUBMIT_CAP = {"pool": API_POOL} if API_POOL else {"max_active_tis_per_dag": API_SLOTS}
#: the "Elektroniska utskick" report table, updated by every run: downstream DAGs can be scheduled on it.
#: Its URI is its name: a URI with a scheme would make every parse load the providers' URI handlers.
INEXCHANGE_REPORT = Asset(name="inexchange_report", group="inexchange")

DOC_MD = """
### InExchange dispatch

Sends the ERP's posted customer invoices whose customer has the billing method
**InExchange utskrift (API)** as Peppol BIS Billing 3.0 documents, once, and follows them until
InExchange reports them sent ("Skickad") or stopped.

Each run owns one day of invoice dates (06:00 to 06:00, Europe/Stockholm):

- **preflight**: the seller Variable, the ERP (read as the adapter contract says), the reporting
  database (writable), the API key (a client token created and revoked) and the pool named in
  `[inexchange] api_pool`, if any (read through the connection `airflow_api`); every problem is named
  at once and the run stops before any invoice is touched, without retries.
0. **recheck_waiting**: invoices of earlier days still waiting (their sensor timed out) are looked
   up once at InExchange and their statuses recorded.
1. **extract**: the day's posted invoices go into the ledger (`inexchange_dispatch`) as *pending*;
   invoices already sent or in flight are skipped.
2. **validate**: customer prerequisites and invoice integrity; failures become *rejected* with one
   message per invoice saying what to fix in the ERP.
3. **plan_batches** / **submit**: the due invoices are split into batches of `batch_size` (2,000 unless the run's config says otherwise); one
   mapped submit task per batch builds, uploads and sends each *ready* invoice exactly once
   (32 at a time; at most 4 batches at once, or as many as the pool `[inexchange] api_pool` names
   has slots); it becomes *waiting*.
4. **await_delivery**: a deferrable sensor follows the documents until they are *sent* or *stopped*
   (it defers unless the run's config says `deferrable: false`; then it pokes in reschedule mode).
5. **report**: refreshes `inexchange_report` ("Elektroniska utskick"), logs a summary and updates
   the Asset `inexchange_report`; it runs after a failed stage too. The run turns red when an
   invoice needs a person, unless `fail_on_action_needed` is off.
6. **watcher**: skipped when every stage succeeded; otherwise it fails and names the failed stages,
   so the run is red whenever a stage failed (report alone, which always runs, would leave it green).

Trigger with config for a manual run:

- `invoice_numbers`: only these invoices, whatever their date; rejected and failed ones are sent
  (again), ones InExchange already has are skipped, never sent twice.
- `invoice_date`: the invoices dated this day (`2026-11-20`), whatever the run's logical date.
- `dry_run`: validate and build the documents, send nothing.
- `check_peppol`: run the official Peppol BIS 3 rules over each document before it is uploaded and
  reject one that breaks a fatal rule (needs the extra `[peppol]` and `[inexchange] peppol_rules`).
- `retry_rejected`: off to leave rejected invoices alone (they are checked again by default).
- `delivery_timeout_minutes`: how long **await_delivery** follows the documents (360 by default);
  those still waiting then are looked up by the next run's **recheck_waiting**.
- `deferrable`: off to have **await_delivery** poke in reschedule mode instead of deferring to the
  triggerer (on by default, whatever `[operators] default_deferrable` says).

A manual or backfill run retries failed invoices at once instead of at their retry time.

Connections: `erp_default` (only read), `inexchange_default`, `inexchange_reporting` (the ledger and the
report; it must be defined), and `airflow_api` where `[inexchange] api_pool` names a pool.
Variable: `inexchange_seller` (our company, as JSON). See docs/connections.md.
Variable `inexchange_notify` (optional, JSON): after **report**, one e-mail per run listing the invoices
that need a person, through an `smtp` connection, e.g.
`{"email": {"to": ["ekonomi@example.se"], "from": "airflow@example.se", "smtp_conn_id": "smtp_default"}}`.
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
        "batch_size": Param(
            2000,
            type="integer",
            minimum=1,
            description="Invoices per mapped submit task; up to 4 batches run in parallel (or as many as the "
            "pool named in [inexchange] api_pool has slots).",
        ),
        "fail_on_action_needed": Param(
            True, type="boolean", description="End the run red when an invoice is rejected, stopped or failed."
        ),
        "invoice_numbers": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Invoice numbers to (re)send",
            description="Only these invoices, whatever their date (empty: the run's day). Invoices InExchange "
            "already has are skipped.",
        ),
        "invoice_date": Param(
            "",
            type="string",
            title="Invoice date (YYYY-MM-DD)",
            pattern=r"^(\d{4}-\d{2}-\d{2})?$",
            description="Send the invoices dated this day (Europe/Stockholm), whatever the run's logical date "
            "(empty: the day the run's data interval covers).",
        ),
        "dry_run": Param(False, type="boolean", description="Validate and build documents; send nothing."),
        "check_peppol": Param(
            False,
            type="boolean",
            description="Run the official Peppol BIS 3 rules over each document before it is uploaded; "
            "reject one that breaks a fatal rule.",
        ),
        "retry_rejected": Param(
            True, type="boolean", description="Check rejected invoices again (and send those that now pass)."
        ),
        "delivery_timeout_minutes": Param(
            360,
            type="integer",
            minimum=1,
            title="Delivery timeout (minutes)",
            description="How long await_delivery follows the run's documents; those still waiting then stay "
            "waiting, and the next run's recheck_waiting looks them up.",
        ),
        "deferrable": Param(
            True,
            type="boolean",
            title="Defer await_delivery",
            description="await_delivery waits in the triggerer, holding no worker slot; off: it pokes in "
            "reschedule mode (for a deployment without a triggerer).",
        ),
    },
)
def inexchange_dispatch():
    preflight = PreflightOperator(
        task_id="preflight",
        inexchange_conn_id=INEXCHANGE_CONN_ID,
        api_pool=API_POOL,
        airflow_api_conn_id=AIRFLOW_API_CONN_ID,
        **LEDGER,
    )
    recheck_waiting = RecheckWaitingOperator(task_id="recheck_waiting", inexchange_conn_id=INEXCHANGE_CONN_ID, **LEDGER)
    extract = ExtractInvoicesOperator(task_id="extract", **LEDGER)
    validate = ValidateInvoicesOperator(task_id="validate", **LEDGER)
    batches = PlanBatchesOperator(
        task_id="plan_batches", batch_size="{{ params.batch_size }}", dry_run="{{ params.dry_run }}", **LEDGER
    )
    submit = SubmitInvoicesOperator.partial(
        task_id="submit",
        inexchange_conn_id=INEXCHANGE_CONN_ID,
        concurrency=CONCURRENCY,
        check_peppol="{{ params.check_peppol }}",
        **SUBMIT_CAP,
        **LEDGER,
    ).expand_kwargs(batches.output)

    await_delivery = DeliveryStatusSensor(
        task_id="await_delivery",
        inexchange_conn_id=INEXCHANGE_CONN_ID,
        poll_interval="{{ var.value.get('inexchange_poll_interval', 60) }}",
        delivery_timeout="{{ params.delivery_timeout_minutes * 60 }}",
        deferrable="{{ params.deferrable }}",
        **LEDGER,
    )

    # e-mails the invoices that need a person when the Variable inexchange_notify is set; the report fails
    # on purpose when there are any, so it is called on success and on failure alike
    notify = ActionNeededNotifier(report_task_id="report")
    report = DispatchReportOperator(
        task_id="report",
        fail_on_action_needed="{{ params.fail_on_action_needed }}",
        trigger_rule="all_done",
        outlets=[INEXCHANGE_REPORT],
        on_success_callback=notify,
        on_failure_callback=notify,
        **LEDGER,
    )

    chain(preflight, recheck_waiting, extract, validate, batches, submit, await_delivery, report)
    # report runs after a failure too; the watcher makes any failed stage turn the run red
    stages = [preflight, recheck_waiting, extract, validate, batches, submit, await_delivery]
    stages >> RunStateWatcherOperator(task_id="watcher")


inexchange_dispatch()
