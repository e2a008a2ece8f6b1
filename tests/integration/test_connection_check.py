"""Checking the InExchange connection before a run, against the simulator over loopback: the hook's
``test_connection`` (the connection form's "Test" button) and ``airflow connections test``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.integration

API_KEY = "check-key"


@pytest.fixture
def simulator() -> Iterator[Any]:
    from inexchange_devkit.simulator.testing import run_simulator

    with run_simulator(api_key=API_KEY) as sim:
        yield sim


def _conn(simulator: Any, key: str) -> str:
    return json.dumps({"conn_type": "inexchange", "host": simulator.base_url, "password": key,
                       "extra": {"erp_id": "check-erp", "portal_url": "https://portal.example/"}})


def test_a_good_key_creates_and_revokes_one_token(simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange.hooks.inexchange import InExchangeHook

    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_CHECK", _conn(simulator, API_KEY))

    ok, message = InExchangeHook(inexchange_conn_id="inexchange_check").test_connection()

    assert ok, message
    assert "accepted the API key and ERP id 'check-erp'" in message and API_KEY not in message
    tokens = simulator.tokens()
    assert len(tokens) == 1 and tokens[0]["erpId"] == "check-erp" and tokens[0]["revoked"], tokens


def test_a_wrong_key_is_reported_without_the_key(simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange.hooks.inexchange import InExchangeHook

    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_CHECK", _conn(simulator, "wrong-key-123"))

    ok, message = InExchangeHook(inexchange_conn_id="inexchange_check").test_connection()

    assert not ok
    assert "did not accept the connection 'inexchange_check'" in message and "401" in message, message
    assert "wrong-key-123" not in message
    assert not simulator.tokens()


@pytest.mark.parametrize(("key", "expected"), [(API_KEY, "Connection success!"), ("wrong-key-123", "failed")])
def test_airflow_connections_test(simulator: Any, key: str, expected: str) -> None:
    env = {**os.environ, "AIRFLOW_CONN_INEXCHANGE_CHECK": _conn(simulator, key),
           "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}

    checked = subprocess.run([sys.executable, "-m", "airflow", "connections", "test", "inexchange_check"],
                             env=env, capture_output=True, text=True, timeout=180)

    output = checked.stdout + checked.stderr
    assert expected in output, output[-3000:]
    assert key not in output
