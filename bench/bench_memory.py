"""Peak memory of the extract, validate and report stages at two day sizes: chunked, against one chunk.

For each size N (default 11,000 and 33,000 posted invoices, all dated one day; about 84 % of them
are InExchange ones, so both days hold more than a chunk) a demo ERP is generated
into a SQLite file. The three stages (``inexchange.pipeline.extract``, ``validate`` and ``report``, as
the DAG's tasks call them) then run on a fresh ledger (a SQLite file of its own), in two modes:

- chunked: ``pipeline.CHUNK_SIZE`` as shipped;
- one chunk (the baseline): ``CHUNK_SIZE`` above the day's size, so each stage holds the whole day at
  once, as the stages did before they worked in chunks.

Each mode runs twice on fresh ledgers: once without tracing, for invoices per second of CPU time (this
process's, so other work on a shared machine counts less), then under tracemalloc, for the peak of
the memory the stage's Python objects take (pandas and numpy buffers included; SQLite's own cache is
not traced; statements the ledger caches once a process are built by the timed run before). Prints MiB and invoices/s per stage and mode, and per
stage the ratio of the peaks between the two sizes: when the larger day holds several chunks, a ratio
near 1 says the stage's memory is bounded by the chunk, not by the day; the one-chunk baseline grows
with the day. Usage: python bench/bench_memory.py [N ...] (default 11000 33000).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

_HOME = Path(tempfile.mkdtemp(prefix="bench-memory-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(_HOME / "dags"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)

from sqlalchemy import create_engine  # noqa: E402

DAY = date(2026, 11, 16)
STAGES = ("extract", "validate", "report")
MIB = 1024 * 1024


def scope() -> Any:
    """The day's run: invoices dated :data:`DAY`."""
    from inexchange.ledger import RunScope

    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC) - timedelta(hours=1)
    return RunScope(
        dag_run_id=f"scheduled__{DAY.isoformat()}",
        start=start,
        end=start + timedelta(days=1),
        start_date=DAY,
        end_date=DAY + timedelta(days=1),
    )


def generate_erp(path: Path, n: int) -> None:
    """A demo ERP of ``n`` posted invoices dated :data:`DAY`, the connection ``erp_default`` on it."""
    from inexchange_devkit.erpgen import generate

    engine = create_engine(f"sqlite:///{path}")
    generate(engine, seed=5, customers=max(20, n // 20), invoices=n, start_date=DAY, days=1, drafts=0)
    engine.dispose()
    os.environ["AIRFLOW_CONN_ERP_DEFAULT"] = json.dumps({"conn_type": "sqlite", "host": str(path)})


def stage_calls() -> dict[str, Callable[[], Any]]:
    """The three stages as the DAG's tasks call them, on the connections ``erp_default`` and ``ledger``."""
    from inexchange import pipeline

    connections = {"erp_conn_id": "erp_default", "reporting_conn_id": "ledger"}
    return {
        "extract": lambda: pipeline.extract(scope(), **connections),
        "validate": lambda: pipeline.validate(scope(), **connections),
        "report": lambda: pipeline.report(scope(), reporting_conn_id="ledger", fail_on_action_needed=False),
    }


def run_day(ledger: Path, chunk: int, *, traced: bool) -> tuple[dict[str, float], int]:
    """Run the three stages on a fresh ledger file with ``CHUNK_SIZE`` = ``chunk``.

    Returns per stage its peak traced memory in bytes (``traced``) or its seconds, and the number of
    invoices the extract put in the ledger.
    """
    from inexchange import pipeline

    os.environ["AIRFLOW_CONN_LEDGER"] = json.dumps({"conn_type": "sqlite", "host": str(ledger)})
    shipped, pipeline.CHUNK_SIZE = pipeline.CHUNK_SIZE, chunk
    figures: dict[str, float] = {}
    extracted = 0
    try:
        for stage, call in stage_calls().items():
            gc.collect()
            if traced:
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
            started = time.process_time()
            result = call()
            seconds = time.process_time() - started
            if traced:
                figures[stage] = tracemalloc.get_traced_memory()[1] - before
                tracemalloc.stop()
            else:
                figures[stage] = seconds
            if stage == "extract":
                extracted = int(result["extracted"])
    finally:
        pipeline.CHUNK_SIZE = shipped
    return figures, extracted


def measure(tmp: Path, n: int) -> dict[str, dict[str, dict[str, float]]]:
    """Peak MiB and invoices/s per mode and stage for a day of ``n`` posted invoices; prints them."""
    from inexchange import pipeline

    generate_erp(tmp / f"erp-{n}.db", n)
    modes = {"chunked": pipeline.CHUNK_SIZE, "one chunk": n + 1}
    results: dict[str, dict[str, dict[str, float]]] = {}
    extracted = 0
    for mode, chunk in modes.items():
        name = mode.replace(" ", "-")
        # the timed run first: it also builds the statements the ledger caches for its batches of rows
        # (built once a process), so the traced run's figures are the stage's own
        seconds, _ = run_day(tmp / f"ledger-{n}-{name}-timed.db", chunk, traced=False)
        peaks, extracted = run_day(tmp / f"ledger-{n}-{name}-traced.db", chunk, traced=True)
        results[mode] = {
            stage: {"mib": peaks[stage] / MIB, "per_second": extracted / seconds[stage]} for stage in STAGES
        }
    print(
        f"\n{n:,} posted invoices, {extracted:,} of them InExchange ones in the ledger; chunk {pipeline.CHUNK_SIZE:,}"
    )
    print("stage       peak MiB: chunked  one chunk   invoices/CPU s: chunked  one chunk   CPU per invoice x")
    for stage in STAGES:
        chunked, whole = results["chunked"][stage], results["one chunk"][stage]
        print(
            f"{stage:<10}{chunked['mib']:>18.1f}{whole['mib']:>11.1f}"
            f"{chunked['per_second']:>25,.0f}{whole['per_second']:>11,.0f}"
            f"{whole['per_second'] / chunked['per_second']:>20.2f}"
        )
    return results


def main(sizes: list[int]) -> None:
    logging.disable(logging.WARNING)  # the stages log every rejected invoice; the figures are what counts
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        # warm-up, outside the figures: imports, the Airflow connection look-up, the validation's rule
        # tables, and the statements the ledger builds once a process for its batches of 500 rows
        generate_erp(tmp / "erp-warm-up.db", 1_500)
        run_day(tmp / "ledger-warm-up.db", 1_000, traced=False)
        results = {n: measure(tmp, n) for n in sizes}
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"\npeak memory at {large:,} against {small:,} invoices ({large / small:.0f} times the day)")
        print(f"{'stage':<10}{'chunked':>10}{'one chunk':>12}")
        for stage in STAGES:
            ratios = [
                results[large][mode][stage]["mib"] / results[small][mode][stage]["mib"] for mode in results[small]
            ]
            print(f"{stage:<10}{ratios[0]:>10.2f}{ratios[1]:>12.2f}")
    print(f"\nbench time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [11_000, 33_000])
