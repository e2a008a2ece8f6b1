"""``make celery-up`` / ``make celery-down``: Airflow with the CeleryExecutor as processes on this machine.

Runs the dispatch DAG on a native (no containers) CeleryExecutor deployment::

    python scripts/celery_stack.py up       # start everything, wait until it is ready
    python scripts/celery_stack.py status   # what runs, and where
    python scripts/celery_stack.py down     # stop everything ``up`` started

What ``up`` starts, each as a process group of its own (pid files in ``.celery/run/``, output in
``.celery/logs/<name>.log``):

* the InExchange simulator (``python -m inexchange_devkit.simulator``), the demo ERP as a SQLite file
  (``.celery/erp.db``, generated like the demo's on the first ``up``);
* ``airflow api-server`` (UI, REST API and the Execution API the task processes talk to),
  ``airflow scheduler`` (CeleryExecutor), ``airflow dag-processor``, ``airflow triggerer``;
* two Celery workers, ``airflow celery worker --celery-hostname workerN@%h``. Each also records its
  own host name in ``task_instance.hostname`` (``[core] hostname_callable`` is
  ``inexchange.deploy.hostname``, which returns ``$INEXCHANGE_HOSTNAME``), so the UI shows which
  worker ran a task.

Backing services (not started here, they must be running): PostgreSQL holds the Airflow metadata
database (``inexchange_airflow``, also the Celery result backend ``db+postgresql://...``) and the
reporting database (``inexchange_reporting``: the ledger and the report, connection
``inexchange_reporting``); both are created when missing. Redis DB 5 is the Celery broker. Point
them elsewhere with the ``INEXCHANGE_CELERY_*`` environment variables read by
:meth:`Settings.from_env`.

``down`` SIGTERMs the process group of every pid file, waits, then SIGKILLs whatever is left,
including processes that left their group (task processes) or outlived a crashed parent: every
process started here carries ``INEXCHANGE_CELERY_STACK=<state dir>`` in its environment, and
``down`` looks for that mark among the current user's processes.

The functions here take a :class:`Settings`, so tests run the same stack in a temporary directory
with their own databases, Redis DB, ports and simulator pace.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AIRFLOW = str(BIN / "airflow")
DAG_ID = "inexchange_dispatch"
MARK = "INEXCHANGE_CELERY_STACK"
STOP_TIMEOUT_S = 20.0
T = TypeVar("T")


class StackError(RuntimeError):
    """A component did not start or exited; the message carries the tails of the logs."""


@dataclass
class Settings:
    """Where everything runs and is kept. :meth:`from_env` reads the ``INEXCHANGE_CELERY_*`` variables."""

    state_dir: Path = ROOT / ".celery"
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str = ""
    #: an existing database to connect to when creating the two below
    pg_maintenance_db: str = "postgres"
    metadata_db: str = "inexchange_airflow"
    reporting_db: str = "inexchange_reporting"
    redis_url: str = "redis://127.0.0.1:6379/5"
    api_port: int = 8080
    simulator_port: int = 8091
    #: log servers: the triggerer's, then one per worker
    log_server_ports: tuple[int, ...] = (8794, 8793, 8795)
    workers: int = 2
    worker_concurrency: int = 2
    pool_slots: int = 4
    simulator_status_step_ms: int = 5000
    poll_interval_s: float = 5
    #: the ERP (SQLite); generated like the demo's when missing
    erp_path: Path | None = None
    seller: dict[str, Any] = field(default_factory=lambda: dict(demo_env.DEMO_SELLER))
    api_key: str = demo_env.API_KEY
    erp_id: str = "softone-celery"
    #: extra environment for every Airflow component (e.g. Airflow settings of a test)
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        base = cls()

        def get(name: str, default: Any) -> str:
            return env.get(f"INEXCHANGE_CELERY_{name}", str(default))

        return cls(
            state_dir=Path(get("STATE_DIR", base.state_dir)).resolve(),
            pg_host=get("PG_HOST", base.pg_host),
            pg_port=int(get("PG_PORT", base.pg_port)),
            pg_user=get("PG_USER", base.pg_user),
            pg_password=get("PG_PASSWORD", base.pg_password),
            pg_maintenance_db=get("PG_MAINTENANCE_DB", base.pg_maintenance_db),
            metadata_db=get("METADATA_DB", base.metadata_db),
            reporting_db=get("REPORTING_DB", base.reporting_db),
            redis_url=get("REDIS_URL", base.redis_url),
            api_port=int(get("API_PORT", base.api_port)),
            simulator_port=int(get("SIMULATOR_PORT", base.simulator_port)),
            worker_concurrency=int(get("WORKER_CONCURRENCY", base.worker_concurrency)),
        )

    # ---- derived -----------------------------------------------------------------------------
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

    @property
    def mark(self) -> str:
        return str(self.state_dir.resolve())

    def pg_url(self, database: str, scheme: str = "postgresql+psycopg2") -> str:
        password = f":{quote(self.pg_password, safe='')}" if self.pg_password else ""
        return f"{scheme}://{quote(self.pg_user, safe='')}{password}@{self.pg_host}:{self.pg_port}/{database}"

    def pg_dsn(self, database: str) -> dict[str, Any]:
        dsn: dict[str, Any] = {"host": self.pg_host, "port": self.pg_port, "user": self.pg_user,
                               "dbname": database, "connect_timeout": 5}
        if self.pg_password:
            dsn["password"] = self.pg_password
        return dsn

    def worker_names(self) -> list[str]:
        return [f"worker{n}" for n in range(1, self.workers + 1)]

    def worker_hostname(self, worker: str) -> str:
        """What ``task_instance.hostname`` says for tasks the worker ran."""
        return f"{worker}.{socket.gethostname()}"


# ---- the backing services --------------------------------------------------------------------
def ensure_databases(settings: Settings) -> None:
    """Create the metadata and the reporting database when missing."""
    import psycopg2

    admin = psycopg2.connect(**settings.pg_dsn(settings.pg_maintenance_db))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            for name in (settings.metadata_db, settings.reporting_db):
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if not cursor.fetchone():
                    cursor.execute(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
    finally:
        admin.close()


def check_redis(settings: Settings) -> None:
    """Raise when the broker does not answer a PING."""
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
    try:
        client.ping()
    finally:
        client.close()


def build_erp(settings: Settings) -> None:
    """Generate the demo ERP (same seed and size as ``make demo``) unless the file exists."""
    if settings.erp.exists():
        return
    settings.erp.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(demo_env.erp_command(settings.erp), check=True, stdout=subprocess.DEVNULL)


# ---- the environment -------------------------------------------------------------------------
def _secrets(settings: Settings) -> dict[str, str]:
    """The shared JWT secret and API secret key, made once per state directory."""
    path = settings.state_dir / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text(encoding="utf-8")))
    values = {"jwt_secret": secrets.token_urlsafe(64), "secret_key": secrets.token_urlsafe(32)}
    path.touch(mode=0o600)
    path.write_text(json.dumps(values), encoding="utf-8")
    return values


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment shared by every component and CLI call (inherited ``AIRFLOW*`` variables dropped).

    * ``CORE__EXECUTOR=CeleryExecutor``, ``CELERY__BROKER_URL`` (Redis) and
      ``CELERY__RESULT_BACKEND`` (the metadata database through SQLAlchemy);
    * ``CELERY__WORKER_PREFETCH_MULTIPLIER=1``: a worker reserves no more tasks than it has
      processes, so queued tasks go to the worker with a free process;
    * ``CORE__EXECUTION_API_SERVER_URL``: where the workers' task processes report to;
    * ``API_AUTH__JWT_SECRET`` / ``API__SECRET_KEY``: one secret for every process (the scheduler
      signs the task tokens that the api-server checks);
    * ``CORE__HOSTNAME_CALLABLE=inexchange.deploy.hostname``: the name each worker records;
    * ``SCHEDULER__USE_JOB_SCHEDULE=False``: the demo ERP's invoices are dated 2026-11-16 to -22,
      so runs are triggered for those days instead of the cron making one for yesterday.
    """
    keys = _secrets(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and not k.startswith("INEXCHANGE_")}
    env.update({
        MARK: settings.mark,
        "AIRFLOW_HOME": str(settings.home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.pg_url(settings.metadata_db),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": settings.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": settings.pg_url(settings.metadata_db, scheme="db+postgresql"),
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "inexchange.deploy.hostname",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "16",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.api_url}execution/",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__API_AUTH__JWT_ISSUER": "inexchange-celery-stack",
        "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.api_port),
        "AIRFLOW__API__BASE_URL": settings.api_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(settings.home / "passwords.json"),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.log_server_ports[0]),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.log_server_ports[1]),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_ERP_DEFAULT": json.dumps({"conn_type": "sqlite", "host": str(settings.erp)}),
        "AIRFLOW_CONN_INEXCHANGE_REPORTING": json.dumps({
            "conn_type": "postgres", "host": settings.pg_host, "port": settings.pg_port,
            "login": settings.pg_user, "password": settings.pg_password or None, "schema": settings.reporting_db,
        }),
        "AIRFLOW_CONN_INEXCHANGE_DEFAULT": json.dumps({
            "conn_type": "inexchange", "host": f"{settings.simulator_root}v1/api/", "password": settings.api_key,
            "extra": {"erp_id": settings.erp_id},
        }),
        "AIRFLOW_VAR_INEXCHANGE_SELLER": json.dumps(settings.seller),
        "AIRFLOW_VAR_INEXCHANGE_POLL_INTERVAL": f"{settings.poll_interval_s:g}",
        "INEXCHANGE_SQL_DIR": str(ROOT / "include" / "sql"),
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(settings.extra_env)
    return env


def components(settings: Settings) -> list[tuple[str, list[str], dict[str, str]]]:
    """Name, command line and own environment of each long-running process, in start order."""
    simulator = [
        sys.executable, "-m", "inexchange_devkit.simulator", "--host", "127.0.0.1", "--port", str(settings.simulator_port),
        "--seed", "7", "--status-step-ms", str(settings.simulator_status_step_ms), "--api-key", settings.api_key,
        "--data-dir", str(settings.state_dir / "simulator"), "--url-file", str(settings.run_dir / "simulator.url"),
    ]
    result = [
        ("simulator", simulator, {}),
        ("api-server", [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(settings.api_port),
                        "--workers", "1"], {}),
        ("scheduler", [AIRFLOW, "scheduler"], {}),
        ("dag-processor", [AIRFLOW, "dag-processor"], {}),
        ("triggerer", [AIRFLOW, "triggerer"], {}),
    ]
    for n, worker in enumerate(settings.worker_names()):
        port = settings.log_server_ports[1 + n] if 1 + n < len(settings.log_server_ports) else 0
        result.append((worker, [AIRFLOW, "celery", "worker", "--celery-hostname", f"{worker}@%h",
                                "--concurrency", str(settings.worker_concurrency)],
                       {"INEXCHANGE_HOSTNAME": settings.worker_hostname(worker),
                        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port or 8793 + 2 * n)}))
    return result


def write_env_file(settings: Settings, env: dict[str, str]) -> Path:
    """``export`` lines for Airflow CLI calls on this deployment from another shell."""
    path = settings.state_dir / "airflow.env"
    path.touch(mode=0o600)
    path.write_text(demo_env.export_lines(env, skip=(MARK,)), encoding="utf-8")
    return path


# ---- processes -------------------------------------------------------------------------------
def _pid_files(settings: Settings) -> list[Path]:
    return sorted(settings.run_dir.glob("*.pid.json")) if settings.run_dir.exists() else []


def _leader(record: dict[str, Any]) -> Any:
    """The recorded process when it still runs (psutil object), else None (also after pid reuse)."""
    import psutil

    try:
        process = psutil.Process(int(record["pid"]))
        if abs(process.create_time() - float(record["create_time"])) > 1.0 or \
                process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.NoSuchProcess:
        return None


def marked_processes(settings: Settings) -> list[Any]:
    """This user's processes that carry the stack's mark in their environment (started by it)."""
    import psutil

    found = []
    for process in psutil.process_iter(["environ", "pid"]):
        environ = process.info.get("environ") or {}
        if environ.get(MARK) == settings.mark and process.pid != os.getpid():
            found.append(process)
    return found


def status(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each recorded component: pid, whether it runs, its log file."""
    result = {}
    for path in _pid_files(settings):
        record = json.loads(path.read_text(encoding="utf-8"))
        result[record["name"]] = {"pid": record["pid"], "running": _leader(record) is not None,
                                  "log": record["log"]}
    return result


def start(settings: Settings, name: str, command: list[str], env: dict[str, str]) -> Any:
    """Start one component in a new session (its own process group) and record its pid."""
    import psutil

    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {shlex.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=str(settings.state_dir))
    record = {"name": name, "pid": process.pid, "create_time": psutil.Process(process.pid).create_time(),
              "command": command, "log": str(log_path)}
    (settings.run_dir / f"{name}.pid.json").write_text(json.dumps(record), encoding="utf-8")
    return process


def down(settings: Settings, timeout: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop everything ``up`` started; returns what was still running.

    SIGTERM to each recorded process group (also of a leader that already died: its children keep
    the group), SIGKILL after ``timeout`` seconds to every process still carrying the stack's mark.
    Idempotent; the pid files are removed.
    """
    import psutil

    stopped = []
    for path in _pid_files(settings):
        record = json.loads(path.read_text(encoding="utf-8"))
        pgid = int(record["pid"])
        leader = _leader(record)
        if leader is not None:
            stopped.append(record["name"])
        # signal the group only when a member is ours (a reused pid may lead somebody else's group)
        members = [p for p in marked_processes(settings) if _pgid(p.pid) == pgid]
        if members or leader is not None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + timeout
    while marked_processes(settings) and time.monotonic() < deadline:
        time.sleep(0.25)
    for process in marked_processes(settings):
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(marked_processes(settings), timeout=5)
    for path in _pid_files(settings):
        path.unlink(missing_ok=True)
    return stopped


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<unreadable: {exc}>"


def diagnostics(settings: Settings, lines: int = 30, extra_files: Iterable[Path] = ()) -> str:
    """The tail of every component log (and of ``extra_files``), for error messages."""
    parts = [f"logs in {settings.log_dir}"]
    state = status(settings)
    for path in [*sorted(settings.log_dir.glob("*.log")), *extra_files]:
        running = state.get(path.stem, {}).get("running")
        label = "" if running is None else (" (running)" if running else " (exited)")
        parts.append(f"===== {path}{label} =====\n{_tail(path, lines)}")
    return "\n".join(parts)


def check_running(settings: Settings) -> None:
    dead = [name for name, s in status(settings).items() if not s["running"]]
    if dead:
        raise StackError(f"component(s) exited: {', '.join(dead)}\n{diagnostics(settings)}")


def wait_for(settings: Settings, what: str, probe: Callable[[], T | None], timeout: float,
             interval: float = 0.5) -> T:
    """Call ``probe`` until it returns something truthy; fail with the logs when a component died or time ran out."""
    deadline = time.monotonic() + timeout
    while True:
        check_running(settings)
        try:
            value = probe()
        except Exception:  # noqa: BLE001 - not ready yet (connection refused, table missing...)
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:g} s waiting for {what}\n{diagnostics(settings)}")
        time.sleep(interval)


def query(settings: Settings, sql: str, *params: Any, database: str | None = None) -> list[tuple[Any, ...]]:
    """Rows of a read on the metadata database (or ``database``)."""
    import psycopg2

    conn = psycopg2.connect(**settings.pg_dsn(database or settings.metadata_db))
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    finally:
        conn.close()


def celery_nodes(settings: Settings) -> list[str]:
    """Names of the Celery workers answering a ping on the broker."""
    from celery import Celery

    app = Celery(broker=settings.redis_url)
    try:
        return sorted(name for reply in app.control.ping(timeout=1.0) for name in reply)
    finally:
        app.close()


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _cli(settings: Settings, env: dict[str, str], *args: str, timeout: float = 300.0) -> None:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout,
                            cwd=str(settings.state_dir))
    with open(settings.log_dir / "cli.txt", "a", encoding="utf-8") as log:
        log.write(f"$ airflow {shlex.join(args)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise StackError(f"`airflow {' '.join(args)}` exited with {result.returncode}:\n{tail}")


def up(settings: Settings, *, say: Callable[[str], None] = print) -> None:
    """Start the simulator, the Airflow components and the workers; return once all are ready.

    Stops whatever it started when something fails on the way.
    """
    running = [name for name, s in status(settings).items() if s["running"]]
    if running:
        raise StackError(f"already running: {', '.join(running)} (stop with `make celery-down`)")
    down(settings, timeout=5)  # leftovers of a crashed run
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "passwords.json").write_text(json.dumps({"admin": "admin"}), encoding="utf-8")
    say(f"PostgreSQL {settings.pg_host}:{settings.pg_port}: metadata database {settings.metadata_db}, "
        f"reporting database {settings.reporting_db}; Redis broker {settings.redis_url}")
    ensure_databases(settings)
    check_redis(settings)
    build_erp(settings)
    env = airflow_env(settings)
    write_env_file(settings, env)
    try:
        say("airflow db migrate ...")
        _cli(settings, env, "db", "migrate")
        _cli(settings, env, "pools", "set", "inexchange_api", str(settings.pool_slots), "InExchange API concurrency")
        for name, command, own_env in components(settings):
            start(settings, name, command, {**env, **own_env})
            say(f"started {name}")
        wait_for(settings, "the simulator", lambda: _http_ok(f"{settings.simulator_root}_sim/stats"), 60)
        wait_for(settings, "the api-server", lambda: _http_ok(f"{settings.api_url}api/v2/monitor/health"), 180)
        wait_for(settings, f"the dag-processor to store {DAG_ID}",
                 lambda: query(settings, "SELECT 1 FROM serialized_dag WHERE dag_id = %s", DAG_ID), 180)
        for job in ("SchedulerJob", "TriggererJob"):
            wait_for(settings, f"a running {job}",
                     lambda job=job: query(settings, "SELECT 1 FROM job WHERE job_type = %s AND state = 'running'",
                                           job), 120)
        expected = {f"{name}@{socket.gethostname()}" for name in settings.worker_names()}
        wait_for(settings, f"Celery workers {sorted(expected)}", lambda: expected <= set(celery_nodes(settings)), 120,
                 interval=1.0)
        _cli(settings, env, "dags", "unpause", DAG_ID)
    except BaseException:
        say(f"start failed; stopping what was started (logs in {settings.log_dir})")
        down(settings)
        raise


# ---- command line ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "up":
        try:
            up(settings, say=lambda line: print(line, flush=True))
        except StackError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"\nAirflow UI: {settings.api_url}  (user admin, password admin)\n"
              f"Workers: {', '.join(settings.worker_hostname(w) for w in settings.worker_names())} "
              f"(task_instance.hostname)\n"
              f"Trigger {DAG_ID} for a day between {demo_env.DEMO_START_DATE} and the {demo_env.DEMO_DAYS - 1} "
              f"days after it.\nLogs: {settings.log_dir}/<component>.log, task logs in {settings.home / 'logs'}\n"
              f"Airflow CLI: source {settings.state_dir / 'airflow.env'}\nStop: make celery-down")
        return 0
    if args.command == "down":
        stopped = down(settings)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    state = status(settings)
    if not state:
        print("not started")
        return 1
    for name, s in state.items():
        print(f"{name:14} pid {s['pid']:>7}  {'running' if s['running'] else 'NOT RUNNING'}  {s['log']}")
    print(f"Airflow UI: {settings.api_url}")
    return 0 if all(s["running"] for s in state.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
