"""The embedded demo setup shared by ``make demo`` and ``make airflow``.

A project-local AIRFLOW_HOME with SQLite metadata, the demo ERP as a SQLite file, connections and
the seller Variable given as AIRFLOW_CONN_* / AIRFLOW_VAR_* environment variables. Everything else is
as a fresh Airflow install has it: no pool is created and ``[operators] default_deferrable`` is not
set; the DAG asks for deferral itself and its submit tasks run in ``default_pool``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from inexchange_devkit.services import export_lines

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / ".demo"
AIRFLOW_HOME = ROOT / ".airflow"
ERP_DB = DEMO_DIR / "erp.db"
#: the demo ERP's invoice dates start here; the demo run covers the third day
DEMO_START_DATE = "2026-11-16"
DEMO_DAYS = 7
DEMO_RUN_DATE = "2026-11-18"
API_KEY = "demo-api-key"

DEMO_SELLER = {
    "name": "Exempelbolaget i Göteborg AB",
    "org_number": "556677-8899",
    "vat_number": "SE556677889901",
    "street": "Lilla Bommen 1",
    "postal_code": "411 04",
    "city": "Göteborg",
    "country_code": "SE",
    "f_skatt": True,
    "bankgiro": "5050-1055",
    "contact_name": "Ekonomiavdelningen",
    "contact_email": "ekonomi@exempelbolaget.se",
    "contact_phone": "031-123 45 67",
}


def airflow_env(simulator_url: str) -> dict[str, str]:
    """Environment for Airflow commands on the demo setup."""
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(AIRFLOW_HOME / "demo_passwords.json"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        # the ERP is opened read-only; the ledger and the report go to the same file through the
        # reporting connection, which is opened for writing (a demo's choice: a real ERP is not written to)
        "AIRFLOW_CONN_ERP_DEFAULT": json.dumps({"conn_type": "sqlite", "host": str(ERP_DB)}),
        "AIRFLOW_CONN_INEXCHANGE_REPORTING": json.dumps({"conn_type": "sqlite", "host": str(ERP_DB)}),
        "AIRFLOW_CONN_INEXCHANGE_DEFAULT": json.dumps({
            "conn_type": "inexchange",
            "host": simulator_url,
            "password": API_KEY,
            "extra": {"erp_id": "softone-demo"},
        }),
        "AIRFLOW_VAR_INEXCHANGE_SELLER": json.dumps(DEMO_SELLER),
        "AIRFLOW_VAR_INEXCHANGE_POLL_INTERVAL": "1",
        # airflow standalone starts its components as `airflow ...` commands
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    return env


def write_env_file(env: dict[str, str]) -> Path:
    """Write the Airflow settings as ``export`` lines a user can ``source`` in another shell."""
    path = AIRFLOW_HOME / "demo.env"
    path.write_text(export_lines(env), encoding="utf-8")
    return path


def erp_command(path: Path) -> list[str]:
    """The generator run that builds the demo ERP (seed, size and days of ``make demo``) in the SQLite file ``path``."""
    return [sys.executable, "-m", "inexchange_devkit.erpgen", "--url", f"sqlite:///{path}", "--seed", "7",
            "--customers", "40", "--invoices", "200", "--start-date", DEMO_START_DATE, "--days", str(DEMO_DAYS),
            "--replace"]


def build_erp() -> None:
    """Build the demo ERP database afresh (ledger and report included) with the seeded generator."""
    DEMO_DIR.mkdir(exist_ok=True)
    ERP_DB.unlink(missing_ok=True)
    subprocess.run(erp_command(ERP_DB), check=True)


def prepare_airflow(env: dict[str, str]) -> None:
    """Migrate the metadata database and write the demo login (admin / admin)."""
    AIRFLOW_HOME.mkdir(exist_ok=True)
    (AIRFLOW_HOME / "demo_passwords.json").write_text(json.dumps({"admin": "admin"}), encoding="utf-8")
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
