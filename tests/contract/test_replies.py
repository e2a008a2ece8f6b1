"""Contract tests: InExchange's documented replies, fed to the hook through a respx stub.

Every ``*.json`` beside this module is a whole reply body as InExchange would send it, written
from the documented facts (README.md). Each test reads the fixture's raw JSON itself and computes
what the client must make of it here, independently of the client's own readers; the hook's public
methods do the HTTP exchange against the stub.

The variant tests derive, from every fixture, replies that differ only in fields the pipeline does
not use (dropped, null, of another JSON type, unknown fields added at every object level) and check
that the call still succeeds with the same values of the fields it does use.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx

from inexchange.api import LookupResult, OutboundDocument, OutboundPage
from inexchange.states import LedgerState, is_final_status, ledger_state_for
from inexchange.exceptions import InExchangeApiError
from inexchange.hooks.inexchange import InExchangeHook
from dispatch_testing.reply_fixtures import API_KEY, ERP_ID, fixture_names, load

pytestmark = pytest.mark.timeout(30)

LOOKUP = "buyerparties/lookup"
LIST = "documents/outbound/list"
SEND = "documents/outbound"
ERP_INVOICE = "invoice-1"
BY_ERP_ID = f"invoices/outbound/byerpid/{ERP_INVOICE}"
MakeHook = Callable[..., InExchangeHook]
Path = tuple[str | int, ...]

#: the one capability value documented for a party that receives e-invoices (DOMAIN.md)
RECEIVING = "ReceivingElectronicInvoices"
#: the ledger state each documented status puts an invoice in (DOMAIN.md; any other status: waiting)
STATE_OF = {
    "PendingInPlatform": LedgerState.WAITING,
    "Pending": LedgerState.WAITING,
    "Sent": LedgerState.SENT,
    "Delivered": LedgerState.SENT,
    "Stopped": LedgerState.STOPPED,
    "Error": LedgerState.FAILED,
}
#: statuses whose document carries the message a person reads: "{error.status}: {error.message}"
FAILED = ("Error", "Stopped")


# ---- what the client must make of a reply, computed from its raw JSON ---------------------------
_ISO_8601 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?"
)


def instant(text: str) -> datetime:
    """The aware datetime of an ISO 8601 time as the API writes it (no offset: UTC; digits past 6 cut)."""
    found = _ISO_8601.fullmatch(text)
    assert found, f"fixture time {text!r} is not ISO 8601"
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    micro = int((found[7] or "")[:6].ljust(6, "0"))
    offset = found[8]
    if offset in (None, "Z"):
        zone = timezone.utc
    else:
        sign = 1 if offset[0] == "+" else -1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)


def expected_document(raw: dict[str, Any]) -> dict[str, Any]:
    """The used values of one readable outbound document."""
    status = raw["currentStatus"]["status"]
    view = {
        "id": raw["id"],
        "status": status,
        "status_time": instant(raw["currentStatus"]["time"]),
        "ledger_state": STATE_OF.get(status, LedgerState.WAITING),
    }
    if status in FAILED:
        view["message"] = f"{raw['error']['status']}: {raw['error']['message']}"
    return view


def document_view(document: OutboundDocument) -> dict[str, Any]:
    """The same values as the client read them."""
    assert isinstance(document, OutboundDocument)
    assert document.status_time is None or document.status_time.utcoffset() is not None, "naive status_time"
    view = {
        "id": document.id,
        "status": document.status,
        "status_time": document.status_time,
        "ledger_state": document.ledger_state,
    }
    if document.status in FAILED:
        view["message"] = document.message
    return view


def readable(raw: Any) -> bool:
    """Whether a list item has the used fields in their documented shape."""
    return (isinstance(raw, dict) and isinstance(raw.get("id"), str) and bool(raw["id"].strip())
            and isinstance(raw.get("currentStatus"), dict))


def expected_page(raw: dict[str, Any]) -> dict[str, Any]:
    items = raw["documents"] or []
    return {
        "total_count": raw["totalCount"],
        "documents": [expected_document(item) for item in items if readable(item)],
        "unreadable": [item.get("id") for item in items if not readable(item)],
    }


def page_view(page: OutboundPage) -> dict[str, Any]:
    assert isinstance(page, OutboundPage)
    return {
        "total_count": page.total_count,
        "documents": [document_view(document) for document in page.documents],
        "unreadable": [item.id for item in page.unreadable],
    }


#: the checks a party may carry in ``invoiceChecks`` (DOMAIN.md: bools), each a reference every invoice must have
INVOICE_CHECKS = ("buyerReferenceNo", "buyerReferenceName", "buyerOrderNo", "buyerName")


def expected_checks(party: dict[str, Any]) -> list[str]:
    """The checks a party turns on: each documented flag that is ``true``; none when ``hasInvoiceChecks``
    is ``false`` or ``invoiceChecks`` is no object (the reader is tolerant there: never a failure)."""
    flags = party.get("invoiceChecks")
    if party.get("hasInvoiceChecks") is False or not isinstance(flags, dict):
        return []
    return sorted(check for check in INVOICE_CHECKS if flags.get(check) is True)


def expected_lookup(raw: dict[str, Any]) -> dict[str, Any]:
    parties = []
    for party in raw["parties"] or []:
        checks = expected_checks(party)
        # the name is used when the buyer's name is checked: it must be exactly InExchange's
        name = party["name"] if "buyerName" in checks else None
        parties.append((party["companyId"], party.get("receiveElectronicInvoiceCapability") == RECEIVING, checks, name))
    return {"exact_hit": raw["exactHit"], "parties": parties}


def lookup_view(result: LookupResult) -> dict[str, Any]:
    assert isinstance(result, LookupResult)
    parties = []
    for party in result.parties:
        checks = sorted(check.value for check in party.invoice_checks)
        name = party.name if "buyerName" in checks else None
        parties.append((party.company_id, party.can_receive_einvoice, checks, name))
    return {"exact_hit": result.exact_hit, "parties": parties}


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def reply(status: int, raw: Any) -> httpx.Response:
    """The stub's reply: the fixture's JSON as InExchange sends it."""
    return httpx.Response(status, content=json.dumps(raw).encode(), headers={"Content-Type": "application/json"})


# ---- clientTokens/create ---------------------------------------------------------------------
def test_client_token_of_the_reply_is_sent_as_the_client_token_header(
        api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw_token = load("clientTokens_create")["token"]
    lookup = api.post(LOOKUP).mock(return_value=reply(200, load("buyerparties_lookup.exact_hit")))

    hook.lookup_buyer(party_id="10042")

    created = api["create_token"].calls.last.request
    assert created.headers["APIKey"] == API_KEY and "ClientToken" not in created.headers
    assert body_of(created) == {"erpId": ERP_ID}
    assert lookup.calls.last.request.headers["ClientToken"] == raw_token
    assert "APIKey" not in lookup.calls.last.request.headers


# ---- buyerparties/lookup ---------------------------------------------------------------------
def test_lookup_exact_hit(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("buyerparties_lookup.exact_hit")
    lookup = api.post(LOOKUP).mock(return_value=reply(200, raw))

    result = hook.lookup_buyer(party_id="10042", org_no="5567321707")

    raw_party = raw["parties"][0]
    assert result.exact_hit is True
    assert len(result.parties) == 1
    party = result.parties[0]
    assert party.company_id == raw_party["companyId"]
    assert party.can_receive_einvoice is True
    assert lookup_view(result) == expected_lookup(raw)
    assert type(result.potential_matches) is int and result.potential_matches == raw["potentialMatches"]
    request = lookup.calls.last.request
    assert request.method == "POST" and request.url.path.endswith("/" + LOOKUP)
    assert request.headers["ClientToken"] == load("clientTokens_create")["token"]
    sent = body_of(request)
    assert sent["PartyId"] == "10042"
    assert sent.get("orgNo") == "5567321707"


@pytest.mark.parametrize("count", [0, 1, 2, 37, 250, 100_000])
def test_lookup_potential_matches_is_an_integer_count(
        api: respx.MockRouter, hook: InExchangeHook, count: int) -> None:
    raw = load("buyerparties_lookup.exact_hit")
    raw["potentialMatches"] = count
    api.post(LOOKUP).mock(return_value=reply(200, raw))

    result = hook.lookup_buyer(party_id="10042")

    assert type(result.potential_matches) is int and result.potential_matches == count
    assert lookup_view(result) == expected_lookup(raw)


def test_lookup_no_match_with_parties_null(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("buyerparties_lookup.no_match")
    assert raw["parties"] is None
    api.post(LOOKUP).mock(return_value=reply(200, raw))

    result = hook.lookup_buyer(party_id="10042")

    assert result.parties == ()
    assert result.exact_hit is False
    assert result.potential_matches == 0 and type(result.potential_matches) is int


def test_lookup_party_not_receiving(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("buyerparties_lookup.not_receiving")
    capability = raw["parties"][0]["receiveElectronicInvoiceCapability"]
    assert capability != RECEIVING
    api.post(LOOKUP).mock(return_value=reply(200, raw))

    result = hook.lookup_buyer(party_id="10042")

    assert [party.company_id for party in result.parties] == [raw["parties"][0]["companyId"]]
    assert result.parties[0].can_receive_einvoice is False
    assert lookup_view(result) == expected_lookup(raw)


@pytest.mark.parametrize("capability", [None, "", "receivingelectronicinvoices", "SendsElectronicInvoices",
                                        "ContactRequiredBeforeReceivingElectronicInvoices", 1, True])
def test_lookup_any_other_capability_means_cannot_receive(
        api: respx.MockRouter, hook: InExchangeHook, capability: Any) -> None:
    raw = load("buyerparties_lookup.exact_hit")
    raw["parties"][0]["receiveElectronicInvoiceCapability"] = capability
    api.post(LOOKUP).mock(return_value=reply(200, raw))

    result = hook.lookup_buyer(party_id="10042")

    assert result.parties[0].can_receive_einvoice is False
    assert result.parties[0].company_id == raw["parties"][0]["companyId"]


def test_lookup_peppol_ids_typed_as_objects(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("buyerparties_lookup.peppol_ids_as_objects")
    assert all(isinstance(item, dict) for item in raw["parties"][0]["peppolParticipantIdentifiers"])
    api.post(LOOKUP).mock(return_value=reply(200, raw))

    result = hook.lookup_buyer(party_id="10042")

    assert lookup_view(result) == expected_lookup(raw)
    assert result.parties[0].can_receive_einvoice is True
    assert all(isinstance(text, str) for text in result.parties[0].peppol_ids)


def test_lookup_party_with_invoice_checks(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("buyerparties_lookup.invoice_checks")
    raw_party = raw["parties"][0]
    assert raw_party["hasInvoiceChecks"] is True
    lookup = api.post(LOOKUP).mock(return_value=reply(200, raw))

    result = hook.lookup_buyer(party_id="10042", org_no=raw_party["orgNo"])

    assert lookup_view(result) == expected_lookup(raw)
    checks = {check.value for check in result.parties[0].invoice_checks}
    assert checks == {name for name, on in raw_party["invoiceChecks"].items() if on}
    assert checks == {"buyerReferenceNo", "buyerReferenceName", "buyerOrderNo"}
    assert result.parties[0].has_invoice_checks is True
    assert lookup.call_count == 1


def test_lookup_exact_hit_checks_the_reference_and_the_name(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("buyerparties_lookup.exact_hit")
    api.post(LOOKUP).mock(return_value=reply(200, raw))

    party = hook.lookup_buyer(party_id="10042").parties[0]

    assert {check.value for check in party.invoice_checks} == {"buyerReferenceNo", "buyerName"}
    assert party.name == raw["parties"][0]["name"]


def test_lookup_checks_turned_on_but_not_named_are_none(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("buyerparties_lookup.invoice_checks_null")
    assert raw["parties"][0]["hasInvoiceChecks"] is True and raw["parties"][0]["invoiceChecks"] is None
    api.post(LOOKUP).mock(return_value=reply(200, raw))

    result = hook.lookup_buyer(party_id="10042")

    assert lookup_view(result) == expected_lookup(raw)
    assert result.parties[0].invoice_checks == frozenset()
    assert result.parties[0].has_invoice_checks is True
    assert result.parties[0].can_receive_einvoice is True


@pytest.mark.parametrize(("has", "checks"), [
    (True, "buyerReferenceNo"),
    (True, ["buyerReferenceNo", "buyerOrderNo"]),
    (True, 15),
    ("true", {"buyerReferenceNo": "true", "buyerReferenceName": 1, "buyerOrderNo": None, "buyerName": {}}),
    (1, {"buyerReferenceNo": True, "buyerOrderNo": False}),
    (None, {"buyerOrderNo": True}),
    (False, {"buyerReferenceNo": True, "buyerReferenceName": True, "buyerOrderNo": True, "buyerName": True}),
    (True, {"buyerName": True, "buyerReferenceNo": [True], "somethingNew": True}),
], ids=repr)
def test_lookup_invoice_checks_of_unexpected_types_never_fail_the_call(
        api: respx.MockRouter, hook: InExchangeHook, has: Any, checks: Any) -> None:
    raw = load("buyerparties_lookup.invoice_checks")
    raw["parties"][0]["hasInvoiceChecks"] = has
    raw["parties"][0]["invoiceChecks"] = checks
    api.post(LOOKUP).mock(return_value=reply(200, raw))

    result = hook.lookup_buyer(party_id="10042")

    assert lookup_view(result) == expected_lookup(raw)
    assert result.parties[0].company_id == raw["parties"][0]["companyId"]


# ---- documents/outbound/list -----------------------------------------------------------------
def test_list_page_reads_every_document(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("documents_outbound_list.page")
    listed = api.post(LIST).mock(return_value=reply(200, raw))

    page = hook.list_outbound(take=100, skip=0)

    assert page.total_count == raw["totalCount"]
    assert page.unreadable == ()
    assert [d.id for d in page.documents] == [item["id"] for item in raw["documents"]]
    assert page_view(page) == expected_page(raw)
    by_status = {document.status: document for document in page.documents}
    assert set(by_status) == {"PendingInPlatform", "Pending", "Sent", "Delivered", "Error", "Stopped"}
    # every time aware; "+01:00" is the same instant as its UTC equivalent; no offset is UTC
    assert all(d.status_time is not None and d.status_time.utcoffset() is not None for d in page.documents)
    assert by_status["PendingInPlatform"].status_time == datetime(2024, 3, 1, 9, 15, tzinfo=timezone.utc)
    assert by_status["Pending"].status_time == datetime(2024, 3, 1, 9, 15, tzinfo=timezone.utc)
    assert by_status["Sent"].status_time == datetime(2024, 3, 1, 9, 20, tzinfo=timezone.utc)
    assert by_status["Delivered"].status_time == datetime(2024, 3, 1, 9, 25, 0, 123456, tzinfo=timezone.utc)
    assert by_status["Error"].status_time == datetime(2024, 3, 1, 9, 30, 0, 987654, tzinfo=timezone.utc)
    assert by_status["Stopped"].status_time == datetime(2024, 3, 1, 9, 35, 12, 500000, tzinfo=timezone.utc)
    # messages of failed documents; none on documents whose error is null
    for item in raw["documents"]:
        document = next(d for d in page.documents if d.id == item["id"])
        if item["currentStatus"]["status"] in FAILED:
            assert document.message == f"{item['error']['status']}: {item['error']['message']}"
        else:
            assert item["error"] is None and document.message is None
    assert [ledger_state_for(d.status) for d in page.documents] == [d.ledger_state for d in page.documents]
    assert {status: d.ledger_state for status, d in by_status.items()} == STATE_OF
    request = listed.calls.last.request
    assert request.method == "POST" and request.headers["ClientToken"] == load("clientTokens_create")["token"]
    assert body_of(request)["take"] == 100 and body_of(request)["skip"] == 0


def test_list_unknown_status_and_document_type_are_kept_as_text(
        api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("documents_outbound_list.unknown_values")
    api.post(LIST).mock(return_value=reply(200, raw))

    page = hook.list_outbound()

    assert page_view(page) == expected_page(raw)
    unknown = page.documents[0]
    assert unknown.status == raw["documents"][0]["currentStatus"]["status"] == "AwaitingRecipientApproval"
    assert unknown.document_type == raw["documents"][0]["documentType"]
    assert unknown.document_type not in ("Invoice", "CreditNote")
    assert unknown.ledger_state is LedgerState.WAITING
    assert is_final_status(unknown.status) is False
    assert unknown.message is None


def test_list_page_with_one_unreadable_document(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("documents_outbound_list.one_unreadable")
    bad = [item for item in raw["documents"] if not readable(item)]
    assert len(bad) == 1 and isinstance(bad[0]["currentStatus"], str)
    listed = api.post(LIST).mock(return_value=reply(200, raw))

    page = hook.list_outbound()

    assert page_view(page) == expected_page(raw)
    assert [d.id for d in page.documents] == [item["id"] for item in raw["documents"] if readable(item)]
    assert [u.id for u in page.unreadable] == [bad[0]["id"]]
    assert "currentStatus" in page.unreadable[0].problem
    assert page.total_count == raw["totalCount"]

    documents = hook.all_outbound(page_size=100)

    assert [document_view(d) for d in documents] == expected_page(raw)["documents"]
    assert [u.id for u in hook.unreadable] == [bad[0]["id"]]
    assert listed.call_count == 2  # one list_outbound, one page of all_outbound: all 3 items stepped over


def test_list_page_with_a_document_without_id(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("documents_outbound_list.one_unreadable")
    del raw["documents"][0]["id"]
    api.post(LIST).mock(return_value=reply(200, raw))

    page = hook.list_outbound()

    assert page_view(page) == expected_page(raw)
    assert len(page.documents) == 1 and [u.id for u in page.unreadable] == [None, raw["documents"][1]["id"]]


def test_list_empty_page(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("documents_outbound_list.empty")
    listed = api.post(LIST).mock(return_value=reply(200, raw))

    page = hook.list_outbound()

    assert page.documents == () and page.unreadable == () and page.total_count == 0
    assert hook.all_outbound(page_size=100) == []
    assert listed.call_count == 2 and hook.unreadable == []


# ---- invoices/outbound/byerpid/{erpId} -------------------------------------------------------
def test_find_by_erp_id_found(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("invoices_outbound_byerpid.found")
    found = api.post(BY_ERP_ID).mock(return_value=reply(200, raw))

    document = hook.find_by_erp_id(ERP_INVOICE)

    assert isinstance(document, OutboundDocument)
    assert document_view(document) == expected_document(raw)
    assert document.erp_document_id == raw["erpDocumentId"] == ERP_INVOICE
    assert document.status_time == datetime(2024, 3, 4, 13, 2, 33, 440000, tzinfo=timezone.utc)
    request = found.calls.last.request
    assert request.method == "POST" and request.url.path.endswith("/" + BY_ERP_ID)
    assert request.headers["ClientToken"] == load("clientTokens_create")["token"]
    sent = body_of(request)
    assert sent == {"includeFileInfo": False} and sent["includeFileInfo"] is False


def test_find_by_erp_id_not_found(api: respx.MockRouter, hook: InExchangeHook) -> None:
    raw = load("invoices_outbound_byerpid.not_found")
    found = api.post(BY_ERP_ID).mock(return_value=reply(404, raw))

    assert hook.find_by_erp_id(ERP_INVOICE) is None
    assert found.call_count == 1
    assert body_of(found.calls.last.request) == {"includeFileInfo": False}


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", ["lookup", "send"])
def test_400_with_model_state_names_the_field_and_reason(
        api: respx.MockRouter, hook: InExchangeHook, call: str) -> None:
    raw = load("error.400_model_state")
    path = LOOKUP if call == "lookup" else SEND
    route = api.post(path).mock(return_value=reply(400, raw))

    with pytest.raises(InExchangeApiError) as raised:
        if call == "lookup":
            hook.lookup_buyer(party_id="10042")
        else:
            hook.send_outbound({"document": {"documentFormat": "bis3", "erpDocumentId": ERP_INVOICE}})

    error = raised.value
    assert error.status_code == 400 and error.permanent
    assert error.message == raw["message"]
    text = error.describe()
    for field, reasons in raw["modelState"].items():
        assert field in text
        for reason in reasons:
            assert reason in text
    assert error.model_state == raw["modelState"]
    assert route.call_count == 1  # a refusal is not retried


@pytest.mark.parametrize("attempts", [1, 3])
def test_401_on_client_token_creation_is_an_api_error(
        api: respx.MockRouter, make_hook: MakeHook, attempts: int) -> None:
    raw = load("error.401")
    api["create_token"].mock(return_value=reply(401, raw))
    lookup = api.post(LOOKUP).mock(return_value=reply(200, load("buyerparties_lookup.exact_hit")))
    hook = make_hook(max_attempts=attempts)

    with pytest.raises(InExchangeApiError) as raised:
        hook.lookup_buyer(party_id="10042")

    assert raised.value.status_code == 401
    assert raised.value.message == raw["message"]
    assert 1 <= api["create_token"].call_count <= attempts
    assert lookup.call_count == 0
    assert API_KEY not in str(raised.value)


# ---- variants: fields the pipeline does not use never change the outcome -----------------------
REPLACEMENTS: dict[str, Any] = {
    "null": None,
    "int": 7,
    "float": 2.5,
    "bool": True,
    "text": "unexpected text",
    "object": {"unexpected": {"deeper": [1, None]}},
    "list": [1, "two", None, {"three": 3}],
}
EXTRA_KEY = "zzUndocumentedField"
EXTRA_VALUE: Any = {"nested": [1, None, {"x": True}], "text": "undocumented"}


def walk(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every node of a JSON value with its path (keys and list indices), the root first."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, (*path, index))


def _parent(root: Any, path: Path) -> Any:
    node = root
    for step in path[:-1]:
        node = node[step]
    return node


def dropped(raw: Any, path: Path) -> Any:
    variant = copy.deepcopy(raw)
    del _parent(variant, path)[path[-1]]
    return variant


def replaced(raw: Any, path: Path, value: Any) -> Any:
    variant = copy.deepcopy(raw)
    _parent(variant, path)[path[-1]] = copy.deepcopy(value)
    return variant


def with_extra(raw: Any, paths: list[Path]) -> Any:
    variant = copy.deepcopy(raw)
    for path in paths:
        node = variant
        for step in path:
            node = node[step]
        node[EXTRA_KEY] = copy.deepcopy(EXTRA_VALUE)
    return variant


def shown(path: Path) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path).lstrip(".") or "(reply)"


def variants(raw: Any, used: Callable[[Any, Path], bool]) -> Iterator[tuple[str, Any]]:
    """Replies that differ from ``raw`` only in unused fields, named for the report.

    A node is left alone when it is used or holds a used field; every other node (and each of its
    descendants) is dropped, set to null and replaced by a value of every other JSON type. An
    unknown field is added to each object in turn, then to all of them at once.
    """
    nodes = list(walk(raw))
    used_paths = {path for path, _ in nodes if path and used(raw, path)}
    kept = {()} | {path[:n] for path in used_paths for n in range(len(path) + 1)}
    for path, value in nodes:
        if path in kept:
            continue
        yield f"drop {shown(path)}", dropped(raw, path)
        for kind, replacement in REPLACEMENTS.items():
            if type(replacement) is not type(value) or replacement != value:
                yield f"{shown(path)} -> {kind}", replaced(raw, path, replacement)
    objects = [path for path, value in nodes if isinstance(value, dict)]
    for path in objects:
        yield f"unknown field in {shown(path)}", with_extra(raw, [path])
    yield "unknown fields in every object", with_extra(raw, objects)


def document_field_used(document: Any, relative: Path) -> bool:
    """Whether a field of an outbound document (path relative to it) is one the pipeline uses."""
    if relative in (("id",), ("currentStatus",), ("currentStatus", "status"), ("currentStatus", "time")):
        return True
    if relative in (("error", "status"), ("error", "message")):
        current = document.get("currentStatus")
        return isinstance(current, dict) and current.get("status") in FAILED
    return False


def lookup_used(raw: Any, path: Path) -> bool:
    if path in (("parties",), ("exactHit",)):
        return True
    if len(path) < 3 or path[0] != "parties":
        return False
    party = raw["parties"][path[1]]
    if len(path) == 3 and path[2] in ("companyId", "receiveElectronicInvoiceCapability", "hasInvoiceChecks",
                                      "invoiceChecks"):
        return True
    if len(path) == 4 and path[2] == "invoiceChecks" and path[3] in INVOICE_CHECKS:
        return True
    # the party's name, when its name is checked: an invoice's buyer name must be exactly it
    return len(path) == 3 and path[2] == "name" and "buyerName" in expected_checks(party)


def list_used(raw: Any, path: Path) -> bool:
    if path in (("documents",), ("totalCount",)):
        return True
    if len(path) >= 3 and path[0] == "documents":
        return document_field_used(raw["documents"][path[1]], path[2:])
    return False


@dataclass(frozen=True)
class Call:
    """How a fixture is served and called, and what the client must make of it."""

    method: str
    path: str
    status: int
    #: calls the hook's public method; returns its result, or the InExchangeApiError it raised
    run: Callable[[InExchangeHook, respx.MockRouter], Any]
    #: checks the result against the original fixture's raw JSON (used fields only)
    check: Callable[[Any, Any], None]
    used: Callable[[Any, Path], bool]
    #: the call's result depends on state the hook keeps (the token): a fresh hook per variant
    fresh_hook: bool = False


def _raising(action: Callable[[InExchangeHook], Any]) -> Callable[[InExchangeHook, respx.MockRouter], Any]:
    def run(hook: InExchangeHook, api: respx.MockRouter) -> Any:
        try:
            return action(hook)
        except InExchangeApiError as exc:
            return exc

    return run


def _check_lookup(result: Any, raw: Any) -> None:
    assert lookup_view(result) == expected_lookup(raw)


def _check_page(result: Any, raw: Any) -> None:
    assert page_view(result) == expected_page(raw)


def _check_document(result: Any, raw: Any) -> None:
    assert document_view(result) == expected_document(raw)


def _check_none(result: Any, raw: Any) -> None:
    assert result is None


def _check_token(result: Any, raw: Any) -> None:
    assert result == raw["token"]


def _check_400(result: Any, raw: Any) -> None:
    assert isinstance(result, InExchangeApiError) and result.status_code == 400
    assert result.message == raw["message"]
    for field, reasons in raw["modelState"].items():
        assert field in result.describe() and all(reason in result.describe() for reason in reasons)


def _check_401(result: Any, raw: Any) -> None:
    assert isinstance(result, InExchangeApiError) and result.status_code == 401


def _token_sent(hook: InExchangeHook, api: respx.MockRouter) -> str:
    hook.lookup_buyer(party_id="10042")
    return api[LOOKUP].calls.last.request.headers["ClientToken"]


_LOOKUP = Call("POST", LOOKUP, 200, _raising(lambda hook: hook.lookup_buyer(party_id="10042")), _check_lookup,
               lookup_used)
_LIST = Call("POST", LIST, 200, _raising(lambda hook: hook.list_outbound()), _check_page, list_used)

CALLS: dict[str, Call] = {
    "clientTokens_create": Call("POST", "clientTokens/create", 200, _token_sent, _check_token,
                                lambda raw, path: path == ("token",), fresh_hook=True),
    "buyerparties_lookup.exact_hit": _LOOKUP,
    "buyerparties_lookup.invoice_checks": _LOOKUP,
    "buyerparties_lookup.invoice_checks_null": _LOOKUP,
    "buyerparties_lookup.no_match": _LOOKUP,
    "buyerparties_lookup.not_receiving": _LOOKUP,
    "buyerparties_lookup.peppol_ids_as_objects": _LOOKUP,
    "documents_outbound_list.page": _LIST,
    "documents_outbound_list.unknown_values": _LIST,
    "documents_outbound_list.one_unreadable": _LIST,
    "documents_outbound_list.empty": _LIST,
    "invoices_outbound_byerpid.found": Call(
        "POST", BY_ERP_ID, 200, _raising(lambda hook: hook.find_by_erp_id(ERP_INVOICE)), _check_document,
        lambda raw, path: document_field_used(raw, path)),
    "invoices_outbound_byerpid.not_found": Call(
        "POST", BY_ERP_ID, 404, _raising(lambda hook: hook.find_by_erp_id(ERP_INVOICE)), _check_none,
        lambda raw, path: False),
    "error.400_model_state": Call(
        "POST", LOOKUP, 400, _raising(lambda hook: hook.lookup_buyer(party_id="10042")), _check_400,
        lambda raw, path: path[0] in ("message", "modelState")),
    "error.401": Call(
        "POST", "clientTokens/create", 401, _raising(lambda hook: hook.authenticate()), _check_401,
        lambda raw, path: False),
}


def serve(api: respx.MockRouter, spec: Call) -> respx.Route:
    """The stub's route the fixture is served on (token creation: the conftest's own route).

    ``buyerparties/lookup`` answers the exact hit unless the fixture is served there itself (the
    token fixture is checked on the ClientToken header of a look-up).
    """
    if spec.path != LOOKUP:
        api.post(LOOKUP, name=LOOKUP).mock(return_value=reply(200, load("buyerparties_lookup.exact_hit")))
    if spec.path == "clientTokens/create":
        return api["create_token"]
    return api.route(method=spec.method, path=spec.path)


def test_every_fixture_has_a_call() -> None:
    assert fixture_names() == sorted(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_fixture_as_served_gives_the_documented_values(
        api: respx.MockRouter, make_hook: MakeHook, name: str) -> None:
    spec = CALLS[name]
    raw = load(name)
    serve(api, spec).mock(return_value=reply(spec.status, raw))

    spec.check(spec.run(make_hook(max_attempts=1), api), raw)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_unused_fields_never_change_the_outcome(api: respx.MockRouter, make_hook: MakeHook, name: str) -> None:
    spec = CALLS[name]
    raw = load(name)
    route = serve(api, spec)
    hook = make_hook(max_attempts=1)
    failures: list[str] = []
    count = 0
    for label, variant in variants(raw, spec.used):
        count += 1
        route.mock(return_value=reply(spec.status, variant))
        if spec.fresh_hook:
            hook = make_hook(max_attempts=1)
        result: Any = None
        try:
            result = spec.run(hook, api)
            spec.check(result, raw)
        except AssertionError as exc:  # collected, so that the report lists every variant that fails
            shown_error = result if isinstance(result, Exception) else exc
            failures.append(f"{label}: {type(shown_error).__name__}: {shown_error}")
    assert count > 1
    assert not failures, f"{len(failures)} of {count} variants of {name} changed the outcome:\n" + "\n".join(failures)


@pytest.mark.parametrize(("name", "path", "value"), [
    ("documents_outbound_list.page", ("documents", 4, "currentStatus", "status"), "Sent"),
    ("documents_outbound_list.page", ("documents", 5, "error", "message"), "another reason"),
    ("documents_outbound_list.page", ("documents", 1, "currentStatus", "time"), "2024-03-01T10:15:00Z"),
    ("documents_outbound_list.page", ("totalCount",), 7),
    ("documents_outbound_list.one_unreadable", ("documents", 1, "currentStatus"), {"status": "Sent"}),
    ("buyerparties_lookup.exact_hit", ("parties", 0, "companyId"), "another-company"),
    ("buyerparties_lookup.exact_hit", ("exactHit",), False),
    ("buyerparties_lookup.not_receiving", ("parties", 0, "receiveElectronicInvoiceCapability"), RECEIVING),
    ("buyerparties_lookup.invoice_checks", ("parties", 0, "invoiceChecks", "buyerOrderNo"), False),
    ("buyerparties_lookup.invoice_checks", ("parties", 0, "invoiceChecks", "buyerName"), True),
    ("buyerparties_lookup.invoice_checks", ("parties", 0, "hasInvoiceChecks"), False),
    ("buyerparties_lookup.invoice_checks_null", ("parties", 0, "invoiceChecks"), {"buyerOrderNo": True}),
    ("buyerparties_lookup.exact_hit", ("parties", 0, "name"), "Byggbolaget Norr AB"),
    ("invoices_outbound_byerpid.found", ("id",), "another-id"),
], ids=lambda value: shown(value) if isinstance(value, tuple) else None)
def test_the_variant_check_notices_a_change_in_a_used_field(
        api: respx.MockRouter, make_hook: MakeHook, name: str, path: Path, value: Any) -> None:
    """The harness is not vacuous: changing a used field changes what the check sees."""
    spec = CALLS[name]
    raw = load(name)
    assert spec.used(raw, path)
    serve(api, spec).mock(return_value=reply(spec.status, replaced(raw, path, value)))

    with pytest.raises(AssertionError):
        spec.check(spec.run(make_hook(max_attempts=1), api), raw)
