"""The preflight's pool check against a real ``airflow api-server`` (simple auth manager, an admin and a
viewer with passwords, SQLite metadata database of its own): the pool is read through Airflow's REST
API as the viewer, a missing pool and a wrong password are named, and the connection's password never
appears in a problem. Every scheduler test's stack checks its pool the same way, through an
all-admins api-server (``inexchange_devkit.services.airflow_env``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial

import httpx
import pytest

from inexchange_devkit.services import AirflowStack, airflow_env, free_port

from inexchange.operators.airflow_reads import airflow_api_connection
from inexchange.preflight import pool_problems

pytestmark = [pytest.mark.system, pytest.mark.integration, pytest.mark.timeout(300)]

ADMIN, VIEWER = ("admin", "admin-pw-1"), ("reader", "reader-pw-7")


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("preflight-pool") / "home"
    home.mkdir()
    port = free_port()
    passwords = home / "users.json"
    passwords.write_text(json.dumps(dict([ADMIN, VIEWER])), encoding="utf-8")
    env = airflow_env(airflow_home=home, sql_alchemy_conn=f"sqlite:///{home / 'airflow.db'}", api_port=port,
                      login=ADMIN, extra={
                          "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN[0]}:admin,{VIEWER[0]}:viewer",
                          "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                      })
    stack = AirflowStack(env, home / "component-logs")
    url = f"http://127.0.0.1:{port}/"
    try:
        stack.cli("db", "migrate", timeout=300)
        stack.cli("pools", "set", "inexchange_api", "3", "InExchange API")
        stack.cli("pools", "set", "closed_pool", "0", "no slots")
        stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
        stack.wait_for("the api-server", lambda: _healthy(url), timeout=120)
        yield url
    finally:
        stack.stop_all()


def _healthy(url: str) -> bool | None:
    try:
        return httpx.get(url + "api/v2/monitor/health", timeout=2.0).status_code == 200 or None
    except httpx.HTTPError:
        return None


def _connect(monkeypatch: pytest.MonkeyPatch, url: str, user: str, password: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps(
        {"conn_type": "http", "host": url, "login": user, "password": password}))


def check(pool: str) -> list[str]:
    """The pool check as the preflight task makes it: the connection ``airflow_api`` read by the operator layer."""
    return pool_problems(pool, partial(airflow_api_connection, "airflow_api", pool))


def test_a_viewer_reads_the_pool(api_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _connect(monkeypatch, api_url, *VIEWER)
    assert check("inexchange_api") == []


def test_a_pool_that_does_not_exist_is_named(api_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _connect(monkeypatch, api_url, *VIEWER)
    (problem,) = check("inexchange_apj")
    assert problem.startswith("the pool 'inexchange_apj' named in [inexchange] api_pool does not exist")


def test_a_pool_without_slots_is_named(api_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _connect(monkeypatch, api_url, *ADMIN)
    (problem,) = check("closed_pool")
    assert "has no slots" in problem


def test_a_wrong_password_is_named_without_it(api_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _connect(monkeypatch, api_url, VIEWER[0], "wrong-pw-3")
    (problem,) = check("inexchange_api")
    assert "gave no token (HTTP 401)" in problem and "wrong-pw-3" not in problem


def test_an_api_server_that_is_not_there_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    _connect(monkeypatch, url, *VIEWER)
    (problem,) = check("inexchange_api")
    assert "cannot be reached (ConnectError" in problem and url in problem
