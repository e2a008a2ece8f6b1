"""Property-based fuzzing of every endpoint of InExchangeHook, sync and async, against hostile replies.

Each example gives one route a sequence of hostile answers (replies of any status, header and body,
or transport errors; the last one repeated) and calls the endpoint through the hook's real request
path. HTTP is stubbed at the edge with respx, which serves the async clients too (it replaces the
transport httpx picks, the aiohttp one included); the transports themselves are fuzzed on real
sockets in ``tests/integration/test_fuzz_wire.py``. Properties:

- the call returns a well-typed result, or raises an :class:`InExchangeError`, never anything else;
- a result comes only from a reply that carries it (a 2xx, not 206, whose body or ``Location`` has
  the documented shape; for ``find_by_erp_id`` None only from a 404 that is InExchange's);
- a send is sent again only after a 429, a 401 (the token is renewed) or a connect error; an
  idempotent call makes at most ``max_attempts`` attempts;
- the waits between attempts are finite and at most ``max_backoff``;
- no error text or repr (nor anything chained to it) holds the API key or the token;
- nothing hangs (a route asked more than 200 times fails the example).

``INEXCHANGE_FUZZ_EXAMPLES`` sets the examples per property (default 50).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from dataclasses import dataclass
from typing import Any

import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch_testing.unit_fixtures import API_BASE, API_KEY, TOKEN
from dispatch_testing.hostile import (
    ENDPOINTS,
    Endpoint,
    Failure,
    Reply,
    Script,
    body_object,
    chained_texts,
    check_send,
    replies,
    sequences,
)
from inexchange.api import OutboundPage
from inexchange.exceptions import InExchangeError
from inexchange.hooks.inexchange import InExchangeHook

pytestmark = pytest.mark.timeout(600)

MAX_ATTEMPTS = 3
MAX_BACKOFF = 2.0
FUZZ = settings(
    max_examples=int(os.environ.get("INEXCHANGE_FUZZ_EXAMPLES", "50")),
    deadline=None,  # the machine is shared: hangs are caught by the request limit and the test timeout
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---- running one example ---------------------------------------------------------------------------
@dataclass
class Outcome:
    result: Any = None
    error: InExchangeError | None = None
    waits: list[float] | None = None


#: one TLS context for the examples' hooks: loading the CA bundle is most of a new hook's cost, and no TLS happens here
TLS = ssl.create_default_context()


def perform(endpoint: Endpoint, mode: str, routes: dict[str, Script]) -> Outcome:
    """Call ``endpoint`` on a new hook whose routes answer from ``routes`` (path -> script)."""
    hook = InExchangeHook(max_attempts=MAX_ATTEMPTS, backoff=0.001, max_backoff=MAX_BACKOFF)
    hook.__dict__["_ssl_context"] = TLS  # the cached property, filled in advance
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    hook._sleep = waits.append  # type: ignore[method-assign]
    hook._asleep = asleep  # type: ignore[method-assign]
    outcome = Outcome(waits=waits)
    with respx.mock(assert_all_called=False, assert_all_mocked=True, using="httpx") as router:
        router.post(f"{API_BASE}clientTokens/revoke").respond(200)
        for path, script in routes.items():
            method = endpoint.method if path == endpoint.path else "POST"
            router.route(method=method, url=f"{API_BASE}{path}").mock(side_effect=script)
        try:
            if mode == "sync":
                try:
                    outcome.result = endpoint.call(hook)
                finally:
                    hook.close()
            else:
                async def run() -> Any:
                    try:
                        return await endpoint.acall(hook)
                    finally:
                        await hook.aclose()

                outcome.result = asyncio.run(run())
        except InExchangeError as exc:  # anything else fails the example
            outcome.error = exc
    return outcome


def check_common(outcome: Outcome, secrets: tuple[str, ...] = (API_KEY, TOKEN)) -> None:
    """Waits within bounds; no secret the hook holds in the error, its repr or anything chained to it."""
    assert outcome.waits is not None
    for wait in outcome.waits:
        assert 0 <= wait <= MAX_BACKOFF, outcome.waits
    if outcome.error is not None:
        texts = chained_texts(outcome.error)
        assert not any(secret in texts for secret in secrets), texts


def check_attempts(endpoint: Endpoint, script: Script) -> None:
    """Sends only after an answer proving the request was not processed; idempotent calls within max_attempts."""
    answers = [answer for _, answer in script.received]
    renewals = sum(isinstance(a, Reply) and a.status == 401 for a in answers)
    if not endpoint.pages:
        assert len(answers) <= MAX_ATTEMPTS + renewals
    if not endpoint.idempotent:
        for before in answers[:-1]:
            assert (isinstance(before, Reply) and before.status in (401, 429)) or (
                isinstance(before, Failure) and before.never_sent), f"sent again after {before!r}"


modes = pytest.mark.parametrize("mode", ["sync", "async"])


@modes
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
@FUZZ
@given(answers=sequences())
def test_an_endpoint_survives_hostile_replies(inexchange_conn: str, endpoint: Endpoint, mode: str,
                                              answers: list[Reply | Failure]) -> None:
    script = Script(answers)
    token = Script([Reply(200, (("Content-Type", b"application/json"),), json.dumps({"token": TOKEN}).encode())])
    outcome = perform(endpoint, mode, {"clientTokens/create": token, endpoint.path: script})

    check_common(outcome)
    check_attempts(endpoint, script)
    assert script.received, "the endpoint was never called"
    if outcome.error is None:
        endpoint.check(outcome.result, script.received[-1][1], script)
    for request, _ in script.received:
        assert request.headers["ClientToken"] == TOKEN
        assert "APIKey" not in request.headers


@modes
@FUZZ
@given(answers=sequences())
def test_client_token_creation_survives_hostile_replies(inexchange_conn: str, mode: str,
                                                        answers: list[Reply | Failure]) -> None:
    """The token reply is read inside the retried attempt: a usable token, or an InExchangeError; a
    token only from a reply that carries one, and at most max_attempts creations."""
    created = Script(answers)
    page = Reply(200, (), json.dumps({"documents": [], "totalCount": 0}).encode())
    listed = Script([page])
    list_endpoint = next(e for e in ENDPOINTS if e.name == "list_outbound")
    outcome = perform(list_endpoint, mode, {"clientTokens/create": created, "documents/outbound/list": listed})

    check_common(outcome, secrets=(API_KEY,))  # no token is known yet: TOKEN is any text here
    assert 1 <= len(created.received) <= MAX_ATTEMPTS
    for request, _ in created.received:
        assert request.headers["APIKey"] == API_KEY
    if outcome.error is not None:
        assert listed.received == []
        return
    assert isinstance(outcome.result, OutboundPage)
    reply = created.received[-1][1]
    token = body_object(reply).get("token")
    assert isinstance(token, str) and token.isascii() and token.isprintable() and " " not in token
    assert [request.headers["ClientToken"] for request, _ in listed.received] == [token]


@modes
@FUZZ
@given(reply=replies(status=st.sampled_from([200, 201, 202]), encoded=False))
def test_a_send_reply_names_its_document_or_is_reconciled(inexchange_conn: str, mode: str, reply: Reply) -> None:
    """Whatever a 2xx to a send carries, the send is made once: its id, or an error that is not permanent."""
    script = Script([reply])
    token = Script([Reply(200, (), json.dumps({"token": TOKEN}).encode())])
    send = next(e for e in ENDPOINTS if e.name == "send_outbound")
    outcome = perform(send, mode, {"clientTokens/create": token, send.path: script})

    check_common(outcome)
    assert len(script.received) == 1
    if outcome.error is None:
        check_send(outcome.result, reply, script)
    else:  # the caller looks the invoice up; an error marked permanent would reject it instead
        assert not getattr(outcome.error, "permanent", False)
