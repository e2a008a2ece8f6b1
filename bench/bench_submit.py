"""Submit throughput against the simulator at 20 ms latency, against two baselines in the same run.

For each mode a fresh ERP (SQLite file) is generated, extracted and validated, so the ledger holds
only ``ready`` invoices; then the timed part builds every document, claims it, uploads and sends it
and records the result in the ledger:

- operator: ``SubmitInvoicesOperator`` with 32 concurrent slots (one connection pool of 32);
- operator on httpx's engine: the same, with httpx's own async transport (httpcore) under the hook's
  async client instead of aiohttp's, every request through the httpx client: the figure that shows
  what the aiohttp transport and the hook's direct POSTs to it are worth;
- sequential: the same work as a plain loop over a synchronous httpx client (the hook's sync
  methods), one invoice after the other;
- one task per invoice: the operator mapped over as many shards as there are invoices (dynamic
  task mapping), run by ``dag.test()``, so each invoice pays for one Airflow task instance.
  ``dag.test()`` runs task instances in-process; a real worker also starts a process per task, so
  this baseline flatters the one-task-per-invoice design.

Prints invoices/s per mode and the operator's ratio to each baseline (targets: at least 400
invoices/s, 10x the sequential loop, 40x one task per invoice), and checks that the simulator saw
every invoice exactly once. Usage:
python bench/bench_submit.py [OPERATOR_N [SEQUENTIAL_N [PER_TASK_N]]] (default 4000 150 40).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

_HOME = Path(tempfile.mkdtemp(prefix="bench-submit-airflow-"))
os.environ.update({
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
    "AIRFLOW__CORE__DAGS_FOLDER": str(_HOME / "dags"),
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
})

from bench_support import SELLER_CONFIG  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 16)
LATENCY_MS = 20
SLOTS = 32
TIMEZONE = "Europe/Stockholm"


def context(run_id: str) -> dict[str, Any]:
    import pendulum

    start = pendulum.datetime(DAY.year, DAY.month, DAY.day, 6, tz=TIMEZONE)
    return {"run_id": run_id, "data_interval_start": start, "data_interval_end": start.add(days=1)}


def prepare_erp(tmp: Path, name: str, n: int, sim: Any) -> Any:
    """A fresh ERP whose day of ``n`` posted invoices is extracted and validated; the simulator reset."""
    from inexchange import pipeline
    from inexchange.operators.scope import run_scope
    from inexchange_devkit.erpgen import generate

    path = tmp / f"{name.replace(' ', '_').replace(',', '')}.db"
    engine = create_engine(f"sqlite:///{path}")
    generate(engine, seed=5, customers=max(20, n // 20), invoices=n, start_date=DAY, days=1, drafts=0)
    os.environ["AIRFLOW_CONN_ERP_DEFAULT"] = json.dumps({"conn_type": "sqlite", "host": str(path)})
    os.environ["AIRFLOW_CONN_INEXCHANGE_DEFAULT"] = json.dumps({
        "conn_type": "inexchange", "host": sim.base_url, "password": sim.api_key, "extra": {"erp_id": "bench"}})
    pipeline.extract(run_scope(context(name)), erp_conn_id="erp_default", reporting_conn_id="erp_default")
    pipeline.validate(run_scope(context(name)), erp_conn_id="erp_default", reporting_conn_id="erp_default")
    sim.reset()
    return engine


def ready_count(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM inexchange_dispatch WHERE state = 'ready'")).scalar())


def waiting_count(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM inexchange_dispatch WHERE state = 'waiting'")).scalar())


def run_operator(engine: Any, name: str) -> None:
    from inexchange.operators.submit import SubmitInvoicesOperator

    operator = SubmitInvoicesOperator(task_id="submit", erp_conn_id="erp_default", reporting_conn_id="erp_default",
                                      seller=SELLER_CONFIG, concurrency=SLOTS)
    operator.execute(context(name))


def run_operator_on_httpx(engine: Any, name: str) -> None:
    """The operator with httpx's own async engine under the hook (``InExchangeHook._async_transport``)."""
    import httpx
    from inexchange.hooks.inexchange import InExchangeHook

    def httpx_engine(hook: InExchangeHook, max_connections: int) -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport(verify=hook._ssl_context,
                                        limits=httpx.Limits(max_connections=max_connections))

    aiohttp_engine = InExchangeHook._async_transport
    InExchangeHook._async_transport = httpx_engine  # type: ignore[method-assign]
    try:
        run_operator(engine, name)
    finally:
        InExchangeHook._async_transport = aiohttp_engine  # type: ignore[method-assign]


def run_sequential(engine: Any, name: str) -> None:
    """The same work, one invoice at a time over one synchronous httpx client."""
    from inexchange.states import LedgerState
    from inexchange.erp import ErpReader
    from inexchange.hooks.inexchange import InExchangeHook
    from inexchange.ledger import Ledger
    from inexchange.operators.scope import run_scope
    from inexchange.submission import _send_body
    from inexchange.ubl import Seller, build_from_batch

    ledger = Ledger(engine, run_scope(context(name), TIMEZONE))
    rows = ledger.due_rows(max_attempts=5)
    batch = ErpReader(engine).load([r["invoice_id"] for r in rows])
    seller = Seller.from_config(SELLER_CONFIG)
    hook = InExchangeHook()
    recipients: dict[int, dict[str, Any]] = {}
    try:
        for row in rows:
            invoice_id = int(row["invoice_id"])
            document = build_from_batch(batch, invoice_id, seller)
            customer = batch.customer(batch.invoice(invoice_id)["customer_id"])
            ledger.transition(invoice_id, [LedgerState.READY], LedgerState.SUBMITTING, source="submit", attempt=1)
            if customer["customer_id"] not in recipients:
                found = hook.lookup_buyer(party_id=str(customer["customer_number"]), org_no=customer["org_number"])
                party = next((p for p in found.parties if p.can_receive_einvoice), None) if found.exact_hit else None
                recipients[customer["customer_id"]] = (
                    {"method": "Electronic", "recipient_id": party.company_id} if party and party.company_id
                    else {"method": "Paper"})
            recipient = recipients[customer["customer_id"]]
            uri = hook.upload_document(document)
            document_id = hook.send_outbound(_send_body(row, customer, recipient, uri))
            ledger.transition(invoice_id, [LedgerState.SUBMITTING], LedgerState.WAITING, source="submit",
                              inexchange_document_id=document_id, document_uri=uri,
                              delivery_method=recipient["method"])
    finally:
        hook.close()


PER_INVOICE_DAG = """
import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag

from inexchange.operators.submit import SubmitInvoicesOperator

SHARDS = {shards}


@dag(dag_id="bench_one_task_per_invoice", start_date=pendulum.datetime(2026, 1, 1, tz="{tz}"), catchup=False,
     schedule=CronDataIntervalTimetable("0 6 * * *", timezone="{tz}"))
def bench_one_task_per_invoice():
    SubmitInvoicesOperator.partial(
        task_id="submit", erp_conn_id="erp_default", reporting_conn_id="erp_default", concurrency=1,
    ).expand_kwargs([{{"shard": k, "shards": SHARDS}} for k in range(SHARDS)])


bench_one_task_per_invoice()
"""


def run_one_task_per_invoice(engine: Any, name: str, n: int) -> None:
    """A DAG whose submit task is mapped over ``n`` shards (one invoice each, on average)."""
    import importlib.util

    import pendulum

    os.environ["AIRFLOW_VAR_INEXCHANGE_SELLER"] = json.dumps(SELLER_CONFIG)
    path = _HOME / "dags" / "bench_one_task_per_invoice.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(PER_INVOICE_DAG.format(shards=n, tz=TIMEZONE), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("bench_one_task_per_invoice", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run_after = pendulum.datetime(DAY.year, DAY.month, DAY.day, 6, tz=TIMEZONE).add(days=1)
    dag_run = module.bench_one_task_per_invoice().test(logical_date=run_after)
    if dag_run.state != "success":
        raise RuntimeError(f"the mapped run ended {dag_run.state}")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of process ``pid`` (Linux /proc)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(label: str, tmp: Path, n: int, sim: Any, work: Any) -> float:
    engine = prepare_erp(tmp, label, n, sim)
    ready = ready_count(engine)
    cpu, sim_cpu = cpu_seconds(), cpu_seconds(sim.process.pid)
    started = time.perf_counter()
    work(engine, label)
    seconds = time.perf_counter() - started
    cpu, sim_cpu = cpu_seconds() - cpu, cpu_seconds(sim.process.pid) - sim_cpu
    sent = waiting_count(engine)
    stats = sim.stats()
    sends = stats["sends"]
    if sent != ready or len(sends) != ready or any(v != 1 for v in sends.values()) or stats["duplicates"]:
        raise RuntimeError(f"{label}: {ready} ready, {sent} waiting, {len(sends)} at the simulator, "
                           f"duplicates {stats['duplicates']}")
    rate = sent / seconds
    print(f"{label:<28}{sent:>9}{seconds:>10.2f}{rate:>14.1f}{cpu / sent * 1000:>13.2f}{sim_cpu / sent * 1000:>12.2f}",
          flush=True)
    engine.dispose()
    return rate


def main(operator_n: int, sequential_n: int, per_task_n: int) -> None:
    from inexchange_devkit.simulator.testing import run_simulator

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    # the simulator keeps every uploaded file: in the repository's .bench/, as /tmp can be slow to create files in
    (ROOT / ".bench").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name, tempfile.TemporaryDirectory(dir=ROOT / ".bench") as sim_dir, \
            run_simulator(latency_ms=LATENCY_MS, status_step_ms=60_000, data_dir=sim_dir) as sim:
        tmp = Path(tmp_name)
        print(f"simulator latency {LATENCY_MS} ms per request; operator with {SLOTS} concurrent slots")
        print(f"{os.cpu_count()} CPUs; CPU columns: milliseconds of CPU per invoice in this process and in the simulator")
        print(f"{'mode':<28}{'invoices':>9}{'seconds':>10}{'invoices/s':>14}{'CPU ms/inv':>13}{'sim ms/inv':>12}")
        operator = timed("operator", tmp, operator_n, sim, run_operator)
        on_httpx = timed("operator on httpx's engine", tmp, operator_n, sim, run_operator_on_httpx)
        sequential = timed("sequential httpx loop", tmp, sequential_n, sim, run_sequential)
        per_task = timed("one task per invoice", tmp, per_task_n, sim,
                         lambda e, name: run_one_task_per_invoice(e, name, ready_count(e)))
    print(f"\noperator: {operator:.0f} invoices/s (target >= 400)")
    print(f"  x the same on httpx's async engine: {operator / on_httpx:.2f} (the aiohttp transport pays while above 1)")
    print(f"  x sequential loop:      {operator / sequential:.1f} (target >= 10)")
    print(f"  x one task per invoice: {operator / per_task:.1f} (target >= 40)")


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] + [4000, 150, 40][len(sys.argv) - 1:]
    main(*sizes[:3])
