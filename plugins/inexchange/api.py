"""Typed shapes of the InExchange REST API v1."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from inexchange.states import LedgerState, ledger_state_for


class SendMethod(enum.StrEnum):
    """How InExchange delivers a document (``sendDocumentAs.type``)."""

    ELECTRONIC = "Electronic"
    PDF = "Pdf"
    PAPER = "Paper"
    AUTO = "Auto"  # sent as null: InExchange chooses


class ReplyShapeError(ValueError):
    """A field the pipeline uses does not have its documented shape; the text names the field, never its value.

    The ``from_json`` constructors are tolerant readers: strict about every field the pipeline
    uses (a document's ``id``, ``currentStatus``, ``error`` of a failed document; a lookup's
    ``parties`` and ``exactHit``, a party's ``companyId``; a list page's ``documents`` and
    ``totalCount``), and never failing over a field it does not use: another type, ``null``, a
    missing field, an unknown enum value or fields nobody documented are all read as "unknown".
    """


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReplyShapeError(f"{where} is not a JSON object")
    return value


def _optional_object(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    return None if value is None else _object(value, key)


def _text(data: dict[str, Any], key: str) -> str | None:
    """An optional string field the pipeline uses (absent and null are None; another type fails)."""
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ReplyShapeError(f"{key} is not a string")


def _loose_text(data: dict[str, Any], key: str) -> str | None:
    """A field the pipeline does not use, kept for logs: a string or a number as text, anything else None."""
    value = data.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _loose_count(data: dict[str, Any], key: str) -> int | None:
    """A count the pipeline does not use: an integer (a boolean as 0 or 1), anything else None."""
    value = data.get(key)
    return int(value) if isinstance(value, int) else None


def _list(data: dict[str, Any], key: str) -> list[Any]:
    """A list field the pipeline uses; absent and null are an empty list, another type fails."""
    value = data.get(key)
    if isinstance(value, list):
        return value
    if value is None:
        return []
    raise ReplyShapeError(f"{key} is not a list")


def _required_flag(data: dict[str, Any], key: str) -> bool:
    """A boolean field the pipeline decides on: it must be there, and be true or false."""
    value = data.get(key)
    if isinstance(value, bool):
        return value
    raise ReplyShapeError(f"{key} is {'missing' if value is None else 'not a boolean'}")


def _count(data: dict[str, Any], key: str) -> int:
    """A required non-negative integer field (``true`` is not a number here)."""
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ReplyShapeError(f"{key} is {'missing' if value is None else 'not a non-negative integer'}")


def _participant_ids(value: Any) -> tuple[str, ...]:
    """``peppolParticipantIdentifiers`` as ``scheme:identifier`` texts, as far as they can be read.

    Public clients show them as strings and as objects (``{"scheme": ..., "identifier": ...}``); the
    pipeline does not use them, so an item of any other shape is left out.
    """
    if not isinstance(value, list):
        return ()
    ids: list[str] = []
    for item in value:
        if isinstance(item, str):
            ids.append(item)
        elif isinstance(item, dict):
            scheme, identifier = _loose_text(item, "scheme"), _loose_text(item, "identifier")
            if identifier:
                ids.append(f"{scheme}:{identifier}" if scheme else identifier)
    return tuple(ids)


#: the only capability value seen for a party that receives e-invoices; any other means "cannot"
RECEIVING_CAPABILITY = "ReceivingElectronicInvoices"


class InvoiceCheck(enum.StrEnum):
    """A reference a buyer demands on every invoice (a key of a party's ``invoiceChecks``).

    InExchange stops an invoice sent to the party that lacks it.
    """

    #: a buyer reference (Peppol BuyerReference)
    BUYER_REFERENCE_NO = "buyerReferenceNo"
    #: the buyer's reference person by name (the buyer's contact name)
    BUYER_REFERENCE_NAME = "buyerReferenceName"
    #: the buyer's order number (Peppol OrderReference)
    BUYER_ORDER_NO = "buyerOrderNo"
    #: the buyer's name exactly as InExchange has it
    BUYER_NAME = "buyerName"


def _invoice_checks(data: dict[str, Any]) -> frozenset[InvoiceCheck]:
    """The checks a party turns on: each key of ``invoiceChecks`` that is ``true``, unless ``hasInvoiceChecks``
    is ``false``.

    Read loosely, never failing: ``invoiceChecks`` that is no object is no check, a flag that is not
    ``true`` (``false``, ``null``, missing, another type) is off. ``hasInvoiceChecks`` ``false`` turns
    them all off (the flags of a buyer who switched its checks off may stay stored); absent or of
    another type, the flags decide.
    """
    if data.get("hasInvoiceChecks") is False:
        return frozenset()
    flags = data.get("invoiceChecks")
    if not isinstance(flags, dict):
        return frozenset()
    return frozenset(check for check in InvoiceCheck if flags.get(check.value) is True)


@dataclass(frozen=True)
class BuyerParty:
    """One party from ``buyerparties/lookup``.

    The pipeline uses ``company_id`` (the e-invoice recipient), ``can_receive_einvoice`` and the
    ``invoice_checks`` the party demands (with ``name`` when the buyer's name is checked); the other
    fields are kept for logs. All but ``company_id`` are read loosely (None, or no check, when absent
    or of another type).

    :param has_invoice_checks: ``hasInvoiceChecks`` as the reply has it (None unless a boolean).
    """

    company_id: str | None
    name: str | None
    org_no: str | None
    vat_no: str | None
    gln: str | None
    peppol_ids: tuple[str, ...]
    can_receive_einvoice: bool
    invoice_checks: frozenset[InvoiceCheck] = frozenset()
    has_invoice_checks: bool | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuyerParty:
        """Read one party; raises :class:`ReplyShapeError` when ``companyId`` is not a string.

        :param data: one item of the reply's ``parties``.
        """
        data = _object(data, "parties[]")
        return cls(
            company_id=_text(data, "companyId"),
            name=_loose_text(data, "name"),
            org_no=_loose_text(data, "orgNo"),
            vat_no=_loose_text(data, "vatNo"),
            gln=_loose_text(data, "gln"),
            peppol_ids=_participant_ids(data.get("peppolParticipantIdentifiers")),
            can_receive_einvoice=data.get("receiveElectronicInvoiceCapability") == RECEIVING_CAPABILITY,
            invoice_checks=_invoice_checks(data),
            has_invoice_checks=flag if isinstance(flag := data.get("hasInvoiceChecks"), bool) else None,
        )


@dataclass(frozen=True)
class LookupResult:
    """Answer of ``buyerparties/lookup``.

    :param potential_matches: InExchange's count of potential matches (an integer in the API; not
        used by the pipeline, None when the reply has no readable count).
    """

    parties: tuple[BuyerParty, ...]
    exact_hit: bool
    potential_matches: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LookupResult:
        """Read a lookup reply: ``exactHit`` must be a boolean, ``parties`` a list (null or absent: none).

        :param data: the reply's JSON object.
        """
        data = _object(data, "reply")
        return cls(
            parties=tuple(BuyerParty.from_json(p) for p in _list(data, "parties")),
            exact_hit=_required_flag(data, "exactHit"),
            potential_matches=_loose_count(data, "potentialMatches"),
        )


@dataclass(frozen=True)
class DocumentError:
    """``error`` of an outbound document."""

    status: str | None
    message: str | None

    @classmethod
    def from_json(cls, value: Any) -> DocumentError | None:
        """Read ``error``: an object whose ``status`` and ``message`` are text (a number as text), or null.

        An object whose status and message are both empty is no error (None).
        """
        if value is None:
            return None
        error = _object(value, "error")
        for key in ("status", "message"):
            if error.get(key) is not None and _loose_text(error, key) is None:
                raise ReplyShapeError(f"error.{key} is not a string")
        status, message = _loose_text(error, "status"), _loose_text(error, "message")
        # .NET services often write an empty error object ({"status": null, "message": null}): no error
        return cls(status, message) if status or message else None

    def describe(self) -> str:
        """Return ``"{status}: {message}"``, the form kept in the ledger."""
        return f"{self.status or 'Error'}: {self.message or ''}".strip()


def document_id(value: Any) -> str:
    """A document's ``id`` as text: a non-empty string, or an integer; anything else fails."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ReplyShapeError("id is missing" if value is None else "id is not a non-empty string")
    return value


@dataclass(frozen=True)
class OutboundDocument:
    """An outbound document's state at InExchange.

    The pipeline uses ``id``, ``status``, ``status_time`` and, for a failed or stopped document,
    ``error``; ``erp_document_id`` and ``document_type`` are kept for logs and read loosely.
    """

    id: str
    erp_document_id: str | None
    document_type: str | None
    status: str | None
    status_time: datetime | None
    error: DocumentError | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutboundDocument:
        """Read one document; its ``id`` (a non-empty string, or an integer) is required.

        ``currentStatus`` must be an object whose ``status`` is a non-empty text (an unknown one is
        kept as it is) and whose ``time``, when there is one, is an ISO 8601 text. ``error`` must be readable on a document whose status is ``Error`` or
        ``Stopped`` (its message is what a person reads); on any other document an unreadable
        ``error`` is ignored.

        :param data: the reply of ``documents/outbound/{id}``, or one item of a list page.
        """
        data = _object(data, "document")
        identifier = document_id(data.get("id"))
        current = _optional_object(data, "currentStatus")
        if current is None:
            raise ReplyShapeError("currentStatus is missing")
        status = _text(current, "status")
        if not status:
            raise ReplyShapeError("currentStatus.status is missing")
        try:
            error = DocumentError.from_json(data.get("error"))
        except ReplyShapeError:
            if ledger_state_for(status) in (LedgerState.WAITING, LedgerState.SENT):
                error = None  # not used for a document that is on its way or delivered
            else:
                raise
        return cls(
            id=identifier,
            erp_document_id=_loose_text(data, "erpDocumentId"),
            document_type=_loose_text(data, "documentType"),
            status=status,
            status_time=parse_time(_text(current, "time")),
            error=error,
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
class UnreadableDocument:
    """A document of a list page that could not be read: its id (as far as it shows) and why.

    :param id: the item's ``id`` as text, or None when it has none that can be shown.
    :param problem: which field was not of its documented shape (never a value from the reply).
    """

    id: str | None
    problem: str

    @classmethod
    def of(cls, item: Any, problem: str) -> UnreadableDocument:
        """Describe an item that :meth:`OutboundDocument.from_json` refused."""
        raw = item.get("id") if isinstance(item, dict) else None
        shown = raw if isinstance(raw, str) and _SHOWN_ID.fullmatch(raw) else None
        if isinstance(raw, int) and not isinstance(raw, bool):
            shown = str(raw)
        return cls(shown, problem)


#: an id from a reply that is safe to write to a log line as it is
_SHOWN_ID = re.compile(r"[0-9A-Za-z._:-]{1,100}")


@dataclass(frozen=True)
class OutboundPage:
    """One page of ``documents/outbound/list``.

    :param documents: the page's documents that could be read, in the page's order.
    :param total_count: ``totalCount``: how many documents match the filters in all.
    :param unreadable: the page's items that could not be read (skipped; the rest of the page counts).
    """

    documents: tuple[OutboundDocument, ...]
    total_count: int
    unreadable: tuple[UnreadableDocument, ...] = ()

    @property
    def size(self) -> int:
        """How many items the page listed, readable or not (what paging with ``skip`` steps over)."""
        return len(self.documents) + len(self.unreadable)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutboundPage:
        """Read a list page: ``documents`` (a list; null is none) and ``totalCount`` (an integer) are required.

        One document that cannot be read does not fail the page: it is left out and listed in
        :attr:`unreadable`. A page none of whose documents can be read is a reply of another shape
        and fails like one.

        :param data: the reply's JSON object.
        """
        data = _object(data, "reply")
        if "documents" not in data:
            raise ReplyShapeError("documents is missing")
        total = _count(data, "totalCount")
        documents: list[OutboundDocument] = []
        unreadable: list[UnreadableDocument] = []
        for item in _list(data, "documents"):
            try:
                documents.append(OutboundDocument.from_json(item))
            except ReplyShapeError as exc:
                unreadable.append(UnreadableDocument.of(item, str(exc)))
        if unreadable and not documents:  # not one document of the kind documented: the page is unusable
            raise ReplyShapeError(f"no document of the page can be read ({unreadable[0].problem})")
        return cls(documents=tuple(documents), total_count=total, unreadable=tuple(unreadable))


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
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
