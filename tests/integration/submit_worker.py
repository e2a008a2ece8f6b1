"""Run the submit task in its own process, for tests that kill it: ``python submit_worker.py SPEC``.

``SPEC`` is JSON: ``run_id``, ``start`` (ISO data interval start), ``seller`` and optional operator
arguments (``concurrency``, ``settle_s``). Connections come from the ``AIRFLOW_CONN_*`` variables
the test sets. Prints the task's counts as JSON when it finishes.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import pendulum


def main(spec: dict) -> None:
    from inexchange.operators.submit import SubmitInvoicesOperator

    start = pendulum.parse(spec["start"])
    context = {"run_id": spec["run_id"], "data_interval_start": start, "data_interval_end": start.add(days=1)}
    operator = SubmitInvoicesOperator(
        task_id="submit", erp_conn_id="erp_default", reporting_conn_id="erp_default", seller=spec["seller"],
        concurrency=spec.get("concurrency", 8), settle_time=timedelta(seconds=spec.get("settle_s", 0)),
    )
    print(json.dumps(operator.execute(context)), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
