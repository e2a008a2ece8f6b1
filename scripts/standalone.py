"""``make airflow``: ``airflow standalone`` on the demo setup, to trigger and watch the DAG in the UI.

Builds the demo ERP, starts the InExchange simulator and runs ``airflow standalone`` (scheduler,
triggerer, dag-processor and API server on http://localhost:8080, user ``admin``, password
``admin``) until Ctrl-C, then stops the simulator.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_env  # noqa: E402


def main() -> int:
    from inexchange_devkit.simulator.testing import run_simulator

    demo_env.build_erp()
    with run_simulator(seed=7, status_step_ms=5000, api_key=demo_env.API_KEY,
                       data_dir=str(demo_env.DEMO_DIR / "simulator")) as simulator:
        env = demo_env.airflow_env(simulator.base_url)
        env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
        env["AIRFLOW_VAR_INEXCHANGE_POLL_INTERVAL"] = "5"
        demo_env.prepare_airflow(env)
        env_file = demo_env.write_env_file(env)
        print(f"InExchange simulator at {simulator.base_url}")
        print(f"For Airflow commands in another shell: source {env_file}")
        print("Airflow UI: http://localhost:8080  (user admin, password admin). "
              f"Trigger inexchange_dispatch for a day between {demo_env.DEMO_START_DATE} and the "
              f"{demo_env.DEMO_DAYS} days after it. Ctrl-C stops everything.", flush=True)
        airflow = str(Path(sys.executable).with_name("airflow"))
        try:
            return subprocess.run([airflow, "standalone"], env=env).returncode
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
