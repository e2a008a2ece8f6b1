"""How strictly the hook reads replies: statuses, content types, Location, tokens, Retry-After, secrets.

HTTP is stubbed with respx at the edge; the hook's request path is the real one.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from dispatch_testing.unit_fixtures import API_KEY, DOCUMENT_ID, DOCUMENT_URN, SECOND_TOKEN, SEND_BODY, TOKEN, outbound_document, outbound_list
from inexchange.exceptions import InExchangeApiError, InExchangeError, InExchangeTransportError
from inexchange.hooks.inexchange import InExchangeHook
from inexchange.hooks.transport import decoded

pytestmark = pytest.mark.timeout(10)

LIST = "documents/outbound/list"
PAGE = outbound_list([outbound_document("d1", "Sent", "2026-11-25T08:00:00Z")])
MakeHook = Callable[..., tuple[InExchangeHook, list[float]]]


@pytest.fixture
def make_hook(inexchange_conn: str) -> MakeHook:
    """A hook whose waits are recorded instead of slept."""

    def make(**kwargs: Any) -> tuple[InExchangeHook, list[float]]:
        hook = InExchangeHook(inexchange_conn, **{"backoff": 0.001, **kwargs})
        waits: list[float] = []
        hook._sleep = waits.append  # type: ignore[method-assign]
        return hook, waits

    return make


# ---- content types: the body decides, not its label ------------------------------------------
@pytest.mark.parametrize("content_type", [None, "text/html", "text/plain", "application/xml",
                                          "application/octet-stream", "application/json; charset=iso-8859-1"])
def test_a_json_object_of_the_right_shape_is_read_whatever_its_content_type(
        api: respx.MockRouter, make_hook: MakeHook, content_type: str | None) -> None:
    hook, _ = make_hook()
    headers = {"Content-Type": content_type} if content_type else {}
    api.post(LIST).respond(200, content=json.dumps(PAGE).encode(), headers=headers)

    assert [d.id for d in hook.list_outbound().documents] == ["d1"]


@pytest.mark.parametrize("body", [
    b"<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>",
    b'<?xml version="1.0"?><documents/>',
    b'{"documents": [], "totalCount": NaN}',
    b'{"documents": [], "totalCount": Infinity}',
    b"[" * 100_000 + b"]" * 100_000,  # deeper than Python's parser goes: RecursionError, not ValueError
    b'{"documents": [], "totalCount": 1' + b"0" * 5000 + b"}",  # more digits than int() takes
    b'{"documents": [{"id": "\xff\xfe"}], "totalCount": 1}',  # not UTF-8
    b"",
], ids=["html", "xml", "nan", "infinity", "deep", "huge-number", "not-utf8", "empty"])
def test_a_body_that_is_not_json_fails_as_not_json_even_labelled_json(
        api: respx.MockRouter, make_hook: MakeHook, body: bytes) -> None:
    hook, waits = make_hook(max_attempts=2)
    listed = api.post(LIST).respond(200, content=body, headers={"Content-Type": "application/json"})

    with pytest.raises(InExchangeApiError, match="reply is not JSON") as raised:
        hook.list_outbound()

    assert raised.value.status_code == 200 and raised.value.retryable and not raised.value.permanent
    assert listed.call_count == 2 and len(waits) == 1  # retried like a 5xx: the call is idempotent


def test_json_in_utf16_is_json(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, _ = make_hook()
    api.post(LIST).respond(200, content=json.dumps(PAGE).encode("utf-16"))

    assert hook.list_outbound().total_count == 1


@pytest.mark.parametrize(("body", "problem"), [
    ({}, "documents is missing"),
    ({"documents": []}, "totalCount is missing"),
    ({"documents": {}, "totalCount": 0}, "documents is not a list"),
    ({"documents": [], "totalCount": True}, "totalCount is not a non-negative integer"),
    ({"documents": [], "totalCount": -1}, "totalCount is not a non-negative integer"),
    ({"documents": [], "totalCount": "3"}, "totalCount is not a non-negative integer"),
    ([PAGE], "reply is not a JSON object"),
    ({"documents": [{"id": "d1", "currentStatus": 7}, {"id": "d2"}], "totalCount": 2},
     r"no document of the page can be read \(currentStatus is not a JSON object\)"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_page_of_another_shape_is_no_page(api: respx.MockRouter, make_hook: MakeHook, body: Any,
                                            problem: str) -> None:
    hook, _ = make_hook(max_attempts=1)
    api.post(LIST).respond(200, json=body)

    with pytest.raises(InExchangeApiError, match=problem):
        hook.list_outbound()


@pytest.mark.parametrize(("item", "shown_id", "problem"), [
    ({"status": "Sent"}, None, "id is missing"),
    ({"id": None}, None, "id is missing"),
    ({"id": ""}, None, "id is not a non-empty string"),
    ({"id": True}, None, "id is not a non-empty string"),
    ({"id": "d9", "currentStatus": {"status": {"a": 1}}}, "d9", "status is not a string"),
    ({"id": "d9", "currentStatus": "Sent"}, "d9", "currentStatus is not a JSON object"),
    ({"id": "d9", "currentStatus": {"status": "Sent", "time": "yesterday"}}, "d9", "not an ISO 8601 time"),
    ({"id": "d9", "currentStatus": {"status": "Stopped", "time": "2026-11-25T08:00:00Z"}, "error": "no"}, "d9",
     "error is not a JSON object"),
    ({"id": 'd9"<script>', "currentStatus": "Sent"}, None, "currentStatus is not a JSON object"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_one_unreadable_document_is_skipped_and_the_rest_of_the_page_counts(
        api: respx.MockRouter, make_hook: MakeHook, item: Any, shown_id: str | None, problem: str) -> None:
    hook, _ = make_hook(max_attempts=1)
    good = [outbound_document("d1", "Sent", "2026-11-25T08:00:00Z"),
            outbound_document("d2", "Pending", "2026-11-25T08:01:00Z")]
    api.post(LIST).respond(200, json={"documents": [good[0], item, good[1]], "totalCount": 3})

    page = hook.list_outbound()

    assert [d.id for d in page.documents] == ["d1", "d2"] and page.total_count == 3 and page.size == 3
    assert len(page.unreadable) == 1
    assert page.unreadable[0].id == shown_id and problem in page.unreadable[0].problem


def test_paging_steps_over_unreadable_documents_and_counts_them(
        api: respx.MockRouter, make_hook: MakeHook, capsys: pytest.CaptureFixture[str]) -> None:
    hook, _ = make_hook(max_attempts=1)
    pages = [{"documents": [outbound_document("d1", "Sent", "2026-11-25T08:00:00Z"), {"id": "bad-1", "currentStatus": 7}],
              "totalCount": 3},
             {"documents": [outbound_document("d3", "Sent", "2026-11-25T08:02:00Z")], "totalCount": 3}]
    listed = api.post(LIST).mock(side_effect=[httpx.Response(200, json=page) for page in pages])

    documents = hook.all_outbound(page_size=2)

    assert [d.id for d in documents] == ["d1", "d3"]
    assert [json.loads(call.request.content)["skip"] for call in listed.calls] == [0, 2]
    assert [item.id for item in hook.unreadable] == ["bad-1"]
    assert "document bad-1 cannot be read (currentStatus is not a JSON object); skipped" in capsys.readouterr().out


def test_a_status_time_without_offset_is_utc(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, _ = make_hook()
    api.get("documents/outbound/d1").respond(200, json=outbound_document("d1", "Sent", "2026-11-25T08:00:00"))

    assert hook.get_outbound("d1").status_time == datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("body", "problem"), [
    ({"parties": []}, "exactHit is missing"),
    ({"parties": [], "exactHit": "yes"}, "exactHit is not a boolean"),
    ({"parties": {}, "exactHit": False}, "parties is not a list"),
    ({"parties": [{"companyId": 17}], "exactHit": True}, "companyId is not a string"),
    ({"parties": ["p"], "exactHit": True}, "parties[] is not a JSON object"),
])
def test_a_lookup_reply_whose_used_fields_cannot_be_read_is_no_answer(
        api: respx.MockRouter, make_hook: MakeHook, body: dict[str, Any], problem: str) -> None:
    hook, _ = make_hook(max_attempts=1)
    api.post("buyerparties/lookup").respond(200, json=body)

    with pytest.raises(InExchangeApiError, match=re.escape(problem)):
        hook.lookup_buyer(party_id="K1")


# ---- statuses that are no answer --------------------------------------------------------------
@pytest.mark.parametrize(("status", "kind"), [(100, "not a complete reply"), (103, "not a complete reply"),
                                              (206, "not a complete reply"), (301, "a redirect"), (302, "a redirect"),
                                              (304, "a redirect"), (308, "a redirect")])
def test_informational_partial_and_redirect_replies_are_no_success(
        api: respx.MockRouter, make_hook: MakeHook, status: int, kind: str) -> None:
    hook, _ = make_hook(max_attempts=2)
    listed = api.post(LIST).respond(status, json=PAGE, headers={"Location": "https://login.example/"})
    sent = api.post("documents/outbound").respond(
        status, headers={"Location": f"https://api.test/v1/api/documents/outbound/{DOCUMENT_ID}"})

    with pytest.raises(InExchangeApiError, match=kind):
        hook.list_outbound()
    with pytest.raises(InExchangeError) as raised:
        hook.send_outbound(SEND_BODY)

    assert listed.call_count == 2  # an idempotent call tries again
    assert sent.call_count == 1  # a send is reconciled, never repeated
    assert not getattr(raised.value, "permanent", False)


def test_a_redirect_to_a_location_httpx_cannot_parse_is_a_clean_error(api: respx.MockRouter,
                                                                      make_hook: MakeHook) -> None:
    """httpx builds the redirect it does not follow, and fails on ``urn:`` Locations with InvalidURL."""
    hook, _ = make_hook(max_attempts=2)
    sent = api.post("documents/outbound").respond(301, headers={"Location": DOCUMENT_URN})

    with pytest.raises(InExchangeTransportError, match="InvalidURL"):
        hook.send_outbound(SEND_BODY)
    assert sent.call_count == 1


# ---- Location -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("location", "document_id"), [
    (f"https://api.test/v1/api/documents/outbound/{DOCUMENT_ID}", DOCUMENT_ID),
    (f"/v1/api/documents/outbound/{DOCUMENT_ID}/", DOCUMENT_ID),
    (f"documents/outbound/{DOCUMENT_ID}?x=1#y", DOCUMENT_ID),
    (f"https://api.test/v1/api/Documents/Outbound/{DOCUMENT_ID}", DOCUMENT_ID),
    (f"documents/outbound/{DOCUMENT_ID.upper()}", DOCUMENT_ID.upper()),
])
def test_a_send_answers_with_the_id_in_its_location(api: respx.MockRouter, make_hook: MakeHook, location: str,
                                                   document_id: str) -> None:
    hook, _ = make_hook()
    api.post("documents/outbound").respond(201, headers={"Location": location})

    assert hook.send_outbound(SEND_BODY) == document_id


@pytest.mark.parametrize("location", [
    "https://api.test/v1/api/documents/outbound/", "https://login.example/", DOCUMENT_URN, "documents/outbound/..",
    f"documents/outbound/{DOCUMENT_ID} and more", "http://[::1", "/", "documents/outbound/not-a-guid",
    f"documents/outbound/{DOCUMENT_ID}0", "documents/outbound/?id=%00", "x" * 2048,
])
def test_a_send_whose_location_names_no_document_is_an_error_and_not_repeated(
        api: respx.MockRouter, make_hook: MakeHook, location: str) -> None:
    hook, waits = make_hook()
    sent = api.post("documents/outbound").respond(201, headers={"Location": location})

    with pytest.raises(InExchangeApiError, match="Location") as raised:
        hook.send_outbound(SEND_BODY)

    assert sent.call_count == 1 and waits == []
    assert not raised.value.permanent  # the caller reconciles by ERP id


@pytest.mark.parametrize("location", ["https://login.example/", "urn:inexchangedocument:", "urn:other:1",
                                      "urn:inexchangedocument:a b", "urn:inexchangedocument:not-a-guid",
                                      "urn:inexchangedocument:../../etc/passwd", f"{DOCUMENT_URN}/x"])
def test_an_upload_answers_with_a_document_urn(api: respx.MockRouter, make_hook: MakeHook, location: str) -> None:
    hook, _ = make_hook(max_attempts=2)
    uploaded = api.post("documents").respond(201, headers={"Location": location})

    with pytest.raises(InExchangeApiError, match="Location"):
        hook.upload_document(b"<Invoice/>")
    assert uploaded.call_count == 2


# ---- find_by_erp_id: "never received" only from InExchange's own 404 ---------------------------
@pytest.mark.parametrize(("content", "found_none"), [
    (json.dumps({"message": "No invoice found"}).encode(), True),
    (b"", True),
    (b"<html><body><h1>404 Not Found</h1></body></html>", False),
    (b"Not Found", False),
    (b"[]", False),
])
def test_find_by_erp_id_believes_only_inexchanges_404(api: respx.MockRouter, make_hook: MakeHook,
                                                     content: bytes, found_none: bool) -> None:
    hook, _ = make_hook()
    api.post("invoices/outbound/byerpid/invoice-1").respond(404, content=content)

    if found_none:
        assert hook.find_by_erp_id("invoice-1") is None
    else:
        with pytest.raises(InExchangeApiError, match="404 reply that is not InExchange's"):
            hook.find_by_erp_id("invoice-1")


# ---- client tokens: read inside the retried attempt ---------------------------------------------
@pytest.mark.parametrize("reply", [
    httpx.Response(200, text='{"token": "cut'),
    httpx.Response(200, json={"token": None}),
    httpx.Response(200, json={"token": 12345}),
    httpx.Response(200, json={"token": "two words"}),
    httpx.Response(200, json={"token": "line\r\nX-Injected: 1"}),
    httpx.Response(200, json={"token": "t\u20ac"}),
    httpx.Response(200, json=["token"]),
    httpx.Response(302, headers={"Location": "https://login.example/"}),
], ids=["cut", "null", "number", "space", "crlf", "not-ascii", "list", "redirect"])
def test_an_unreadable_token_reply_is_retried(api: respx.MockRouter, make_hook: MakeHook,
                                              reply: httpx.Response) -> None:
    hook, waits = make_hook()
    api["create_token"].side_effect = [reply, httpx.Response(200, json={"token": SECOND_TOKEN})]
    listed = api.post(LIST).respond(200, json=PAGE)

    hook.list_outbound()

    assert api["create_token"].call_count == 2 and len(waits) == 1
    assert listed.calls.last.request.headers["ClientToken"] == SECOND_TOKEN


def test_token_replies_that_stay_unreadable_fail_after_max_attempts(api: respx.MockRouter,
                                                                    make_hook: MakeHook) -> None:
    hook, waits = make_hook(max_attempts=3)
    api["create_token"].respond(200, text="<html>maintenance</html>")
    listed = api.post(LIST).respond(200, json=PAGE)

    with pytest.raises(InExchangeApiError, match="clientTokens/create: reply is not JSON"):
        hook.list_outbound()

    assert api["create_token"].call_count == 3 and len(waits) == 2
    assert listed.call_count == 0


# ---- Retry-After --------------------------------------------------------------------------------
def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now), usegmt=True)


@pytest.mark.parametrize(("value", "wait"), [
    ("7", 7.0), (" 2 ", 2.0), ("1.5", 1.5), ("0", 0.0), ("99999999", 30.0),
])
def test_retry_after_in_seconds_is_honoured_up_to_max_backoff(api: respx.MockRouter, make_hook: MakeHook,
                                                              value: str, wait: float) -> None:
    hook, waits = make_hook()
    api.post(LIST).side_effect = [httpx.Response(429, headers={"Retry-After": value}), httpx.Response(200, json=PAGE)]

    hook.list_outbound()

    assert waits == [wait]


def test_retry_after_as_an_http_date_is_honoured(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, waits = make_hook()
    api.post(LIST).side_effect = [httpx.Response(429, headers={"Retry-After": http_date(20)}),
                                  httpx.Response(429, headers={"Retry-After": http_date(-3600)}),
                                  httpx.Response(200, json=PAGE)]

    hook.list_outbound()

    assert 17 <= waits[0] <= 20 and waits[1] == 0.0


@pytest.mark.parametrize("value", ["-5", "soon", "NaN", "inf", "1e3", "\u00b2", "0x10", "9" * 400, "1, 2",
                                   "Fri, 31 Dec 99999 23:59:59 GMT"])
def test_a_retry_after_that_says_nothing_usable_falls_back_to_the_backoff(
        api: respx.MockRouter, make_hook: MakeHook, value: str) -> None:
    hook, waits = make_hook(backoff=1.0)
    api.post(LIST).side_effect = [
        httpx.Response(429, headers=[("Retry-After", value.encode("latin-1"))]), httpx.Response(200, json=PAGE)]

    hook.list_outbound()

    assert len(waits) == 1 and 0.5 <= waits[0] <= 1.0


# ---- secrets and text taken from replies --------------------------------------------------------
def test_secrets_quoted_by_the_server_are_cut_from_the_error(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, _ = make_hook()
    api.post("documents/outbound").respond(400, json={
        "message": f"Invalid token {TOKEN}\r\nfor key {API_KEY}",
        "modelState": {f"header.{TOKEN}": [f"was {API_KEY}", 7, None], "ignored": {"a": 1}, "text": "one reason"},
    })

    with pytest.raises(InExchangeApiError) as raised:
        hook.send_outbound(SEND_BODY)

    error = raised.value
    assert error.message == "Invalid token *** for key ***"
    assert error.model_state == {"header.***": ["was ***"], "text": ["one reason"]}
    assert TOKEN not in repr(error) + str(error) and API_KEY not in repr(error) + str(error)


def test_a_transport_errors_text_loses_the_secrets_it_quotes(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, _ = make_hook(max_attempts=1)
    api.post(LIST).mock(side_effect=httpx.RemoteProtocolError(f"illegal header line: b'ClientToken: {TOKEN}'"))

    with pytest.raises(InExchangeTransportError) as raised:
        hook.list_outbound()

    assert type(raised.value.__cause__) is httpx.RemoteProtocolError
    assert str(raised.value.__cause__) == "illegal header line: b'ClientToken: ***'"
    assert raised.value.__context__ is None


def test_a_huge_error_reply_gives_a_bounded_one_line_message(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, _ = make_hook()
    api.post("documents").respond(400, json={"message": "x\n" * 100_000,
                                             "modelState": {f"f{i}": ["r"] * 50 for i in range(1000)}})

    with pytest.raises(InExchangeApiError) as raised:
        hook.upload_document(b"<Invoice/>")

    assert len(raised.value.message) <= 500 and "\n" not in raised.value.describe()
    assert len(raised.value.model_state) == 20 and all(len(r) == 5 for r in raised.value.model_state.values())


# ---- paging ---------------------------------------------------------------------------------------
def test_paging_that_makes_no_progress_fails_instead_of_looping(api: respx.MockRouter, make_hook: MakeHook) -> None:
    hook, _ = make_hook()
    listed = api.post(LIST).respond(200, json=outbound_list([outbound_document("d1", "Sent", None)],
                                                            total_count=10**9))  # skip ignored, total huge

    with pytest.raises(InExchangeApiError, match="repeats documents already listed"):
        hook.all_outbound(page_size=1)
    assert listed.call_count == 2


# ---- decoding, bounded ----------------------------------------------------------------------------
def test_gzip_and_deflate_are_decoded_within_the_bound() -> None:
    body = json.dumps(PAGE).encode()

    assert decoded(["gzip"], gzip.compress(body), 1 << 20) == body
    assert decoded(["deflate"], zlib.compress(body), 1 << 20) == body
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decoded(["deflate"], raw.compress(body) + raw.flush(), 1 << 20) == body  # without the zlib header
    assert decoded(["identity", ""], body, 1 << 20) == body


def test_a_compressed_reply_that_expands_beyond_the_bound_is_refused() -> None:
    bomb = gzip.compress(b" " * (8 << 20))  # 8 MiB from about 8 kB

    with pytest.raises(httpx.RemoteProtocolError, match="longer than 1048576 bytes refused"):
        decoded(["gzip"], bomb, 1 << 20)


@pytest.mark.parametrize(("coding", "body"), [("gzip", b"not gzip"), ("deflate", b"not deflate"), ("br", b"{}"),
                                              ("gzip, gzip", gzip.compress(gzip.compress(b"{}"), mtime=0))],
                         ids=["gzip", "deflate", "br", "gzip twice"])
def test_a_reply_in_a_coding_it_cannot_be_in_is_a_protocol_error(coding: str, body: bytes) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        decoded([coding], body, 1 << 20)


def test_requests_ask_for_json_and_the_codings_the_hook_can_bound(api: respx.MockRouter,
                                                                  make_hook: MakeHook) -> None:
    hook, _ = make_hook()
    listed = api.post(LIST).respond(200, json=PAGE)

    hook.list_outbound()

    request = listed.calls.last.request
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Accept-Encoding"] == "gzip, deflate"


def test_deadline_defaults_to_three_read_timeouts(inexchange_conn: str) -> None:
    assert InExchangeHook(inexchange_conn, timeout=10).deadline == 30.0
    assert InExchangeHook(inexchange_conn, deadline=4).deadline == 4.0
    with pytest.raises(ValueError, match="deadline"):
        InExchangeHook(inexchange_conn, deadline=0)


def test_a_408_is_retried_when_idempotent_and_never_a_rejection(api: respx.MockRouter, make_hook: MakeHook) -> None:
    """408: the server stopped waiting for the request; nothing about the invoice was refused."""
    hook, _ = make_hook(max_attempts=2)
    listed = api.post(LIST).respond(408)
    sent = api.post("documents/outbound").respond(408)

    with pytest.raises(InExchangeApiError):
        hook.list_outbound()
    with pytest.raises(InExchangeApiError) as raised:
        hook.send_outbound(SEND_BODY)

    assert listed.call_count == 2 and sent.call_count == 1
    assert raised.value.retryable and not raised.value.permanent
