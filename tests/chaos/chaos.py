"""The chaos run: a week of invoices backfilled on real Airflow components while everything fails.

What it does, in order:

1. Generates an ERP with ``invoices`` posted invoices over ``days`` days (and the generator's usual
   share of bad customers and defective invoices) into a fresh PostgreSQL database; the ledger and
   the report go to another fresh database (the ``inexchange_reporting`` connection).
2. Starts the InExchange simulator with faults on a share of all API requests (5xx, 429 with
   ``Retry-After``, dropped connections, replies lost after processing, requests processed only after
   the client gave up, and the fuzzed hostile replies), slow statuses and stuck statuses (documents
   that stay ``Pending`` for longer than the delivery sensor waits). When the official Peppol BIS 3
   validation artefacts are here (``dispatch_testing.peppol_rules``), the simulator runs them over
   every upload, and a document that breaks a fatal rule would end ``Error`` there.
3. Starts a deployment (a fresh PostgreSQL metadata database, ``airflow api-server``, ``scheduler``
   with the LocalExecutor, ``dag-processor`` and ``triggerer``; see ``inexchange_devkit.services``) and
   backfills the days with ``airflow backfill create``, several days at once.
4. While the backfill runs: SIGKILLs the task process of a ``submit`` or ``await_delivery`` task at
   random points (each victim chosen at random among the task instances that would still have a retry
   left afterwards, at a random time into its run), kills the triggerer while sensors are deferred,
   restarts the PostgreSQL server once, and restarts every Airflow component that exits, as a process
   supervisor would. Airflow's own retries resume the killed tasks. The peak memory of every task
   process is sampled meanwhile.
5. Once the stuck documents have moved on, runs the DAG once more for the day after the last (what
   the next scheduled run does): its ``recheck_waiting`` looks up what the sensors left waiting, and
   its ``submit`` reconciles the sends that the backfill's runs, now ended, left in doubt.
6. Checks and prints: every posted InExchange invoice is in exactly one final or retryable ledger
   state; the simulator received each invoice exactly once, under the document id the ledger holds;
   every rejected, stopped or failed invoice has a message; the report matches the ledger; no API key
   or client token appears in any Airflow log; every run succeeded; the chaos really happened; no
   document broke a Peppol rule at the simulator (when it ran them).

Run it from the repository root; the full run (100,000 invoices, at least 20 kills) takes a while::

    .venv/bin/python tests/chaos/chaos.py --invoices 100000 --kills 20
    .venv/bin/python tests/chaos/chaos.py --short        # the variant tests/chaos/test_chaos.py runs

The PostgreSQL server it restarts is the one at ``--pg-host``/``--pg-port`` (127.0.0.1:5432); the
restart uses Debian's ``pg_ctlcluster`` and needs root, or the command in ``INEXCHANGE_PG_RESTART``.
Everything it creates (databases, processes, files under ``--workdir``) is removed at the end, unless
``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:  # run as a script: the shared test helpers live in tests/
    sys.path.insert(0, str(_TESTS))

from inexchange_devkit.services import (  # noqa: E402
    DISPATCH_DAG_ID,
    Deployment,
    MemorySampler,
    PostgresServer,
    TaskProcesses,
    day_interval,
    dispatch_deployment,
)

from dispatch_testing.peppol_rules import official_rules_folder_or_none  # noqa: E402
from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER, SELLER  # noqa: E402

BILLING_METHOD = "InExchange utskrift (API)"
#: the tasks whose processes are killed
VICTIMS = ("submit", "await_delivery")
FINAL_STATES = frozenset({"sent", "stopped", "rejected"})
#: failed: InExchange never got it and it is retried by a later run, or it needs a person
RETRYABLE_STATES = frozenset({"failed"})
IN_FLIGHT_STATES = frozenset({"pending", "ready", "submitting"})
#: how long one poll of the chaos loop waits
TICK_S = 0.3


@dataclass(frozen=True)
class ChaosSettings:
    """Everything that shapes one chaos run.

    :param invoices: posted invoices generated over ``days`` days (drafts come on top).
    :param submit_kills: task processes of ``submit`` to SIGKILL.
    :param sensor_kills: task processes of ``await_delivery`` to SIGKILL.
    :param triggerer_kills: how often to kill the triggerer while a sensor is deferred.
    :param restart_postgres: restart the PostgreSQL server once while tasks run.
    :param fault_rate: share of API requests that meet a fault.
    :param stuck_rate: share of documents that stay ``Pending`` for ``stuck_s`` (longer than
        ``delivery_timeout_minutes``), so that sensors time out and the next run rechecks them.
    :param max_active_runs: days the backfill runs at once.
    :param timeout_s: the whole run's budget.
    """

    invoices: int = 3000
    days: int = 7
    customers: int = 120
    start_date: date = date(2026, 11, 2)
    seed: int = 20261201
    batch_size: int = 250
    pool_slots: int = 4
    max_active_runs: int = 4
    submit_kills: int = 3
    sensor_kills: int = 1
    triggerer_kills: int = 1
    restart_postgres: bool = True
    latency_ms: float = 5.0
    fault_rate: float = 0.04
    faults: tuple[str, ...] = ("5xx", "429", "drop", "lost", "timeout", "fuzz")
    #: a ``timeout`` fault answers after this: longer than the operator's 30 s request timeout
    timeout_ms: float = 31000.0
    status_step_ms: float = 1500.0
    stop_rate: float = 0.04
    error_rate: float = 0.02
    slow_rate: float = 0.05
    slow_factor: float = 8.0
    stuck_rate: float = 0.01
    stuck_s: float = 150.0
    delivery_timeout_minutes: int = 2
    poll_interval_s: float = 5.0
    timeout_s: float = 2700.0

    @classmethod
    def short(cls) -> ChaosSettings:
        """The variant CI runs: a few thousand invoices, a few kills, one PostgreSQL restart."""
        return cls()

    @classmethod
    def full(cls) -> ChaosSettings:
        """The largest sender's volume: 100,000 invoices in a week, at least 20 kills."""
        return cls(invoices=100_000, customers=4000, batch_size=2000, pool_slots=8, max_active_runs=4, submit_kills=16,
                   sensor_kills=4, triggerer_kills=2, stuck_s=420.0, delivery_timeout_minutes=5,
                   poll_interval_s=15.0, timeout_s=4 * 3600.0)

    @property
    def days_list(self) -> list[date]:
        return [self.start_date + timedelta(days=n) for n in range(self.days)]


# ---- the PostgreSQL server ------------------------------------------------------------------
def restart_command(host: str, port: int) -> list[str] | None:
    """The command that restarts the PostgreSQL server at ``host:port``, or None when there is none here.

    ``INEXCHANGE_PG_RESTART`` (a shell-style command line) wins; else Debian's ``pg_ctlcluster`` for the
    cluster listening on ``port``, which needs root.
    """
    configured = os.environ.get("INEXCHANGE_PG_RESTART")
    if configured:
        return shlex.split(configured)
    if host not in ("127.0.0.1", "localhost", "::1") or os.geteuid() != 0 or not shutil.which("pg_lsclusters"):
        return None
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False)
    for line in listing.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == str(port):
            # fast: disconnect the clients (the deployment's) instead of waiting for them to leave
            return ["pg_ctlcluster", "--skip-systemctl-redirect", "--mode", "fast", parts[0], parts[1], "restart"]
    return None


def restart_postgres(command: list[str], host: str, port: int, timeout: float = 60.0) -> float:
    """Restart the server and wait until it accepts connections again; return the seconds it was away."""
    import psycopg2

    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, timeout=timeout)
    while True:
        try:
            psycopg2.connect(host=host, port=port, user=PG_USER, dbname=PG_DB, connect_timeout=2).close()
            return time.monotonic() - started
        except psycopg2.OperationalError:
            if time.monotonic() - started > timeout:
                raise
            time.sleep(0.2)


# ---- what happened --------------------------------------------------------------------------
@dataclass
class Kill:
    """One SIGKILL of a task process."""

    at_s: float
    task: str
    run_id: str
    try_number: int
    into_s: float
    pid: int


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class ChaosReport:
    """The figures and the verdicts of one chaos run."""

    settings: ChaosSettings
    invoices: int = 0
    backfill_s: float = 0.0
    total_s: float = 0.0
    kills: list[Kill] = field(default_factory=list)
    triggerer_kills: list[float] = field(default_factory=list)
    postgres_restarts: list[tuple[float, float]] = field(default_factory=list)
    revived: list[tuple[float, str, int | None]] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)
    run_seconds: dict[str, float] = field(default_factory=dict)
    task_tries: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)
    faults: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    sends: int = 0
    slow_documents: int = 0
    stuck_documents: int = 0
    fuzz_shapes: dict[str, int] = field(default_factory=dict)
    #: the simulator's Peppol check (``stats()["peppol"]``), or None when it ran without the rules
    peppol: dict[str, Any] | None = None
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    log_files: int = 0
    log_bytes: int = 0
    checks: list[Check] = field(default_factory=list)
    logs_at: str = ""
    #: with ``keep``: what the run left running (databases, simulator, Airflow), closed by ``kept.close()``
    kept: ExitStack | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def render(self) -> str:
        s = self.settings
        kills = Counter(kill.task for kill in self.kills)
        lines = [
            f"chaos run: {self.invoices} posted InExchange invoices over {s.days} days "
            f"({s.invoices} posted in the ERP), batches of {s.batch_size}, {s.max_active_runs} days at once",
            f"  backfill {self.backfill_s:.0f} s ({self.invoices / self.backfill_s if self.backfill_s else 0:.1f} "
            f"invoices/s under chaos), whole run {self.total_s:.0f} s",
            f"  API requests {self.requests}, faults injected {sum(self.faults.values())}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()) if v),
            "  fuzzed replies by shape: " + (", ".join(f"{k} {v}" for k, v in sorted(self.fuzz_shapes.items())) or "none"),
            f"  documents made slow {self.slow_documents}, stuck {self.stuck_documents}",
            f"  SIGKILLs of task processes: {len(self.kills)} ({', '.join(f'{t} {n}' for t, n in sorted(kills.items()))}); "
            f"triggerer kills: {len(self.triggerer_kills)}; PostgreSQL restarts: {len(self.postgres_restarts)}"
            + "".join(f" (at {at:.0f} s, away {away:.1f} s)" for at, away in self.postgres_restarts),
            "  components restarted after exiting: "
            + (", ".join(f"{name} (exit {code}) at {at:.0f} s" for at, name, code in self.revived) or "none"),
        ]
        for kill in self.kills:
            lines.append(f"    kill at {kill.at_s:7.1f} s: {kill.task:<14} try {kill.try_number}, "
                         f"{kill.into_s:5.1f} s into its run, {kill.run_id}")
        lines.append("  runs: " + ", ".join(f"{run} {state} ({self.run_seconds.get(run, 0):.0f} s)"
                                            for run, state in sorted(self.runs.items())))
        lines.append("  task tries: " + ", ".join(f"{k} {v}" for k, v in sorted(self.task_tries.items())))
        lines.append("  ledger: " + ", ".join(f"{k} {v}" for k, v in sorted(self.states.items()))
                     + f"; sends received by InExchange: {self.sends}")
        lines.append("  peak RSS per task (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(self.peak_rss_mib.items())))
        if self.peppol is not None:
            lines.append(f"  Peppol rules at the simulator: {self.peppol['checked']} uploads checked, "
                         f"{self.peppol['errors']} sends ended Error by them, "
                         f"{self.peppol['cpu_ms_per_document'] or 0:.1f} ms CPU per document")
        else:
            lines.append("  Peppol rules at the simulator: not run (no artefacts)")
        lines.append(f"  logs scanned for secrets: {self.log_files} files, {self.log_bytes / 2**20:.1f} MiB")
        for check in self.checks:
            lines.append(f"  [{'ok' if check.ok else 'FAILED'}] {check.name}: {check.detail}")
        if self.logs_at:
            lines.append(f"  logs: {self.logs_at}")
        return "\n".join(lines)


# ---- the ERP --------------------------------------------------------------------------------
def ledger_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def inexchange_invoices(deployment: Deployment, settings: ChaosSettings) -> dict[int, dict[str, Any]]:
    """The ERP's posted invoices of the days whose customer is billed through InExchange."""
    rows = deployment.erp_rows(
        "SELECT i.invoice_id, i.invoice_number, i.invoice_date FROM customer_invoice i "
        "JOIN customer c ON c.customer_id = i.customer_id WHERE i.status = 'posted' "
        "AND c.billing_method = :method AND i.invoice_date >= :first AND i.invoice_date <= :last",
        method=BILLING_METHOD, first=settings.days_list[0].isoformat(), last=settings.days_list[-1].isoformat())
    return {int(r["invoice_id"]): {**r, "invoice_date": str(r["invoice_date"])[:10]} for r in rows}


# ---- the chaos loop -------------------------------------------------------------------------
@dataclass
class _Episode:
    """A task instance seen running (a sensor runs once per resumption), and its planned kill."""

    ti_id: str
    task: str
    run_id: str
    try_number: int
    seen_at: float
    kill_at: float | None = None
    killed: bool = False


class Monkey:
    """Kills task processes, the triggerer and the PostgreSQL server at random points.

    Victims are sampled as they appear: each new running episode of a victim task is chosen with a
    probability that spends the remaining kills over the episodes still expected, and killed after a
    random delay into its run (if it is still running then). A task instance is only killed while
    it would have a retry left afterwards for what else may fail it (the PostgreSQL restart, a fault
    beyond the hook's retries): Airflow's retries, not the harness, must bring it to an end.
    """

    def __init__(self, deployment: Deployment, settings: ChaosSettings, report: ChaosReport, rng: random.Random,
                 expected: dict[str, int], pg_restart: list[str] | None, started: float) -> None:
        self.deployment = deployment
        self.settings = settings
        self.report = report
        self.rng = rng
        self.left = {"submit": settings.submit_kills, "await_delivery": settings.sensor_kills}
        self.expected = dict(expected)
        self.expected_submits = expected["submit"]
        self.pg_restart = pg_restart
        self.started = started
        #: how long the episodes of each task lasted (those not killed), to aim kills inside them
        self.lasted: dict[str, list[float]] = {"submit": [4.0 + settings.batch_size / 80.0], "await_delivery": [5.0]}
        self.running: dict[str, _Episode] = {}
        self.task_of: dict[str, str] = {}
        self.processes = TaskProcesses()
        self.memory = MemorySampler()
        self.triggerer_kill_at: float | None = None
        self.triggerer_down_until: float | None = None
        #: the PostgreSQL restart comes when this share of the expected submit tasks has succeeded
        self.pg_restart_after = rng.uniform(0.25, 0.6)

    def now(self) -> float:
        return time.monotonic() - self.started

    def tick(self) -> None:
        """One look at the deployment: plan, kill, restart, sample."""
        import psycopg2

        try:
            tis = self.deployment.query(
                "SELECT id::text, task_id, map_index, run_id, try_number, max_tries, state FROM task_instance "
                "WHERE dag_id = %s", DISPATCH_DAG_ID)
        except psycopg2.Error:  # the server is restarting
            tis = None
        processes = self.processes.by_ti()
        if tis is not None:
            self.task_of.update({row[0]: row[1] for row in tis})
            self._plan(tis)
            self._kill_due(processes)
            self._triggerer(tis)
            self._maybe_restart_postgres(tis)
        self.memory.sample(processes, self.task_of)
        self._revive()

    # -- task processes
    def _plan(self, tis: list[tuple[Any, ...]]) -> None:
        now = self.now()
        live = {}
        for ti_id, task, _map_index, run_id, try_number, max_tries, state in tis:
            if task not in VICTIMS or state != "running":
                continue
            key = f"{ti_id}:{try_number}"
            live[key] = True
            if key in self.running:
                continue
            episode = _Episode(ti_id, task, run_id, int(try_number), now)
            self.running[key] = episode
            # a kill now must still leave one retry for whatever else may fail this task instance
            if int(try_number) + 1 > int(max_tries) or self.left[task] <= 0:
                continue
            expected_left = max(self.expected[task], self.left[task])
            self.expected[task] = max(0, self.expected[task] - 1)
            # generous: a planned kill misses when its episode ends first, and the budget must be spent
            if self.rng.random() < min(1.0, 3.0 * self.left[task] / expected_left):
                lasted = sorted(self.lasted[task])
                episode.kill_at = now + self.rng.uniform(0.0, 0.8 * lasted[len(lasted) // 2])
        for key in [k for k in self.running if k not in live]:
            ended = self.running.pop(key)
            if not ended.killed:  # it ran its course: its length guides where the next kills land
                self.lasted[ended.task].append(now - ended.seen_at)

    def _kill_due(self, processes: dict[str, Any]) -> None:
        now = self.now()
        for episode in self.running.values():
            if episode.kill_at is None or episode.kill_at > now or self.left[episode.task] <= 0:
                continue
            process = processes.get(episode.ti_id)
            episode.kill_at = None
            if process is None:  # between two looks it ended or has not started its process yet
                continue
            try:
                process.send_signal(signal.SIGKILL)
            except Exception:  # noqa: BLE001 - gone meanwhile
                continue
            self.left[episode.task] -= 1
            episode.killed = True
            self.report.kills.append(Kill(now, episode.task, episode.run_id, episode.try_number,
                                          now - episode.seen_at, process.pid))

    # -- the triggerer
    def _triggerer(self, tis: list[tuple[Any, ...]]) -> None:
        stack = self.deployment.stack
        now = self.now()
        if self.triggerer_down_until is not None and now >= self.triggerer_down_until:
            stack.start("triggerer", "triggerer")
            self.triggerer_down_until = None
        if len(self.report.triggerer_kills) >= self.settings.triggerer_kills or self.triggerer_down_until:
            return
        deferred = any(task == "await_delivery" and state == "deferred" for _, task, _, _, _, _, state in tis)
        if not deferred:
            return
        if self.triggerer_kill_at is None:
            self.triggerer_kill_at = now + self.rng.uniform(1.0, 20.0)
        elif now >= self.triggerer_kill_at:
            stack.kill("triggerer")
            self.report.triggerer_kills.append(now)
            self.triggerer_kill_at = None
            self.triggerer_down_until = now + self.rng.uniform(2.0, 8.0)

    # -- PostgreSQL
    def _maybe_restart_postgres(self, tis: list[tuple[Any, ...]]) -> None:
        if not self.settings.restart_postgres or self.report.postgres_restarts or self.pg_restart is None:
            return
        done = sum(1 for _, task, _, _, _, _, state in tis if task == "submit" and state == "success")
        running = any(task in VICTIMS and state == "running" for _, task, _, _, _, _, state in tis)
        if running and done >= self.pg_restart_after * max(1, self.expected_submits):
            at = self.now()
            away = restart_postgres(self.pg_restart, PG_HOST, PG_PORT)
            self.report.postgres_restarts.append((at, away))

    # -- the supervisor
    def _revive(self) -> None:
        stack = self.deployment.stack
        for service in stack.revive():
            self.report.revived.append((self.now(), service.name, service.process.returncode))


# ---- the run --------------------------------------------------------------------------------
@contextmanager
def _simulator(settings: ChaosSettings, api_key: str, data_dir: Path) -> Iterator[Any]:
    from inexchange_devkit.simulator.testing import run_simulator

    with run_simulator(seed=settings.seed % 10_000, latency_ms=settings.latency_ms, fault_rate=0.0,
                       faults=settings.faults,
                       timeout_ms=settings.timeout_ms, status_step_ms=settings.status_step_ms,
                       stop_rate=settings.stop_rate, error_rate=settings.error_rate, api_key=api_key,
                       data_dir=data_dir, peppol_rules=official_rules_folder_or_none(),
                       extra_args=["--no-upload-files"]) as sim:
        sim.configure(slow_rate=settings.slow_rate, slow_factor=settings.slow_factor, stuck_rate=settings.stuck_rate,
                      stuck_ms=settings.stuck_s * 1000)
        yield sim


def _backfill(deployment: Deployment, settings: ChaosSettings) -> int:
    days = settings.days_list
    first, _ = day_interval(days[0])
    last, _ = day_interval(days[-1])
    before = deployment.query("SELECT COALESCE(MAX(id), 0) FROM backfill WHERE dag_id = %s", DISPATCH_DAG_ID)[0][0]
    conf = {"fail_on_action_needed": False, "batch_size": settings.batch_size,
            "delivery_timeout_minutes": settings.delivery_timeout_minutes}
    deployment.stack.cli("backfill", "create", "--dag-id", DISPATCH_DAG_ID, "--from-date", first.isoformat(),
                         "--to-date", last.isoformat(), "--max-active-runs", str(settings.max_active_runs),
                         "--dag-run-conf", json.dumps(conf))
    created = deployment.query("SELECT id FROM backfill WHERE dag_id = %s AND id > %s", DISPATCH_DAG_ID, before)
    assert len(created) == 1, f"expected one new backfill, got {created}"
    return int(created[0][0])


def _runs(deployment: Deployment, where: str, *params: Any) -> dict[str, tuple[str, Any, Any]]:
    rows = deployment.query(f"SELECT run_id, state, start_date, end_date FROM dag_run WHERE dag_id = %s AND {where}",
                            DISPATCH_DAG_ID, *params)
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _wait(deployment: Deployment, monkey: Monkey | None, done: Any, what: str, deadline: float) -> None:
    """Tick the monkey (or just revive components) until ``done()`` says so; fail at ``deadline``."""
    import psycopg2

    while True:
        if monkey is not None:
            monkey.tick()
        else:
            deployment.stack.revive()
        try:
            if done():
                return
        except psycopg2.Error:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen in time\n{deployment.diagnostics()}")
        time.sleep(TICK_S)


def run_chaos(settings: ChaosSettings, workdir: Path, *, keep: bool = False, log: Any = print) -> ChaosReport:
    """Run the chaos described in the module docstring and return its report (checks included)."""
    from inexchange_devkit.erpgen import generate

    report = ChaosReport(settings)
    rng = random.Random(settings.seed)
    started = time.monotonic()
    deadline = started + settings.timeout_s
    pg_restart = restart_command(PG_HOST, PG_PORT) if settings.restart_postgres else None
    if settings.restart_postgres and pg_restart is None:
        raise RuntimeError("cannot restart the PostgreSQL server here: run as root with Debian's pg_ctlcluster, "
                           "or set INEXCHANGE_PG_RESTART to a command that restarts it")
    api_key = "chaos-" + secrets.token_urlsafe(24)
    workdir.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="home-", dir=workdir))
    pg = PostgresServer(PG_HOST, PG_PORT, PG_USER, maintenance_db=PG_DB)
    with ExitStack() as stack:
        erp = pg.database(stack.enter_context(pg.temporary_database("chaos_erp_")))
        reporting = pg.database(stack.enter_context(pg.temporary_database("chaos_rep_")))
        engine = erp.engine()
        try:
            log(f"generating {settings.invoices} invoices over {settings.days} days ...")
            generate(engine, seed=settings.seed % 1000, customers=settings.customers, invoices=settings.invoices,
                     start_date=settings.start_date, days=settings.days, drafts=max(settings.days, settings.invoices // 100))
        finally:
            engine.dispose()
        sim = stack.enter_context(_simulator(settings, api_key, workdir / "simulator"))
        log("starting Airflow (api-server, scheduler, dag-processor, triggerer) ...")
        deployment = stack.enter_context(dispatch_deployment(
            home, erp, sim, pg=pg, reporting=reporting, erp_id="chaos-erp", seller=SELLER,
            poll_interval_s=settings.poll_interval_s, pool_slots=settings.pool_slots))
        report.logs_at = str(home)
        invoices = inexchange_invoices(deployment, settings)
        report.invoices = len(invoices)
        per_day = Counter(row["invoice_date"] for row in invoices.values())
        # first tries of the submit batches; a sensor runs at least once a day (more when it resumes)
        expected = {"submit": sum(max(1, math.ceil(n / settings.batch_size)) for n in per_day.values()),
                    "await_delivery": settings.days}
        sim.configure(fault_rate=settings.fault_rate)
        monkey = Monkey(deployment, settings, report, rng, expected, pg_restart, started)

        log(f"backfilling {settings.days} days, {settings.max_active_runs} at once, with faults and kills ...")
        backfill_started = time.monotonic()
        backfill_id = _backfill(deployment, settings)

        def backfill_done() -> bool:
            completed = deployment.query("SELECT completed_at FROM backfill WHERE id = %s", backfill_id)[0][0]
            runs = _runs(deployment, "backfill_id = %s", backfill_id)
            return completed is not None and len(runs) == settings.days and all(
                state in ("success", "failed") for state, _, _ in runs.values())

        _wait(deployment, monkey, backfill_done, "the backfill", deadline)
        report.backfill_s = time.monotonic() - backfill_started
        # the chaos is over: what the next run sends again meets no faults and no stuck statuses
        sim.configure(fault_rate=0.0, slow_rate=0.0, stuck_rate=0.0)

        log("waiting for the stuck documents to move on ...")
        _wait(deployment, None, lambda: not sim.stats(per_document=False)["stuck_pending"],
              "the stuck documents' final statuses", deadline)
        next_day = settings.days_list[-1] + timedelta(days=1)
        log(f"running the DAG for {next_day} (the next scheduled run) ...")
        run_id = deployment.trigger(next_day, {"fail_on_action_needed": False,
                                               "delivery_timeout_minutes": settings.delivery_timeout_minutes},
                                    run_id=f"chaos_next__{next_day.isoformat()}")
        _wait(deployment, None, lambda: _runs(deployment, "run_id = %s", run_id).get(run_id, ("",))[0]
              in ("success", "failed"), "the next day's run", deadline)

        all_runs = _runs(deployment, "(backfill_id = %s OR run_id = %s)", backfill_id, run_id)
        report.runs = {rid: state for rid, (state, _, _) in all_runs.items()}
        report.run_seconds = {rid: (end - start).total_seconds() for rid, (_, start, end) in all_runs.items()
                              if start and end}
        for task, tries in deployment.query("SELECT task_id, SUM(try_number) FROM task_instance WHERE dag_id = %s "
                                            "GROUP BY task_id", DISPATCH_DAG_ID):
            report.task_tries[task] = int(tries)
        report.peak_rss_mib = {task: kib / 1024 for task, kib in monkey.memory.peak_kib.items()}
        check(report, deployment, sim, settings, invoices, api_key, home)
        report.total_s = time.monotonic() - started
        if keep:  # held by the report: dropped, the context managers' generators would clean up
            report.kept = stack.pop_all()
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workdir / "simulator", ignore_errors=True)
    return report


# ---- the checks -----------------------------------------------------------------------------
def _documents(sim: Any) -> dict[str, str]:
    """erpDocumentId -> InExchange document id of everything the simulator holds (its latest per id)."""
    import httpx

    found: dict[str, str] = {}
    with httpx.Client(base_url=sim.base_url, timeout=60.0) as client:
        token = client.post("clientTokens/create", headers={"APIKey": sim.api_key},
                            json={"erpId": "chaos-erp"}).json()["token"]
        skip = 0
        while True:
            page = client.post("documents/outbound/list", headers={"ClientToken": token},
                               json={"take": 1000, "skip": skip}).json()
            for document in page["documents"]:
                found[document["erpDocumentId"]] = document["id"]
            skip += len(page["documents"])
            if not page["documents"] or skip >= page["totalCount"]:
                return found


def scan_for_secrets(roots: list[Path], secrets_: set[str]) -> tuple[list[str], int, int]:
    """Files under ``roots`` that contain any of ``secrets_``; also how many files and bytes were read.

    Secrets are URL-safe base64 text: each run of such characters in a file is looked up, so one pass
    over a file finds every secret whatever their number.
    """
    exact = {s.encode() for s in secrets_ if s}
    shortest = min((len(s) for s in exact), default=1)
    word = re.compile(rb"[A-Za-z0-9_\-]{%d,}" % shortest)
    hits, files, size = [], 0, 0
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            files += 1
            size += len(data)
            for match in word.finditer(data):
                run = match.group(0)
                if run in exact or (len(run) > shortest and any(s in run for s in exact)):
                    hits.append(str(path))
                    break
    return hits, files, size


def check(report: ChaosReport, deployment: Deployment, sim: Any, settings: ChaosSettings,
          invoices: dict[int, dict[str, Any]], api_key: str, home: Path) -> None:
    """Fill in the report's figures and verdicts."""
    checks = report.checks
    ledger = {int(r["invoice_id"]): r for r in deployment.rows("SELECT * FROM inexchange_dispatch")}
    stats = sim.stats()
    report.faults = {k: int(v) for k, v in stats["faults"].items()}
    report.fuzz_shapes = {k: int(v) for k, v in stats["fuzz_shapes"].items() if v}
    report.slow_documents, report.stuck_documents = int(stats["slow_documents"]), int(stats["stuck_documents"])
    report.requests = int(stats["requests"])
    report.peppol = stats.get("peppol")
    sends: dict[str, int] = stats["sends"]
    report.sends = sum(sends.values())
    report.states = Counter(r["state"] for r in ledger.values())

    # every posted InExchange invoice: exactly one row, in a final or retryable state
    missing = sorted(set(invoices) - set(ledger))
    extra = sorted(set(ledger) - set(invoices))
    stuck = {k: r["state"] for k, r in ledger.items() if r["state"] not in FINAL_STATES | RETRYABLE_STATES}
    checks.append(Check("each posted InExchange invoice is in exactly one final or retryable state",
                        not missing and not extra and not stuck,
                        f"{len(invoices)} invoices, {len(ledger)} ledger rows; missing {missing[:10]}, "
                        f"not ours {extra[:10]}, not final or retryable {dict(list(stuck.items())[:10])}"))

    # InExchange received each invoice exactly once, under the id the ledger holds
    documents = _documents(sim)
    twice = {k: v for k, v in sends.items() if v != 1}
    with_id = {r["erp_document_id"]: r["inexchange_document_id"] for r in ledger.values() if r["inexchange_document_id"]}
    unknown = sorted(set(sends) - set(with_id))
    not_received = sorted(set(with_id) - set(sends))
    wrong_id = sorted(k for k, v in with_id.items() if documents.get(k) != v)
    sent_states = {"waiting", "sent", "stopped"}
    never_recorded = sorted(r["invoice_number"] for r in ledger.values()
                            if r["state"] in sent_states and not r["inexchange_document_id"])
    checks.append(Check("InExchange received each invoice exactly once",
                        not twice and not stats["duplicates"] and not unknown and not not_received
                        and not wrong_id and not never_recorded,
                        f"{len(sends)} erpDocumentIds received, {report.sends} sends; received more than once "
                        f"{dict(list(twice.items())[:10])}; received but not in the ledger {unknown[:10]}; in the "
                        f"ledger but not received {not_received[:10]}; other document id {wrong_id[:10]}; sent "
                        f"without a document id {never_recorded[:10]}"))

    # every document the pipeline made passes the official Peppol rules at the simulator
    if report.peppol is not None:
        broke = stats.get("peppol_errors") or []
        checks.append(Check("no document broke a Peppol rule at the simulator", not broke,
                            f"{report.peppol['checked']} uploads checked; sends ended Error by the rules: "
                            f"{len(broke)} {broke[:10]}"))

    # every invoice that needs a person says why
    silent = sorted(r["invoice_number"] for r in ledger.values()
                    if r["state"] in ("rejected", "stopped", "failed") and not (r["message"] or "").strip())
    unnamed = sorted(r["invoice_number"] for r in ledger.values() if r["state"] == "rejected"
                     and not re.match(r"(Kund |Faktura |InExchange )", r["message"] or ""))
    rejected = report.states.get("rejected", 0)
    checks.append(Check("every rejected, stopped or failed invoice has a message",
                        not silent and not unnamed and rejected > 0,
                        f"{rejected} rejected; without a message {silent[:10]}; not naming the invoice or "
                        f"customer {unnamed[:10]}"))

    # the report says what the ledger says, one row per invoice and its day
    columns = ("invoice_number", "customer_number", "customer_name", "delivery_method", "state",
               "inexchange_status", "sent_at", "message", "inexchange_document_id", "attempts")
    report_rows = deployment.rows("SELECT * FROM inexchange_report")
    by_key = {(int(r["invoice_id"]), r["data_interval_start"]): r for r in report_rows}
    differ = []
    for invoice_id, row in ledger.items():
        start, _ = day_interval(date.fromisoformat(str(row["invoice_date"])[:10]))
        line = by_key.get((invoice_id, ledger_text(start)))
        if line is None or any(str(line[c]) != str(row[c]) for c in columns):
            differ.append(row["invoice_number"])
    checks.append(Check("the report matches the ledger",
                        not differ and len(report_rows) == len(ledger),
                        f"{len(report_rows)} report rows for {len(ledger)} ledger rows; differing {differ[:10]}"))

    # no secret in any log
    issued = {token["token"] for token in sim.tokens()}
    hits, report.log_files, report.log_bytes = scan_for_secrets([home / "logs", home / "component-logs"],
                                                                issued | {api_key})
    checks.append(Check("no API key or client token in the Airflow logs",
                        not hits and report.log_files > 0 and len(issued) > 0,
                        f"{len(issued)} tokens and the API key looked for in {report.log_files} files; found in "
                        f"{hits[:5]}"))

    bad_runs = {k: v for k, v in report.runs.items() if v != "success"}
    checks.append(Check("every run succeeded through Airflow's retries", not bad_runs and len(report.runs) == settings.days + 1,
                        f"{len(report.runs)} runs; not successful: {bad_runs}"))

    kills = Counter(kill.task for kill in report.kills)
    enabled = [k for k in settings.faults if k in report.faults]
    unmet = [k for k in enabled if not report.faults.get(k)]
    happened = (kills["submit"] >= settings.submit_kills and kills["await_delivery"] >= settings.sensor_kills
                and len(report.triggerer_kills) >= settings.triggerer_kills
                and len(report.postgres_restarts) == int(settings.restart_postgres) and not unmet)
    checks.append(Check("the chaos happened", happened,
                        f"kills {dict(kills)} (wanted submit {settings.submit_kills}, await_delivery "
                        f"{settings.sensor_kills}), triggerer kills {len(report.triggerer_kills)}, PostgreSQL "
                        f"restarts {len(report.postgres_restarts)}, fault kinds never met {unmet}"))


# ---- command line ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="the variant CI runs (the defaults below otherwise)")
    defaults = ChaosSettings.full()
    parser.add_argument("--invoices", type=int, default=defaults.invoices)
    parser.add_argument("--kills", type=int, help="task-process SIGKILLs in all (split 4:1 submit:await_delivery)")
    parser.add_argument("--max-active-runs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workdir", type=Path, default=Path(".chaos"))
    parser.add_argument("--keep", action="store_true",
                        help="keep databases, processes and logs until Ctrl-C (the logs stay afterwards)")
    args = parser.parse_args(argv)
    settings = ChaosSettings.short() if args.short else replace(defaults, invoices=args.invoices)
    if args.kills is not None:
        sensor = max(1, args.kills // 5)
        settings = replace(settings, submit_kills=args.kills - sensor, sensor_kills=sensor)
    for name in ("max_active_runs", "batch_size", "seed"):
        if getattr(args, name) is not None:
            settings = replace(settings, **{name: getattr(args, name)})
    print("settings: " + ", ".join(f"{f.name}={getattr(settings, f.name)}" for f in fields(settings)), flush=True)
    report = run_chaos(settings, args.workdir.resolve(), keep=args.keep,
                       log=lambda message: print(message, flush=True))
    print(report.render(), flush=True)
    if report.kept is not None:
        print("kept running (databases, simulator, Airflow); Ctrl-C stops and removes them", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            report.kept.close()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
