"""Fixtures of the provider's unit tests: the ``inexchange`` connection, the stubbed API, and a ledger's
database on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
from dispatch_testing.support import pg_connect_args, pg_url
from dispatch_testing.unit_fixtures import API_BASE, TOKEN, connection_json
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database for a ledger: a SQLite file, and a fresh schema of the PostgreSQL test database."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        engine = create_engine(pg_url(), connect_args=pg_connect_args(request.getfixturevalue("pg_schema")))
    yield engine
    engine.dispose()
