"""The repository's ``plugins/`` and ``dags/`` as Airflow's own folders, in a fresh ``AIRFLOW_HOME``
of a clean virtual environment that holds Airflow and the lock and nothing of this project.

This is how a team adds the project to an existing Airflow without installing anything: the plugins
folder mounted or copied as it is (Airflow's reference docker-compose mounts ``./plugins`` there).
Airflow's plugin loader imports every ``.py`` file under that folder as a top-level module named after
the file, unless ``.airflowignore`` says otherwise; ``hooks/inexchange.py`` read that way would become
the module ``inexchange`` and shadow the package. Airflow's own commands run with the ``airflow.cfg``
Airflow generates (only the folders, the metadata database and the connections come from the
environment): ``airflow plugins`` lists the page without an import error, and ``airflow dags test``
sends a day of invoices to the simulator with every task succeeding. The InExchange connection is of
the standard type ``http`` here: Airflow lists providers only from installed distributions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dispatch_testing.deployment import ROOT, Deployment, check_listings, import_failures, run_a_day

pytestmark = [pytest.mark.system, pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture
def mounted(lock_python: Path, tmp_path: Path) -> Deployment:
    return Deployment(python=lock_python, home=tmp_path / "airflow", plugins_folder=ROOT / "plugins")


def test_nothing_of_the_project_is_installed(mounted: Deployment) -> None:
    probe = mounted.python_run("import importlib.util, sys\n"
                               "sys.path.remove(sys.argv[0]) if sys.argv[0] in sys.path else None\n"
                               "print(importlib.util.find_spec('inexchange'), importlib.util.find_spec('inexchange_devkit'))")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["None", "None"], probe.stdout


def test_the_plugins_folder_loads_only_its_entry_module(mounted: Deployment) -> None:
    check_listings(mounted, installed=False)
    assert (ROOT / "plugins" / ".airflowignore").read_text().splitlines().count("inexchange/") == 1


def test_a_copied_plugins_folder_works_the_same(lock_python: Path, tmp_path: Path) -> None:
    """``cp -r plugins`` into another deployment: the SQL files and templates travel with the package."""
    copy = tmp_path / "plugins"
    shutil.copytree(ROOT / "plugins", copy, ignore=shutil.ignore_patterns("__pycache__"))
    deployment = Deployment(python=lock_python, home=tmp_path / "airflow", plugins_folder=copy)
    check_listings(deployment, installed=False)
    imported = deployment.python_run(
        f"import sys; sys.path.append({str(copy)!r})\n"
        "from inexchange.sql import load_sql, sql_dir\n"
        "print(sql_dir()); load_sql('extract_unsent_invoices')")
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert not import_failures(imported.stderr), imported.stderr[-3000:]
    assert imported.stdout.strip() == str(copy / "inexchange" / "sql_files")


def test_a_day_runs_from_the_mounted_folders(mounted: Deployment, tmp_path: Path) -> None:
    run_a_day(mounted, tmp_path, erp_id="mounted", conn_type="http")
