"""Hostile InExchange replies for the fuzz tests (stubbed and on the wire), and what a result may be.

A reply is a :class:`Reply` (status, headers, body) or a :class:`Failure` (a transport error raised
instead of a reply). The shapes: any status (1xx, 204, 206, 3xx, 418, 599 among them), odd
``Content-Type``, ``Location``, ``Retry-After`` and ``Content-Encoding`` headers, arbitrary bytes,
invalid UTF-8, JSON of any shape (recursive, or near the documented shape of each endpoint with
fields of the wrong type), JSON nested deeper than Python's parser can go, huge numbers, ``NaN`` and
``Infinity`` literals, JSON cut off, HTML pages, and texts that quote the API key or the token.
The checks (``check_*``) read a reply on their own and say whether a result of the hook is one the
reply really carries, of the promised types.

Part of the test helpers' package: ``from dispatch_testing.hostile import ...``.
"""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from hypothesis import strategies as st

from inexchange.api import BuyerParty, DocumentError, LookupResult, OutboundDocument, OutboundPage
from inexchange.times import utc_text

if TYPE_CHECKING:
    from inexchange.hooks.inexchange import InExchangeHook

#: the secrets a reply may quote; the tests use the same key and token
API_KEY = "secret-key"
TOKEN = "client-token-7f3a9c"
DOCUMENT_ID = "6c1b3f0e-9a3d-4d3c-8f61-0b8f2b7e5a10"
DOCUMENT_URN = "urn:inexchangedocument:0f4c2a9e-1d7b-4e55-9b1a-3c6d8e2f7a44"
#: a body for documents/outbound (the fuzzed servers do not look at it)
SEND_BODY: dict[str, Any] = {
    "sendDocumentAs": {"type": None},
    "recipientInformation": {"orgNo": "5560000001", "name": "Byggbolaget i Norr AB", "countryCode": "SE"},
    "document": {"documentFormat": "bis3", "erpDocumentId": "invoice-1", "documentUri": DOCUMENT_URN},
}


@dataclass(frozen=True)
class Reply:
    """One HTTP reply: status, headers (name, value bytes) and body."""

    status: int
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The last value of a header, decoded as httpx decodes it (latin-1 at worst), or None."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1].decode("latin-1") if values else None

    def json(self) -> Any:
        """The body as strict JSON (RFC 8259: no NaN or Infinity), or ``NOT_JSON``; decoded, if gzip/deflate."""
        return strict_json(self.decoded_body())

    def decoded_body(self) -> bytes:
        """The body decoded from its Content-Encoding, as far as a test can tell."""
        coding = (self.header("Content-Encoding") or "").strip().lower()
        try:
            if coding in ("gzip", "x-gzip"):
                return gzip.decompress(self.body)
            if coding == "deflate":
                return zlib.decompress(self.body)
        except (OSError, EOFError, zlib.error):
            return b"\x00not decodable"
        return self.body

    def to_httpx(self) -> httpx.Response:
        """The reply as an ``httpx.Response`` (for respx)."""
        return httpx.Response(self.status, headers=list(self.headers), content=self.body)


@dataclass(frozen=True)
class Failure:
    """A transport error raised instead of a reply."""

    error: type[httpx.HTTPError]
    text: str = "fuzzed failure"

    @property
    def never_sent(self) -> bool:
        """Whether the request certainly never reached the server."""
        return issubclass(self.error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))

    def raise_it(self) -> None:
        raise self.error(self.text)


NOT_JSON = object()


def strict_json(content: bytes) -> Any:
    """``content`` parsed as RFC 8259 JSON, or ``NOT_JSON``."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    try:
        return json.loads(content, parse_constant=refuse)
    except (ValueError, RecursionError):
        return NOT_JSON


# ---- building blocks -----------------------------------------------------------------------------
NOTABLE_STATUSES = (100, 101, 103, 200, 201, 202, 203, 204, 205, 206, 226, 299, 300, 301, 302, 303, 304, 307, 308,
                    400, 401, 403, 404, 405, 408, 409, 413, 418, 422, 425, 429, 451, 500, 502, 503, 504, 599)
statuses = st.one_of(st.sampled_from(NOTABLE_STATUSES), st.integers(100, 599))
#: the statuses of success, weighted up so that the reading of a reply's body is fuzzed often
success_statuses = st.sampled_from((200, 200, 200, 201, 202, 203, 204, 206))

#: header text as a wire can carry it: latin-1 without line breaks or NUL
header_text = st.text(st.characters(min_codepoint=1, max_codepoint=255, exclude_characters="\r\n"), max_size=40)

content_types = st.one_of(
    st.sampled_from([
        "application/json", "application/json; charset=utf-8", "application/json; charset=iso-8859-1",
        "application/problem+json", "text/json", "text/html", "text/html; charset=utf-8", "text/plain",
        "application/xml", "application/octet-stream", "multipart/form-data; boundary=x", "", ";;;",
        'application/json; charset="bogus"', "APPLICATION/JSON",
    ]),
    header_text,
)
locations = st.one_of(
    st.sampled_from([
        DOCUMENT_URN, f"https://api.test/v1/api/documents/outbound/{DOCUMENT_ID}",
        f"/v1/api/documents/outbound/{DOCUMENT_ID}/", f"documents/outbound/{DOCUMENT_ID}",
        f"documents/outbound/{DOCUMENT_ID}?x=1#y", "documents/outbound/", "documents/outbound/..",
        "https://api.test/v1/api/documents/outbound/", "urn:inexchangedocument:", "URN:INEXCHANGEDOCUMENT:ABC",
        "/", "", "   ", "http://[::1", "javascript:alert(1)", "https://login.example/", f"urn:inexchangedocument:{TOKEN}",
        f"documents/outbound/{DOCUMENT_ID} trailing", "documents/outbound/\xe5\xe4\xf6",
        f"documents/outbound/{DOCUMENT_ID.upper()}", "urn:inexchangedocument:not-a-guid",
        "urn:inexchangedocument:../../etc/passwd", "documents/outbound/?id=%00", "x" * 2048,
        f"documents/outbound/{DOCUMENT_ID}x", f"{DOCUMENT_URN}/more",
    ]),
    header_text,
)
retry_afters = st.one_of(
    st.integers(-10**6, 10**12).map(str),
    st.floats().map(repr),
    st.sampled_from(["Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 1900 00:00:00 GMT",
                     "Sun, 06 Nov 1994 08:49:37", "soon", "", " 3 ", "1e3", "\xb2", "0x10", "-1", "120, 30", "1.5",
                     "NaN", "inf", "9" * 400]),
    header_text,
)
content_encodings = st.sampled_from(["identity", "gzip", "x-gzip", "deflate", "br", "gzip, gzip", "compress", "", "GZIP"])


def _header(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, bytes]]:
    return values.map(lambda value: (name, value.encode("latin-1", "replace")))


#: keys the API uses, so that random JSON often reaches the code reading them
API_KEYS = ("documents", "totalCount", "id", "erpDocumentId", "documentType", "currentStatus", "status", "time",
            "error", "message", "Message", "modelState", "ModelState", "statusHistory", "token", "parties",
            "exactHit", "potentialMatches", "companyId", "orgNo", "vatNo", "gln", "name",
            "peppolParticipantIdentifiers", "receiveElectronicInvoiceCapability")
keys = st.one_of(st.sampled_from(API_KEYS), st.text(max_size=8))
secrets_text = st.sampled_from([API_KEY, TOKEN, f"invalid APIKey '{API_KEY}'", f"token {TOKEN} expired",
                                f"{TOKEN}\r\n{API_KEY}"])
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-10**40, 10**40), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20), secrets_text,
    st.sampled_from(["", "Sent", "Delivered", "Stopped", "Error", "Pending", "2026-11-25T06:00:00Z",
                     "2026-11-25T06:00:00", "not a time", "ReceivingElectronicInvoices", "9999-99-99"]),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5))


json_values = st.recursive(scalars, _containers, max_leaves=25)
times = st.one_of(st.none(), st.sampled_from(["2026-11-25T06:00:00Z", "2026-11-25T07:00:00+01:00", "2026-11-25T06:00:00",
                                              "2026-11-25", "25/11/2026", "", "Z"]), json_values)
ids = st.one_of(st.just(DOCUMENT_ID), st.uuids().map(str), st.integers(-5, 10**6), st.sampled_from(["", " ", "\t"]),
                json_values)
texts_or_any = st.one_of(st.none(), st.text(max_size=20), json_values)


@st.composite
def outbound_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A document of nearly the documented shape: each field present or not, of its type or not."""
    document: dict[str, Any] = {}
    fields = {
        "id": ids,
        "erpDocumentId": texts_or_any,
        "documentType": st.one_of(st.just("Invoice"), texts_or_any),
        "currentStatus": st.one_of(
            st.fixed_dictionaries({}, optional={"status": st.one_of(st.sampled_from(["Sent", "Pending"]), texts_or_any),
                                                "time": times}),
            json_values),
        "error": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"status": texts_or_any, "message": texts_or_any}),
                           json_values),
        "statusHistory": st.one_of(st.none(), st.lists(st.dictionaries(keys, scalars, max_size=3), max_size=3), json_values),
    }
    for name, strategy in fields.items():
        if name == "id" or draw(st.booleans()):
            document[name] = draw(strategy)
    if draw(st.integers(0, 9)) == 0:
        del document["id"]
    return document


@st.composite
def parties(draw: st.DrawFn) -> dict[str, Any]:
    """A party of nearly the documented shape."""
    strings = st.one_of(st.text(max_size=12), st.none(), json_values)
    return draw(st.fixed_dictionaries({}, optional={
        "companyId": strings, "name": strings, "orgNo": strings, "vatNo": strings, "gln": strings,
        "peppolParticipantIdentifiers": st.one_of(st.lists(st.text(max_size=12), max_size=3), json_values),
        "receiveElectronicInvoiceCapability": st.one_of(st.just("ReceivingElectronicInvoices"), strings),
    }))


def near_shapes(draw: st.DrawFn) -> Any:
    """A JSON value of nearly the documented shape of one of the endpoints' replies."""
    kind = draw(st.sampled_from(["document", "page", "lookup", "token", "error"]))
    if kind == "document":
        return draw(outbound_documents())
    if kind == "page":
        return draw(st.fixed_dictionaries({}, optional={
            "documents": st.one_of(st.lists(outbound_documents(), max_size=3), json_values),
            "totalCount": st.one_of(st.integers(-2, 10), st.integers(), st.booleans(), st.sampled_from(["3", 1.5]),
                                    json_values)}))
    if kind == "lookup":
        return draw(st.fixed_dictionaries({}, optional={
            "parties": st.one_of(st.lists(parties(), max_size=3), json_values),
            "exactHit": st.one_of(st.booleans(), json_values), "potentialMatches": st.one_of(st.booleans(), json_values)}))
    if kind == "token":
        return draw(st.fixed_dictionaries({}, optional={"token": st.one_of(
            st.just(TOKEN), st.text(max_size=30), st.sampled_from(["", " ", "a b", "x\r\ny", "\u20ac", "t" * 5000]),
            json_values)}))
    return draw(st.fixed_dictionaries({}, optional={
        "message": st.one_of(secrets_text, texts_or_any), "Message": texts_or_any,
        "modelState": st.one_of(st.dictionaries(st.one_of(keys, secrets_text),
                                                st.one_of(st.lists(st.one_of(st.text(max_size=10), secrets_text, scalars),
                                                                   max_size=3), scalars),
                                                max_size=4), json_values)}))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A reply body of any of the hostile kinds."""
    kind = draw(st.sampled_from(["near", "near", "near", "json", "bytes", "utf8", "utf16", "deep", "huge-number",
                                 "constant", "cut", "html", "empty"]))
    if kind == "near":
        return _dumps(near_shapes(draw))
    if kind == "json":
        return _dumps(draw(json_values))
    if kind == "bytes":
        return draw(st.binary(max_size=120))
    if kind == "utf8":  # JSON whose strings hold bytes that are not UTF-8
        return b'{"id": "' + draw(st.binary(min_size=1, max_size=8)).replace(b'"', b"") + b'\xff\xfe", "documents": []}'
    if kind == "utf16":
        return json.dumps(near_shapes(draw)).encode("utf-16")
    if kind == "deep":
        depth = draw(st.integers(100, 200_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"documents":[', b"]}")]))
        return opener * depth + b"1" + closer * draw(st.sampled_from([depth, 0, depth // 2]))
    if kind == "huge-number":
        digits = draw(st.integers(300, 6000))
        number = draw(st.sampled_from([b"1" + b"0" * digits, b"1e" + str(digits).encode(), b"-0." + b"0" * digits + b"1"]))
        key = draw(st.sampled_from([b"totalCount", b"id", b"exactHit", b"token"]))
        return b'{"documents": [], "parties": [], "' + key + b'": ' + number + b"}"
    if kind == "constant":
        constant = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]))
        return b'{"documents": [], "totalCount": ' + constant + b', "id": ' + constant + b', "parties": []}'
    if kind == "cut":
        whole = _dumps(near_shapes(draw))
        return whole[: draw(st.integers(0, max(len(whole) - 1, 0)))]
    if kind == "html":
        return draw(st.sampled_from([
            b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
            b"<html><body>Please log in</body></html>", b'<?xml version="1.0"?><Error>denied</Error>']))
    return b""


@st.composite
def replies(draw: st.DrawFn, status: st.SearchStrategy[int] | None = None, *, encoded: bool = True) -> Reply:
    """A hostile reply: status, odd headers, hostile body (with ``encoded``, sometimes in a content coding).

    Content codings are the transports' business: respx hands httpx a response that httpx decodes
    its own way, so only the wire tests ask for them.
    """
    code = draw(status if status is not None else st.one_of(success_statuses, statuses))
    headers: list[tuple[str, bytes]] = []
    for name, values in (("Content-Type", content_types), ("Location", locations), ("Retry-After", retry_afters)):
        if draw(st.integers(0, 2)):
            headers.append(draw(_header(name, values)))
    body = draw(bodies())
    if encoded and draw(st.integers(0, 7)) == 0:
        coding = draw(content_encodings)
        headers.append(("Content-Encoding", coding.encode()))
        if draw(st.booleans()) and coding.strip().lower() in ("gzip", "x-gzip"):
            body = gzip.compress(body)
        elif draw(st.booleans()) and coding.strip().lower() == "deflate":
            body = zlib.compress(body)
    return Reply(code, tuple(headers), body)


failures = st.builds(Failure, st.sampled_from([
    httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ReadTimeout, httpx.WriteTimeout,
    httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.DecodingError,
]), st.one_of(st.just("fuzzed failure"), secrets_text))


def sequences(max_size: int = 5) -> st.SearchStrategy[list[Reply | Failure]]:
    """What one route answers, request after request (the last answer is repeated); stubbed, not encoded."""
    reply = replies(encoded=False)
    return st.lists(st.one_of(reply, reply, reply, failures), min_size=1, max_size=max_size)


@dataclass
class Script:
    """A route's answers in order, the last one repeated, and the requests it received."""

    answers: list[Reply | Failure]
    limit: int = 200
    received: list[tuple[Any, Reply | Failure]] = field(default_factory=list)

    def next(self, request: Any) -> Reply | Failure:
        """The answer to ``request`` (recorded with it); a call that never ends fails the test."""
        if len(self.received) >= self.limit:
            raise AssertionError(f"{self.limit} requests to one route: the call does not end")
        answer = self.answers[min(len(self.received), len(self.answers) - 1)]
        self.received.append((request, answer))
        return answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """A respx side effect: the next answer, returned or raised."""
        answer = self.next(request)
        if isinstance(answer, Failure):
            answer.raise_it()
        assert isinstance(answer, Reply)
        return answer.to_httpx()


# ---- what a reply carries, read by the test on its own ---------------------------------------
def is_success(reply: Reply | Failure) -> bool:
    return isinstance(reply, Reply) and 200 <= reply.status < 300 and reply.status != 206


def body_object(reply: Reply | Failure) -> dict[str, Any]:
    """The JSON object a successful reply carries; fails the test when it carries none."""
    assert is_success(reply), f"a result from {reply!r}"
    assert isinstance(reply, Reply)
    body = reply.json()
    assert isinstance(body, dict), f"a result from a reply whose body is not a JSON object: {reply.body[:200]!r}"
    return body


def optional_text(value: Any, raw: Any) -> None:
    """A field the pipeline uses: the reply's string (or None), nothing else."""
    assert value is None or isinstance(value, str)
    assert value == raw, (value, raw)


def loose_text(value: Any, raw: Any) -> None:
    """A field the pipeline does not use: the reply's string or number as text, else None (never a failure)."""
    expected = raw if isinstance(raw, str) else str(raw) if isinstance(raw, int | float) and not isinstance(
        raw, bool) else None
    assert value == expected, (value, raw)


def check_document(document: Any, raw: Any) -> None:
    """``document`` is a well-typed OutboundDocument read from ``raw``, and usable downstream."""
    assert isinstance(document, OutboundDocument) and isinstance(raw, dict)
    assert isinstance(document.id, str) and document.id.strip()
    assert document.id == (str(raw["id"]) if isinstance(raw["id"], int) else raw["id"])
    assert not isinstance(raw["id"], bool)
    loose_text(document.erp_document_id, raw.get("erpDocumentId"))
    loose_text(document.document_type, raw.get("documentType"))
    current = raw.get("currentStatus") or {}
    optional_text(document.status, current.get("status"))
    if document.status_time is not None:
        assert isinstance(document.status_time, datetime) and document.status_time.tzinfo is not None
        assert isinstance(current.get("time"), str)
        utc_text(document.status_time)
    else:
        assert not current.get("time")
    if document.error is not None:
        assert isinstance(document.error, DocumentError) and isinstance(raw["error"], dict)
        loose_text(document.error.status, raw["error"].get("status"))
        loose_text(document.error.message, raw["error"].get("message"))
    elif document.status in ("Error", "Stopped"):  # what a person reads must not be lost
        assert raw.get("error") is None
    document.ledger_state  # noqa: B018 - the sensor and the ledger read these
    json.dumps(document.to_event())


def check_party(party: Any, raw: Any) -> None:
    assert isinstance(party, BuyerParty) and isinstance(raw, dict)
    optional_text(party.company_id, raw.get("companyId"))
    for attribute, key in (("name", "name"), ("org_no", "orgNo"), ("vat_no", "vatNo"), ("gln", "gln")):
        loose_text(getattr(party, attribute), raw.get(key))
    assert all(isinstance(item, str) for item in party.peppol_ids)
    assert party.can_receive_einvoice is (raw.get("receiveElectronicInvoiceCapability") == "ReceivingElectronicInvoices")
    # invoice checks: read loosely, each one on only where the reply says true (and does not switch them off)
    flags = raw.get("invoiceChecks")
    on = set() if raw.get("hasInvoiceChecks") is False or not isinstance(flags, dict) else {
        name for name, value in flags.items() if value is True}
    assert {check.value for check in party.invoice_checks} == on & {
        "buyerReferenceNo", "buyerReferenceName", "buyerOrderNo", "buyerName"}
    has = raw.get("hasInvoiceChecks")
    assert party.has_invoice_checks is (has if isinstance(has, bool) else None)


def check_page(page: Any, raw: dict[str, Any]) -> None:
    """Every item of the page is either read (in order) or listed as unreadable; none is lost."""
    assert isinstance(page, OutboundPage)
    items = raw["documents"] if raw["documents"] is not None else []
    assert isinstance(items, list) and len(page.documents) + len(page.unreadable) == len(items)
    readable = iter(page.documents)
    document = next(readable, None)
    for item in items:
        if document is not None and isinstance(item, dict) and "id" in item and not isinstance(item["id"], bool) \
                and document.id == (str(item["id"]) if isinstance(item["id"], int) else item["id"]):
            check_document(document, item)
            document = next(readable, None)
    assert document is None, "a document that is not among the page's items"
    assert type(raw["totalCount"]) is int and page.total_count == raw["totalCount"] >= 0


# ---- the endpoints -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """One endpoint method: how to call it sync and async, and what its result must be."""

    name: str
    method: str
    path: str
    call: Callable[[InExchangeHook], Any]
    acall: Callable[[InExchangeHook], Awaitable[Any]]
    #: checks the result against the reply it came from (the last one the route answered)
    check: Callable[[Any, Reply | Failure, Script], None]
    idempotent: bool = True
    pages: bool = False


def check_lookup(result: Any, reply: Reply | Failure, script: Script) -> None:
    raw = body_object(reply)
    assert isinstance(result, LookupResult)
    parties = raw.get("parties")
    assert parties is None or isinstance(parties, list)
    assert len(result.parties) == len(parties or [])
    for party, item in zip(result.parties, parties or []):
        check_party(party, item)
    assert isinstance(raw.get("exactHit"), bool) and result.exact_hit is raw["exactHit"]
    potential = raw.get("potentialMatches")
    assert result.potential_matches == (int(potential) if isinstance(potential, int) else None)


def is_guid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def check_upload(result: Any, reply: Reply | Failure, script: Script) -> None:
    assert is_success(reply) and isinstance(reply, Reply)
    assert isinstance(result, str) and result == (reply.header("Location") or "").strip()
    scheme, _, guid = result.rpartition(":")
    assert scheme.lower() == "urn:inexchangedocument" and is_guid(guid), result


def check_send(result: Any, reply: Reply | Failure, script: Script) -> None:
    assert is_success(reply) and isinstance(reply, Reply)
    location = (reply.header("Location") or "").strip()
    assert isinstance(result, str) and is_guid(result), result
    assert f"documents/outbound/{result}".lower() in location.lower(), (result, location)


def check_get(result: Any, reply: Reply | Failure, script: Script) -> None:
    check_document(result, body_object(reply))


def check_find(result: Any, reply: Reply | Failure, script: Script) -> None:
    if result is None:  # "never received": only InExchange's own 404 says so
        assert isinstance(reply, Reply) and reply.status == 404, reply
        assert not reply.decoded_body().strip() or isinstance(reply.json(), dict), reply.body[:200]
        return
    check_document(result, body_object(reply))


def check_list(result: Any, reply: Reply | Failure, script: Script) -> None:
    check_page(result, body_object(reply))


def check_all(result: Any, reply: Reply | Failure, script: Script) -> None:
    """Every document comes from a successful page, in order, and paging stopped where the pages say."""
    assert isinstance(result, list)
    served = [answer for _, answer in script.received]
    pages = [body_object(answer) for answer in served if is_success(answer) and isinstance(answer.json(), dict)
             and isinstance(answer.json().get("documents"), list)]
    listed = [item for page in pages for item in page["documents"]]
    assert len(result) <= len(listed)
    ids = {str(item["id"]) if isinstance(item["id"], int) else item["id"] for item in listed if isinstance(item, dict)
           and "id" in item}
    for document in result:
        assert isinstance(document, OutboundDocument) and document.id in ids
    last = body_object(reply)
    # paging stops on an empty page or once the items listed (readable or not) reach totalCount
    assert not last["documents"] or len(listed) >= last["totalCount"]


ENDPOINTS = [
    Endpoint("lookup_buyer", "POST", "buyerparties/lookup", lambda h: h.lookup_buyer(party_id="K1", org_no="5560000001"),
             lambda h: h.alookup_buyer(party_id="K1", org_no="5560000001"), check_lookup),
    Endpoint("upload_document", "POST", "documents", lambda h: h.upload_document(b"<Invoice/>"),
             lambda h: h.aupload_document(b"<Invoice/>"), check_upload),
    Endpoint("send_outbound", "POST", "documents/outbound", lambda h: h.send_outbound(SEND_BODY),
             lambda h: h.asend_outbound(SEND_BODY), check_send, idempotent=False),
    Endpoint("get_outbound", "GET", "documents/outbound/d-1", lambda h: h.get_outbound("d-1"),
             lambda h: h.aget_outbound("d-1"), check_get),
    Endpoint("find_by_erp_id", "POST", "invoices/outbound/byerpid/invoice-1", lambda h: h.find_by_erp_id("invoice-1"),
             lambda h: h.afind_by_erp_id("invoice-1"), check_find),
    Endpoint("list_outbound", "POST", "documents/outbound/list", lambda h: h.list_outbound(take=50),
             lambda h: h.alist_outbound(take=50), check_list),
    Endpoint("all_outbound", "POST", "documents/outbound/list", lambda h: h.all_outbound(page_size=2),
             lambda h: h.aall_outbound(page_size=2), check_all, pages=True),
]


# ---- errors ----------------------------------------------------------------------------------------
def chained_texts(error: BaseException) -> str:
    """str() and repr() of an exception and of everything chained to it."""
    texts: list[str] = []
    pending, seen = [error], set()
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        texts += [str(exc), repr(exc)]
        pending += [e for e in (exc.__cause__, exc.__context__) if e is not None]
    return "\n".join(texts)
