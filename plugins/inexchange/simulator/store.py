"""In-memory state of the simulator: client tokens, uploaded files, outbound documents, counters.

Outbound documents never change once stored: their whole timeline (``PendingInPlatform``, then
``Pending`` one status step later, then the final status two steps later) and their outcome are fixed
when they are sent, and the status shown is computed from the time of the request. No background
task is needed and a status never moves backwards, even when the status step is changed at runtime.
A slow document's status step is ``slow_factor`` times the normal one; a stuck document stays
``Pending`` for ``stuck_ms`` more before its final status.

Each owner's documents are also kept in creation order (the clock never goes backwards, so sending
appends), which lets a listing find its ``createdFrom``/``createdTo`` window by bisection and look
only at the documents inside it: a page costs the size of its window, not of the whole store.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import secrets
import shutil
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from lxml import etree

from inexchange.simulator.config import FAULT_KINDS, FUZZ_SHAPES, SimulatorConfig
from inexchange.simulator.holds import Holds
from inexchange.simulator.registry import PartyRegistry
from inexchange.simulator.seeded import unit

UBL_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
DOCUMENT_TYPES = ("Invoice", "CreditNote")
US_PER_S = 1_000_000
DUPLICATE_WINDOW_US = 365 * 24 * 3600 * US_PER_S
FUZZ_RECENT = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def utc_iso(micros: int) -> str:
    """Format epoch microseconds as UTC ISO 8601 with microseconds and a ``Z`` suffix."""
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> int:
    """Parse an ISO 8601 timestamp (``Z``, an offset, or naive meaning UTC) to epoch microseconds.

    Raises ``ValueError`` for anything else.
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(microseconds=1)


class Clock:
    """Wall-clock time in whole microseconds that never goes backwards within one process.

    Whole microseconds are exactly what the API's timestamps show, so a time read back from a
    response (an ``updatedAfter`` cursor) compares equal to the stored one.
    """

    def __init__(self) -> None:
        """Start at the current wall-clock time."""
        self._last = time.time_ns() // 1000

    def now(self) -> int:
        """Return epoch microseconds, never less than any value returned before."""
        self._last = max(self._last, time.time_ns() // 1000)
        return self._last


@dataclass(slots=True)
class Token:
    """A client token and the ERP company (``erpId``) it was created for."""

    value: str
    erp_id: str
    expires_at: int
    revoked: bool = False

    def live(self, now: int) -> bool:
        """Tell whether the token is neither revoked nor expired at ``now``."""
        return not self.revoked and now < self.expires_at


@dataclass(slots=True)
class Upload:
    """A file received by ``POST documents``; ``path`` is ``None`` when uploads are not written."""

    guid: str
    path: Path | None
    size: int
    document_type: str
    invoice_number: str | None

    @property
    def uri(self) -> str:
        """The ``DocumentUri`` that ``documents/outbound`` refers to."""
        return f"urn:inexchangedocument:{self.guid}"


@dataclass(slots=True)
class OutboundDocument:
    """One sent document with its predetermined timeline and outcome.

    It is ``PendingInPlatform`` from ``created``, ``Pending`` from ``pending_at`` and in its final
    status from ``final_at``; ``slow`` and ``stuck`` tell how that timeline was drawn.
    """

    id: str
    owner: str
    erp_document_id: str
    document_type: str
    invoice_number: str
    send_as: str | None
    recipient_information: dict[str, Any]
    created: int
    pending_at: int
    final_at: int
    final_status: str
    error: dict[str, Any] | None = None
    slow: bool = False
    stuck: bool = False

    def history(self, now: int) -> list[tuple[str, int]]:
        """Return the statuses reached at ``now``, oldest first (the first one always).

        :param now: epoch microseconds.
        """
        timeline = [
            ("PendingInPlatform", self.created),
            ("Pending", self.pending_at),
            (self.final_status, self.final_at),
        ]
        return [timeline[0], *(entry for entry in timeline[1:] if entry[1] <= now)]

    def current(self, now: int) -> tuple[str, int]:
        """Return the status and its time at ``now``.

        :param now: epoch microseconds.
        """
        if now >= self.final_at:
            return self.final_status, self.final_at
        if now >= self.pending_at:
            return "Pending", self.pending_at
        return "PendingInPlatform", self.created

    def to_json(self, now: int, *, include_error: bool = True) -> dict[str, Any]:
        """Render the document the way the InExchange API does at ``now``."""
        history = self.history(now)
        status, since = history[-1]
        body: dict[str, Any] = {
            "id": self.id,
            "documentType": self.document_type,
            "erpDocumentId": self.erp_document_id,
            "created": utc_iso(self.created),
            "currentStatus": {"status": status, "time": utc_iso(since)},
            "statusHistory": [{"status": s, "time": utc_iso(t)} for s, t in history],
            "sendDocumentAs": self.send_as,
            "recipientInformation": dict(self.recipient_information),
        }
        if include_error:
            body["error"] = dict(self.error) if self.error and status == self.final_status else None
        return body


class Outbox:
    """One owner's outbound documents in creation order, for listings by creation window."""

    __slots__ = ("created", "documents", "longest_us")

    def __init__(self) -> None:
        """Start empty."""
        self.created: list[int] = []
        self.documents: list[OutboundDocument] = []
        self.longest_us = 0

    def add(self, document: OutboundDocument) -> None:
        """Keep ``document`` in creation order (an append, since the clock never goes back).

        :param document: a document just sent.
        """
        if self.created and document.created < self.created[-1]:
            index = bisect.bisect_right(self.created, document.created)
            self.created.insert(index, document.created)
            self.documents.insert(index, document)
        else:
            self.created.append(document.created)
            self.documents.append(document)
        self.longest_us = max(self.longest_us, document.final_at - document.created)

    def window(self, created_from: int | None, created_to: int | None, updated_after: int | None) -> tuple[int, int]:
        """Return the index range of the documents that can match these bounds.

        Inclusive creation bounds; a document created at or before ``updated_after`` minus the
        longest timeline of any document here has had its last status change by ``updated_after``,
        so it cannot match a strict ``updatedAfter`` either.

        :param created_from: earliest creation time (epoch µs), or ``None``.
        :param created_to: latest creation time (epoch µs), or ``None``.
        :param updated_after: the ``updatedAfter`` cursor (epoch µs), or ``None``.
        """
        low = 0 if created_from is None else bisect.bisect_left(self.created, created_from)
        if updated_after is not None:
            low = max(low, bisect.bisect_right(self.created, updated_after - self.longest_us))
        high = len(self.created) if created_to is None else bisect.bisect_right(self.created, created_to)
        return low, max(low, high)


def read_ubl(content: bytes) -> tuple[str, str | None]:
    """Return the document type and invoice number (``cbc:ID``) of a UBL file.

    Content that is not a UBL Invoice or CreditNote counts as an invoice without a number.
    """
    try:
        root = etree.fromstring(content, parser=_XML_PARSER)
    except etree.XMLSyntaxError:
        return "Invoice", None
    local_name = etree.QName(root).localname
    document_type = local_name if local_name in DOCUMENT_TYPES else "Invoice"
    number = root.findtext(f"{{{UBL_CBC}}}ID")
    return document_type, (number.strip() or None) if number else None


class Store:
    """All mutable state of one simulator, shared by the request handlers."""

    def __init__(self, config: SimulatorConfig) -> None:
        """Create empty state that stores uploaded files under ``config.data_dir/documents``."""
        self.config = config
        self.clock = Clock()
        self.registry = PartyRegistry(config.seed)
        self.tokens: dict[str, Token] = {}
        self.holds = Holds()
        self.stopping = asyncio.Event()
        self.dripping = 0
        self.documents_dir = config.data_dir / "documents"
        self.documents_dir.mkdir(parents=True, exist_ok=True)
        self._reset_documents()

    def _reset_documents(self) -> None:
        self.uploads: dict[str, Upload] = {}
        self.documents: dict[str, OutboundDocument] = {}
        self.outboxes: dict[str, Outbox] = {}
        self.latest_by_erp_id: dict[tuple[str, str], OutboundDocument] = {}
        self.by_invoice_number: dict[tuple[str, str, str], list[OutboundDocument]] = {}
        self.stuck: list[OutboundDocument] = []
        self.slow_documents = 0
        self.sends: Counter[str] = Counter()
        self.duplicates: set[str] = set()
        self.requests = 0
        self.tokens_created = 0
        self.list_requests = 0
        self.list_examined = 0
        self.faults: Counter[str] = Counter({kind: 0 for kind in FAULT_KINDS})
        self.fuzz_shapes: Counter[str] = Counter({shape: 0 for shape in FUZZ_SHAPES})
        self.fuzz_processed = 0
        self.fuzz_recent: deque[dict[str, Any]] = deque(maxlen=FUZZ_RECENT)
        self.rng = random.Random(self.config.seed)

    def reset(self) -> None:
        """Forget documents, uploads, counters and registered parties, release holds; tokens stay valid.

        The random generator behind latency jitter and faults is reseeded, so a run after a reset
        sees the same fault sequence as a run on a fresh simulator.
        """
        self.holds.release()
        self._reset_documents()
        self.registry.clear()
        shutil.rmtree(self.documents_dir, ignore_errors=True)
        self.documents_dir.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        """Let every held request go on and end every dripping reply: the server is stopping."""
        self.stopping.set()
        self.holds.release()

    # Tokens -------------------------------------------------------------------------------

    def create_token(self, erp_id: str, valid_to: int | None) -> Token:
        """Issue a token for ``erp_id`` that lives ``token_ttl_s`` or until ``valid_to`` (epoch µs)."""
        expires_at = self.clock.now() + round(self.config.token_ttl_s * US_PER_S)
        if valid_to is not None:
            expires_at = min(expires_at, valid_to)
        token = Token(value=secrets.token_urlsafe(32), erp_id=erp_id, expires_at=expires_at)
        self.tokens[token.value] = token
        self.tokens_created += 1
        return token

    def live_token(self, value: str | None) -> Token | None:
        """Return the token named by ``value`` when it is live, else ``None``."""
        token = self.tokens.get(value or "")
        return token if token is not None and token.live(self.clock.now()) else None

    def issued_tokens(self) -> list[dict[str, Any]]:
        """Return every client token issued since start-up, oldest first, with its state now."""
        now = self.clock.now()
        return [
            {
                "token": token.value,
                "erpId": token.erp_id,
                "expiresAt": utc_iso(token.expires_at),
                "revoked": token.revoked,
                "expired": now >= token.expires_at,
            }
            for token in self.tokens.values()
        ]

    # Documents ----------------------------------------------------------------------------

    def upload(self, content: bytes) -> Upload:
        """Remember an uploaded file's type and invoice number; the caller writes it to ``path``.

        ``path`` is ``None`` when the configuration keeps no upload files.

        :param content: the uploaded file.
        """
        guid = str(uuid.uuid4())
        path = self.documents_dir / f"{guid}.xml" if self.config.upload_files else None
        document_type, number = read_ubl(content)
        upload = Upload(guid, path, len(content), document_type, number)
        self.uploads[guid] = upload
        return upload

    def upload_by_uri(self, uri: str) -> Upload | None:
        """Resolve a ``urn:inexchangedocument:{guid}`` URI (case-insensitively) to its upload."""
        prefix = "urn:inexchangedocument:"
        if not uri.lower().startswith(prefix):
            return None
        return self.uploads.get(uri[len(prefix):].lower())

    def send(
        self,
        *,
        owner: str,
        upload: Upload,
        erp_document_id: str,
        send_as: str | None,
        pdf_email: str | None,
        recipient_information: dict[str, Any],
    ) -> OutboundDocument:
        """Create an outbound document, count the send and fix its outcome.

        The outcome, in order of precedence: ``Error`` when the same owner sent a document of the
        same type with the same invoice number within a year (an earlier document that itself ended
        in ``Error`` does not count); otherwise a seeded draw on ``erpDocumentId`` gives ``Stopped``
        with probability ``stop_rate``, ``Error`` with probability ``error_rate``, else ``Delivered``
        for electronic delivery and ``Sent`` for the others. The timeline is drawn the same way:
        slow with probability ``slow_rate``, stuck with probability ``stuck_rate``.
        """
        config = self.config
        now = self.clock.now()
        number = upload.invoice_number or erp_document_id
        number_key = (owner, upload.document_type, number)
        duplicate = any(
            doc.final_status != "Error" and now - doc.created < DUPLICATE_WINDOW_US
            for doc in self.by_invoice_number.get(number_key, ())
        )
        final_status, error = self._outcome(erp_document_id, send_as, pdf_email, number, duplicate)
        slow = unit(config.seed, "slow", erp_document_id) < config.slow_rate
        stuck = unit(config.seed, "stuck", erp_document_id) < config.stuck_rate
        step_us = round(config.status_step_ms * 1000 * (config.slow_factor if slow else 1.0))
        document = OutboundDocument(
            id=str(uuid.uuid4()),
            owner=owner,
            erp_document_id=erp_document_id,
            document_type=upload.document_type,
            invoice_number=number,
            send_as=send_as,
            recipient_information=recipient_information,
            created=now,
            pending_at=now + step_us,
            final_at=now + 2 * step_us + (round(config.stuck_ms * 1000) if stuck else 0),
            final_status=final_status,
            error=error,
            slow=slow,
            stuck=stuck,
        )
        self.documents[document.id] = document
        outbox = self.outboxes.get(owner)
        if outbox is None:
            outbox = self.outboxes[owner] = Outbox()
        outbox.add(document)
        self.latest_by_erp_id[(owner, erp_document_id)] = document
        self.by_invoice_number.setdefault(number_key, []).append(document)
        self.sends[erp_document_id] += 1
        if self.sends[erp_document_id] == 2:
            self.duplicates.add(erp_document_id)
        self.slow_documents += slow
        if stuck:
            self.stuck.append(document)
        return document

    def _outcome(
        self, erp_document_id: str, send_as: str | None, pdf_email: str | None, number: str, duplicate: bool
    ) -> tuple[str, dict[str, Any] | None]:
        seed = self.config.seed
        if duplicate:
            return "Error", _error("DuplicateInvoiceNumber", f"Duplicate invoice number {number}")
        draw = unit(seed, "outcome", erp_document_id)
        if draw < self.config.stop_rate:
            if unit(seed, "stop-reason", erp_document_id) < 0.5:
                return "Stopped", _error(
                    "AwaitingRecipientApproval",
                    "The recipient must approve the supplier before the invoice can be delivered",
                )
            return "Stopped", _error(
                "InvalidDeliveryMethod", "The recipient does not accept invoices by the chosen delivery method"
            )
        if draw < self.config.stop_rate + self.config.error_rate:
            if send_as == "Pdf":
                return "Error", _error("InvalidEmailAddress", f"The e-mail to {pdf_email} could not be delivered")
            if send_as == "Electronic":
                return "Error", _error("DeliveryFailed", "The recipient's access point rejected the document")
            return "Error", _error("DeliveryFailed", "The document could not be delivered")
        return ("Delivered" if send_as == "Electronic" else "Sent"), None

    def document(self, owner: str, document_id: str) -> OutboundDocument | None:
        """Return the owner's document with this id (case-insensitive), if any."""
        document = self.documents.get(document_id.lower())
        return document if document is not None and document.owner == owner else None

    def latest_for_erp_id(self, owner: str, erp_document_id: str) -> OutboundDocument | None:
        """Return the owner's most recently sent document with this ``erpDocumentId``, if any."""
        return self.latest_by_erp_id.get((owner, erp_document_id))

    def list_documents(
        self,
        owner: str,
        *,
        created_from: int | None,
        created_to: int | None,
        updated_after: int | None,
        document_type: str | None,
        status: str | None,
        ignore_statuses: Iterable[str],
        skip: int = 0,
        take: int | None = None,
    ) -> tuple[int, list[OutboundDocument]]:
        """Return how many of the owner's documents match, and the page ``skip``/``take`` of them.

        ``createdFrom`` and ``createdTo`` are inclusive, ``updatedAfter`` is strict and applies to
        the current status time; status filters compare case-insensitively. The result is ordered by
        current status time, then id, so paging with ``skip``/``take`` is stable.

        Only the documents inside the creation window are examined (counted in ``list_examined``),
        found by bisection in the owner's creation order; each one's status is computed afresh.

        :param owner: the erpId of the client token.
        :param created_from: ``createdFrom`` in epoch µs, or ``None``.
        :param created_to: ``createdTo`` in epoch µs, or ``None``.
        :param updated_after: ``updatedAfter`` in epoch µs, or ``None``.
        :param document_type: ``documentType``, or ``None``.
        :param status: ``status``, or ``None``.
        :param ignore_statuses: ``ignoreStatuses``.
        :param skip: how many matches to pass over.
        :param take: how many matches to return at most; ``None`` for all.
        """
        now = self.clock.now()
        self.list_requests += 1
        outbox = self.outboxes.get(owner)
        if outbox is None:
            return 0, []
        low, high = outbox.window(created_from, created_to, updated_after)
        self.list_examined += high - low
        cursor = -1 if updated_after is None else updated_after
        ignored = {item.lower() for item in ignore_statuses}
        wanted_type = document_type.lower() if document_type is not None else None
        wanted_status = status.lower() if status is not None else None
        filtered = bool(ignored) or wanted_type is not None or wanted_status is not None
        documents = outbox.documents
        # (status time, id, index): tuples of atoms only, which the garbage collector stops tracking;
        # holding the documents themselves would make every collection during the loop walk them all
        matches: list[tuple[int, str, int]] = []
        append = matches.append
        for index, document in enumerate(documents[low:high], low):
            # OutboundDocument.current, inline: this loop is the whole cost of a listing
            since = document.final_at
            if now >= since:
                current = document.final_status
            elif now >= document.pending_at:
                since, current = document.pending_at, "Pending"
            else:
                since, current = document.created, "PendingInPlatform"
            if since <= cursor:
                continue
            if filtered:
                if wanted_type is not None and document.document_type.lower() != wanted_type:
                    continue
                if wanted_status is not None and current.lower() != wanted_status:
                    continue
                if current.lower() in ignored:
                    continue
            append((since, document.id, index))
        matches.sort()
        end = len(matches) if take is None else skip + take
        return len(matches), [documents[item[2]] for item in matches[skip:end]]

    # Statistics ---------------------------------------------------------------------------

    def record_fuzz(self, method: str, path: str, shape: str, processed: bool) -> None:
        """Count a ``fuzz`` fault by shape and keep it among the recent ones.

        :param method: the request's method.
        :param path: the request's path below ``/v1/api/``.
        :param shape: the hostile reply drawn.
        :param processed: whether the request was processed before the reply.
        """
        self.faults["fuzz"] += 1
        self.fuzz_shapes[shape] += 1
        self.fuzz_processed += processed
        self.fuzz_recent.append({"method": method, "path": path, "shape": shape, "processed": processed})

    def stats(self, *, per_document: bool = True) -> dict[str, Any]:
        """Return the counters that tests and benchmarks check.

        :param per_document: include ``sends`` (per erpDocumentId) and ``statuses`` (counted over
            every document), the parts whose cost grows with the number of documents.
        """
        now = self.clock.now()
        stuck_pending = {document.erp_document_id for document in self.stuck if now < document.final_at}
        stats: dict[str, Any] = {
            "duplicates": sorted(self.duplicates),
            "documents_uploaded": len(self.uploads),
            "outbound_documents": len(self.documents),
            "slow_documents": self.slow_documents,
            "stuck_documents": len(self.stuck),
            "stuck_pending": sorted(stuck_pending),
            "requests": self.requests,
            "list_requests": self.list_requests,
            "list_examined": self.list_examined,
            "tokens_created": self.tokens_created,
            "faults": dict(self.faults),
            "fuzz_shapes": dict(self.fuzz_shapes),
            "fuzz_processed": self.fuzz_processed,
            "fuzz_recent": list(self.fuzz_recent),
            "dripping": self.dripping,
            "holds": self.holds.keys(),
            "held": self.holds.waiting(),
        }
        if per_document:
            stats["sends"] = dict(self.sends)
            stats["statuses"] = dict(Counter(document.current(now)[0] for document in self.documents.values()))
        return stats


def _error(status: str, message: str) -> dict[str, Any]:
    return {"status": status, "message": message, "moreInfoUri": None}
