"""Real Airflow components (api-server, scheduler, dag-processor, triggerer, Celery workers) as local processes.

One process manager for everything that runs the dispatch DAG on real components outside a
container: the integration, browser and Celery tests, the chaos run (``tests/chaos``), the scale
benchmark and ``make celery-up`` / ``make celery-down`` (``scripts/celery_stack.py``).

The parts, from the bottom up:

* :func:`free_port`; :class:`PostgresServer` (databases created when missing, or for a ``with``
  block, and reads); :class:`Database`, an Airflow connection and the SQLAlchemy URL of the same
  database;
* :func:`airflow_env`, the environment of every component and CLI call of one private installation,
  and :func:`dispatch_env`, the connections and Variables the dispatch DAG reads. The environment is
  an explicit dict, never ``os.environ`` (which the test session points at its own SQLite home);
* :class:`AirflowStack` starts, stops, kills and restarts components sharing one environment. Each
  runs in a process group of its own (it starts children: executor workers, the triggerer's async
  runner, uvicorn), its output goes to ``<log_dir>/<name>.log`` and its pid to
  ``<run_dir>/<name>.pid.json``; it runs in ``run_dir`` and carries ``INEXCHANGE_STACK=<run_dir>``
  in its environment, and so do its children. :meth:`AirflowStack.stop_all` stops the process
  groups the pid files name, their descendants and whatever still carries either mark (task
  processes leave their parent's group), also from another process than the one that started them;
* :class:`Deployment`, the running DAG: metadata queries, the ERP and reporting databases, runs
  triggered through the REST API, diagnostics; :func:`start_dispatch` brings one up;
* :func:`dispatch_deployment`: a LocalExecutor deployment on a fresh metadata database for a
  ``with`` block; :func:`celery_up` / :func:`celery_down`: the CeleryExecutor stack with the
  simulator and two workers, left running between the two calls (:class:`CelerySettings`);
* :class:`TaskProcesses` and :class:`MemorySampler`, which find task processes and their peak memory.

The components run the repository's ``dags/`` folder: this package is installed editable from the
repository (``pip install -e devkit``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

#: the repository this package is installed (editable) from
REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
#: the repository's plugins folder, as Airflow's: its entry module names the page only where no installed
#: distribution registers it
PLUGINS_FOLDER = REPO / "plugins"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
_PYTHON = os.path.realpath(sys.executable)
DISPATCH_DAG_ID = "inexchange_dispatch"
DISPATCH_TIMEZONE = "Europe/Stockholm"
#: the Airflow pool of the submit tasks (``[inexchange] api_pool``), created by :func:`start_dispatch`
API_POOL = "inexchange_api"
#: the environment variable that marks every process a stack started (value: the stack's run_dir, also
#: their working directory: a process title set with setproctitle overwrites /proc/<pid>/environ)
MARK = "INEXCHANGE_STACK"
STOP_TIMEOUT_S = 20.0
T = TypeVar("T")


class ServiceError(RuntimeError):
    """A component or CLI call failed, exited or did not become ready; the message carries the logs' tails."""


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- databases -------------------------------------------------------------------------------
def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server and the role to use; ``maintenance_db`` is an existing database to connect
    to for CREATE / DROP DATABASE."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    maintenance_db: str = "postgres"

    def dsn(self, database: str) -> dict[str, Any]:
        """psycopg2 connect arguments for ``database``."""
        dsn: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user, "dbname": database,
                               "connect_timeout": 5}
        if self.password:
            dsn["password"] = self.password
        return dsn

    def url(self, database: str, scheme: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL of ``database`` (``scheme="db+postgresql"`` for a Celery result backend)."""
        password = f":{quote(self.password, safe='')}" if self.password else ""
        return f"{scheme}://{quote(self.user, safe='')}{password}@{self.host}:{self.port}/{database}"

    def database(self, name: str) -> Database:
        """``name`` on this server as an Airflow connection and URL."""
        conn: dict[str, Any] = {"conn_type": "postgres", "host": self.host, "port": self.port, "login": self.user,
                                "schema": name}
        if self.password:
            conn["password"] = self.password
        return Database(conn, self.url(name))

    def query(self, database: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of one statement on ``database`` (a fresh autocommit connection)."""
        import psycopg2

        conn = psycopg2.connect(**self.dsn(database))
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            conn.close()

    def _admin(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """One statement outside a transaction (CREATE / DROP DATABASE) on a connection of its own.

        A connection of its own each time: one held longer would not survive a restart of the server
        (the chaos run restarts it).
        """
        return self.query(self.maintenance_db, sql, *params)

    def create_database(self, name: str) -> None:
        """Create ``name`` unless it exists."""
        if not self._admin("SELECT 1 FROM pg_database WHERE datname = %s", name):
            self._admin(f"CREATE DATABASE {_identifier(name)}")

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, also while killed components still hold connections (``WITH (FORCE)``)."""
        self._admin(f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")

    @contextmanager
    def temporary_database(self, prefix: str = "af_") -> Iterator[str]:
        """A fresh database ``<prefix><random>`` for the ``with`` block, dropped afterwards (also on error)."""
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        self._admin(f"CREATE DATABASE {_identifier(name)}")
        try:
            yield name
        finally:
            self.drop_database(name)


@dataclass(frozen=True)
class Database:
    """A database as an Airflow connection (``AIRFLOW_CONN_*`` JSON form) and as a SQLAlchemy URL."""

    conn: dict[str, Any]
    url: str

    @classmethod
    def sqlite(cls, path: Path) -> Database:
        return cls({"conn_type": "sqlite", "host": str(path)}, f"sqlite:///{path}")

    @property
    def is_sqlite(self) -> bool:
        return self.conn.get("conn_type") == "sqlite"

    def env_value(self) -> str:
        """The ``AIRFLOW_CONN_*`` value."""
        return json.dumps(self.conn)

    def engine(self) -> Any:
        from sqlalchemy import create_engine

        return create_engine(self.url, pool_pre_ping=True)


# ---- the environment -------------------------------------------------------------------------
def airflow_env(
    *,
    airflow_home: Path,
    sql_alchemy_conn: str,
    api_port: int,
    executor: str = "LocalExecutor",
    parallelism: int = 8,
    worker_log_port: int | None = None,
    trigger_log_port: int | None = None,
    jwt_secret: str | None = None,
    secret_key: str | None = None,
    login: tuple[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment for every Airflow component and CLI call of one private installation.

    Inherited ``AIRFLOW*`` and ``INEXCHANGE_*`` variables (the test session's SQLite home, another
    stack's mark) are dropped first; ``extra`` comes last. The settings and why each is needed:

    * ``CORE__EXECUTION_API_SERVER_URL``: task processes report their state and read connections,
      variables and XComs through the api-server's Execution API; it must point at the api-server
      of this installation, not at the default http://localhost:8080.
    * ``API_AUTH__JWT_SECRET``: the scheduler signs the task tokens and the api-server checks them;
      every process must share one secret (otherwise each generates its own and the tasks get 403s).
      ``API__SECRET_KEY`` likewise for log fetching. Random unless given.
    * ``CORE__EXECUTOR``: real task processes (LocalExecutor, or CeleryExecutor with the Celery
      settings in ``extra``).
    * Authentication: without ``login``, ``CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True`` (runs are
      triggered through the REST API without a login on this loopback-only api-server); with
      ``login`` (user, password) one admin user whose password is written to
      ``<airflow_home>/passwords.json``, so the login is real.
    * ``SCHEDULER__USE_JOB_SCHEDULE=False``: the DAG's cron would otherwise create a scheduled run
      for "yesterday" on unpause, and with ``max_active_runs=1`` it would compete with the runs
      triggered for the test data's days.
    * ``TRIGGERER__JOB_HEARTBEAT_SEC`` / ``TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD``: a new
      triggerer only takes over triggers of a triggerer whose heartbeat is older than the
      threshold (30 s by default); lowered so that a restart resumes within seconds.
    * ``LOGGING__WORKER_LOG_SERVER_PORT`` / ``LOGGING__TRIGGER_LOG_SERVER_PORT``: the log servers
      listen on fixed ports (8793/8794) by default; free ports unless given avoid clashes.
    * ``AIRFLOW_CONN_AIRFLOW_API``: this api-server's REST API, with the login if any, through which
      the DAG's preflight reads the pool of the submit tasks.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "INEXCHANGE_"))}
    api_url = f"http://127.0.0.1:{api_port}/"
    env.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret or secrets.token_urlsafe(64),
        "AIRFLOW__API_AUTH__JWT_ISSUER": "inexchange-devkit",
        "AIRFLOW__API__SECRET_KEY": secret_key or secrets.token_urlsafe(32),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port or free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port or free_port()),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONUNBUFFERED": "1",
    })
    api_conn: dict[str, Any] = {"conn_type": "http", "host": api_url}
    if login is None:
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
    else:
        user, password = login
        passwords = airflow_home / "passwords.json"
        airflow_home.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({user: password}), encoding="utf-8")
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{user}:admin"
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords)
        api_conn.update(login=user, password=password)
    # the preflight reads the submit tasks' pool through Airflow's REST API
    env["AIRFLOW_CONN_AIRFLOW_API"] = json.dumps(api_conn)
    env.update(extra or {})
    return env


def erp_env(erp: Database, reporting: Database | None = None) -> dict[str, str]:
    """``AIRFLOW_CONN_ERP_DEFAULT`` and ``AIRFLOW_CONN_INEXCHANGE_REPORTING`` (the ledger and the report).

    Without ``reporting`` the reporting connection names the ERP's own SQLite file; a PostgreSQL ERP
    needs a reporting database of its own (the ERP connection is for reading).
    """
    if reporting is None:
        if not erp.is_sqlite:
            raise ValueError("a PostgreSQL ERP needs a reporting database (the ledger and the report)")
        reporting = erp
    return {"AIRFLOW_CONN_ERP_DEFAULT": erp.env_value(), "AIRFLOW_CONN_INEXCHANGE_REPORTING": reporting.env_value()}


def dispatch_env(*, erp: Database, reporting: Database | None, inexchange_url: str, api_key: str, erp_id: str,
                 seller: dict[str, Any], poll_interval_s: float) -> dict[str, str]:
    """Every connection, Variable and setting the dispatch DAG reads: the ERP, the reporting database
    (see :func:`erp_env`), the InExchange API at ``inexchange_url`` (``.../v1/api/``), the seller, the
    delivery sensor's poll interval, and the pool :func:`start_dispatch` creates for the submit tasks."""
    return {
        **erp_env(erp, reporting),
        "AIRFLOW__INEXCHANGE__API_POOL": API_POOL,
        "AIRFLOW_CONN_INEXCHANGE_DEFAULT": json.dumps({
            "conn_type": "inexchange", "host": inexchange_url, "password": api_key, "extra": {"erp_id": erp_id},
        }),
        "AIRFLOW_VAR_INEXCHANGE_SELLER": json.dumps(seller),
        "AIRFLOW_VAR_INEXCHANGE_POLL_INTERVAL": f"{poll_interval_s:g}",
    }


def export_lines(env: dict[str, str], skip: Iterable[str] = ()) -> str:
    """The ``AIRFLOW*`` and ``INEXCHANGE_*`` settings of ``env`` (but ``skip``) as ``export`` lines, with PATH."""
    skipped = set(skip)
    keys = sorted(k for k in env if k.startswith(("AIRFLOW", "INEXCHANGE_")) and k not in skipped)
    lines = [f"export {k}={shlex.quote(env[k])}" for k in keys]
    lines.append(f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH")
    return "\n".join(lines) + "\n"


# ---- processes -------------------------------------------------------------------------------
@dataclass
class Service:
    """One started component: its command, process and log file.

    ``process`` is the :class:`subprocess.Popen` of the stack that started it.
    """

    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    #: environment on top of the stack's
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def _alive(record: dict[str, Any]) -> Any:
    """The process a pid file names when it still runs (a psutil object), else None (also after pid reuse)."""
    import psutil

    try:
        process = psutil.Process(int(record["pid"]))
        if abs(process.create_time() - float(record["create_time"])) > 1.0 or \
                process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.NoSuchProcess:
        return None


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(pid: int) -> list[Any]:
    """The processes below ``pid`` now (psutil objects, which detect pid reuse)."""
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _running(process: Any) -> bool:
    """Whether a psutil process still runs (a zombie does not)."""
    import psutil

    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _group_members(groups: set[int | None]) -> list[Any]:
    """The running processes of the process groups ``groups`` (psutil objects), never of the caller's group
    (where the stack's CLI calls run)."""
    import psutil

    found: list[Any] = []
    wanted = {g for g in groups if g} - {os.getpgrp()}
    if not wanted:
        return found
    for process in psutil.process_iter(["status"]):
        if process.pid == os.getpid() or process.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if _pgid(process.pid) in wanted:
            found.append(process)
    return found


def _signal_all(processes: Iterable[Any], sig: int) -> None:
    """Signal each still-running process of a psutil snapshot."""
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


def http_ok(url: str) -> bool:
    """Whether ``GET url`` answers 200 now."""
    import httpx

    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


class AirflowStack:
    """Start, stop, kill and restart components sharing one environment, log and run directory.

    :param env: the environment of every component and CLI call (see :func:`airflow_env`).
    :param log_dir: where each component's output goes (``<name>.log``, ``<name>.<n>.log`` after
        ``n`` restarts) and each CLI call's (``cli-<n>-<command>.log``).
    :param run_dir: where the pid files go (default ``log_dir``) and the components' working
        directory; it is also the stack's mark, so a stack made on the same ``run_dir`` in another
        process can stop what this one started.

    Stop everything with :meth:`stop_all` (idempotent), e.g. from a fixture's ``finally``.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, *, run_dir: Path | None = None) -> None:
        self.env = env
        self.log_dir = Path(log_dir)
        self.run_dir = Path(run_dir) if run_dir is not None else self.log_dir
        self.services: dict[str, Service] = {}
        self.retired: list[Service] = []  # stopped, killed or exited instances, kept for their logs
        self._cli_calls = 0

    @property
    def mark(self) -> str:
        return str(self.run_dir.resolve())

    def _env(self, own: dict[str, str] | None = None) -> dict[str, str]:
        return {**self.env, **(own or {}), MARK: self.mark}

    # ---- CLI ---------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` to completion; its output goes to ``cli-<n>-<command>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._cli_calls += 1
        log_path = self.log_dir / f"cli-{self._cli_calls:02d}-{'-'.join(args[:2])}.log"
        result = subprocess.run([AIRFLOW, *args], env=self._env(), capture_output=True, text=True, timeout=timeout,
                                cwd=self.run_dir)
        log_path.write_text(f"$ airflow {shlex.join(args)}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
                            encoding="utf-8")
        if check and result.returncode != 0:
            raise ServiceError(f"`airflow {' '.join(args)}` exited with {result.returncode}:\n"
                               f"{_tail(result.stdout + result.stderr, 60)}")
        return result

    # ---- components --------------------------------------------------------------------------
    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Service:
        """Start ``airflow <args>`` as component ``name``; ``env`` adds to the stack's environment."""
        return self.start_process(name, [AIRFLOW, *args], env=env)

    def start_process(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Service:
        """Start ``command`` as component ``name`` in a new session (its own process group) and record its pid.

        A running component of that name is an error.
        """
        import psutil

        if name in self.services and self.services[name].running:
            raise ServiceError(f"{name} is already running")
        if name in self.services:
            self._retire(name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        generation = sum(1 for s in self.retired if s.name == name)
        log_path = self.log_dir / (f"{name}.log" if generation == 0 else f"{name}.{generation}.log")
        with open(log_path, "ab") as log:
            log.write(f"===== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {shlex.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(command, env=self._env(env), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.run_dir)
        try:
            create_time = psutil.Process(process.pid).create_time()
        except psutil.NoSuchProcess:  # exited at once: check_running reports it
            create_time = 0.0
        record = {"name": name, "pid": process.pid, "create_time": create_time, "command": command,
                  "log": str(log_path)}
        self._pid_file(name).write_text(json.dumps(record), encoding="utf-8")
        service = Service(name, command, log_path, process, dict(env or {}))
        self.services[name] = service
        return service

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid.json"

    def records(self) -> list[dict[str, Any]]:
        """The pid files: name, pid, create_time, command and log of each recorded component."""
        if not self.run_dir.exists():
            return []
        found = []
        for path in sorted(self.run_dir.glob("*.pid.json")):
            try:
                found.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return found

    def status(self) -> dict[str, dict[str, Any]]:
        """Each recorded component (also one started by another process): pid, whether it runs, its log."""
        return {r["name"]: {"pid": r["pid"], "running": _alive(r) is not None, "log": r["log"]}
                for r in self.records()}

    def marked(self) -> list[Any]:
        """This user's processes that carry the stack's mark in their environment, or are this Python
        and run in its ``run_dir`` (psutil objects): what it started, and their children."""
        import psutil

        found = []
        for process in psutil.process_iter(["environ", "cwd", "exe", "status"]):
            if process.pid == os.getpid() or process.info.get("status") == psutil.STATUS_ZOMBIE:
                continue
            environ = process.info.get("environ") or {}
            if environ.get(MARK) == self.mark or (process.info.get("cwd") == self.mark
                                                  and process.info.get("exe") == _PYTHON):
                found.append(process)
        return found

    def _leaders(self) -> dict[tuple[str, int], bool]:
        """(name, pid) of every started or recorded component -> whether it still runs."""
        leaders = {(s.name, s.pid): s.running for s in self.services.values()}
        for record in self.records():
            key = (record["name"], int(record["pid"]))
            if key not in leaders:
                leaders[key] = _alive(record) is not None
        return leaders

    def processes(self) -> list[Any]:
        """Every process of the stack now (psutil objects): the components, their process groups,
        their descendants and whatever carries the mark (see :meth:`marked`)."""
        leaders = self._leaders()
        found = {p.pid: p for p in self.marked()}
        groups = {pid for (_, pid), running in leaders.items() if running} | {_pgid(pid) for pid in found}
        found.update({p.pid: p for p in _group_members(groups)})
        for (_, pid), running in leaders.items():
            if running:
                found.update({p.pid: p for p in _descendants(pid)})
        return list(found.values())

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the component's process group and descendants (a crash, not a shutdown)."""
        service = self.services[name]
        descendants = _descendants(service.pid)
        _killpg(service.pid, sig)
        _signal_all(descendants, sig)
        try:
            service.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _killpg(service.pid, signal.SIGKILL)
            service.process.wait(timeout=STOP_TIMEOUT_S)
        self._retire(name)

    def stop(self, name: str, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the component's process group, SIGKILL it and its descendants after ``timeout`` seconds.

        Descendants are looked up first: task processes run in process groups of their own (the
        task SDK's supervisor puts them there), so the group signal does not reach them.
        """
        service = self.services.get(name)
        if service is None:
            return
        descendants = _descendants(service.pid)
        if service.running:
            _killpg(service.pid, signal.SIGTERM)
            try:
                service.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # children (executor workers, task processes, the trigger runner) may outlive their parent
        _killpg(service.pid, signal.SIGKILL)
        _signal_all(descendants, signal.SIGKILL)
        try:
            service.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        self._retire(name)

    def stop_all(self, timeout: float = STOP_TIMEOUT_S) -> list[str]:
        """Stop every component, also those only a pid file names; return those that were still running.

        SIGTERM to each component's process group (also of a leader that already died when a member
        of the group is found by the mark, so a reused pid is never signalled); SIGKILL after
        ``timeout`` seconds to every process of the stack still there (:meth:`processes`, the
        descendants found at the start included). Idempotent; the pid files are removed.
        """
        import psutil

        leaders = self._leaders()
        stopped = sorted({name for (name, _), running in leaders.items() if running})
        before = self.processes()
        groups = {pid for (_, pid), running in leaders.items() if running} | {_pgid(p.pid) for p in before}
        for _, pid in leaders:
            if pid in groups and pid != os.getpgrp():
                _killpg(pid, signal.SIGTERM)

        def left() -> list[Any]:
            for service in self.services.values():
                service.process.poll()  # reap what this stack started
            found = {p.pid: p for p in [*self.processes(), *_group_members(groups)]}
            found.update({p.pid: p for p in before if _running(p)})
            return list(found.values())

        deadline = time.monotonic() + timeout
        while left() and time.monotonic() < deadline:
            time.sleep(0.25)
        remaining = left()
        _signal_all(remaining, signal.SIGKILL)
        psutil.wait_procs(remaining, timeout=5)
        for name in list(self.services):
            try:
                self.services[name].process.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
                pass
            self._retire(name)
        for record in self.records():
            self._pid_file(record["name"]).unlink(missing_ok=True)
        return stopped

    def _retire(self, name: str) -> None:
        service = self.services.pop(name)
        self.retired.append(service)
        pid_file = self._pid_file(name)
        try:
            if json.loads(pid_file.read_text(encoding="utf-8"))["pid"] == service.pid:
                pid_file.unlink()
        except (OSError, ValueError, KeyError):
            pass

    def revive(self) -> list[Service]:
        """Start again, with the same command, every component that has exited (as a process supervisor
        such as systemd or Kubernetes would); return the instances that had exited."""
        dead = [s for s in self.services.values() if not s.running]
        for service in dead:
            self._retire(service.name)
            self.start_process(service.name, service.command, env=service.env)
        return dead

    def check_running(self) -> None:
        """Raise :class:`ServiceError` when a started component has exited."""
        dead = [s for s in self.services.values() if not s.running]
        if dead:
            names = ", ".join(f"{s.name} (exit {s.process.returncode})" for s in dead)
            raise ServiceError(f"component(s) exited: {names}\n{self.diagnostics()}")

    # ---- waiting -----------------------------------------------------------------------------
    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
        """Call ``probe`` until it returns something truthy and return that.

        An exception of the probe counts as not ready yet (connection refused, table missing...).
        Fails with the logs when a component exits or ``timeout`` seconds pass.
        """
        deadline = time.monotonic() + timeout
        error = ""
        while True:
            self.check_running()
            try:
                value = probe()
            except Exception as exc:  # noqa: BLE001 - not ready yet
                value, error = None, f" (last error: {type(exc).__name__}: {exc})"
            if value:
                return value
            if time.monotonic() >= deadline:
                raise ServiceError(f"timed out after {timeout:g} s waiting for {what}{error}\n{self.diagnostics()}")
            time.sleep(interval)

    def wait_http_ok(self, url: str, timeout: float = 90.0) -> None:
        """Wait until ``GET url`` answers 200."""
        self.wait_for(f"{url} to answer 200", lambda: http_ok(url), timeout)

    # ---- diagnostics -------------------------------------------------------------------------
    def diagnostics(self, lines: int = 40, extra_files: Sequence[Path] = ()) -> str:
        """Where the logs are and the last ``lines`` lines of every component's log (and ``extra_files``)."""
        parts = [f"logs in {self.log_dir}"]
        for service in [*self.retired, *self.services.values()]:
            state = "running" if service.running else f"exit {service.process.returncode}"
            parts.append(f"===== {service.name} ({state}) {service.log_path} =====\n"
                         f"{_tail_file(service.log_path, lines)}")
        for path in extra_files:
            parts.append(f"===== {path} =====\n{_tail_file(path, lines)}")
        return "\n".join(parts)


# ---- the dispatch DAG on a deployment --------------------------------------------------------
def day_interval(day: date) -> tuple[datetime, datetime]:
    """The data interval (aware) of the dispatch run that owns the invoices dated ``day``: 06:00 to 06:00
    in Stockholm, as the DAG's timetable gives it."""
    import pendulum

    start = pendulum.datetime(day.year, day.month, day.day, 6, tz=DISPATCH_TIMEZONE)
    return start, start.add(days=1)


@dataclass
class Deployment:
    """The running Airflow components, their metadata database, the ERP, the reporting database and the simulator.

    :param erp: SQLAlchemy engine of the ERP.
    :param reporting: SQLAlchemy engine of the reporting database (the ledger and the report); the
        ERP's engine when both are one SQLite file.
    :param simulator: the simulator's handle when the caller runs it (``run_simulator``), else None.
    :param login: user and password for the REST API; None when every request is admin's.
    """

    stack: AirflowStack
    api_url: str
    pg: PostgresServer
    metadata_db: str
    home: Path
    erp: Any
    reporting: Any
    simulator: Any = None
    login: tuple[str, str] | None = None

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run a read on the Airflow metadata database (a fresh autocommit connection)."""
        return self.pg.query(self.metadata_db, sql, *params)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of the reporting database (the ledger, its history, the report)."""
        return _rows(self.reporting, sql, params)

    def erp_rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of the ERP database."""
        return _rows(self.erp, sql, params)

    def headers(self) -> dict[str, str]:
        """Headers of a REST API request: a bearer token of :attr:`login` when there is one."""
        import httpx

        if self.login is None:
            return {}
        user, password = self.login
        response = httpx.post(f"{self.api_url}auth/token", json={"username": user, "password": password}, timeout=30.0)
        if response.status_code != 201:
            raise ServiceError(f"login as {user} failed: {response.status_code} {response.text}")
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def trigger(self, day: date, conf: dict[str, Any], run_id: str) -> str:
        """Run the DAG for the invoices dated ``day`` (the interval a scheduled run of it has) with ``conf``.

        Through the REST API with an explicit data interval: ``airflow dags trigger --logical-date`` in
        Airflow 3.3 takes the interval from the current time, so it cannot dispatch a past day.
        """
        import httpx

        start, end = day_interval(day)
        body = {"dag_run_id": run_id, "logical_date": start.isoformat(), "data_interval_start": start.isoformat(),
                "data_interval_end": end.isoformat(), "conf": conf}
        response = httpx.post(f"{self.api_url}api/v2/dags/{DISPATCH_DAG_ID}/dagRuns", json=body,
                              headers=self.headers(), timeout=30.0)
        if response.status_code != 200:
            raise ServiceError(f"triggering {run_id} failed: {response.status_code} {response.text}")
        return run_id

    def task_logs(self, *run_ids: str) -> list[Path]:
        """The task log files of the runs (for failure messages)."""
        logs = self.home / "logs" / f"dag_id={DISPATCH_DAG_ID}"
        return sorted(path for run_id in run_ids for path in logs.glob(f"run_id={run_id}/task_id=*/**/*.log"))

    def diagnostics(self, *run_ids: str) -> str:
        """Where the logs are, and the tail of every component's log and of the runs' task logs."""
        return self.stack.diagnostics(lines=30, extra_files=self.task_logs(*run_ids))

    def close(self) -> None:
        """Dispose of the database engines."""
        for engine in {id(e): e for e in (self.erp, self.reporting) if e is not None}.values():
            engine.dispose()


def _rows(engine: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def _engines(erp: Database, reporting: Database) -> tuple[Any, Any]:
    engine = erp.engine()
    return engine, engine if reporting == erp else reporting.engine()


def start_dispatch(
    deployment: Deployment,
    *,
    pool_slots: int = 4,
    workers: Sequence[tuple[str, list[str], dict[str, str]]] = (),
    ready: Sequence[tuple[str, Callable[[], Any], float]] = (),
    say: Callable[[str], None] = lambda line: None,
) -> None:
    """Migrate the metadata database, create the :data:`API_POOL` pool, start api-server, scheduler,
    dag-processor, triggerer and ``workers`` (name, command, own environment), wait until they are
    ready (and each of ``ready``: what, probe, timeout), then unpause the dispatch DAG.

    The scheduler starts no run of a paused DAG, backfill runs included.
    """
    stack = deployment.stack
    port = stack.env["AIRFLOW__API__PORT"]
    say("airflow db migrate ...")
    stack.cli("db", "migrate", timeout=300)
    stack.cli("pools", "set", API_POOL, str(pool_slots), "InExchange API concurrency")
    stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", port, "--workers", "1")
    for name in ("scheduler", "dag-processor", "triggerer"):
        stack.start(name, name)
    for name, command, env in workers:
        stack.start_process(name, command, env=env)
    say(f"started {', '.join(stack.services)}")
    stack.wait_http_ok(f"{deployment.api_url}execution/health", timeout=180)
    stack.wait_for(f"the dag-processor to store {DISPATCH_DAG_ID}",
                   lambda: deployment.query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", DISPATCH_DAG_ID),
                   timeout=180)
    for job in ("SchedulerJob", "TriggererJob"):
        stack.wait_for(f"a running {job}",
                       lambda job=job: deployment.query("SELECT 1 FROM job WHERE job_type = %s AND state = 'running'",
                                                        job),
                       timeout=120)
    for what, probe, timeout in ready:
        stack.wait_for(what, probe, timeout, interval=1.0)
    stack.cli("dags", "unpause", DISPATCH_DAG_ID)


@contextmanager
def dispatch_deployment(home: Path, erp: Path | Database, simulator: Any, *, pg: PostgresServer, erp_id: str,
                        seller: dict[str, Any], reporting: Path | Database | None = None, poll_interval_s: float = 5,
                        pool_slots: int = 4, extra_env: dict[str, str] | None = None) -> Iterator[Deployment]:
    """A fresh PostgreSQL metadata database, api-server, scheduler (LocalExecutor), dag-processor and
    triggerer running the dispatch DAG (unpaused) against ``simulator`` and the ERP ``erp``; all gone afterwards.

    :param home: an empty AIRFLOW_HOME; component logs go to ``<home>/component-logs``.
    :param erp: the ERP: a SQLite file, or any :class:`Database`.
    :param simulator: the running simulator (``base_url`` and ``api_key``).
    :param pg: the PostgreSQL server of the metadata database.
    :param reporting: the reporting database. Default: the ERP's own file for a SQLite ERP, a fresh
        database on ``pg`` (dropped afterwards) for any other.
    :param pool_slots: slots of the :data:`API_POOL` pool (parallel submit batches).
    :param extra_env: more environment for every component (Airflow settings).
    """
    erp = erp if isinstance(erp, Database) else Database.sqlite(erp)
    with ExitStack() as cleanup:
        if reporting is None:
            reporting = erp if erp.is_sqlite else pg.database(cleanup.enter_context(pg.temporary_database("rep_")))
        elif not isinstance(reporting, Database):
            reporting = Database.sqlite(reporting)
        metadata_db = cleanup.enter_context(pg.temporary_database("af_"))
        api_port = free_port()
        env = airflow_env(
            airflow_home=home, sql_alchemy_conn=pg.url(metadata_db), api_port=api_port,
            extra={**dispatch_env(erp=erp, reporting=reporting, inexchange_url=simulator.base_url,
                                  api_key=simulator.api_key, erp_id=erp_id, seller=seller,
                                  poll_interval_s=poll_interval_s),
                   **(extra_env or {})},
        )
        stack = AirflowStack(env, home / "component-logs")
        deployment = Deployment(stack, f"http://127.0.0.1:{api_port}/", pg, metadata_db, home,
                                *_engines(erp, reporting), simulator=simulator)
        cleanup.callback(deployment.close)
        cleanup.callback(stack.stop_all)
        start_dispatch(deployment, pool_slots=pool_slots)
        yield deployment


# ---- the CeleryExecutor stack ----------------------------------------------------------------
@dataclass
class CelerySettings:
    """Where the CeleryExecutor stack runs and keeps its state.

    :meth:`from_env` reads ``INEXCHANGE_CELERY_*`` variables over a base. The metadata database
    (also the Celery result backend) and the reporting database are created on ``pg`` when
    missing; ``redis_url`` is the broker. The ERP is the SQLite file ``erp_path`` (default
    ``<state_dir>/erp.db``), generated with ``erp_command(path)`` when missing.
    """

    state_dir: Path = REPO / ".celery"
    pg: PostgresServer = field(default_factory=PostgresServer)
    metadata_db: str = "inexchange_airflow"
    reporting_db: str = "inexchange_reporting"
    redis_url: str = "redis://127.0.0.1:6379/5"
    api_port: int = 8080
    simulator_port: int = 8091
    #: log servers: the triggerer's, then one per worker (the scheduler's is the first worker's)
    log_server_ports: tuple[int, ...] = (8794, 8793, 8795)
    workers: int = 2
    worker_concurrency: int = 2
    pool_slots: int = 4
    simulator_status_step_ms: int = 5000
    poll_interval_s: float = 5
    erp_path: Path | None = None
    erp_command: Callable[[Path], list[str]] | None = None
    seller: dict[str, Any] = field(default_factory=dict)
    api_key: str = "celery-api-key"
    erp_id: str = "softone-celery"
    login: tuple[str, str] = ("admin", "admin")
    #: more environment for every Airflow component (e.g. Airflow settings of a test)
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, base: CelerySettings | None = None) -> CelerySettings:
        """``base`` (default: the defaults) with the ``INEXCHANGE_CELERY_*`` variables of ``environ`` applied."""
        env = os.environ if environ is None else environ
        base = base or cls()

        def get(name: str, default: Any) -> str:
            return env.get(f"INEXCHANGE_CELERY_{name}", str(default))

        pg = PostgresServer(
            host=get("PG_HOST", base.pg.host), port=int(get("PG_PORT", base.pg.port)),
            user=get("PG_USER", base.pg.user), password=get("PG_PASSWORD", base.pg.password),
            maintenance_db=get("PG_MAINTENANCE_DB", base.pg.maintenance_db),
        )
        return replace(
            base,
            state_dir=Path(get("STATE_DIR", base.state_dir)).resolve(),
            pg=pg,
            metadata_db=get("METADATA_DB", base.metadata_db),
            reporting_db=get("REPORTING_DB", base.reporting_db),
            redis_url=get("REDIS_URL", base.redis_url),
            api_port=int(get("API_PORT", base.api_port)),
            simulator_port=int(get("SIMULATOR_PORT", base.simulator_port)),
            worker_concurrency=int(get("WORKER_CONCURRENCY", base.worker_concurrency)),
        )

    @property
    def home(self) -> Path:
        return self.state_dir / "home"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def erp(self) -> Path:
        return self.erp_path or self.state_dir / "erp.db"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/"

    @property
    def simulator_root(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}/"

    def worker_names(self) -> list[str]:
        return [f"worker{n}" for n in range(1, self.workers + 1)]

    def worker_hostname(self, worker: str) -> str:
        """What ``task_instance.hostname`` says for tasks the worker ran."""
        return f"{worker}.{socket.gethostname()}"

    def worker_log_port(self, index: int) -> int:
        ports = self.log_server_ports
        return ports[1 + index] if 1 + index < len(ports) else 8793 + 2 * index


def _celery_secrets(settings: CelerySettings) -> dict[str, str]:
    """The shared JWT secret and API secret key, made once per state directory."""
    path = settings.state_dir / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text(encoding="utf-8")))
    values = {"jwt_secret": secrets.token_urlsafe(64), "secret_key": secrets.token_urlsafe(32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(values), encoding="utf-8")
    return values


def celery_env(settings: CelerySettings) -> dict[str, str]:
    """:func:`airflow_env` and :func:`dispatch_env` of the Celery stack, with:

    * ``CELERY__BROKER_URL`` (Redis) and ``CELERY__RESULT_BACKEND`` (the metadata database through
      SQLAlchemy);
    * ``CELERY__WORKER_PREFETCH_MULTIPLIER=1``: a worker reserves no more tasks than it has
      processes, so queued tasks go to the worker with a free process;
    * ``CORE__HOSTNAME_CALLABLE=inexchange.deploy.hostname``: each worker records the name in its
      ``INEXCHANGE_HOSTNAME`` in ``task_instance.hostname``;
    * secrets kept in ``<state_dir>/secrets.json``, so CLI calls from another shell share them.
    """
    keys = _celery_secrets(settings)
    return airflow_env(
        airflow_home=settings.home,
        sql_alchemy_conn=settings.pg.url(settings.metadata_db),
        api_port=settings.api_port,
        executor="CeleryExecutor",
        parallelism=16,
        worker_log_port=settings.worker_log_port(0),
        trigger_log_port=settings.log_server_ports[0],
        jwt_secret=keys["jwt_secret"],
        secret_key=keys["secret_key"],
        login=settings.login,
        extra={
            "AIRFLOW__CELERY__BROKER_URL": settings.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": settings.pg.url(settings.metadata_db, scheme="db+postgresql"),
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "inexchange.deploy.hostname",
            **dispatch_env(erp=Database.sqlite(settings.erp), reporting=settings.pg.database(settings.reporting_db),
                           inexchange_url=f"{settings.simulator_root}v1/api/", api_key=settings.api_key,
                           erp_id=settings.erp_id, seller=settings.seller, poll_interval_s=settings.poll_interval_s),
            **settings.extra_env,
        },
    )


def celery_stack(settings: CelerySettings, env: dict[str, str] | None = None) -> AirflowStack:
    """The stack of ``settings`` (its pid files and mark are ``<state_dir>/run``), for starting, status or stopping."""
    return AirflowStack(env or {}, settings.log_dir, run_dir=settings.run_dir)


def check_redis(settings: CelerySettings) -> None:
    """Raise when the broker does not answer a PING."""
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
    try:
        client.ping()
    finally:
        client.close()


def celery_nodes(settings: CelerySettings) -> list[str]:
    """Names of the Celery workers answering a ping on the broker."""
    from celery import Celery

    app = Celery(broker=settings.redis_url)
    try:
        return sorted(name for reply in app.control.ping(timeout=1.0) for name in reply)
    finally:
        app.close()


def celery_status(settings: CelerySettings) -> dict[str, dict[str, Any]]:
    """Each component of the stack: pid, whether it runs, its log file (empty when not started)."""
    return celery_stack(settings).status()


def celery_down(settings: CelerySettings, timeout: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop everything :func:`celery_up` started, from any process; return what was still running."""
    return celery_stack(settings).stop_all(timeout=timeout)


def celery_up(settings: CelerySettings, *, say: Callable[[str], None] = print) -> Deployment:
    """Start the simulator, the Airflow components and the Celery workers; return once all are ready.

    The processes outlive the caller; :func:`celery_down` stops them. Stops whatever it started when
    something fails on the way.
    """
    running = [name for name, s in celery_status(settings).items() if s["running"]]
    if running:
        raise ServiceError(f"already running: {', '.join(running)} (stop with `make celery-down`)")
    celery_down(settings, timeout=5)  # leftovers of a crashed run
    settings.home.mkdir(parents=True, exist_ok=True)
    say(f"PostgreSQL {settings.pg.host}:{settings.pg.port}: metadata database {settings.metadata_db}, "
        f"reporting database {settings.reporting_db}; Redis broker {settings.redis_url}")
    for database in (settings.metadata_db, settings.reporting_db):
        settings.pg.create_database(database)
    check_redis(settings)
    if not settings.erp.exists():
        if settings.erp_command is None:
            raise ServiceError(f"no ERP at {settings.erp}")
        settings.erp.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(settings.erp_command(settings.erp), check=True, stdout=subprocess.DEVNULL)
    env = celery_env(settings)
    env_file = settings.state_dir / "airflow.env"
    env_file.touch(mode=0o600)
    env_file.write_text(export_lines(env), encoding="utf-8")
    stack = celery_stack(settings, env)
    erp = Database.sqlite(settings.erp)
    deployment = Deployment(stack, settings.api_url, settings.pg, settings.metadata_db, settings.home,
                            *_engines(erp, settings.pg.database(settings.reporting_db)), login=settings.login)
    simulator = [
        sys.executable, "-m", "inexchange_devkit.simulator", "--host", "127.0.0.1", "--port", str(settings.simulator_port),
        "--seed", "7", "--status-step-ms", str(settings.simulator_status_step_ms), "--api-key", settings.api_key,
        "--data-dir", str(settings.state_dir / "simulator"), "--url-file", str(settings.run_dir / "simulator.url"),
    ]
    workers = [
        (worker, [AIRFLOW, "celery", "worker", "--celery-hostname", f"{worker}@%h",
                  "--concurrency", str(settings.worker_concurrency)],
         {"INEXCHANGE_HOSTNAME": settings.worker_hostname(worker),
          "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.worker_log_port(n))})
        for n, worker in enumerate(settings.worker_names())
    ]
    expected = {f"{name}@{socket.gethostname()}" for name in settings.worker_names()}
    try:
        stack.start_process("simulator", simulator)
        stack.wait_http_ok(f"{settings.simulator_root}_sim/stats", timeout=60)
        start_dispatch(deployment, pool_slots=settings.pool_slots, workers=workers, say=say,
                       ready=[(f"Celery workers {sorted(expected)}",
                               lambda: expected <= set(celery_nodes(settings)), 120)])
    except BaseException:
        say(f"start failed; stopping what was started (logs in {settings.log_dir})")
        stack.stop_all()
        deployment.close()
        raise
    return deployment


def main(argv: list[str] | None = None, *, base: CelerySettings | None = None, notes: str = "") -> int:
    """``up`` / ``down`` / ``status`` of the Celery stack of ``base`` (with ``INEXCHANGE_CELERY_*`` applied).

    ``notes`` is printed after a successful ``up``.
    """
    import argparse

    parser = argparse.ArgumentParser(description="The dispatch DAG on a native CeleryExecutor stack.")
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    settings = CelerySettings.from_env(base=base)
    if args.command == "up":
        try:
            deployment = celery_up(settings, say=lambda line: print(line, flush=True))
        except ServiceError as exc:
            print(exc, file=sys.stderr)
            return 1
        deployment.close()
        user, password = settings.login
        print(f"\nAirflow UI: {settings.api_url}  (user {user}, password {password})\n"
              f"Workers: {', '.join(settings.worker_hostname(w) for w in settings.worker_names())} "
              f"(task_instance.hostname)\n"
              f"Logs: {settings.log_dir}/<component>.log, task logs in {settings.home / 'logs'}\n"
              f"Airflow CLI: source {settings.state_dir / 'airflow.env'}\nStop: make celery-down")
        if notes:
            print(notes)
        return 0
    if args.command == "down":
        stopped = celery_down(settings)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    state = celery_status(settings)
    if not state:
        print("not started")
        return 1
    for name, s in state.items():
        print(f"{name:14} pid {s['pid']:>7}  {'running' if s['running'] else 'NOT RUNNING'}  {s['log']}")
    print(f"Airflow UI: {settings.api_url}")
    return 0 if all(s["running"] for s in state.values()) else 1


# ---- task processes --------------------------------------------------------------------------
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
    """Keeps the peak resident memory (VmHWM, a high-water mark) of every task process seen, per task id,
    and the CPU time each task instance's process used.

    Sampling a high-water mark loses nothing between two samples, only what a process reaches after
    the last one; a process's CPU time is its last sample's (what it uses after that is lost).
    """

    def __init__(self) -> None:
        self.peak_kib: dict[str, int] = defaultdict(int)
        #: task instance id -> (task id, CPU seconds, user and system, at the last sample)
        self.cpu_by_ti: dict[str, tuple[str, float]] = {}

    @property
    def cpu_s(self) -> dict[str, float]:
        """CPU seconds per task id: the sum over its task instances (a mapped task's batches, its tries)."""
        totals: dict[str, float] = defaultdict(float)
        for task, seconds in self.cpu_by_ti.values():
            totals[task] += seconds
        return dict(totals)

    @property
    def processes(self) -> dict[str, int]:
        """Task processes seen per task id."""
        counts: dict[str, int] = defaultdict(int)
        for task, _ in self.cpu_by_ti.values():
            counts[task] += 1
        return dict(counts)

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
            try:
                times = process.cpu_times()
            except Exception:  # noqa: BLE001 - the process ended between two reads
                continue
            self.cpu_by_ti[ti_id] = (task, times.user + times.system)
