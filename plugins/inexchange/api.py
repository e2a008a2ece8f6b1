"""Typed shapes and the status vocabulary of the InExchange REST API v1."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
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
        return cls(
            company_id=data.get("companyId"),
            name=data.get("name"),
            org_no=data.get("orgNo"),
            vat_no=data.get("vatNo"),
            gln=data.get("gln"),
            peppol_ids=tuple(data.get("peppolParticipantIdentifiers") or ()),
            can_receive_einvoice=data.get("receiveElectronicInvoiceCapability")
            == "ReceivingElectronicInvoices",
        )


@dataclass(frozen=True)
class LookupResult:
    """Answer of ``buyerparties/lookup``."""

    parties: tuple[BuyerParty, ...]
    exact_hit: bool
    potential_matches: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LookupResult:
        return cls(
            parties=tuple(BuyerParty.from_json(p) for p in data.get("parties") or ()),
            exact_hit=bool(data.get("exactHit")),
            potential_matches=bool(data.get("potentialMatches")),
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
        current = data.get("currentStatus") or {}
        error = data.get("error")
        return cls(
            id=str(data["id"]),
            erp_document_id=data.get("erpDocumentId"),
            document_type=data.get("documentType"),
            status=current.get("status"),
            status_time=parse_time(current.get("time")),
            error=DocumentError(error.get("status"), error.get("message")) if error else None,
            raw_status_history=tuple(data.get("statusHistory") or ()),
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


def parse_time(value: str | None) -> datetime | None:
    """Parse an ISO 8601 time from the API (``Z`` or an offset)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
