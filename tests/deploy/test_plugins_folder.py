"""The repository's ``plugins/`` and ``dags/`` as Airflow's own folders, in a fresh ``AIRFLOW_HOME``.

This is how a team adds the project to an existing Airflow without installing anything: the plugins
folder mounted or copied as it is (Airflow's reference docker-compose mounts ``./plugins`` there).
Airflow's plugin loader imports every ``.py`` file under that folder as a top-level module named after
the file, unless ``.airflowignore`` says otherwise; ``hooks/inexchange.py`` read that way would become
the module ``inexchange`` and shadow the package. The test runs Airflow's own commands with the
``airflow.cfg`` Airflow generates (only the folders, the metadata database and the connections come
from the environment): ``airflow plugins`` lists the page without an import error, and ``airflow dags
test`` sends a day of invoices to the simulator with every task succeeding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from support import SELLER, sqlite_conn_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 18)
IMPORT_FAILURES = ("Failed to import plugin", "ImportError", "ModuleNotFoundError", "is not a package")


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh deployment: Airflow's generated airflow.cfg, the repository's folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "INEXCHANGE_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        **extra,
    })
    return env


def airflow(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_plugins_folder_loads_only_its_entry_module(tmp_path: Path) -> None:
    env = airflow_env(tmp_path / "airflow")

    listed = airflow(env, "plugins", "-o", "json")

    output = listed.stdout + listed.stderr
    assert listed.returncode == 0, output[-3000:]
    assert not [failure for failure in IMPORT_FAILURES if failure in output], output[-5000:]
    plugins = json.loads(listed.stdout[listed.stdout.index("["):])
    assert "inexchange_dispatch" in {plugin["name"] for plugin in plugins}
    assert (ROOT / "plugins" / ".airflowignore").read_text().splitlines().count("inexchange/") == 1


def test_a_day_runs_from_the_mounted_folders(tmp_path: Path) -> None:
    from inexchange_devkit.erpgen import generate
    from inexchange_devkit.simulator.testing import run_simulator

    erp = tmp_path / "erp.db"
    engine = create_engine(f"sqlite:///{erp}")
    generate(engine, seed=4, customers=20, invoices=40, start_date=DAY, days=1, drafts=2)
    home = tmp_path / "airflow"
    with run_simulator(status_step_ms=100, stop_rate=0.0, error_rate=0.0) as sim:
        env = airflow_env(
            home,
            AIRFLOW_CONN_ERP_DEFAULT=sqlite_conn_env(erp),
            AIRFLOW_CONN_INEXCHANGE_DEFAULT=json.dumps({"conn_type": "inexchange", "host": sim.base_url,
                                                        "password": sim.api_key, "extra": {"erp_id": "mounted"}}),
            AIRFLOW_VAR_INEXCHANGE_SELLER=json.dumps(SELLER),
            AIRFLOW_VAR_INEXCHANGE_POLL_INTERVAL="1",
        )
        migrated = airflow(env, "db", "migrate")
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        run = airflow(env, "dags", "test", "inexchange_dispatch", f"{DAY + timedelta(days=1)}T06:00:00+01:00",
                      "--conf", json.dumps({"fail_on_action_needed": False}), timeout=480)
        sends = sim.stats()["sends"]

    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    assert not [failure for failure in IMPORT_FAILURES if failure in output], output[-5000:]
    with engine.connect() as conn:
        states = dict(conn.execute(text("SELECT state, COUNT(*) FROM inexchange_dispatch GROUP BY state")).all())
        received = [r[0] for r in conn.execute(text("SELECT erp_document_id FROM inexchange_dispatch "
                                                    "WHERE state = 'sent'"))]
    engine.dispose()
    assert states.get("sent", 0) >= 5 and set(states) <= {"sent", "rejected"}, states
    assert all(sends.get(erp_id) == 1 for erp_id in received)
