"""Canned InExchange API payloads and connection values shared by the unit tests.

Part of the test helpers' package: ``from dispatch_testing.unit_fixtures import ...``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

API_BASE = "https://api.test/v1/api/"
API_KEY = "secret-key"
ERP_ID = "erp-1"
TOKEN = "client-token-7f3a9c"
SECOND_TOKEN = "client-token-b81e44"

#: connection extras the hook reads
CONNECTION: dict[str, Any] = {
    "conn_type": "inexchange",
    "host": API_BASE,
    "password": API_KEY,
    "extra": {"erp_id": ERP_ID},
}

DOCUMENT_ID = "6c1b3f0e-9a3d-4d3c-8f61-0b8f2b7e5a10"
DOCUMENT_URN = "urn:inexchangedocument:0f4c2a9e-1d7b-4e55-9b1a-3c6d8e2f7a44"

#: 400 reply of InExchange for a request its validation refused
INVALID_REQUEST: dict[str, Any] = {
    "message": "The request is invalid.",
    "modelState": {
        "document.erpDocumentId": ["The ErpDocumentId field is required."],
        "recipientInformation.orgNo": ["Invalid organisation number.", "Too short."],
    },
}

#: reply of buyerparties/lookup with one e-invoice receiver and one that cannot receive
LOOKUP_REPLY: dict[str, Any] = {
    "parties": [
        {
            "companyId": "c7d1e2f3-0000-4000-8000-000000000001",
            "name": "Byggbolaget i Norr AB",
            "orgNo": "5560000001",
            "vatNo": "SE556000000101",
            "gln": "7350000000017",
            "peppolParticipantIdentifiers": ["0007:5560000001", "0088:7350000000017"],
            "receiveElectronicInvoiceCapability": "ReceivingElectronicInvoices",
        },
        {
            "companyId": "c7d1e2f3-0000-4000-8000-000000000002",
            "name": "Byggbolaget i Norr AB, filial",
            "orgNo": "5560000001",
            "vatNo": None,
            "gln": None,
            "peppolParticipantIdentifiers": None,
            "receiveElectronicInvoiceCapability": "NotReceivingElectronicInvoices",
        },
    ],
    "potentialMatches": 2,  # an integer count in the API (DOMAIN.md)
    "exactHit": True,
}

#: a body for documents/outbound, as the submit operator builds it
SEND_BODY: dict[str, Any] = {
    "sendDocumentAs": {"type": None},
    "recipientInformation": {"orgNo": "5560000001", "name": "Byggbolaget i Norr AB", "recipientNo": "C-1001",
                             "countryCode": "SE"},
    "document": {"documentFormat": "bis3", "erpDocumentId": "invoice-1", "documentUri": DOCUMENT_URN,
                 "language": "sv", "culture": "sv-SE"},
}


def connection_json(**overrides: Any) -> str:
    """Return an ``AIRFLOW_CONN_*`` value of the ``inexchange`` connection, fields overridden.

    :param overrides: connection fields to replace; ``None`` removes a field.
    """
    conn = {**CONNECTION, **overrides}
    return json.dumps({key: value for key, value in conn.items() if value is not None})


def sqlite_connection_json(path: Path) -> str:
    """Return an ``AIRFLOW_CONN_*`` value of a SQLite database file.

    :param path: the database file.
    """
    return json.dumps({"conn_type": "sqlite", "host": str(path)})


def outbound_document(
    document_id: str,
    status: str,
    time: str | None,
    *,
    erp_document_id: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return one document as ``documents/outbound/list`` and ``documents/outbound/{id}`` give it.

    :param document_id: InExchange's document id.
    :param status: ``currentStatus.status``.
    :param time: ``currentStatus.time`` (ISO 8601).
    :param erp_document_id: our id of the invoice.
    :param error: the document's ``error`` object, if any.
    """
    document: dict[str, Any] = {
        "id": document_id,
        "documentType": "Invoice",
        "erpDocumentId": erp_document_id,
        "currentStatus": {"status": status, "time": time},
        "statusHistory": [{"status": "PendingInPlatform", "time": "2026-11-25T06:00:00Z"},
                          {"status": status, "time": time}],
    }
    if error is not None:
        document["error"] = error
    return document


def outbound_list(documents: list[dict[str, Any]], total_count: int | None = None) -> dict[str, Any]:
    """Return a ``documents/outbound/list`` page.

    :param documents: the page's documents.
    :param total_count: ``totalCount``; the number of documents when omitted.
    """
    return {"documents": documents, "totalCount": len(documents) if total_count is None else total_count}


STOPPED_ERROR: dict[str, Any] = {
    "status": "InvalidEmail",
    "message": "The recipient e-mail address bounced",
    "moreInfoUri": "https://support.inexchange.se/stopped",
}
