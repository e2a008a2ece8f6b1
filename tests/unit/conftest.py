"""Fixtures of the provider's unit tests: the ``inexchange`` connection and the stubbed API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx

from dispatch_testing.unit_fixtures import API_BASE, TOKEN, connection_json


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio, as Airflow's triggerer does."""
    return "asyncio"


@pytest.fixture
def inexchange_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    """Define ``inexchange_default`` through its ``AIRFLOW_CONN_*`` variable; return the conn id."""
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", connection_json())
    return "inexchange_default"


@pytest.fixture
def api(inexchange_conn: str) -> Iterator[respx.MockRouter]:
    """Stub InExchange's API with the client-token routes; tests add the endpoints they call.

    Routes are named: ``create_token`` and ``revoke_token``. Any request without a route fails.
    """
    with respx.mock(base_url=API_BASE, assert_all_called=False, assert_all_mocked=True, using="httpx") as router:
        router.post("clientTokens/create", name="create_token").mock(
            return_value=httpx.Response(200, json={"token": TOKEN})
        )
        router.post("clientTokens/revoke", name="revoke_token").mock(return_value=httpx.Response(200))
        yield router
