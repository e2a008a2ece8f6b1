"""Parse time of the DAG file beyond ``import airflow.sdk``, as the dag-processor pays it per parse.

Each sample is a fresh interpreter (nothing cached in ``sys.modules``) that times
``import airflow.sdk`` (the baseline every DAG file pays), then the DAG file's own module execution
(its imports of the provider's operator and sensor, and the DAG's construction). Prints the median
and spread of both over the samples and the file's share. Target: at most 50 ms beyond the
baseline. Usage: python bench/bench_parse.py [SAMPLES] (default 15).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "dags" / "inexchange_dispatch.py"

SAMPLE = """
import importlib.util, json, time
started = time.perf_counter()
import airflow.sdk
sdk = time.perf_counter() - started
spec = importlib.util.spec_from_file_location("inexchange_dispatch_dag", {path!r})
module = importlib.util.module_from_spec(spec)
started = time.perf_counter()
spec.loader.exec_module(module)
dag_file = time.perf_counter() - started
print(json.dumps({{"sdk": sdk, "dag_file": dag_file, "tasks": len(module.inexchange_dispatch().tasks)}}))
"""


def sample(env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", SAMPLE.format(path=str(DAG_FILE))], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(samples: int) -> None:
    home = tempfile.mkdtemp(prefix="bench-parse-airflow-")
    env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db"}
    sample(env)  # warm the file system cache
    runs = [sample(env) for _ in range(samples)]
    sdk = [r["sdk"] * 1000 for r in runs]
    dag = [r["dag_file"] * 1000 for r in runs]
    print(f"{samples} fresh interpreters; DAG with {runs[0]['tasks']} tasks")
    print(f"{'part':<34}{'median ms':>10}{'min ms':>9}{'max ms':>9}")
    print(f"{'import airflow.sdk (baseline)':<34}{statistics.median(sdk):>10.1f}{min(sdk):>9.1f}{max(sdk):>9.1f}")
    print(f"{'the DAG file beyond it':<34}{statistics.median(dag):>10.1f}{min(dag):>9.1f}{max(dag):>9.1f}")
    print(f"\nDAG file: {statistics.median(dag):.0f} ms beyond the baseline "
          f"({statistics.median(dag) / statistics.median(sdk):.2f}x of it); target <= 50 ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
