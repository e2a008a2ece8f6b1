"""Deployment helpers for Airflow's configuration.

:func:`hostname` is meant for ``[core] hostname_callable``
(``AIRFLOW__CORE__HOSTNAME_CALLABLE=inexchange.deploy.hostname``): several Celery workers on one
machine then record different host names in ``task_instance.hostname`` (the task processes report
it through the Execution API), so the UI and the metadata database show which worker ran a task.
"""

from __future__ import annotations

import os
import socket

#: environment variable holding this process's name as recorded by Airflow
HOSTNAME_ENV = "INEXCHANGE_HOSTNAME"


def hostname() -> str:
    """The value of ``$INEXCHANGE_HOSTNAME``, or the machine's fully qualified name when it is unset or blank."""
    name = os.environ.get(HOSTNAME_ENV, "").strip()
    return name or socket.getfqdn()
