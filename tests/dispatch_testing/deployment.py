"""A fresh Airflow deployment for the deployment tests: a clean virtual environment, a fresh
``AIRFLOW_HOME`` with the ``airflow.cfg`` Airflow generates, and a day of invoices run end to end by
``airflow dags test`` against the simulator.

The virtual environments are made with ``python -m venv`` (no system site packages) and filled by
pip from the lock ``requirements.txt``: Airflow's published constraints file pins the same Airflow
release and is what a team would pass instead (README, "Deploy into an existing Airflow").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from dispatch_testing.support import SELLER, sqlite_conn_env

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.txt"
#: the day of invoice dates the end-to-end run sends (its logical date is the next morning)
DAY = date(2026, 11, 18)
#: what a broken plugins folder or provider prints; none of it may appear in a deployment's output
IMPORT_FAILURES = ("Failed to import plugin", "ImportError", "ModuleNotFoundError", "is not a package",
                   "already registered", "Traceback")
PLUGIN_NAME = "inexchange_dispatch"
PROVIDER = "airflow-provider-inexchange"


def make_venv(path: Path, *requirements: str) -> Path:
    """Create a clean virtual environment at ``path`` and pip-install ``requirements`` (pip arguments)
    into it; return its Python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements],
                               capture_output=True, text=True, timeout=1500)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return python


@dataclass(frozen=True)
class Deployment:
    """One fresh Airflow: a Python with Airflow installed, its ``AIRFLOW_HOME`` and its folders."""

    python: Path
    home: Path
    plugins_folder: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of this deployment: only the folders and the metadata database come from
        it; every other setting is the ``airflow.cfg`` Airflow generates."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "INEXCHANGE_", "PYTHON", "VIRTUAL_ENV"))}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "PATH": os.pathsep.join([str(self.python.parent), os.environ.get("PATH", "")]),
            **extra,
        })
        return env

    def airflow(self, *args: str, env: dict[str, str] | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` in this deployment."""
        return subprocess.run([str(self.python), "-m", "airflow", *args], env=env or self.env(),
                              capture_output=True, text=True, timeout=timeout, cwd=self.home.parent)

    def python_run(self, code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``code`` with this deployment's Python, in its environment."""
        return subprocess.run([str(self.python), "-c", code], env=self.env(), capture_output=True, text=True,
                              timeout=timeout, cwd=self.home.parent)


def import_failures(output: str) -> list[str]:
    """The signs of a failed import in ``output``."""
    return [failure for failure in IMPORT_FAILURES if failure in output]


def json_output(completed: subprocess.CompletedProcess[str]) -> Any:
    """The JSON document an ``airflow ... -o json`` command printed (after any log lines)."""
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = completed.stdout
    return json.loads(out[min(i for i in (out.find("["), out.find("{")) if i >= 0):])


def check_listings(deployment: Deployment, *, installed: bool) -> None:
    """``airflow plugins`` lists the report page and ``airflow providers`` the connection type the
    InExchange connection is made with, and neither prints an import failure.

    :param installed: the provider distribution is installed: ``airflow providers`` lists it with its
        ``inexchange`` connection type. Without it (the plugins folder alone), Airflow knows no
        provider of the plugins folder (it lists providers from installed distributions when it reads
        its configuration, before the plugins folder is on ``sys.path``): the connection is of the
        standard type ``http``, which the hook reads the same way.
    """
    plugins = deployment.airflow("plugins", "-o", "json")
    assert not import_failures(plugins.stdout + plugins.stderr), (plugins.stdout + plugins.stderr)[-5000:]
    assert PLUGIN_NAME in {plugin["name"] for plugin in json_output(plugins)}

    providers = deployment.airflow("providers", "list", "-o", "json")
    assert not import_failures(providers.stdout + providers.stderr), providers.stderr[-5000:]
    listed = {provider["package_name"] for provider in json_output(providers)}
    assert (PROVIDER in listed) is installed, listed

    hooks = deployment.airflow("providers", "hooks", "-o", "json")
    assert not import_failures(hooks.stdout + hooks.stderr), hooks.stderr[-5000:]
    by_type = {hook["connection_type"]: hook for hook in json_output(hooks)}
    if installed:
        assert by_type["inexchange"]["class"] == "inexchange.hooks.inexchange.InExchangeHook"
        assert by_type["inexchange"]["package_name"] == PROVIDER
    else:
        assert "inexchange" not in by_type
        assert by_type["http"]["package_name"] == "apache-airflow-providers-http"


def run_a_day(deployment: Deployment, tmp_path: Path, erp_id: str, conn_type: str) -> None:
    """Send one day of a generated SQLite ERP to the simulator with ``airflow dags test``: every task
    succeeds, no import fails, every invoice ends sent or rejected and each sent one was sent once.

    :param conn_type: the type of the InExchange connection, ``inexchange`` or ``http``.
    """
    from inexchange_devkit.erpgen import generate
    from inexchange_devkit.simulator.testing import run_simulator

    erp = tmp_path / "erp.db"
    reporting = tmp_path / "reporting.db"
    engine = create_engine(f"sqlite:///{erp}")
    generate(engine, seed=4, customers=20, invoices=40, start_date=DAY, days=1, drafts=2)
    engine.dispose()
    with run_simulator(status_step_ms=100, stop_rate=0.0, error_rate=0.0) as sim:
        env = deployment.env(
            AIRFLOW_CONN_ERP_DEFAULT=sqlite_conn_env(erp),
            AIRFLOW_CONN_INEXCHANGE_REPORTING=sqlite_conn_env(reporting),
            AIRFLOW_CONN_INEXCHANGE_DEFAULT=json.dumps({"conn_type": conn_type, "host": sim.base_url,
                                                        "password": sim.api_key, "extra": {"erp_id": erp_id}}),
            AIRFLOW_VAR_INEXCHANGE_SELLER=json.dumps(SELLER),
            AIRFLOW_VAR_INEXCHANGE_POLL_INTERVAL="1",
        )
        migrated = deployment.airflow("db", "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        run = deployment.airflow("dags", "test", "inexchange_dispatch", f"{DAY + timedelta(days=1)}T06:00:00+01:00",
                                 "--conf", json.dumps({"fail_on_action_needed": False}), env=env, timeout=480)
        sends = sim.stats()["sends"]

    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    assert not import_failures(output), output[-5000:]
    ledger = create_engine(f"sqlite:///{reporting}")
    with ledger.connect() as conn:
        states = dict(conn.execute(text("SELECT state, COUNT(*) FROM inexchange_dispatch GROUP BY state")).all())
        received = [r[0] for r in conn.execute(text("SELECT erp_document_id FROM inexchange_dispatch "
                                                    "WHERE state = 'sent'"))]
    ledger.dispose()
    assert states.get("sent", 0) >= 5 and set(states) <= {"sent", "rejected"}, states
    assert all(sends.get(erp_id) == 1 for erp_id in received), sends
    assert len(sends) == len(received), (sends, received)


def wheel_modules(names: Iterable[str]) -> list[str]:
    """The importable module names of a wheel's ``.py`` files (its RECORD's or zip listing's names)."""
    modules = []
    for name in names:
        if name.endswith(".py") and ".dist-info/" not in name:
            module = name[:-3].replace("/", ".")
            modules.append(module.removesuffix(".__init__"))
    return sorted(modules)


def import_all(deployment: Deployment, modules: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Import every module in ``modules`` with the deployment's Python."""
    return deployment.python_run("import importlib, sys\n"
                                 f"for name in {list(modules)!r}:\n"
                                 "    importlib.import_module(name)\n"
                                 "print('imported', len(sys.modules))")
