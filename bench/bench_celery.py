"""How the submit stage scales with the number of CeleryExecutor workers.

For each worker count (default 1 and 2) a fresh CeleryExecutor stack is started with
``celery_up`` of ``inexchange_devkit.services`` (what ``make celery-up`` runs), as
``tests/integration/test_celery_executor.py`` starts it: two fresh PostgreSQL databases on
127.0.0.1:5432 (the Airflow metadata and Celery result backend, and the ledger and report), a
flushed Redis DB on 127.0.0.1:6379 as the broker, free ports, the InExchange simulator as
``celery_up`` runs it (no added latency, statuses one step per 100 ms, its default share of
stopped and failed documents), ``airflow api-server``, ``scheduler`` (CeleryExecutor),
``dag-processor``, ``triggerer`` and that many ``airflow celery worker`` processes; it is stopped
(``celery_down``) and its databases dropped whatever happens. The ERP is a fresh copy of one
generated SQLite file with N posted invoices dated one day (default 20,000).

Each stack runs the dispatch DAG once for that day with ``batch_size`` = N / ``--batches``
(default 8, so several mapped ``submit`` tasks per worker; only the invoices billed through
InExchange that pass validation are due, about 70 % of N, so 8 gives about 6 batches), in the pool
``inexchange_api`` of ``--pool-slots`` slots (default 8), each worker running
``--worker-concurrency`` tasks at a time (default 2): at most min(pool slots, workers x
concurrency) submit tasks run at once.

Printed per worker count: the run's wall time (trigger to end) and invoices per second; the span of
the mapped ``submit`` tasks (first start to last end, from the metadata database), the invoices
submitted (ledger rows with ``submitted_at``) per second of that span, the most submit tasks that
ran at once (overlap of their start and end), and that throughput as a ratio to the one-worker run
(the fewest workers when 1 is not in the list); then every stage's span and the submit tasks per
worker.

On a machine with 2 cores the workers share those cores with the simulator and the Airflow
components (scheduler, api-server, dag-processor, triggerer, PostgreSQL, Redis): the figures show
what more worker slots buy on this machine, not what they would buy on a bigger one, where each
worker would have cores of its own. ``os.cpu_count()`` is printed with the figures.

Never passes or fails on figures; exits non-zero only when a run does not end in success or leaves
ledger rows in a state that is not final for the run (anything but sent, rejected, stopped or
failed). Usage (from the repository root)::

    .venv/bin/python bench/bench_celery.py [--workers 1,2] [--invoices 20000] [--batches 8]
        [--pool-slots 8] [--worker-concurrency 2] [--redis-db 7] [--timeout 3600]

PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 must be running. Work files go to
``.bench/celery/``; those of a run that went wrong are kept there (component logs under
``state/logs/``, task logs under ``state/home/logs/``).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:  # the test data (support) is the integration tests'
    sys.path.insert(0, str(ROOT / "tests"))

from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER, SELLER  # noqa: E402
from inexchange_devkit.services import (  # noqa: E402
    DISPATCH_DAG_ID,
    CelerySettings,
    Database,
    Deployment,
    PostgresServer,
    celery_down,
    celery_up,
    free_port,
)

DAY = date(2026, 11, 16)
#: the order the stages run in
STAGES = ("recheck_waiting", "extract", "validate", "plan_batches", "submit", "await_delivery", "report")
#: ledger states a run may leave an invoice in (the others are still on their way)
SETTLED_STATES = frozenset({"sent", "rejected", "stopped", "failed"})
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
WORK_DIR = ROOT / ".bench" / "celery"  # not /tmp: creating many files there is slow on some machines
NOTE = (
    "On a machine with 2 cores (this one: os.cpu_count() = {cpus}) the Celery workers share those cores with the "
    "simulator and the Airflow components (scheduler, api-server, dag-processor, triggerer, PostgreSQL, Redis): the "
    "figures show what more worker slots buy on this machine, not what they would buy on a bigger one."
)


@dataclass
class Result:
    workers: int
    invoices: int
    state: str = "not run"
    error: str = ""
    wall_s: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    submit_tasks: int = 0
    submit_span_s: float = 0.0
    max_at_once: int = 0
    submitted: int = 0
    per_worker: dict[str, int] = field(default_factory=dict)
    retried: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    kept: Path | None = None

    @property
    def unsettled(self) -> dict[str, int]:
        return {s: n for s, n in self.states.items() if s not in SETTLED_STATES}

    @property
    def ok(self) -> bool:
        return self.state == "success" and not self.unsettled and bool(self.states)

    @property
    def submit_rate(self) -> float:
        return self.submitted / self.submit_span_s if self.submit_span_s else 0.0


def max_overlap(spans: list[tuple[Any, Any]]) -> int:
    """The most intervals (start, end) open at one time; an end and a start at the same moment do not overlap."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.flushdb()
    finally:
        client.close()


def generate_erp(path: Path, n: int) -> None:
    """A SQLite ERP with ``n`` posted invoices dated :data:`DAY` (the call of bench_scale.py)."""
    from inexchange_devkit.erpgen import generate

    engine = Database.sqlite(path).engine()
    try:
        generate(engine, seed=5, customers=max(40, n // 25), invoices=n, start_date=DAY, days=1, drafts=n // 100)
    finally:
        engine.dispose()


def wait_for_run(deployment: Deployment, run_id: str, timeout: float) -> str:
    """Poll the metadata database until the run ends; raise when a component exits or ``timeout`` passes."""
    started = time.monotonic()
    while True:
        deployment.stack.check_running()
        rows = deployment.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DISPATCH_DAG_ID, run_id)
        if rows and rows[0][0] in ("success", "failed"):
            return str(rows[0][0])
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{run_id} did not end within {timeout:g} s (state {rows[0][0] if rows else None})")
        time.sleep(0.5)


def measure(result: Result, deployment: Deployment, run_id: str) -> None:
    """Stage spans, submit overlap and hosts from the metadata database; ledger states and submissions."""
    spans: dict[str, list[tuple[Any, Any]]] = {}
    for task, map_index, start, end, hostname, try_number in deployment.query(
        "SELECT task_id, map_index, start_date, end_date, hostname, try_number FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s",
        DISPATCH_DAG_ID,
        run_id,
    ):
        if (try_number or 0) > 1:
            result.retried.append(
                f"{task}[{map_index}] try {try_number}" if map_index >= 0 else f"{task} try {try_number}"
            )
        if start is None or end is None:
            continue
        spans.setdefault(task, []).append((start, end))
        if task == "submit":
            host = (hostname or "?").split(".")[0]
            result.per_worker[host] = result.per_worker.get(host, 0) + 1
    result.stages = {
        task: (max(e for _, e in times) - min(s for s, _ in times)).total_seconds() for task, times in spans.items()
    }
    submits = spans.get("submit", [])
    result.submit_tasks = len(submits)
    result.submit_span_s = result.stages.get("submit", 0.0)
    result.max_at_once = max_overlap(submits)
    for row in deployment.rows(
        "SELECT state, COUNT(*) AS n, SUM(CASE WHEN submitted_at IS NOT NULL THEN 1 ELSE 0 END) AS submitted "
        "FROM inexchange_dispatch GROUP BY state"
    ):
        result.states[str(row["state"])] = int(row["n"])
        result.submitted += int(row["submitted"] or 0)


def run(workers: int, n: int, batch_size: int, args: argparse.Namespace, erp_master: Path) -> Result:
    """One fresh stack with ``workers`` Celery workers, one day of ``n`` invoices, one run; return its figures."""
    result = Result(workers, n)
    workdir = Path(tempfile.mkdtemp(prefix=f"workers-{workers}-", dir=WORK_DIR))
    erp_path = workdir / "erp.db"
    shutil.copyfile(erp_master, erp_path)
    redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{args.redis_db}"
    flush_redis(redis_url)
    pg = PostgresServer(PG_HOST, PG_PORT, PG_USER, maintenance_db=PG_DB)
    try:
        with (
            pg.temporary_database("af_bench_celery_") as metadata_db,
            pg.temporary_database("rep_bench_celery_") as reporting_db,
        ):
            settings = CelerySettings(
                state_dir=workdir / "state",
                pg=pg,
                metadata_db=metadata_db,
                reporting_db=reporting_db,
                redis_url=redis_url,
                api_port=free_port(),
                simulator_port=free_port(),
                log_server_ports=tuple(free_port() for _ in range(1 + workers)),
                workers=workers,
                worker_concurrency=args.worker_concurrency,
                pool_slots=args.pool_slots,
                simulator_status_step_ms=100,
                poll_interval_s=2,
                erp_path=erp_path,
                seller=SELLER,
                erp_id="bench-celery",
                api_key="bench-celery-key",
            )
            deployment = None
            try:
                deployment = celery_up(settings, say=lambda line: None)
                run_id = f"bench_celery__{workers}w__{n}"
                started = time.monotonic()
                deployment.trigger(DAY, {"fail_on_action_needed": False, "batch_size": batch_size}, run_id=run_id)
                result.state = wait_for_run(deployment, run_id, args.timeout)
                result.wall_s = time.monotonic() - started
                measure(result, deployment, run_id)
            finally:
                celery_down(settings)
                if deployment is not None:
                    deployment.close()
    except Exception as exc:  # reported with the figures; the exit status says so
        result.state = "error"
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        flush_redis(redis_url)
    if result.ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        result.kept = workdir
    return result


def show(results: list[Result], args: argparse.Namespace, batch_size: int) -> None:
    cpus = os.cpu_count()
    done = [r for r in results if r.state in ("success", "failed")]
    base = next((r for r in done if r.workers == 1), None) or (min(done, key=lambda r: r.workers) if done else None)
    base_label = f"x {base.workers}w" if base else "x base"
    print(f"\n== CeleryExecutor: the submit stage by number of workers, {results[0].invoices:,} invoices ==")
    print(
        f"os.cpu_count() = {cpus}; pool inexchange_api {args.pool_slots} slots; worker_concurrency "
        f"{args.worker_concurrency} (submit tasks at once at most min(pool slots, workers x concurrency)); "
        f"batch_size {batch_size:,}"
    )
    print(NOTE.format(cpus=cpus))
    print(
        f"{'workers':>7} {'slots':>5} {'wall s':>8} {'inv/s':>7} {'submits':>7} {'span s':>8} {'submitted':>9} "
        f"{'sub/s':>7} {'at once':>7} {base_label:>7}  run, ledger"
    )
    for r in results:
        slots = min(args.pool_slots, r.workers * args.worker_concurrency)
        if r.state not in ("success", "failed"):
            print(f"{r.workers:>7} {slots:>5}  {r.state}: {r.error}")
            continue
        ratio = r.submit_rate / base.submit_rate if base and base.submit_rate else 0.0
        inv_s = r.invoices / r.wall_s if r.wall_s else 0.0
        print(
            f"{r.workers:>7} {slots:>5} {r.wall_s:>8.1f} {inv_s:>7.0f} {r.submit_tasks:>7} {r.submit_span_s:>8.1f} "
            f"{r.submitted:>9} {r.submit_rate:>7.0f} {r.max_at_once:>7} {ratio:>7.2f}  {r.state}, {r.states}"
        )
    print("span per stage, s (a mapped task: first start to last end)")
    print(f"{'workers':>7} " + " ".join(f"{s[:14]:>14}" for s in STAGES) + "  submit tasks per worker")
    for r in done:
        workers = ", ".join(f"{host}: {count}" for host, count in sorted(r.per_worker.items()))
        print(f"{r.workers:>7} " + " ".join(f"{r.stages.get(s, 0.0):>14.1f}" for s in STAGES) + f"  {workers}")
    for r in results:
        if r.retried:
            print(f"{r.workers} worker(s): tasks retried: {', '.join(r.retried)}")
        if r.unsettled:
            print(f"{r.workers} worker(s): ledger rows not final: {r.unsettled}")
        if r.kept:
            print(f"{r.workers} worker(s): run {r.state}; work files and logs kept in {r.kept}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--invoices", type=int, default=20_000, help="posted invoices of the day (default 20000)")
    parser.add_argument("--batches", type=int, default=8, help="batch_size = invoices / BATCHES (default 8)")
    parser.add_argument("--pool-slots", type=int, default=8, help="slots of the pool inexchange_api (default 8)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="task processes per worker (default 2)")
    parser.add_argument("--redis-db", type=int, default=7, help="Redis DB of the broker, flushed (default 7)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds a run may take (default 3600)")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    batch_size = max(1, math.ceil(args.invoices / args.batches))
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    print(f"os.cpu_count() = {os.cpu_count()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(dir=WORK_DIR, prefix="erp-") as tmp:
        erp_master = Path(tmp) / "erp.db"
        print(f"generating an ERP of {args.invoices:,} invoices dated {DAY} ...", flush=True)
        generate_erp(erp_master, args.invoices)
        for workers in worker_counts:
            print(
                f"{workers} worker(s), worker_concurrency {args.worker_concurrency}, pool slots {args.pool_slots}, "
                f"batch_size {batch_size:,} ...",
                flush=True,
            )
            results.append(run(workers, args.invoices, batch_size, args, erp_master))
    show(results, args, batch_size)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
