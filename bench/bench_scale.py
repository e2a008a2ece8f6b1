"""End-to-end cost of one day's DAG run at 1,000, 10,000 and 100,000 invoices, SQLite and PostgreSQL.

Each configuration is a real deployment (``inexchange_devkit.services``: a fresh PostgreSQL metadata
database, ``airflow api-server``, ``scheduler`` with the LocalExecutor, ``dag-processor`` and
``triggerer``) running the dispatch DAG once for a day that holds N posted invoices, against the
simulator at ``--latency-ms`` per request (no faults; statuses final after two steps of 100 ms). The
ERP is a SQLite file that holds the ledger and report too (the embedded default), or a fresh
PostgreSQL database with the ledger and report in another fresh one.

Printed per configuration:

- the run's wall time (trigger to end) and invoices per second;
- every task's time (a mapped task: the span from its first start to its last end, and its number
  of batches), i.e. the time per stage;
- every task's peak resident memory (VmHWM of its process, sampled every 0.2 s), and its ratio to
  the baseline: the peak of ``plan_batches``, a task process of the same run that holds no invoices;
- every task's CPU seconds (all its processes: a mapped task's batches, every try) and how many
  processes it took: ``plan_batches``'s is about what starting one task process costs;
- how cost grows: seconds per 1,000 invoices of the run and of each stage, as a ratio to the smallest
  N of the same backend (1.0 is linear, below 1 better than linear);
- the run's checks: documents the simulator got and how many of them more than once, ledger rows
  left in a state that is not final, and the report's rows against the ledger's (a run that fails
  a check, or does not end in success, keeps its logs and the script exits non-zero).

Never passes or fails on figures. Usage (from the repository root)::

    .venv/bin/python bench/bench_scale.py [N ...] [--backends sqlite,postgres] [--latency-ms 20]
        [--sizes BACKEND=N,N ...] [--conf '{"batch_size": 5000}']

``--sizes postgres=10000,100000,1000000`` gives one backend its own sizes (the issue's run:
``--sizes sqlite=10000,100000 --sizes postgres=10000,100000,1000000``).

Default N: 1000 10000 100000. The machine's PostgreSQL at 127.0.0.1:5432 must be running.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:  # the test data (support) is the integration tests'
    sys.path.insert(0, str(ROOT / "tests"))

from inexchange_devkit.services import (  # noqa: E402
    DISPATCH_DAG_ID,
    Database,
    MemorySampler,
    PostgresServer,
    TaskProcesses,
    dispatch_deployment,
)

from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER, SELLER  # noqa: E402

DAY = date(2026, 11, 16)
#: the order the stages run in
STAGES = ("recheck_waiting", "extract", "validate", "plan_batches", "submit", "await_delivery", "report")
BASELINE_TASK = "plan_batches"
#: ledger states an invoice must not be left in when the run ends
OPEN_STATES = ("pending", "ready", "submitting", "waiting")


@dataclass
class Result:
    backend: str
    invoices: int
    wall_s: float
    stages: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    peak_mib: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of each task's processes (all its batches and tries), and how many processes it took
    cpu_s: dict[str, float] = field(default_factory=dict)
    processes: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    #: documents the simulator got, those it got more than once, ledger rows not final, report rows
    checks: dict[str, int] = field(default_factory=dict)
    ok: bool = True


def _sample(deployment: Any, sampler: MemorySampler, stop: threading.Event) -> None:
    processes = TaskProcesses()
    task_of: dict[str, str] = {}
    while not stop.is_set():
        try:
            task_of.update({row[0]: row[1] for row in deployment.query(
                "SELECT id::text, task_id FROM task_instance WHERE dag_id = %s", DISPATCH_DAG_ID)})
        except Exception:  # noqa: BLE001 - keep sampling
            pass
        sampler.sample(processes.by_ti(), task_of)
        stop.wait(0.2)


def run(backend: str, n: int, latency_ms: float, workdir: Path, conf: dict[str, Any] | None = None) -> Result:
    """One deployment, one day of ``n`` invoices, one run; return its figures."""
    from inexchange_devkit.erpgen import generate
    from inexchange_devkit.simulator.testing import run_simulator

    pg = PostgresServer(PG_HOST, PG_PORT, PG_USER, maintenance_db=PG_DB)
    with ExitStack() as stack:
        if backend == "sqlite":
            erp = Database.sqlite(workdir / f"erp-{n}.db")
        else:
            erp = pg.database(stack.enter_context(pg.temporary_database("bench_erp_")))
        engine = erp.engine()
        try:
            generate(engine, seed=5, customers=max(40, n // 25), invoices=n, start_date=DAY, days=1, drafts=n // 100)
        finally:
            engine.dispose()
        sim = stack.enter_context(run_simulator(seed=5, latency_ms=latency_ms, status_step_ms=100, stop_rate=0.04,
                                                error_rate=0.02, api_key="bench-scale-key",
                                                data_dir=workdir / f"sim-{backend}-{n}"))
        home = Path(tempfile.mkdtemp(prefix=f"home-{backend}-{n}-", dir=workdir))
        deployment = stack.enter_context(dispatch_deployment(
            home, erp, sim, pg=pg, erp_id="bench-scale", seller=SELLER,
            poll_interval_s=2))
        sampler, stop = MemorySampler(), threading.Event()
        sampling = threading.Thread(target=_sample, args=(deployment, sampler, stop), daemon=True)
        sampling.start()
        started = time.monotonic()
        run_id = deployment.trigger(DAY, {"fail_on_action_needed": False, **(conf or {})}, run_id=f"bench__{n}")
        while True:
            deployment.stack.check_running()
            state = deployment.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s",
                                     DISPATCH_DAG_ID, run_id)[0][0]
            if state in ("success", "failed"):
                break
            time.sleep(0.5)
        wall = time.monotonic() - started
        stop.set()
        sampling.join()
        result = Result(backend, n, wall)
        spans: dict[str, list[Any]] = {}
        for task, start, end in deployment.query(
                "SELECT task_id, start_date, end_date FROM task_instance WHERE dag_id = %s AND run_id = %s",
                DISPATCH_DAG_ID, run_id):
            spans.setdefault(task, []).append((start, end))
            result.batches += task == "submit"
        result.stages = {task: (max(e for _, e in times) - min(s for s, _ in times)).total_seconds()
                         for task, times in spans.items()}
        result.peak_mib = {task: kib / 1024 for task, kib in sampler.peak_kib.items()}
        result.cpu_s, result.processes = sampler.cpu_s, sampler.processes
        result.states = {row["state"]: int(row["n"]) for row in deployment.rows(
            "SELECT state, COUNT(*) AS n FROM inexchange_dispatch GROUP BY state")}
        stats = sim.stats()
        twice = {document for document, sends in stats["sends"].items() if sends > 1} | set(stats["duplicates"])
        result.checks = {
            "documents at the simulator": len(stats["sends"]),
            "sent more than once": len(twice),
            "ledger rows not final": sum(result.states.get(s, 0) for s in OPEN_STATES),
            "ledger rows": sum(result.states.values()),
            "report rows": int(deployment.rows("SELECT COUNT(*) AS n FROM inexchange_report")[0]["n"]),
        }
        if twice or result.checks["ledger rows not final"] or result.checks["report rows"] != result.checks["ledger rows"]:
            result.ok = False
        if state != "success":
            result.ok = False
            print(f"  run {run_id} ended {state}; logs in {home}")
        elif not result.ok:
            print(f"  run {run_id} failed a check ({result.checks}); logs in {home}")
        return result


def show(results: list[Result]) -> None:
    for backend in sorted({r.backend for r in results}):
        rows = sorted((r for r in results if r.backend == backend), key=lambda r: r.invoices)
        base = rows[0]
        print(f"\n== {backend}: one day's run, end to end ==")
        print(f"{'invoices':>9} {'wall s':>8} {'inv/s':>7} {'s/1k':>7} {'x base':>7}  ledger")
        for r in rows:
            per_k = r.wall_s / r.invoices * 1000
            print(f"{r.invoices:>9} {r.wall_s:>8.1f} {r.invoices / r.wall_s:>7.0f} {per_k:>7.2f} "
                  f"{per_k / (base.wall_s / base.invoices * 1000):>7.2f}  {r.states}")
        print("checks (none sent twice, every ledger row final, the report complete)")
        for r in rows:
            print(f"{r.invoices:>9}  " + ", ".join(f"{name} {count:,}" for name, count in r.checks.items()))
        print("time per stage, s (x base: seconds per 1k invoices against the smallest run)")
        print(f"{'invoices':>9} " + " ".join(f"{s[:14]:>14}" for s in STAGES))
        for r in rows:
            cells = []
            for stage in STAGES:
                seconds = r.stages.get(stage, 0.0)
                base_s = base.stages.get(stage, 0.0)
                growth = (seconds / r.invoices) / (base_s / base.invoices) if base_s else 0.0
                cells.append(f"{seconds:>7.1f} x{growth:<5.2f}")
            print(f"{r.invoices:>9} " + " ".join(f"{c:>14}" for c in cells) + f"  ({r.batches} submit batches)")
        print(f"peak RSS per task, MiB (x: against {BASELINE_TASK}, a task process holding no invoices)")
        print(f"{'invoices':>9} " + " ".join(f"{s[:14]:>14}" for s in STAGES))
        for r in rows:
            baseline = r.peak_mib.get(BASELINE_TASK) or 1.0
            print(f"{r.invoices:>9} " + " ".join(
                f"{r.peak_mib.get(s, 0):>7.0f} x{r.peak_mib.get(s, 0) / baseline:<5.2f}" for s in STAGES))
        print(f"CPU s per task, all its processes (/n: per process; {BASELINE_TASK}'s is what starting a task costs)")
        print(f"{'invoices':>9} " + " ".join(f"{s[:14]:>14}" for s in STAGES))
        for r in rows:
            print(f"{r.invoices:>9} " + " ".join(
                f"{r.cpu_s.get(s, 0):>7.1f} /{r.processes.get(s, 0):<5}" for s in STAGES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10_000, 100_000])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--sizes", dest="backend_sizes", action="append", default=[], metavar="BACKEND=N,N",
                        help="sizes for one backend instead of the positional ones, e.g. postgres=10000,1000000")
    parser.add_argument("--conf", type=json.loads, default={}, metavar="JSON",
                        help='more of the run\'s conf (its params), e.g. \'{"batch_size": 5000}\'')
    args = parser.parse_args()
    sizes = {backend: list(args.sizes) for backend in args.backends.split(",")}
    for item in args.backend_sizes:
        backend, _, listed = item.partition("=")
        sizes[backend] = [int(n) for n in listed.split(",") if n]
    workdir = ROOT / ".bench" / "scale"  # not /tmp: creating many files there is slow on some machines
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for backend, backend_sizes in sizes.items():
        for n in backend_sizes:
            print(f"{backend}, {n} invoices ...", flush=True)
            tmp = Path(tempfile.mkdtemp(dir=workdir))
            result = run(backend, n, args.latency_ms, tmp, args.conf)
            results.append(result)
            if result.ok:  # a run that went wrong keeps its logs (the path is printed)
                shutil.rmtree(tmp, ignore_errors=True)
    show(results)
    if not all(r.ok for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
