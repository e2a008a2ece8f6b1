"""The endpoints of InExchange's REST API v1 the provider calls, each written once.

Each function describes one call (:class:`~inexchange.hooks.protocol.Call`): method, path, body and
how the reply is read (:mod:`inexchange.replies`). :func:`all_outbound` pages through a listing: a
generator that yields one call per page. :class:`~inexchange.hooks.inexchange.InExchangeHook` runs
them, synchronously or async.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from datetime import datetime
from typing import Any

from inexchange.api import LookupResult, OutboundDocument, OutboundPage, UnreadableDocument
from inexchange.exceptions import InExchangeApiError
from inexchange.hooks.protocol import Call
from inexchange.replies import client_token, document_uri, not_found_or, reading, sent_document_id

#: the body of ``invoices/outbound/byerpid/{erpId}``, as public clients send it
BY_ERP_ID_BODY = {"includeFileInfo": False}
_LIST = "documents/outbound/list"


def create_token(erp_id: str) -> Call:
    """``POST clientTokens/create``: a client token for the ERP id, made with the API key.

    A token reply that cannot be read is retried like any other, as a second token is harmless.
    """
    return Call("POST", "clientTokens/create", auth="apikey", json={"erpId": erp_id}, read=client_token)


def revoke_token(token: str) -> Call:
    """``POST clientTokens/revoke``: end a client token."""
    return Call("POST", "clientTokens/revoke", auth="apikey", json={"clientToken": token})


def lookup_buyer(
    *,
    party_id: str,
    org_no: str | None = None,
    gln: str | None = None,
    vat_no: str | None = None,
    name: str | None = None,
) -> Call:
    """``POST buyerparties/lookup``: a buyer in InExchange's party register.

    :param party_id: our own id of the party (the customer number).
    """
    body = {"PartyId": party_id, "orgNo": org_no, "gln": gln, "vatNo": vat_no, "name": name}
    return Call(
        "POST",
        "buyerparties/lookup",
        json={key: value for key, value in body.items() if value},
        read=reading("buyerparties/lookup", LookupResult.from_json),
    )


def upload_document(content: bytes) -> Call:
    """``POST documents``: upload a UBL file; the result is its ``urn:inexchangedocument:`` URI."""
    return Call("POST", "documents", content=content, headers=(("Content-Type", "application/xml"),), read=document_uri)


def send_outbound(body: dict[str, Any]) -> Call:
    """``POST documents/outbound``: send an uploaded document; the result is its document id.

    Not idempotent: not repeated once the request may have reached InExchange (the caller reconciles
    by ERP id).
    """
    return Call("POST", "documents/outbound", idempotent=False, json=body, read=sent_document_id)


def get_outbound(document_id: str) -> Call:
    """``GET documents/outbound/{id}``: one outbound document."""
    path = f"documents/outbound/{document_id}"
    return Call("GET", path, read=reading(path, OutboundDocument.from_json))


def find_by_erp_id(erp_id: str) -> Call:
    """``POST invoices/outbound/byerpid/{erpId}``: the invoice InExchange received under our ERP id.

    The result is None only for a 404 that is InExchange's own (an empty body or a JSON object): a
    404 page of something in between (HTML, text) proves nothing about the invoice and fails the
    call, since "never received" lets the caller send the invoice again.
    """
    path = f"invoices/outbound/byerpid/{erp_id}"
    return Call(
        "POST",
        path,
        json=BY_ERP_ID_BODY,
        answers=frozenset({404}),
        read=not_found_or(reading(path, OutboundDocument.from_json), path),
    )


def list_outbound(**filters: Any) -> Call:
    """``POST documents/outbound/list``: one page of outbound documents; filters as in :func:`list_body`."""
    return Call("POST", _LIST, json=list_body(**filters), read=reading(_LIST, OutboundPage.from_json))


def list_body(
    *,
    take: int = 100,
    skip: int = 0,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    updated_after: datetime | None = None,
    status: str | None = None,
    document_type: str | None = None,
) -> dict[str, Any]:
    """Build the body of ``documents/outbound/list`` (error details always included)."""
    body: dict[str, Any] = {"take": take, "skip": skip, "includeErrorInfo": True}
    for key, value in (("createdFrom", created_from), ("createdTo", created_to), ("updatedAfter", updated_after)):
        if value is not None:
            body[key] = value.isoformat()
    if status:
        body["status"] = status
    if document_type:
        body["documentType"] = document_type
    return body


class ListingCheck:
    """What a listing remembers while it pages: the ids listed so far.

    A page that lists only documents already listed (a server that ignores ``skip``) fails instead
    of paging forever. A document that cannot be read goes to ``unreadable`` and is left out; the
    rest of its page counts.
    """

    def __init__(self, unreadable: Callable[[UnreadableDocument], None]) -> None:
        self._unreadable = unreadable
        self._seen: set[str] = set()

    def accept(self, page: OutboundPage, skip: int) -> Sequence[OutboundDocument]:
        """The readable documents of the page listed at ``skip``; raise when it repeats the listing."""
        if self._seen and page.documents and self._seen.issuperset(d.id for d in page.documents):
            raise InExchangeApiError(200, f"the page at skip={skip} repeats documents already listed", path=_LIST)
        for item in page.unreadable:
            self._unreadable(item)
        self._seen.update(d.id for d in page.documents)
        return page.documents


def all_outbound(
    page_size: int, filters: dict[str, Any], unreadable: Callable[[UnreadableDocument], None]
) -> Generator[Call, Any, list[OutboundDocument]]:
    """Every document matching the filters, page by page (``take``/``skip``) up to ``totalCount``.

    Yields the call of each page and is sent back its :class:`~inexchange.api.OutboundPage`; each
    page goes through a :class:`ListingCheck`.
    """
    documents: list[OutboundDocument] = []
    check = ListingCheck(unreadable)
    listed = 0  # items stepped over, readable or not
    while True:
        page: OutboundPage = yield list_outbound(take=page_size, skip=listed, **filters)
        documents.extend(check.accept(page, listed))
        listed += page.size
        if not page.size or listed >= page.total_count:
            return documents
