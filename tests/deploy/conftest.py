"""Fixtures of the deployment tests: clean virtual environments made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatch_testing.deployment import LOCK, make_venv


@pytest.fixture(scope="session")
def lock_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a clean virtual environment holding Airflow and the lock, and nothing of this
    project: what a team's Airflow has before it adds the project's folders."""
    return make_venv(tmp_path_factory.mktemp("lock-venv") / "venv", "-r", str(LOCK))
