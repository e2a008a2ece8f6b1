"""Tests of InExchangeHook against a stubbed InExchange API (respx)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
import respx
from airflow.sdk.exceptions import AirflowNotFoundException

from dispatch_testing.unit_fixtures import (
    API_KEY,
    DOCUMENT_ID,
    DOCUMENT_URN,
    ERP_ID,
    INVALID_REQUEST,
    LOOKUP_REPLY,
    SECOND_TOKEN,
    SEND_BODY,
    STOPPED_ERROR,
    TOKEN,
    connection_json,
    outbound_document,
    outbound_list,
)
from inexchange.exceptions import InExchangeApiError, InExchangeConfigError, InExchangeTransportError
from inexchange.hooks.inexchange import InExchangeHook

pytestmark = pytest.mark.timeout(10)

LIST = "documents/outbound/list"
#: builds a hook from keyword arguments; returns it with the list of its recorded retry waits
MakeHook = Callable[..., tuple[InExchangeHook, list[float]]]


def body_of(request: httpx.Request) -> Any:
    """Return the JSON body of a recorded request."""
    return json.loads(request.content)


def record_waits(hook: InExchangeHook, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace the drivers' sleep (sync and async) by a recorder; return the recorded waits."""
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(hook, "_sleep", waits.append)
    monkeypatch.setattr(hook, "_asleep", asleep)
    return waits


def issue_two_tokens(api: respx.MockRouter) -> None:
    """Let token creation answer TOKEN first and SECOND_TOKEN on renewal."""
    api["create_token"].side_effect = [
        httpx.Response(200, json={"token": TOKEN}),
        httpx.Response(200, json={"token": SECOND_TOKEN}),
    ]


@pytest.fixture
def make_hook(inexchange_conn: str, monkeypatch: pytest.MonkeyPatch) -> MakeHook:
    """Build a hook whose retry waits are recorded instead of slept."""

    def make(**kwargs: Any) -> tuple[InExchangeHook, list[float]]:
        hook = InExchangeHook(inexchange_conn, **kwargs)
        return hook, record_waits(hook, monkeypatch)

    return make


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """Capture every log line at DEBUG: stdlib records (httpx, ...) and Airflow's structlog output."""
    for name in (None, "httpx", "httpcore", "airflow", "airflow.task", "inexchange"):
        caplog.set_level(logging.DEBUG, logger=name)

    def text() -> str:
        out, err = capfd.readouterr()
        return "\n".join([caplog.text, out, err])

    return text


@pytest.fixture
def hook(make_hook: MakeHook) -> InExchangeHook:
    return make_hook()[0]


# ---- connection ------------------------------------------------------------------------------
def test_constructing_the_hook_reads_no_connection() -> None:
    hook = InExchangeHook("inexchange_not_defined")

    assert hook._settings is None
    with pytest.raises(AirflowNotFoundException):
        hook.settings


def test_settings_come_from_the_connection(hook: InExchangeHook) -> None:
    settings = hook.settings

    assert (settings.base_url, settings.api_key, settings.erp_id) == ("https://api.test/v1/api/", API_KEY, ERP_ID)
    assert API_KEY not in repr(settings)
    assert "api_key='***'" in repr(settings)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"host": None}, r"'API base URL' \(host\) is empty"),
        ({"host": "   "}, r"'API base URL' \(host\) is empty"),
        ({"password": None}, r"'API key' \(password\) is empty"),
        ({"extra": {}}, r"'ERP id' is empty"),
    ],
    ids=["no-host", "blank-host", "no-api-key", "no-erp-id"],
)
def test_incomplete_connection_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], expected: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_BROKEN", connection_json(**overrides))
    hook = InExchangeHook("inexchange_broken")

    with pytest.raises(InExchangeConfigError, match=expected) as raised:
        hook.settings

    assert "'inexchange_broken'" in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "base_url"),
    [
        ({"host": "api.test/v1/api"}, "https://api.test/v1/api/"),
        ({"host": "api.test", "port": 8443}, "https://api.test:8443/"),
        ({"host": "api.test/v1/api", "port": 8443}, "https://api.test:8443/v1/api/"),
        ({"host": "localhost/v1/api", "schema": "http", "port": 8080}, "http://localhost:8080/v1/api/"),
        ({"host": "https://api.test/v1/api"}, "https://api.test/v1/api/"),
    ],
    ids=["no-scheme", "port", "path-and-port", "http-scheme", "no-trailing-slash"],
)
def test_base_url_is_completed(monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], base_url: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_PARTIAL", connection_json(**overrides))

    assert InExchangeHook("inexchange_partial").settings.base_url == base_url


def test_erp_id_falls_back_to_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_LOGIN", connection_json(extra={}, login="erp-from-login"))

    assert InExchangeHook("inexchange_login").settings.erp_id == "erp-from-login"


def test_host_without_scheme_is_called_over_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", connection_json(host="api.test/v1/api"))
    with respx.mock(assert_all_mocked=True, using="httpx") as router:
        router.post("https://api.test/v1/api/clientTokens/create").respond(200, json={"token": TOKEN})
        listed = router.post("https://api.test/v1/api/documents/outbound/list").respond(200, json=outbound_list([]))

        InExchangeHook().list_outbound()

    assert listed.call_count == 1


# ---- client tokens ---------------------------------------------------------------------------
def test_token_is_created_with_the_api_key_and_reused(api: respx.MockRouter, hook: InExchangeHook) -> None:
    listed = api.post(LIST).respond(200, json=outbound_list([]))

    hook.list_outbound()
    hook.list_outbound()

    assert api["create_token"].call_count == 1
    create = api["create_token"].calls.last.request
    assert create.headers["APIKey"] == API_KEY
    assert "ClientToken" not in create.headers
    assert body_of(create) == {"erpId": ERP_ID}
    assert listed.call_count == 2
    for call in listed.calls:
        assert call.request.headers["ClientToken"] == TOKEN
        assert "APIKey" not in call.request.headers


def test_token_is_renewed_once_on_401_and_the_call_repeated(api: respx.MockRouter, hook: InExchangeHook) -> None:
    issue_two_tokens(api)
    listed = api.post(LIST)
    listed.side_effect = [httpx.Response(401), httpx.Response(200, json=outbound_list([]))]

    page = hook.list_outbound()

    assert page.total_count == 0
    assert api["create_token"].call_count == 2
    assert [c.request.headers["ClientToken"] for c in listed.calls] == [TOKEN, SECOND_TOKEN]


def test_second_401_after_renewal_raises(api: respx.MockRouter, hook: InExchangeHook) -> None:
    listed = api.post(LIST).respond(401)

    with pytest.raises(InExchangeApiError) as raised:
        hook.list_outbound()

    assert raised.value.status_code == 401
    assert listed.call_count == 2
    assert api["create_token"].call_count == 2


def test_refused_api_key_is_not_retried(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook()
    api["create_token"].respond(401, json={"message": "Invalid API key"})
    listed = api.post(LIST).respond(200, json=outbound_list([]))

    with pytest.raises(InExchangeApiError, match="Invalid API key") as raised:
        hook.list_outbound()

    assert raised.value.status_code == 401
    assert api["create_token"].call_count == 1
    assert listed.call_count == 0
    assert waits == []


def test_close_revokes_the_token(api: respx.MockRouter, hook: InExchangeHook) -> None:
    api.post(LIST).respond(200, json=outbound_list([]))
    hook.list_outbound()

    hook.close()
    hook.close()

    assert api["revoke_token"].call_count == 1
    revoke = api["revoke_token"].calls.last.request
    assert body_of(revoke) == {"clientToken": TOKEN}
    assert revoke.headers["APIKey"] == API_KEY
    assert hook._token is None


def test_close_without_token_revokes_nothing(api: respx.MockRouter, hook: InExchangeHook) -> None:
    hook.close()

    assert api["revoke_token"].call_count == 0
    assert api["create_token"].call_count == 0


def test_a_closed_hook_creates_a_new_token(api: respx.MockRouter, hook: InExchangeHook) -> None:
    api.post(LIST).respond(200, json=outbound_list([]))
    hook.list_outbound()
    hook.close()

    hook.list_outbound()

    assert api["create_token"].call_count == 2


def test_failed_revoke_is_only_logged(api: respx.MockRouter, hook: InExchangeHook,
                                      logs: Callable[[], str]) -> None:
    api.post(LIST).respond(200, json=outbound_list([]))
    api["revoke_token"].respond(500)
    hook.list_outbound()

    hook.close()

    assert api["revoke_token"].call_count == 1
    assert hook._token is None
    assert "could not revoke the InExchange client token: InExchangeApiError" in logs()


# ---- retries ---------------------------------------------------------------------------------
def test_503_then_200_succeeds_after_a_backoff(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(backoff=0.2)
    listed = api.post(LIST)
    listed.side_effect = [httpx.Response(503), httpx.Response(200, json=outbound_list([], total_count=0))]

    hook.list_outbound()

    assert listed.call_count == 2
    assert len(waits) == 1
    assert 0.1 <= waits[0] <= 0.2


def test_backoff_grows_and_stops_at_max_attempts(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(max_attempts=4, backoff=1.0, max_backoff=3.0)
    listed = api.post(LIST).respond(503, json={"message": "Service Unavailable"})

    with pytest.raises(InExchangeApiError) as raised:
        hook.list_outbound()

    assert raised.value.status_code == 503
    assert listed.call_count == 4
    assert len(waits) == 3
    assert 0.5 <= waits[0] <= 1.0
    assert 1.0 <= waits[1] <= 2.0
    assert 1.5 <= waits[2] <= 3.0  # 4 s, capped at max_backoff


def test_429_waits_for_retry_after(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(backoff=0.001)
    listed = api.post(LIST)
    listed.side_effect = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, json=outbound_list([])),
    ]

    hook.list_outbound()

    assert listed.call_count == 2
    assert waits == [7.0]


def test_retry_after_is_capped_at_max_backoff(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(max_backoff=5.0)
    listed = api.post(LIST)
    listed.side_effect = [
        httpx.Response(429, headers={"Retry-After": "120"}),
        httpx.Response(200, json=outbound_list([])),
    ]

    hook.list_outbound()

    assert waits == [5.0]


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("connection refused"), httpx.ReadTimeout("read timed out"), httpx.RemoteProtocolError("eof")],
    ids=["connect-error", "read-timeout", "dropped-reply"],
)
def test_transport_errors_are_retried_for_reads(api: respx.MockRouter, make_hook: MakeHook,
                                                failure: Exception) -> None:
    hook, waits = make_hook(backoff=0.001)
    listed = api.post(LIST)
    listed.side_effect = [failure, httpx.Response(200, json=outbound_list([outbound_document("d1", "Sent", None)]))]

    page = hook.list_outbound()

    assert [d.id for d in page.documents] == ["d1"]
    assert listed.call_count == 2
    assert len(waits) == 1


def test_transport_error_after_max_attempts(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, _ = make_hook(max_attempts=2, backoff=0.001)
    listed = api.post(LIST).mock(side_effect=httpx.ConnectError("connection refused"))

    with pytest.raises(InExchangeTransportError, match="ConnectError") as raised:
        hook.list_outbound()

    assert listed.call_count == 2
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


def test_invalid_request_fails_at_once_with_model_state(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(backoff=0.001)
    sent = api.post("documents/outbound").respond(400, json=INVALID_REQUEST)

    with pytest.raises(InExchangeApiError) as raised:
        hook.send_outbound(SEND_BODY)

    error = raised.value
    assert sent.call_count == 1
    assert waits == []
    assert error.status_code == 400
    assert error.message == "The request is invalid."
    assert error.model_state == INVALID_REQUEST["modelState"]
    assert error.permanent and not error.retryable
    described = error.describe()
    assert described.startswith("HTTP 400 from InExchange documents/outbound: The request is invalid.")
    assert "document.erpDocumentId: The ErpDocumentId field is required." in described
    assert "recipientInformation.orgNo: Invalid organisation number., Too short." in described
    assert str(error) == described


def test_error_without_json_body_uses_the_reason(api: respx.MockRouter, hook: InExchangeHook) -> None:
    api.post(LIST).respond(403, text="<html>forbidden</html>")

    with pytest.raises(InExchangeApiError) as raised:
        hook.list_outbound()

    assert (raised.value.status_code, raised.value.message, raised.value.model_state) == (403, "Forbidden", {})


def test_token_creation_respects_max_attempts(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(max_attempts=3, backoff=0.001)
    api["create_token"].respond(503)
    listed = api.post(LIST).respond(200, json=outbound_list([]))

    with pytest.raises(InExchangeApiError) as raised:
        hook.list_outbound()

    assert raised.value.status_code == 503
    assert api["create_token"].call_count == 3
    assert len(waits) == 2
    assert listed.call_count == 0


# ---- sending: not idempotent ---------------------------------------------------------------
def test_send_outbound_returns_the_document_id(api: respx.MockRouter, hook: InExchangeHook) -> None:
    sent = api.post("documents/outbound").respond(
        201, headers={"Location": f"https://api.test/v1/api/documents/outbound/{DOCUMENT_ID}"}
    )

    assert hook.send_outbound(SEND_BODY) == DOCUMENT_ID
    assert body_of(sent.calls.last.request) == SEND_BODY
    assert sent.calls.last.request.headers["ClientToken"] == TOKEN


def test_send_outbound_without_location_is_an_error(api: respx.MockRouter, hook: InExchangeHook) -> None:
    sent = api.post("documents/outbound").respond(201)

    with pytest.raises(InExchangeApiError, match="no Location header"):
        hook.send_outbound(SEND_BODY)
    assert sent.call_count == 1  # processed, maybe: never sent again here, the caller reconciles


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("read timed out"), httpx.Response(503), httpx.Response(500),
     httpx.RemoteProtocolError("server disconnected")],
    ids=["read-timeout", "503", "500", "dropped-reply"],
)
def test_send_outbound_is_not_retried_once_it_may_have_arrived(
    api: respx.MockRouter, make_hook: MakeHook, failure: Exception | httpx.Response
) -> None:
    hook, waits = make_hook(backoff=0.001)
    sent = api.post("documents/outbound")
    sent.side_effect = [failure, httpx.Response(201, headers={"Location": f"documents/outbound/{DOCUMENT_ID}"})]

    with pytest.raises((InExchangeApiError, InExchangeTransportError)):
        hook.send_outbound(SEND_BODY)

    assert sent.call_count == 1
    assert waits == []


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(429, headers={"Retry-After": "2"}), httpx.ConnectError("connection refused"),
     httpx.ConnectTimeout("connect timed out")],
    ids=["429", "connect-error", "connect-timeout"],
)
def test_send_outbound_is_retried_when_it_never_arrived(
    api: respx.MockRouter, make_hook: MakeHook, failure: Exception | httpx.Response
) -> None:
    hook, waits = make_hook(backoff=0.001)
    sent = api.post("documents/outbound")
    location = f"/v1/api/documents/outbound/{DOCUMENT_ID}/"
    sent.side_effect = [failure, httpx.Response(202, headers={"Location": location})]

    assert hook.send_outbound(SEND_BODY) == DOCUMENT_ID
    assert sent.call_count == 2
    assert len(waits) == 1


# ---- other endpoints -------------------------------------------------------------------------
def test_upload_document_returns_the_location_urn(api: respx.MockRouter, hook: InExchangeHook) -> None:
    uploaded = api.post("documents").respond(201, headers={"Location": DOCUMENT_URN})
    ubl = b"<?xml version='1.0'?><Invoice/>"

    assert hook.upload_document(ubl) == DOCUMENT_URN
    request = uploaded.calls.last.request
    assert request.content == ubl
    assert request.headers["Content-Type"] == "application/xml"
    assert request.headers["ClientToken"] == TOKEN


def test_upload_without_location_is_retried_then_an_error(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(max_attempts=3)
    uploaded = api.post("documents").respond(200)

    with pytest.raises(InExchangeApiError, match="documents: no Location header in the reply"):
        hook.upload_document(b"<Invoice/>")
    assert uploaded.call_count == 3 and len(waits) == 2


def test_lookup_buyer_maps_the_parties(api: respx.MockRouter, hook: InExchangeHook) -> None:
    looked_up = api.post("buyerparties/lookup").respond(200, json=LOOKUP_REPLY)

    result = hook.lookup_buyer(party_id="C-1001", org_no="5560000001")

    assert body_of(looked_up.calls.last.request) == {"PartyId": "C-1001", "orgNo": "5560000001"}
    assert result.exact_hit is True
    assert result.potential_matches == 2
    first, second = result.parties
    assert (first.org_no, first.vat_no, first.gln) == ("5560000001", "SE556000000101", "7350000000017")
    assert first.peppol_ids == ("0007:5560000001", "0088:7350000000017")
    assert first.can_receive_einvoice is True
    assert second.can_receive_einvoice is False
    assert second.peppol_ids == ()


def test_lookup_buyer_without_hit(api: respx.MockRouter, hook: InExchangeHook) -> None:
    api.post("buyerparties/lookup").respond(200, json={"parties": [], "exactHit": False, "potentialMatches": False})

    result = hook.lookup_buyer(party_id="C-2", gln="7350000000017")

    assert result.parties == ()
    assert result.exact_hit is False


def test_get_outbound(api: respx.MockRouter, hook: InExchangeHook) -> None:
    api.get(f"documents/outbound/{DOCUMENT_ID}").respond(
        200, json=outbound_document(DOCUMENT_ID, "Stopped", "2026-11-25T08:30:00Z", error=STOPPED_ERROR)
    )

    document = hook.get_outbound(DOCUMENT_ID)

    assert document.status == "Stopped"
    assert document.status_time == datetime(2026, 11, 25, 8, 30, tzinfo=timezone.utc)
    assert document.message == "InvalidEmail: The recipient e-mail address bounced"


def test_reply_that_is_not_json_is_retried_then_an_error(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(max_attempts=3)
    got = api.get(f"documents/outbound/{DOCUMENT_ID}").respond(200, text="<html/>")

    with pytest.raises(InExchangeApiError, match="reply is not JSON"):
        hook.get_outbound(DOCUMENT_ID)
    assert got.call_count == 3 and len(waits) == 2


def test_a_garbled_reply_that_turns_good_is_read(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, _ = make_hook()
    api.post("documents/outbound/list").mock(side_effect=[
        httpx.Response(200, text='{"documents": [{"id": "3f'),  # cut off
        httpx.Response(200, json={"documents": [{"id": 7}], "totalCount": "many"}),  # of another shape
        httpx.Response(200, json=outbound_list([outbound_document("d1", "Sent", "2026-11-25T08:00:00Z")])),
    ])

    assert [d.id for d in hook.list_outbound().documents] == ["d1"]


def test_find_by_erp_id_returns_the_document(api: respx.MockRouter, hook: InExchangeHook) -> None:
    api.post("invoices/outbound/byerpid/invoice-1").respond(
        200, json=outbound_document(DOCUMENT_ID, "Sent", "2026-11-25T07:00:00Z", erp_document_id="invoice-1")
    )

    document = hook.find_by_erp_id("invoice-1")

    assert document is not None
    assert (document.id, document.erp_document_id, document.status) == (DOCUMENT_ID, "invoice-1", "Sent")


def test_find_by_erp_id_returns_none_on_404(api: respx.MockRouter, hook: InExchangeHook) -> None:
    found = api.post("invoices/outbound/byerpid/invoice-9").respond(404, json={"message": "Not found"})

    assert hook.find_by_erp_id("invoice-9") is None
    assert found.call_count == 1


def test_find_by_erp_id_raises_other_errors(api: respx.MockRouter, hook: InExchangeHook) -> None:
    api.post("invoices/outbound/byerpid/invoice-9").respond(400, json=INVALID_REQUEST)

    with pytest.raises(InExchangeApiError) as raised:
        hook.find_by_erp_id("invoice-9")

    assert raised.value.status_code == 400


def test_list_outbound_sends_the_filters(api: respx.MockRouter, hook: InExchangeHook) -> None:
    listed = api.post(LIST).respond(
        200, json=outbound_list([outbound_document("d1", "Pending", "2026-11-25T06:05:00Z")], total_count=7)
    )
    since = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)

    page = hook.list_outbound(take=50, skip=10, updated_after=since, status="Pending")

    assert body_of(listed.calls.last.request) == {
        "take": 50, "skip": 10, "includeErrorInfo": True,
        "updatedAfter": "2026-11-25T06:00:00+00:00", "status": "Pending",
    }
    assert page.total_count == 7
    assert [d.status for d in page.documents] == ["Pending"]


def paged_list(documents: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    """Answer ``documents/outbound/list`` like InExchange: the body's take/skip window, totalCount."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = body_of(request)
        window = documents[body["skip"]: body["skip"] + body["take"]]
        return httpx.Response(200, json=outbound_list(window, total_count=len(documents)))

    return answer


FIVE_DOCUMENTS = [outbound_document(f"d{i}", "Sent", f"2026-11-25T0{i}:00:00Z") for i in range(1, 6)]


def test_all_outbound_pages_up_to_total_count(api: respx.MockRouter, hook: InExchangeHook) -> None:
    listed = api.post(LIST).mock(side_effect=paged_list(FIVE_DOCUMENTS))

    ids = [d.id for d in hook.all_outbound(page_size=2, status="Sent")]

    assert ids == ["d1", "d2", "d3", "d4", "d5"]
    assert listed.call_count == 3
    assert [(body_of(c.request)["skip"], body_of(c.request)["take"]) for c in listed.calls] == [(0, 2), (2, 2), (4, 2)]
    assert all(body_of(c.request)["status"] == "Sent" for c in listed.calls)


def test_all_outbound_stops_on_an_empty_page(api: respx.MockRouter, hook: InExchangeHook) -> None:
    listed = api.post(LIST)
    listed.side_effect = [
        httpx.Response(200, json=outbound_list(FIVE_DOCUMENTS[:2], total_count=10)),
        httpx.Response(200, json=outbound_list([], total_count=10)),
    ]

    assert [d.id for d in hook.all_outbound(page_size=2)] == ["d1", "d2"]
    assert listed.call_count == 2


# ---- async twins -----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_alist_outbound(api: respx.MockRouter, hook: InExchangeHook) -> None:
    listed = api.post(LIST).respond(200, json=outbound_list(FIVE_DOCUMENTS[:1], total_count=1))

    page = await hook.alist_outbound(take=10)

    assert [d.id for d in page.documents] == ["d1"]
    assert api["create_token"].calls.last.request.headers["APIKey"] == API_KEY
    assert listed.calls.last.request.headers["ClientToken"] == TOKEN
    assert body_of(listed.calls.last.request)["take"] == 10
    await hook.aclose()


@pytest.mark.anyio
async def test_aall_outbound_pages_up_to_total_count(api: respx.MockRouter, hook: InExchangeHook) -> None:
    listed = api.post(LIST).mock(side_effect=paged_list(FIVE_DOCUMENTS))

    ids = [d.id for d in await hook.aall_outbound(page_size=2)]

    assert ids == ["d1", "d2", "d3", "d4", "d5"]
    assert listed.call_count == 3
    assert api["create_token"].call_count == 1
    await hook.aclose()


@pytest.mark.anyio
async def test_aclose_revokes_the_token(api: respx.MockRouter, hook: InExchangeHook) -> None:
    api.post(LIST).respond(200, json=outbound_list([]))
    await hook.alist_outbound()

    await hook.aclose()
    await hook.aclose()

    assert api["revoke_token"].call_count == 1
    assert body_of(api["revoke_token"].calls.last.request) == {"clientToken": TOKEN}
    assert hook._async_clients == []


@pytest.mark.anyio
async def test_async_retry_and_renewal(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(backoff=0.001)
    issue_two_tokens(api)
    listed = api.post(LIST)
    listed.side_effect = [
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(401),
        httpx.Response(200, json=outbound_list([])),
    ]

    await hook.alist_outbound()

    assert listed.call_count == 4
    assert len(waits) == 2 and waits[1] == 3.0
    assert [c.request.headers["ClientToken"] for c in listed.calls] == [TOKEN, TOKEN, TOKEN, SECOND_TOKEN]
    await hook.aclose()


@pytest.mark.anyio
async def test_async_max_attempts(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(max_attempts=3, backoff=0.001)
    listed = api.post(LIST).respond(502)

    with pytest.raises(InExchangeApiError) as raised:
        await hook.alist_outbound()

    assert raised.value.status_code == 502
    assert listed.call_count == 3
    assert len(waits) == 2
    await hook.aclose()


# ---- secrets ---------------------------------------------------------------------------------
def exception_texts(error: BaseException) -> str:
    """Return str() and repr() of an exception and of every exception it chains to."""
    texts: list[str] = []
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        exc = pending.pop()
        if id(exc) in seen:  # a re-raised exception can chain back to itself
            continue
        seen.add(id(exc))
        texts += [str(exc), repr(exc)]
        pending += [e for e in (exc.__cause__, exc.__context__) if e is not None]
    return "\n".join(texts)


def raise_or_return(failure: Exception | httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """Answer every request with ``failure``: returned if a response, raised if an exception."""

    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(failure, httpx.Response):
            return failure
        raise failure

    return answer


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(400, json=INVALID_REQUEST),
        httpx.Response(503),
        httpx.Response(401),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
    ],
    ids=["400", "503", "401", "connect-error", "read-timeout"],
)
def test_secrets_stay_out_of_errors_and_logs(
    api: respx.MockRouter, make_hook: MakeHook, logs: Callable[[], str],
    failure: Exception | httpx.Response,
) -> None:
    hook, _ = make_hook(max_attempts=2, backoff=0.001)
    api.post(LIST).mock(side_effect=raise_or_return(failure))
    api["revoke_token"].respond(500)

    with pytest.raises((InExchangeApiError, InExchangeTransportError)) as raised:
        hook.list_outbound()
    hook.close()

    logged = logs()
    assert "HTTP Request: POST https://api.test/v1/api/clientTokens/create" in logged  # capture works
    assert "could not revoke" in logged
    texts = exception_texts(raised.value) + "\n" + logged
    assert API_KEY not in texts
    assert TOKEN not in texts


@pytest.mark.anyio
async def test_async_token_creation_respects_max_attempts(api: respx.MockRouter,
                                                          make_hook: MakeHook) -> None:
    hook, waits = make_hook(max_attempts=3, backoff=0.001)
    api["create_token"].mock(side_effect=httpx.ConnectError("connection refused"))
    listed = api.post(LIST).respond(200, json=outbound_list([]))

    with pytest.raises(InExchangeTransportError):
        await hook.alist_outbound()

    assert api["create_token"].call_count == 3
    assert len(waits) == 2
    assert listed.call_count == 0
    await hook.aclose()


# ---- rate limit, concurrency, shared token ---------------------------------------------------
def test_rate_limit_makes_the_request_path_wait(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook(rate_limit=3)
    api.post(LIST).respond(200, json=outbound_list([]))
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # let time pass for the limiter while recording the wait
        slept.append(seconds)
        time.sleep(seconds)

    hook._sleep = sleep  # type: ignore[method-assign]
    started = time.monotonic()
    for _ in range(2):
        hook.list_outbound()  # token creation + 2 lists = 3 requests: within the first second

    assert slept == []
    hook.list_outbound()  # the 4th request must wait for the window to move
    assert len(slept) >= 1 and 0 < sum(slept) <= 1.0
    assert time.monotonic() - started >= 0.9
    hook.close()


def test_rate_limit_must_be_positive(inexchange_conn: str) -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        InExchangeHook(inexchange_conn, rate_limit=0)


@pytest.mark.anyio
async def test_async_calls_share_one_token_and_respect_the_concurrency_limit(
    api: respx.MockRouter, make_hook: MakeHook
) -> None:
    hook, _ = make_hook(concurrency=4, clients=2)
    in_flight = peak = 0

    async def slow_reply(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=outbound_document("d1", "Sent", "2026-03-02T10:00:00Z"))

    got = api.get("documents/outbound/d1").mock(side_effect=slow_reply)

    documents = await asyncio.gather(*(hook.aget_outbound("d1") for _ in range(20)))

    assert [d.id for d in documents] == ["d1"] * 20
    assert got.call_count == 20
    assert api["create_token"].call_count == 1  # twenty callers, one token
    assert peak == 4
    assert len(hook._async_clients) == 2
    await hook.aclose()


@pytest.mark.anyio
async def test_concurrent_calls_renew_a_refused_token_once(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, _ = make_hook(concurrency=8)
    issue_two_tokens(api)

    def reply(request: httpx.Request) -> httpx.Response:
        if request.headers["ClientToken"] == TOKEN:
            return httpx.Response(401)
        return httpx.Response(200, json=outbound_document("d1", "Sent", "2026-03-02T10:00:00Z"))

    api.get("documents/outbound/d1").mock(side_effect=reply)

    await asyncio.gather(*(hook.aget_outbound("d1") for _ in range(8)))

    assert api["create_token"].call_count == 2
    await hook.aclose()


@pytest.mark.anyio
async def test_async_endpoints_match_the_sync_ones(api: respx.MockRouter, hook: InExchangeHook) -> None:
    api.post("buyerparties/lookup").respond(200, json=LOOKUP_REPLY)
    api.post("documents").respond(201, headers={"Location": DOCUMENT_URN})
    api.post("documents/outbound").respond(201, headers={"Location": f"https://api.test/v1/api/documents/outbound/{DOCUMENT_ID}"})
    api.post("invoices/outbound/byerpid/invoice-1").respond(404, json={"message": "Not found"})

    lookup = await hook.alookup_buyer(party_id="K1", org_no="5560000001")
    uri = await hook.aupload_document(b"<Invoice/>")
    document_id = await hook.asend_outbound(SEND_BODY)
    found = await hook.afind_by_erp_id("invoice-1")

    assert lookup == hook.lookup_buyer(party_id="K1", org_no="5560000001")
    assert (uri, document_id, found) == (DOCUMENT_URN, DOCUMENT_ID, None)
    await hook.aclose()
    hook.close()


def test_requests_go_over_one_pool_by_default(inexchange_conn: str) -> None:
    assert InExchangeHook(inexchange_conn, concurrency=32).clients == 1
    assert InExchangeHook(inexchange_conn, concurrency=8, clients=20).clients == 8  # never more pools than slots


# ---- a standard http connection ----------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        json.dumps({"conn_type": "http", "host": "https://api.test/v1/api/", "password": API_KEY,
                    "extra": {"erp_id": ERP_ID}}),
        json.dumps({"conn_type": "http", "host": "api.test/v1/api", "schema": "https", "password": API_KEY,
                    "extra": {"erp_id": ERP_ID}}),
        f"https://:{API_KEY}@api.test/v1/api/?erp_id={ERP_ID}",
        f"http://:{API_KEY}@api.test/v1/api?erp_id={ERP_ID}",
    ],
    ids=["json-url-host", "json-scheme-field", "uri", "uri-http-type"],
)
def test_a_standard_http_connection_works_as_the_inexchange_one(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_HTTP", value)
    with respx.mock(assert_all_mocked=True, using="httpx") as router:
        created = router.post("https://api.test/v1/api/clientTokens/create").respond(200, json={"token": TOKEN})
        listed = router.post("https://api.test/v1/api/documents/outbound/list").respond(200, json=outbound_list([]))

        hook = InExchangeHook("inexchange_http")
        hook.list_outbound()

    assert (hook.settings.base_url, hook.settings.api_key, hook.settings.erp_id) == (
        "https://api.test/v1/api/", API_KEY, ERP_ID)
    assert created.calls.last.request.headers["APIKey"] == API_KEY
    assert json.loads(created.calls.last.request.content) == {"erpId": ERP_ID}
    assert listed.calls.last.request.headers["ClientToken"] == TOKEN
