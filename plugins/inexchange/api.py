"""Typed shapes and the status vocabulary of the InExchange REST API v1."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


class LedgerState(str, enum.Enum):
    """States of an invoice's row in the dispatch ledger (see ARCHITECTURE.md)."""

    PENDING = "pending"
    READY = "ready"
    SUBMITTING = "submitting"
    WAITING = "waiting"
    SENT = "sent"
    REJECTED = "rejected"
    STOPPED = "stopped"
    FAILED = "failed"


#: states that never change again without a person (or a fixed ERP row) stepping in
FINAL_STATES = frozenset({LedgerState.SENT, LedgerState.REJECTED, LedgerState.STOPPED})
#: states whose invoice needs a person's action
ACTION_STATES = frozenset({LedgerState.REJECTED, LedgerState.STOPPED, LedgerState.FAILED})


class SendMethod(str, enum.Enum):
    """How InExchange delivers a document (``sendDocumentAs.type``)."""

    ELECTRONIC = "Electronic"
    PDF = "Pdf"
    PAPER = "Paper"
    AUTO = "Auto"  # sent as null: InExchange chooses


_STATUS_TO_STATE = {
    "PendingInPlatform": LedgerState.WAITING,
    "Pending": LedgerState.WAITING,
    "Sent": LedgerState.SENT,
    "Delivered": LedgerState.SENT,
    "Stopped": LedgerState.STOPPED,
    "Error": LedgerState.FAILED,
}


def ledger_state_for(status: str | None) -> LedgerState:
    """Map an InExchange outbound status to the ledger state it puts the invoice in.

    Unknown statuses keep the invoice ``waiting``: they are stored as text and never treated as final.

    :param status: ``currentStatus.status`` of an outbound document.
    """
    return _STATUS_TO_STATE.get(status or "", LedgerState.WAITING)


def is_final_status(status: str | None) -> bool:
    """Whether an InExchange status ends the follow-up of a document."""
    return ledger_state_for(status) is not LedgerState.WAITING


class ReplyShapeError(ValueError):
    """A reply does not have the documented shape; the text names the field, never its value.

    The ``from_json`` constructors take only what the API documents, of the documented JSON type:
    a field that must be there and is not, or a field of another type (a number where a string
    belongs, an object where a list belongs), fails the whole reply, so a typed result is only
    ever made from a reply that really carries it. Fields the client does not know are ignored.
    """


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReplyShapeError(f"{where} is not a JSON object")
    return value


def _optional_object(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    return None if value is None else _object(value, key)


def _text(data: dict[str, Any], key: str) -> str | None:
    """An optional string field (absent and null are None)."""
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ReplyShapeError(f"{key} is not a string")


def _flag(data: dict[str, Any], key: str) -> bool:
    """An optional boolean field (absent and null are False)."""
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise ReplyShapeError(f"{key} is not a boolean")


def _list(data: dict[str, Any], key: str, *, required: bool = False) -> list[Any]:
    """A list field; an optional one may be absent or null (an empty list)."""
    value = data.get(key)
    if isinstance(value, list):
        return value
    if value is None and not required:
        return []
    raise ReplyShapeError(f"{key} is {'missing' if value is None else 'not a list'}")


def _count(data: dict[str, Any], key: str) -> int:
    """A required non-negative integer field (``true`` is not a number here)."""
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ReplyShapeError(f"{key} is {'missing' if value is None else 'not a non-negative integer'}")


@dataclass(frozen=True)
class BuyerParty:
    """One party from ``buyerparties/lookup``."""

    company_id: str | None
    name: str | None
    org_no: str | None
    vat_no: str | None
    gln: str | None
    peppol_ids: tuple[str, ...]
    can_receive_einvoice: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuyerParty:
        """Read one party; raises :class:`ReplyShapeError` when a field is of another type.

        :param data: one item of the reply's ``parties``.
        """
        data = _object(data, "parties[]")
        peppol_ids = _list(data, "peppolParticipantIdentifiers")
        if not all(isinstance(item, str) for item in peppol_ids):
            raise ReplyShapeError("peppolParticipantIdentifiers is not a list of strings")
        return cls(
            company_id=_text(data, "companyId"),
            name=_text(data, "name"),
            org_no=_text(data, "orgNo"),
            vat_no=_text(data, "vatNo"),
            gln=_text(data, "gln"),
            peppol_ids=tuple(peppol_ids),
            can_receive_einvoice=_text(data, "receiveElectronicInvoiceCapability") == "ReceivingElectronicInvoices",
        )


@dataclass(frozen=True)
class LookupResult:
    """Answer of ``buyerparties/lookup``."""

    parties: tuple[BuyerParty, ...]
    exact_hit: bool
    potential_matches: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LookupResult:
        """Read a lookup reply; ``parties`` must be there (a list, maybe empty), the flags are optional.

        :param data: the reply's JSON object.
        """
        data = _object(data, "reply")
        return cls(
            parties=tuple(BuyerParty.from_json(p) for p in _list(data, "parties", required=True)),
            exact_hit=_flag(data, "exactHit"),
            potential_matches=_flag(data, "potentialMatches"),
        )


@dataclass(frozen=True)
class DocumentError:
    """``error`` of an outbound document."""

    status: str | None
    message: str | None

    def describe(self) -> str:
        """Return ``"{status}: {message}"``, the form kept in the ledger."""
        return f"{self.status or 'Error'}: {self.message or ''}".strip()


@dataclass(frozen=True)
class OutboundDocument:
    """An outbound document's state at InExchange."""

    id: str
    erp_document_id: str | None
    document_type: str | None
    status: str | None
    status_time: datetime | None
    error: DocumentError | None = None
    raw_status_history: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutboundDocument:
        """Read one document; its ``id`` (a non-empty string, or an integer) is required.

        :param data: the reply of ``documents/outbound/{id}``, or one item of a list page.
        """
        data = _object(data, "document")
        identifier = data.get("id")
        if isinstance(identifier, int) and not isinstance(identifier, bool):
            identifier = str(identifier)
        if not isinstance(identifier, str) or not identifier.strip():
            raise ReplyShapeError("id is missing" if identifier is None else "id is not a non-empty string")
        current = _optional_object(data, "currentStatus") or {}
        error = _optional_object(data, "error")
        history = _list(data, "statusHistory")
        if not all(isinstance(item, dict) for item in history):
            raise ReplyShapeError("statusHistory is not a list of objects")
        return cls(
            id=identifier,
            erp_document_id=_text(data, "erpDocumentId"),
            document_type=_text(data, "documentType"),
            status=_text(current, "status"),
            status_time=parse_time(_text(current, "time")),
            error=DocumentError(_text(error, "status"), _text(error, "message")) if error else None,
            raw_status_history=tuple(history),
        )

    @property
    def ledger_state(self) -> LedgerState:
        """The ledger state this document's status maps to."""
        return ledger_state_for(self.status)

    @property
    def message(self) -> str | None:
        """The message to keep for a stopped or failed document."""
        return self.error.describe() if self.error else None

    def to_event(self) -> dict[str, Any]:
        """Return a small JSON-safe dict for a trigger event."""
        return {
            "id": self.id,
            "erp_document_id": self.erp_document_id,
            "status": self.status,
            "time": self.status_time.isoformat() if self.status_time else None,
            "message": self.message,
        }


@dataclass(frozen=True)
class OutboundPage:
    """One page of ``documents/outbound/list``."""

    documents: tuple[OutboundDocument, ...]
    total_count: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutboundPage:
        """Read a list page: ``documents`` (a list) and ``totalCount`` (an integer) are required.

        :param data: the reply's JSON object.
        """
        data = _object(data, "reply")
        documents = _list(data, "documents", required=True)
        return cls(documents=tuple(OutboundDocument.from_json(d) for d in documents),
                   total_count=_count(data, "totalCount"))


def parse_time(value: str | None) -> datetime | None:
    """Parse an ISO 8601 time from the API (``Z`` or an offset; a time without one is UTC).

    Always aware, so that it compares with the cursor and formats as ledger text.

    :param value: the text, or None.
    """
    if not value:
        return None
    if not isinstance(value, str):
        raise ReplyShapeError("time is not a string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ReplyShapeError("time is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
