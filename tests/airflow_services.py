"""Run real Airflow components (api-server, scheduler, dag-processor, triggerer) as subprocesses.

Used by the scheduler, backfill, Celery and browser tests, the chaos run (``tests/chaos``) and the scale
benchmark. Everything here works on an explicit environment dict
built by :func:`airflow_env`, never on ``os.environ`` (which ``tests/conftest.py`` points at the
session's SQLite Airflow home), so the components share one private AIRFLOW_HOME and a PostgreSQL
metadata database of their own.

Each component runs in its own process group (it starts children: LocalExecutor workers, the
triggerer's async runner, uvicorn), so that stopping or killing it reaches all of them. Its
standard output and error go to ``<log_dir>/<name>.log``; :meth:`AirflowStack.diagnostics` returns
the tail of every log for assertion messages.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
STOP_TIMEOUT_S = 20.0
T = TypeVar("T")


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- the metadata database -------------------------------------------------------------------
@contextmanager
def postgres_database(host: str, port: int, user: str, maintenance_db: str, prefix: str = "af_") -> Iterator[str]:
    """Create a fresh PostgreSQL database for the ``with`` block and drop it afterwards (also on error).

    Yields the database name. The drop uses ``WITH (FORCE)``, so connections a killed component
    left open do not keep the database alive, and a connection of its own: one held through the
    block would not survive a restart of the server within it (the chaos run restarts it).
    """
    name = f"{prefix}{uuid.uuid4().hex[:12]}"  # made here, never user input: safe to splice in
    _admin(host, port, user, maintenance_db, f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _admin(host, port, user, maintenance_db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(host: str, port: int, user: str, maintenance_db: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE / DROP DATABASE) on a connection of its own."""
    import psycopg2

    admin = psycopg2.connect(host=host, port=port, user=user, dbname=maintenance_db, connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql)
    finally:
        admin.close()


# ---- the environment -------------------------------------------------------------------------
def airflow_env(
    *,
    airflow_home: Path,
    sql_alchemy_conn: str,
    api_port: int,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment for every Airflow component and CLI call of one private installation.

    Inherited ``AIRFLOW*`` variables (the test session's SQLite home) are dropped first. The
    settings and why each is needed:

    * ``CORE__EXECUTION_API_SERVER_URL``: task processes (LocalExecutor workers) report their state,
      read connections, variables and XComs through the api-server's Execution API; it must point
      at the api-server started here, not at the default http://localhost:8080.
    * ``API_AUTH__JWT_SECRET``: the scheduler signs the workers' task tokens and the api-server
      checks them; every process must share one secret (otherwise each generates its own and the
      workers get 403s). ``API__SECRET_KEY`` likewise for log fetching.
    * ``CORE__EXECUTOR=LocalExecutor``: real task processes started by the scheduler.
    * ``CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True``: the test triggers runs through the public REST
      API (``airflow dags trigger`` in Airflow 3.3 infers the data interval from the current time,
      not from ``--logical-date``); no login needed on this loopback-only api-server.
    * ``SCHEDULER__USE_JOB_SCHEDULE=False``: the DAG's cron would otherwise create a scheduled run
      for "yesterday" on unpause, and with ``max_active_runs=1`` it would compete with our run.
    * ``TRIGGERER__JOB_HEARTBEAT_SEC`` / ``TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD``: a new
      triggerer only takes over triggers of a triggerer whose heartbeat is older than the
      threshold (30 s by default); lowered so that a restart resumes within seconds.
    * ``LOGGING__WORKER_LOG_SERVER_PORT`` / ``LOGGING__TRIGGER_LOG_SERVER_PORT``: the scheduler
      and the triggerer serve logs on fixed ports (8793/8794) by default; free ports avoid
      clashes with anything else on the machine.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(airflow_home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API_AUTH__JWT_ISSUER": "inexchange-integration-tests",
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}/",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "INEXCHANGE_SQL_DIR": str(ROOT / "include" / "sql"),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


def connection_env(conn: dict[str, Any]) -> str:
    """An ``AIRFLOW_CONN_*`` value (JSON form) for a connection dict."""
    return json.dumps(conn)


# ---- processes -------------------------------------------------------------------------------
@dataclass
class Service:
    """One started component: its command, process and log file."""

    name: str
    command: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    @property
    def running(self) -> bool:
        return self.process.poll() is None


class ServiceError(AssertionError):
    """A component or CLI call failed; the message carries the logs' tails."""


class AirflowStack:
    """Start, stop and kill Airflow components sharing one environment and log directory.

    Stop everything with :meth:`stop_all` (idempotent), e.g. from a fixture's ``finally``.
    """

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.services: dict[str, Service] = {}
        self.retired: list[Service] = []  # stopped or killed instances, kept for their logs
        self._cli_calls = 0

    # ---- CLI ---------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` to completion; its output goes to ``cli-<n>-<command>.log``."""
        self._cli_calls += 1
        log_path = self.log_dir / f"cli-{self._cli_calls:02d}-{'-'.join(args[:2])}.log"
        result = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        log_path.write_text(f"$ airflow {' '.join(args)}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
                            encoding="utf-8")
        if check and result.returncode != 0:
            raise ServiceError(f"`airflow {' '.join(args)}` exited with {result.returncode}:\n"
                               f"{_tail(result.stdout + result.stderr, 60)}")
        return result

    # ---- components --------------------------------------------------------------------------
    def start(self, name: str, *args: str) -> Service:
        """Start ``airflow <args>`` as component ``name`` (a running one of that name is an error)."""
        if name in self.services and self.services[name].running:
            raise RuntimeError(f"{name} is already running")
        if name in self.services:
            self.retired.append(self.services.pop(name))
        generation = sum(1 for s in self.retired if s.name == name)
        log_path = self.log_dir / (f"{name}.log" if generation == 0 else f"{name}.{generation}.log")
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed by stop()
        command = [AIRFLOW, *args]
        process = subprocess.Popen(command, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        service = Service(name, command, process, log_path, log_file)
        self.services[name] = service
        return service

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the component's process group and descendants (a crash, not a shutdown)."""
        service = self.services[name]
        descendants = _descendants(service.process.pid)
        _signal_group(service.process, sig)
        _signal_all(descendants, sig)
        try:
            service.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _signal_group(service.process, signal.SIGKILL)
            service.process.wait(timeout=STOP_TIMEOUT_S)
        self._retire(name)

    def stop(self, name: str, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the component's process group, SIGKILL it and its descendants after ``timeout`` seconds.

        Descendants are looked up first: task processes run in process groups of their own
        (the task SDK's supervisor puts them there), so the group signal does not reach them.
        """
        service = self.services.get(name)
        if service is None:
            return
        descendants = _descendants(service.process.pid)
        if service.running:
            _signal_group(service.process, signal.SIGTERM)
            try:
                service.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # children (executor workers, task processes, the trigger runner) may outlive their parent
        _signal_group(service.process, signal.SIGKILL)
        _signal_all(descendants, signal.SIGKILL)
        try:
            service.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        self._retire(name)

    def stop_all(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop every component: SIGTERM to all at once, SIGKILL whatever is left after ``timeout``."""
        descendants = {name: _descendants(s.process.pid) for name, s in self.services.items()}
        for service in self.services.values():
            if service.running:
                _signal_group(service.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in list(self.services):
            self.stop(name, timeout=max(0.1, deadline - time.monotonic()))
            _signal_all(descendants[name], signal.SIGKILL)

    def _retire(self, name: str) -> None:
        service = self.services.pop(name)
        service.log_file.close()
        self.retired.append(service)

    def revive(self) -> list[Service]:
        """Start again, with the same command, every component that has exited (as a process supervisor
        such as systemd or Kubernetes would); return the instances that had exited."""
        dead = [s for s in self.services.values() if not s.running]
        for service in dead:
            self._retire(service.name)
            self.start(service.name, *service.command[1:])
        return dead

    def check_running(self) -> None:
        """Raise :class:`ServiceError` when a started component has exited."""
        dead = [s for s in self.services.values() if not s.running]
        if dead:
            names = ", ".join(f"{s.name} (exit {s.process.returncode})" for s in dead)
            raise ServiceError(f"Airflow component(s) exited: {names}\n{self.diagnostics()}")

    # ---- waiting -----------------------------------------------------------------------------
    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
        """Call ``probe`` until it returns something other than None/False; fail with the logs."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            value = probe()
            if value is not None and value is not False:
                return value
            if time.monotonic() >= deadline:
                raise ServiceError(f"timed out after {timeout:g} s waiting for {what}\n{self.diagnostics()}")
            time.sleep(interval)

    def wait_http_ok(self, url: str, timeout: float = 90.0) -> None:
        """Wait until ``GET url`` answers 200."""
        def probe() -> bool:
            try:
                return httpx.get(url, timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_for(f"{url} to answer 200", probe, timeout)

    # ---- diagnostics -------------------------------------------------------------------------
    def diagnostics(self, lines: int = 40, extra_files: Sequence[Path] = ()) -> str:
        """The last ``lines`` lines of every component's log (and ``extra_files``), for a failure message."""
        parts = []
        for service in [*self.retired, *self.services.values()]:
            state = "running" if service.running else f"exit {service.process.returncode}"
            parts.append(f"===== {service.name} ({state}) {service.log_path} =====\n"
                         f"{_tail_file(service.log_path, lines)}")
        for path in extra_files:
            parts.append(f"===== {path} =====\n{_tail_file(path, lines)}")
        return "\n".join(parts)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group led by ``process`` (started with ``start_new_session``)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _descendants(pid: int) -> list[Any]:
    """The processes below ``pid`` now (psutil objects, which detect pid reuse)."""
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _signal_all(processes: Sequence[Any], sig: int) -> None:
    """Signal each still-running process of a :func:`_descendants` snapshot."""
    import psutil

    for process in processes:
        try:
            process.send_signal(sig)  # psutil checks the pid still names the same process
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tail_file(path: Path, lines: int) -> str:
    try:
        return _tail(path.read_text(encoding="utf-8", errors="replace"), lines)
    except OSError as exc:
        return f"<unreadable: {exc}>"


# ---- the dispatch DAG on a full deployment ---------------------------------------------------
DISPATCH_DAG_ID = "inexchange_dispatch"
DISPATCH_TIMEZONE = "Europe/Stockholm"


def day_interval(day: date) -> tuple[datetime, datetime]:
    """The data interval (aware) of the dispatch run that owns the invoices dated ``day``: 06:00 to 06:00
    in Stockholm, as the DAG's timetable gives it."""
    import pendulum

    start = pendulum.datetime(day.year, day.month, day.day, 6, tz=DISPATCH_TIMEZONE)
    return start, start.add(days=1)


class TaskProcesses:
    """Finds the processes that run task instances: the task SDK titles each ``airflow worker -- <ti id>``."""

    PREFIX = "airflow worker -- "

    def by_ti(self) -> dict[str, Any]:
        """Task instance id -> its process (a psutil object) for every task process running now."""
        import psutil

        found = {}
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info.get("cmdline") or ())
            if cmdline.startswith(self.PREFIX):
                found[cmdline[len(self.PREFIX):].strip()] = process
        return found


class MemorySampler:
    """Keeps the peak resident memory (VmHWM, a high-water mark) of every task process seen, per task id.

    Sampling a high-water mark loses nothing between two samples, only what a process reaches after
    the last one.
    """

    def __init__(self) -> None:
        self.peak_kib: dict[str, int] = defaultdict(int)

    def sample(self, processes: dict[str, Any], task_of: dict[str, str]) -> None:
        """Read the mark of each process in ``processes`` (ti id -> process) named in ``task_of``."""
        for ti_id, process in processes.items():
            task = task_of.get(ti_id)
            if task is None:
                continue
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
            if match:
                self.peak_kib[task] = max(self.peak_kib[task], int(match.group(1)))


@dataclass
class Deployment:
    """The running Airflow components, their metadata database, the ERP (holding the ledger) and the simulator."""

    stack: AirflowStack
    api_url: str
    dsn: dict[str, Any]
    home: Path
    erp: Any  # a SQLAlchemy engine of the ERP file
    simulator: Any

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run a read on the Airflow metadata database (a fresh autocommit connection)."""
        import psycopg2

        conn = psycopg2.connect(**self.dsn)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of the ERP / ledger database."""
        from sqlalchemy import text

        with self.erp.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]

    def trigger(self, day: date, conf: dict[str, Any], run_id: str) -> str:
        """Run the DAG for the invoices dated ``day`` (the interval a scheduled run of it has) with ``conf``.

        Through the REST API with an explicit data interval: ``airflow dags trigger --logical-date`` in
        Airflow 3.3 takes the interval from the current time, so it cannot dispatch a past day.
        """
        start, end = day_interval(day)
        body = {"dag_run_id": run_id, "logical_date": start.isoformat(), "data_interval_start": start.isoformat(),
                "data_interval_end": end.isoformat(), "conf": conf}
        response = httpx.post(f"{self.api_url}api/v2/dags/{DISPATCH_DAG_ID}/dagRuns", json=body, timeout=30.0)
        if response.status_code != 200:
            raise ServiceError(f"triggering {run_id} failed: {response.status_code} {response.text}")
        return run_id

    def task_logs(self, *run_ids: str) -> list[Path]:
        """The task log files of the runs (for failure messages)."""
        logs = self.home / "logs" / f"dag_id={DISPATCH_DAG_ID}"
        return sorted(path for run_id in run_ids for path in logs.glob(f"run_id={run_id}/task_id=*/**/*.log"))

    def diagnostics(self, *run_ids: str) -> str:
        """Where the logs are, and the tail of every component's log and of the runs' task logs."""
        tails = self.stack.diagnostics(lines=30, extra_files=self.task_logs(*run_ids))
        return f"logs in {self.stack.log_dir}\n{tails}"


@dataclass(frozen=True)
class ErpDatabase:
    """Where a deployment's ERP (and the ledger beside it) lives: its Airflow connection and its URL.

    :param conn: the ``AIRFLOW_CONN_ERP_DEFAULT`` connection (JSON form).
    :param url: the SQLAlchemy URL of the same database, for the test's own reads.
    """

    conn: dict[str, Any]
    url: str

    @classmethod
    def sqlite(cls, path: Path) -> ErpDatabase:
        return cls({"conn_type": "sqlite", "host": str(path)}, f"sqlite:///{path}")

    @classmethod
    def postgres(cls, host: str, port: int, user: str, database: str) -> ErpDatabase:
        return cls({"conn_type": "postgres", "host": host, "port": port, "login": user, "schema": database},
                   f"postgresql+psycopg2://{user}@{host}:{port}/{database}")

    def engine(self) -> Any:
        from sqlalchemy import create_engine

        return create_engine(self.url, pool_pre_ping=True)


@contextmanager
def dispatch_deployment(home: Path, erp: Path | ErpDatabase, simulator: Any, *, pg: tuple[str, int, str, str],
                        erp_id: str, seller: dict[str, Any], poll_interval_s: float = 1, pool_slots: int = 4,
                        extra_env: dict[str, str] | None = None) -> Iterator[Deployment]:
    """A fresh PostgreSQL metadata database, api-server, scheduler, dag-processor and triggerer running
    the dispatch DAG (unpaused) against ``simulator`` and the ERP ``erp``; all gone afterwards.

    :param home: an empty AIRFLOW_HOME.
    :param erp: the ERP (which holds the ledger too): a SQLite file, or any :class:`ErpDatabase`.
    :param pg: host, port, user and maintenance database of the PostgreSQL server.
    :param pool_slots: slots of the ``inexchange_api`` pool (parallel submit batches).
    :param extra_env: more environment for every component (Airflow settings).
    """
    erp = erp if isinstance(erp, ErpDatabase) else ErpDatabase.sqlite(erp)
    host, port, user, maintenance_db = pg
    api_port = free_port()
    with postgres_database(host, port, user, maintenance_db) as database:
        dsn = {"host": host, "port": port, "user": user, "dbname": database, "connect_timeout": 5}
        env = airflow_env(
            airflow_home=home,
            sql_alchemy_conn=f"postgresql+psycopg2://{user}@{host}:{port}/{database}",
            api_port=api_port,
            extra={
                "AIRFLOW_CONN_ERP_DEFAULT": json.dumps(erp.conn),
                "AIRFLOW_CONN_INEXCHANGE_DEFAULT": json.dumps({
                    "conn_type": "inexchange", "host": simulator.base_url, "password": simulator.api_key,
                    "extra": {"erp_id": erp_id},
                }),
                "AIRFLOW_VAR_INEXCHANGE_SELLER": json.dumps(seller),
                "AIRFLOW_VAR_INEXCHANGE_POLL_INTERVAL": str(poll_interval_s),
                **(extra_env or {}),
            },
        )
        stack = AirflowStack(env, home / "component-logs")
        engine = erp.engine()
        try:
            stack.cli("db", "migrate", timeout=300)
            stack.cli("pools", "set", "inexchange_api", str(pool_slots), "InExchange API concurrency")
            stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1")
            stack.start("scheduler", "scheduler")
            stack.start("dag-processor", "dag-processor")
            stack.start("triggerer", "triggerer")
            deployment = Deployment(stack, f"http://127.0.0.1:{api_port}/", dsn, home, engine, simulator)
            stack.wait_http_ok(f"http://127.0.0.1:{api_port}/execution/health", timeout=120)
            stack.wait_for(
                f"the dag-processor to store {DISPATCH_DAG_ID}",
                lambda: deployment.query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", DISPATCH_DAG_ID),
                timeout=120,
            )
            stack.wait_for(
                "a triggerer heartbeat",
                lambda: deployment.query("SELECT 1 FROM job WHERE job_type = 'TriggererJob' AND state = 'running'"),
                timeout=60,
            )
            # the scheduler starts no run of a paused DAG, backfill runs included
            stack.cli("dags", "unpause", DISPATCH_DAG_ID)
            yield deployment
        finally:
            engine.dispose()
            stack.stop_all()
