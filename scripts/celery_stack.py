"""``make celery-up`` / ``make celery-down``: the dispatch DAG on a native CeleryExecutor stack with the demo's data.

::

    python scripts/celery_stack.py up       # start everything, wait until it is ready
    python scripts/celery_stack.py status   # what runs, and where
    python scripts/celery_stack.py down     # stop everything ``up`` started

The stack is :func:`inexchange_devkit.services.celery_up`: the InExchange simulator, ``airflow
api-server``, ``scheduler`` (CeleryExecutor), ``dag-processor``, ``triggerer`` and two Celery workers,
each a process group of its own (pid files in ``.celery/run/``, output in ``.celery/logs/``), on the
machine's PostgreSQL (databases ``inexchange_airflow`` and ``inexchange_reporting``, created when
missing) and Redis DB 5. This script gives it the demo's seller, API key and ERP (``.celery/erp.db``,
generated like ``make demo``'s on the first ``up``). ``INEXCHANGE_CELERY_*`` variables point it
elsewhere (:meth:`inexchange_devkit.services.CelerySettings.from_env`).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_env  # noqa: E402
from inexchange_devkit import services  # noqa: E402


def demo_settings() -> services.CelerySettings:
    """The stack's settings with the demo's seller, API key and ERP, kept in ``.celery/``."""
    return services.CelerySettings(state_dir=demo_env.ROOT / ".celery", seller=dict(demo_env.DEMO_SELLER),
                                   api_key=demo_env.API_KEY, erp_command=demo_env.erp_command)


if __name__ == "__main__":
    sys.exit(services.main(base=demo_settings(), notes=(
        f"Trigger {services.DISPATCH_DAG_ID} for a day between {demo_env.DEMO_START_DATE} and the "
        f"{demo_env.DEMO_DAYS - 1} days after it.")))
