"""Parse time of the DAG file beyond ``import airflow.sdk``, as the dag-processor pays it per parse.

Each sample is a fresh interpreter (nothing cached in ``sys.modules``) that times
``import airflow.sdk`` (the baseline every DAG file pays), then the DAG file's own module execution
(its imports of the provider's operator and sensor, and the DAG's construction). Prints the median
and spread of both over the samples, as wall time and as the process's CPU time (steadier on a
machine shared with other work), and the file's share. Target: at most 50 ms beyond the baseline.

A second set of fresh interpreters breaks the DAG file's cost down: after ``import airflow.sdk``
each part is imported in turn (a module shared by two parts counts for the first), then the DAG
file runs with all of them loaded, which leaves the DAG's construction. A third set times what
``@task`` would add (``from airflow.sdk import task``), which the DAG file does not use.

Whether Python writes and reuses bytecode (``PYTHONDONTWRITEBYTECODE``) is taken from the
environment and printed: without it, the provider's modules and the DAG file are compiled anew in
every sample. Usage: python bench/bench_parse.py [SAMPLES] (default 15).
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
clocks = (time.perf_counter, time.process_time)
started = [clock() for clock in clocks]
import airflow.sdk
sdk = [clock() - start for clock, start in zip(clocks, started)]
spec = importlib.util.spec_from_file_location("inexchange_dispatch_dag", {path!r})
module = importlib.util.module_from_spec(spec)
started = [clock() for clock in clocks]
spec.loader.exec_module(module)
dag_file = [clock() - start for clock, start in zip(clocks, started)]
print(json.dumps({{"sdk": sdk, "dag_file": dag_file, "tasks": len(module.inexchange_dispatch().tasks)}}))
"""

#: the DAG file's parts, imported in this order after ``import airflow.sdk``
PARTS = {
    "CronDataIntervalTimetable": "from airflow.sdk import CronDataIntervalTimetable",
    "airflow.timetables.base (any DAG)": "import airflow.timetables.base",
    "the provider's operator classes": "import inexchange.operators.stages, inexchange.operators.submit, "
                                       "inexchange.sensors.delivery",
}
CONSTRUCTION = "the DAG's construction"
#: not imported by the DAG file: what the same tasks would cost as ``@task`` functions (import only)
TASK_DECORATOR = {"@task (not used), its import": "from airflow.sdk import task"}

BREAKDOWN = """
import importlib.util, json, time
import airflow.sdk
parts = {{}}
for name, statement in {parts!r}.items():
    started = time.perf_counter()
    exec(statement)
    parts[name] = time.perf_counter() - started
spec = importlib.util.spec_from_file_location("inexchange_dispatch_dag", {path!r})
module = importlib.util.module_from_spec(spec)
started = time.perf_counter()
spec.loader.exec_module(module)
parts[{construction!r}] = time.perf_counter() - started
print(json.dumps(parts))
"""


def run(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def row(name: str, values: list[float]) -> str:
    return f"{name:<38}{statistics.median(values):>10.1f}{min(values):>9.1f}{max(values):>9.1f}"


def main(samples: int) -> None:
    home = tempfile.mkdtemp(prefix="bench-parse-airflow-")
    env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db"}
    whole = SAMPLE.format(path=str(DAG_FILE))
    parts = BREAKDOWN.format(parts=PARTS, path=str(DAG_FILE), construction=CONSTRUCTION)
    decorator = BREAKDOWN.format(parts=TASK_DECORATOR, path=str(DAG_FILE), construction=CONSTRUCTION)
    run(whole, env)  # warm the file system cache (and write bytecode, when Python may)
    runs = [run(whole, env) for _ in range(samples)]
    breakdown = [run(parts, env) for _ in range(samples)]
    task_import = [run(decorator, env) for _ in range(samples)]

    bytecode = "off (PYTHONDONTWRITEBYTECODE is set: compiled in every sample)" if env.get(
        "PYTHONDONTWRITEBYTECODE") else "on"
    print(f"{samples} fresh interpreters; DAG with {runs[0]['tasks']} tasks; bytecode cache {bytecode}")
    print(f"{'part':<38}{'median ms':>10}{'min ms':>9}{'max ms':>9}")
    for clock, label in ((0, "wall"), (1, "CPU")):
        sdk = [r["sdk"][clock] * 1000 for r in runs]
        dag = [r["dag_file"][clock] * 1000 for r in runs]
        print(row(f"import airflow.sdk (baseline), {label}", sdk))
        print(row(f"the DAG file beyond it, {label}", dag))
    print(f"\nthe DAG file, by part (wall; {samples} more fresh interpreters):")
    for name in [*PARTS, CONSTRUCTION]:
        print(row(f"  {name}", [b[name] * 1000 for b in breakdown]))
    print(row("  sum", [sum(b.values()) * 1000 for b in breakdown]))
    for name in TASK_DECORATOR:
        print(row(name, [t[name] * 1000 for t in task_import]))

    wall = statistics.median(r["dag_file"][0] * 1000 for r in runs)
    print(f"\nDAG file: {wall:.0f} ms beyond the baseline "
          f"({wall / statistics.median(r['sdk'][0] * 1000 for r in runs):.2f}x of it); target <= 50 ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
