"""``make demo``: one real DAG run on the embedded default, then the dispatch report.

Builds the demo ERP (SQLite), starts the InExchange simulator on a free loopback port, runs
``airflow dags test inexchange_dispatch`` for one data interval, prints the report table from the
reporting database (connection ``inexchange_reporting``) and stops the simulator.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_env  # noqa: E402


def main() -> int:
    from inexchange_devkit.simulator.testing import run_simulator

    print("Building the demo ERP database ...", flush=True)
    demo_env.build_erp()
    with run_simulator(seed=7, status_step_ms=1000, api_key=demo_env.API_KEY,
                       data_dir=str(demo_env.DEMO_DIR / "simulator")) as simulator:
        env = demo_env.airflow_env(simulator.base_url)
        print(f"InExchange simulator at {simulator.base_url}", flush=True)
        print("Preparing Airflow (SQLite metadata in .airflow/) ...", flush=True)
        demo_env.prepare_airflow(env)
        airflow = str(Path(sys.executable).with_name("airflow"))
        print(f"Running inexchange_dispatch for the invoices of {demo_env.DEMO_RUN_DATE} ...", flush=True)
        # a run at 06:00 owns the previous day's invoices
        run_after = date.fromisoformat(demo_env.DEMO_RUN_DATE) + timedelta(days=1)
        run = subprocess.run(
            [airflow, "dags", "test", "inexchange_dispatch", f"{run_after}T06:00:00+01:00",
             "--conf", '{"fail_on_action_needed": false}'],
            # the whole run's log, every task's INFO lines included, goes to the log file below
            env={**env, "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}, capture_output=True, text=True,
        )
        log_file = demo_env.DEMO_DIR / "dag_run.log"
        log_file.write_text(run.stdout + run.stderr, encoding="utf-8")
        if run.returncode != 0:
            print(run.stdout[-4000:], run.stderr[-4000:], sep="\n")
            print(f"The DAG run failed (exit {run.returncode}); full log in {log_file}")
            return run.returncode
        stats = simulator.stats()
    _print_report(env)
    sends = stats.get("sends", {})
    print(f"\nInExchange simulator received {sum(sends.values())} sends for {len(sends)} invoices; "
          f"duplicates: {len(stats.get('duplicates', []))}. The run's Airflow log (every task, INFO): {log_file}")
    return 0


def _print_report(env: dict[str, str]) -> None:
    import os

    os.environ.update(env)
    from inexchange.db import reporting_engine
    from inexchange.pipeline import format_report
    from inexchange.sql import statement

    engine = reporting_engine("inexchange_reporting")  # where the DAG wrote it: the demo's AIRFLOW_CONN_*
    try:
        with engine.connect() as conn:
            start = conn.execute(statement("report_latest_interval")).scalar()
            rows = [dict(r._mapping) for r in conn.execute(statement("report_select"), {"data_interval_start": start})]
    finally:
        engine.dispose()
    import pendulum

    day = pendulum.parse(str(start)).in_timezone("Europe/Stockholm").date()
    print(f"\nElektroniska utskick, invoices dated {day.isoformat()} (Europe/Stockholm):\n")
    print(format_report(rows))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    print("\nPer state: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    sys.exit(main())
