"""Set-up of the contract tests: the ``inexchange`` connection, the stubbed API and the reply fixtures.

The reply fixtures (``*.json`` beside this file) are whole HTTP reply bodies written from the
documented facts about InExchange's API (see README.md), not from what the client expects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from inexchange.hooks.inexchange import InExchangeHook
from dispatch_testing.reply_fixtures import API_BASE, API_KEY, ERP_ID, load


@pytest.fixture
def inexchange_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    """Define ``inexchange_default`` through its ``AIRFLOW_CONN_*`` variable; return the conn id."""
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": API_BASE, "password": API_KEY, "extra": {"erp_id": ERP_ID},
    }))
    return "inexchange_default"


@pytest.fixture
def api(inexchange_conn: str) -> Iterator[respx.MockRouter]:
    """Stub the API; ``clientTokens/create`` answers the ``clientTokens_create`` fixture.

    Routes ``create_token`` and ``revoke_token`` exist; tests add the endpoints they call. Any
    request without a route fails.
    """
    with respx.mock(base_url=API_BASE, assert_all_called=False, assert_all_mocked=True, using="httpx") as router:
        router.post("clientTokens/create", name="create_token").mock(
            return_value=httpx.Response(200, json=load("clientTokens_create"))
        )
        router.post("clientTokens/revoke", name="revoke_token").mock(return_value=httpx.Response(200))
        yield router


@pytest.fixture
def make_hook(inexchange_conn: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., InExchangeHook]:
    """Build a hook whose retry waits are recorded (in ``hook.waits``) instead of slept."""

    def make(**kwargs: Any) -> InExchangeHook:
        hook = InExchangeHook(inexchange_conn, **kwargs)
        waits: list[float] = []
        monkeypatch.setattr(hook, "_sleep", waits.append)
        hook.waits = waits  # type: ignore[attr-defined]
        return hook

    return make


@pytest.fixture
def hook(api: respx.MockRouter, make_hook: Callable[..., InExchangeHook]) -> Iterator[InExchangeHook]:
    """A hook with default settings, closed (its token revoked on the stub) while the stub is on."""
    made = make_hook()
    yield made
    made.close()
