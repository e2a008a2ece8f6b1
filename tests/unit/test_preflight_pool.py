"""The preflight's pool check against replies shaped as Airflow 3's REST API documents them, stubbed at
the HTTP edge: ``POST /auth/token`` (simple and FAB auth managers) answers 201 with ``access_token``;
``GET /api/v2/pools/{pool_name}`` answers a PoolResponse (name, slots, description, include_deferred,
occupied/running/queued/scheduled/open/deferred slots) or 404 with ``detail``. The same check runs
against a real api-server in tests/integration/test_pool_check_api_server.py."""

from __future__ import annotations

import json
from functools import partial

import httpx
import pytest
import respx

from inexchange.operators.airflow_reads import airflow_api_connection
from inexchange.preflight import ApiConnection, PreflightFailed, airflow_api_url, pool_problems, preflight

API = "http://airflow.example:8080/"
LOGIN = {"conn_type": "http", "host": API, "login": "reader", "password": "s3cret-pw"}


def pool_reply(name: str = "inexchange_api", slots: int = 4) -> dict:
    return {"name": name, "slots": slots, "description": "InExchange API", "include_deferred": False,
            "occupied_slots": 1, "running_slots": 1, "queued_slots": 0, "scheduled_slots": 0,
            "open_slots": slots - 1, "deferred_slots": 0}


@pytest.fixture
def rest(monkeypatch: pytest.MonkeyPatch) -> respx.MockRouter:
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps(LOGIN))
    with respx.mock(base_url=API, assert_all_called=False) as router:
        yield router


def check(pool: str | None) -> list[str]:
    """The pool check as the preflight task makes it: the connection ``airflow_api`` read by the operator layer."""
    return pool_problems(pool, partial(airflow_api_connection, "airflow_api", pool or ""))


def token(router: respx.MockRouter) -> respx.Route:
    return router.post("auth/token").mock(return_value=httpx.Response(201, json={"access_token": "jwt-1"}))


def test_no_pool_named_is_nothing_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AIRFLOW_API", raising=False)
    assert check(None) == [] and check("") == []

    def unread() -> ApiConnection:
        raise AssertionError("the connection is read only when a pool is named")

    assert pool_problems(None, unread) == [] and pool_problems("", unread) == []


def test_the_check_takes_the_connections_fields() -> None:
    with respx.mock(base_url=API) as router:
        login = token(router)
        router.get("api/v2/pools/inexchange_api").mock(return_value=httpx.Response(200, json=pool_reply()))
        connection = ApiConnection(conn_id="api_of_airflow", host="airflow.example", port=8080, login="reader",
                                   password="s3cret-pw")
        assert pool_problems("inexchange_api", lambda: connection) == []
    assert json.loads(login.calls.last.request.content) == {"username": "reader", "password": "s3cret-pw"}
    assert "s3cret-pw" not in repr(connection)


def test_a_pool_with_slots_is_read_with_the_users_token(rest: respx.MockRouter) -> None:
    login = token(rest)
    pool = rest.get("api/v2/pools/inexchange_api").mock(return_value=httpx.Response(200, json=pool_reply()))
    assert check("inexchange_api") == []
    assert json.loads(login.calls.last.request.content) == {"username": "reader", "password": "s3cret-pw"}
    assert pool.calls.last.request.headers["Authorization"] == "Bearer jwt-1"


def test_fields_the_check_does_not_use_may_be_missing_or_new(rest: respx.MockRouter) -> None:
    rest.post("auth/token").mock(return_value=httpx.Response(201, json={"access_token": "jwt-1", "extra": [1]}))
    rest.get("api/v2/pools/inexchange_api").mock(
        return_value=httpx.Response(200, json={"slots": -1, "team_name": None, "unknown": {"x": 1}}))
    assert check("inexchange_api") == []


def test_a_missing_pool_says_how_to_create_it(rest: respx.MockRouter) -> None:
    token(rest)
    rest.get("api/v2/pools/inexchange_api").mock(return_value=httpx.Response(
        404, json={"detail": "The Pool with name: `inexchange_api` was not found"}))
    (problem,) = check("inexchange_api")
    assert problem.startswith("the pool 'inexchange_api' named in [inexchange] api_pool does not exist")
    assert "airflow pools set inexchange_api 4" in problem and "or unset [inexchange] api_pool" in problem


def test_a_pool_without_slots_is_a_problem(rest: respx.MockRouter) -> None:
    token(rest)
    rest.get("api/v2/pools/inexchange_api").mock(return_value=httpx.Response(200, json=pool_reply(slots=0)))
    (problem,) = check("inexchange_api")
    assert "has no slots, so the submit tasks would never run" in problem


def test_a_pool_name_is_one_path_segment(rest: respx.MockRouter) -> None:
    token(rest)
    pool = rest.get(url__regex=r".*/api/v2/pools/.*").mock(
        return_value=httpx.Response(200, json=pool_reply("api pool/1")))
    assert check("api pool/1") == []
    assert pool.calls.last.request.url.raw_path == b"/api/v2/pools/api%20pool%2F1"


def test_a_refused_login_is_a_problem_without_the_password(rest: respx.MockRouter) -> None:
    rest.post("auth/token").mock(return_value=httpx.Response(401, json={"detail": "Invalid credentials"}))
    (problem,) = check("inexchange_api")
    assert problem.startswith("connection 'airflow_api' (Airflow's REST API at http://airflow.example:8080/) gave "
                              "no token (HTTP 401)")
    assert "s3cret-pw" not in problem


def test_a_user_who_may_not_read_pools_is_a_problem(rest: respx.MockRouter) -> None:
    token(rest)
    rest.get("api/v2/pools/inexchange_api").mock(return_value=httpx.Response(403, json={"detail": "Forbidden"}))
    (problem,) = check("inexchange_api")
    assert "the user reader may not read pools (HTTP 403)" in problem


def test_without_a_login_the_token_is_asked_for_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # an api-server with simple_auth_manager_all_admins grants GET /auth/token
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps({"conn_type": "http", "host": "airflow.example",
                                                               "port": 8080}))
    with respx.mock(base_url=API) as router:
        login = router.get("auth/token").mock(return_value=httpx.Response(201, json={"access_token": "jwt-2"}))
        router.get("api/v2/pools/inexchange_api").mock(return_value=httpx.Response(200, json=pool_reply()))
        assert check("inexchange_api") == []
    assert login.call_count == 1


def test_a_server_that_is_not_airflows_api_is_a_problem(rest: respx.MockRouter) -> None:
    rest.post("auth/token").mock(return_value=httpx.Response(200, text="<html>portal</html>"))
    (problem,) = check("inexchange_api")
    assert "did not answer as Airflow's REST API (HTTP 200 without 'access_token')" in problem


def test_an_unreachable_api_server_is_a_problem(rest: respx.MockRouter) -> None:
    rest.post("auth/token").mock(side_effect=httpx.ConnectError("Connection refused"))
    (problem,) = check("inexchange_api")
    assert "cannot be reached (ConnectError: Connection refused): set its host to the api-server's URL" in problem


def test_an_api_server_failing_is_an_outage_to_retry(rest: respx.MockRouter) -> None:
    token(rest)
    rest.get("api/v2/pools/inexchange_api").mock(return_value=httpx.Response(503, text="starting"))
    with pytest.raises(httpx.HTTPStatusError):
        check("inexchange_api")


def test_a_missing_connection_says_what_to_define(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AIRFLOW_API", raising=False)
    (problem,) = check("inexchange_api")
    assert problem.startswith("[inexchange] api_pool names the pool 'inexchange_api', which a task can read only "
                              "through Airflow's REST API: define the connection 'airflow_api'")


@pytest.mark.parametrize(("host", "schema", "port", "url"), [
    ("http://airflow-apiserver:8080", None, None, "http://airflow-apiserver:8080/"),
    ("https://airflow.example/airflow/", None, None, "https://airflow.example/airflow/"),
    ("airflow.example", "https", 8443, "https://airflow.example:8443/"),
    ("airflow.example", "public", None, "http://airflow.example/"),
    ("http://airflow.example", None, 8080, "http://airflow.example:8080/"),
    ("", None, None, ""),
])
def test_the_base_url_comes_from_the_connections_fields(host: str, schema: str | None, port: int | None,
                                                        url: str) -> None:
    assert airflow_api_url(host, schema, port) == url


def test_a_missing_pool_is_named_with_the_other_problems(rest: respx.MockRouter,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    token(rest)
    rest.get("api/v2/pools/inexchange_api").mock(return_value=httpx.Response(404, json={"detail": "not found"}))
    monkeypatch.delenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", raising=False)
    with pytest.raises(PreflightFailed) as failed:
        preflight(erp_conn_id="erp_nowhere", reporting_conn_id="inexchange_reporting",
                  inexchange_conn_id="inexchange_nowhere", read_seller=lambda: {"name": "x"}, pool="inexchange_api",
                  read_api_connection=partial(airflow_api_connection, "airflow_api", "inexchange_api"))
    problems = failed.value.problems
    assert any(p.startswith("the pool 'inexchange_api' named in [inexchange] api_pool does not exist")
               for p in problems), problems
    assert len(problems) >= 5
