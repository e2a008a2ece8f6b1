"""In-memory state of the simulator: client tokens, uploaded files, outbound documents, counters.

Outbound documents never change once stored: their whole timeline (``PendingInPlatform``, then
``Pending`` one status step later, then the final status two steps later) and their outcome are fixed
when they are sent, and the status shown is computed from the time of the request. No background
task is needed and a status never moves backwards, even when the status step is changed at runtime.
A slow document's status step is ``slow_factor`` times the normal one; a stuck document stays
``Pending`` for ``stuck_ms`` more before its final status.

A share ``unknown_type_rate`` of the documents shows a ``documentType`` the documentation does not
name (one of :data:`UNKNOWN_DOCUMENT_TYPES`; listings filter on the type shown), and a share
``unknown_status_rate`` passes through a status it does not name (one of :data:`UNKNOWN_STATUSES`)
half a status step before its final status: never the last status of a timeline. Each document
writes its times in one notation (see :mod:`inexchange_devkit.simulator.times`); one whose notation shows
milliseconds only has all its times on whole milliseconds (the clock moves on to the next one when
it is sent), so that every notation denotes the exact stored instant. Every document is created at
a time later than any time the clock gave before, so no two share a creation time and a listing's
``updatedAfter`` at the time of an earlier listing never misses a document sent in between.

A document delivered electronically (or with the type left to InExchange) to a party with invoice
checks (see :mod:`inexchange_devkit.simulator.registry`) that lacks a reference the party demands
has ``Stopped`` as its fixed outcome, with the missing references in ``error.message``, as InExchange
stops it.

With a Peppol rules folder (``config.peppol_rules``) every upload is checked in the background as it
arrives (see :mod:`inexchange_devkit.simulator.peppol`), and a sent document that breaks a fatal rule
has ``Error`` as its fixed outcome, with the rules in ``error.message``.

Each owner's documents are also kept in creation order (the clock never goes backwards, so sending
appends), which lets a listing find its ``createdFrom``/``createdTo`` window by bisection and look
only at the documents inside it. The sorted matches of a window (its index) are built once per
pass and kept as a :class:`ListingSnapshot`, which the later pages of the same query reuse (see
:meth:`Store.list_documents` for when): paging through a window of W documents costs W log W once,
not W per page.
"""

from __future__ import annotations

import asyncio
import bisect
import sys
import random
import secrets
import shutil
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from lxml import etree

from inexchange_devkit.simulator.config import FAULT_KINDS, FUZZ_SHAPES, SimulatorConfig
from inexchange_devkit.simulator.holds import Holds
from inexchange_devkit.simulator.peppol import PeppolCheck
from inexchange_devkit.simulator.registry import CHECK_DEMANDS, PartyRegistry, missing_references
from inexchange_devkit.simulator.seeded import unit
from inexchange_devkit.simulator.times import ceil_ms, format_time, parse_time, time_style, utc_iso, whole_milliseconds
from inexchange_devkit.simulator.variants import Shaper

UBL_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
UBL_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
#: where a UBL document carries each reference a buyer's invoice checks read (paths below the root)
_REFERENCE_PATHS = {
    "buyer_reference": f"{{{UBL_CBC}}}BuyerReference",
    "contact_name": f"{{{UBL_CAC}}}AccountingCustomerParty/{{{UBL_CAC}}}Party/{{{UBL_CAC}}}Contact/{{{UBL_CBC}}}Name",
    "order_reference": f"{{{UBL_CAC}}}OrderReference/{{{UBL_CBC}}}ID",
}
_BUYER_NAMES = (
    f"{{{UBL_CAC}}}AccountingCustomerParty/{{{UBL_CAC}}}Party/{{{UBL_CAC}}}PartyLegalEntity/{{{UBL_CBC}}}RegistrationName",
    f"{{{UBL_CAC}}}AccountingCustomerParty/{{{UBL_CAC}}}Party/{{{UBL_CAC}}}PartyName/{{{UBL_CBC}}}Name",
)
DOCUMENT_TYPES = ("Invoice", "CreditNote")
#: ``documentType`` values outside the documented ones that a share of the documents shows.
UNKNOWN_DOCUMENT_TYPES = ("EInvoice", "SelfBillingInvoice")
#: Statuses outside the documented ones that a share of the documents passes through (never final).
UNKNOWN_STATUSES = ("AwaitingRecipientApproval", "InTransmission", "WaitingForAccessPoint")
US_PER_S = 1_000_000
DUPLICATE_WINDOW_US = 365 * 24 * 3600 * US_PER_S
FUZZ_RECENT = 100
#: How long (simulator clock) a later page may reuse its pass's snapshot once a document of the
#: window has changed status or been sent into it since the snapshot was taken.
LIST_SNAPSHOT_MAX_AGE_US = 5 * US_PER_S
#: Listing snapshots kept per owner, and in all (least recently used ones go first).
LIST_SNAPSHOTS_PER_OWNER = 4
LIST_SNAPSHOTS = 16
_NEVER = sys.maxsize
_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def parse_iso(text: str) -> int:
    """Parse a timestamp a client sends (any notation :func:`~inexchange_devkit.simulator.times.parse_time` reads).

    Naive times are UTC. Raises ``ValueError`` for anything else.
    """
    return parse_time(text)


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

    def tick(self, *, whole_ms: bool = False) -> int:
        """Return a time later than any returned before: the creation time of a document.

        Strictly later, so that a listing made at some time never misses a document created
        after it (a strict ``updatedAfter`` at that time finds it). With ``whole_ms`` the time is
        rounded up to a whole millisecond (for a document whose times show milliseconds only): the
        clock then runs that much ahead of the wall clock, for less than a millisecond.
        """
        moment = max(self._last + 1, time.time_ns() // 1000)
        self._last = -(-moment // 1000) * 1000 if whole_ms else moment
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
    """A file received by ``POST documents``; ``path`` is ``None`` when uploads are not written.

    With Peppol rules, ``verdict`` is the file's check while it runs; once it is done, its result
    moves to ``peppol_error`` (the ``error`` the document ends with when sent, or ``None`` when it
    passes) and ``verdict`` becomes ``None``, so that a stored upload holds no future.
    """

    guid: str
    path: Path | None
    size: int
    document_type: str
    invoice_number: str | None
    verdict: Future[dict[str, Any] | None] | None = None
    peppol_error: dict[str, Any] | None = None
    #: the references the file carries, which a recipient's invoice checks read (see :func:`read_references`)
    references: dict[str, str | None] | None = None

    def settle(self, verdict: Future[dict[str, Any] | None]) -> None:
        """Keep the result of a finished check and let go of its future."""
        if not verdict.cancelled():
            self.peppol_error = verdict.result()
            self.verdict = None

    def peppol_outcome(self) -> dict[str, Any] | None:
        """The ``error`` the Peppol check gave (waiting for it when it still runs), or ``None``."""
        verdict = self.verdict
        return verdict.result() if verdict is not None else self.peppol_error

    @property
    def uri(self) -> str:
        """The ``DocumentUri`` that ``documents/outbound`` refers to."""
        return f"urn:inexchangedocument:{self.guid}"


@dataclass(slots=True)
class OutboundDocument:
    """One sent document with its predetermined timeline and outcome.

    It is ``PendingInPlatform`` from ``created``, ``Pending`` from ``pending_at``, in the
    undocumented status ``interim_status`` (when it has one) from ``interim_at``, and in its final
    status from ``final_at``; ``slow`` and ``stuck`` tell how that timeline was drawn. Its times are
    written in the notation ``time_style`` (an index into :data:`~inexchange_devkit.simulator.times.STYLES`).
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
    interim_status: str | None = None
    interim_at: int = 0
    time_style: int = 0

    def history(self, now: int) -> list[tuple[str, int]]:
        """Return the statuses reached at ``now``, oldest first (the first one always).

        :param now: epoch microseconds.
        """
        timeline = [("PendingInPlatform", self.created), ("Pending", self.pending_at)]
        if self.interim_status is not None:
            timeline.append((self.interim_status, self.interim_at))
        timeline.append((self.final_status, self.final_at))
        return [timeline[0], *(entry for entry in timeline[1:] if entry[1] <= now)]

    def current(self, now: int) -> tuple[str, int]:
        """Return the status and its time at ``now``.

        :param now: epoch microseconds.
        """
        if now >= self.final_at:
            return self.final_status, self.final_at
        if self.interim_status is not None and now >= self.interim_at:
            return self.interim_status, self.interim_at
        if now >= self.pending_at:
            return "Pending", self.pending_at
        return "PendingInPlatform", self.created

    def to_json(self, now: int, *, include_error: bool = True) -> dict[str, Any]:
        """Render the document in its documented shape at ``now``, times in the document's notation."""
        history = self.history(now)
        style = self.time_style
        texts = {moment: format_time(moment, style) for moment in {moment for _, moment in history}}
        status, since = history[-1]
        body: dict[str, Any] = {
            "id": self.id,
            "documentType": self.document_type,
            "erpDocumentId": self.erp_document_id,
            "created": texts[self.created],
            "currentStatus": {"status": status, "time": texts[since]},
            "statusHistory": [{"status": s, "time": texts[t]} for s, t in history],
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

    def sent_since(self, moment: int, created_from: int | None, created_to: int | None) -> bool:
        """Tell whether a document created after ``moment`` lies in the creation window.

        :param moment: epoch µs, a time the clock gave (every document created later has a later
            creation time).
        :param created_from: earliest creation time (epoch µs), or ``None``.
        :param created_to: latest creation time (epoch µs), or ``None``.
        """
        start = moment + 1 if created_from is None else max(moment + 1, created_from)
        index = bisect.bisect_left(self.created, start)
        return index < len(self.created) and (created_to is None or self.created[index] <= created_to)


@dataclass(slots=True)
class ListingSnapshot:
    """The matches of one listing query at one time, in listing order: the index its pages are cut from.

    ``as_of`` is the time the statuses were computed at, and the time a page cut from the snapshot
    shows its documents at; ``stable_until`` is the first time after it at which a document of the
    window changes status (``sys.maxsize`` for none).
    """

    as_of: int
    documents: list[OutboundDocument]
    stable_until: int

    def exact(self, outbox: Outbox, now: int, created_from: int | None, created_to: int | None) -> bool:
        """Tell whether a listing built at ``now`` would give exactly this snapshot.

        It would when no document of the window has changed status since ``as_of`` and none has
        been sent into the window since.
        """
        return now < self.stable_until and not outbox.sent_since(self.as_of, created_from, created_to)


class Listing(NamedTuple):
    """One page of a listing: ``total`` matches, the page's ``documents``, shown as they were at ``as_of``."""

    total: int
    documents: list[OutboundDocument]
    as_of: int


def read_ubl(content: bytes) -> tuple[str, str | None]:
    """Return the document type and invoice number (``cbc:ID``) of a UBL file.

    Content that is not a UBL Invoice or CreditNote counts as an invoice without a number.
    """
    document_type, number, _ = read_document(content)
    return document_type, number


def read_document(content: bytes) -> tuple[str, str | None, dict[str, str | None]]:
    """Return the document type, the invoice number and the references (:func:`read_references`) of a UBL file."""
    try:
        root = etree.fromstring(content, parser=_XML_PARSER)
    except etree.XMLSyntaxError:
        return "Invoice", None, dict.fromkeys((*_REFERENCE_PATHS, "buyer_name"))
    local_name = etree.QName(root).localname
    document_type = local_name if local_name in DOCUMENT_TYPES else "Invoice"
    number = root.findtext(f"{{{UBL_CBC}}}ID")
    return document_type, (number.strip() or None) if number else None, read_references(root)


def read_references(root: etree._Element) -> dict[str, str | None]:
    """The references a buyer's invoice checks read in a UBL document (None: not there, or empty).

    ``buyer_reference`` (BuyerReference), ``contact_name`` (the buyer's Contact Name),
    ``order_reference`` (OrderReference ID) and ``buyer_name`` (the buyer's RegistrationName, else its
    PartyName), each stripped of surrounding spaces.
    """
    found: dict[str, str | None] = {}
    for name, path in _REFERENCE_PATHS.items():
        found[name] = (root.findtext(path) or "").strip() or None
    found["buyer_name"] = next(
        (text for path in _BUYER_NAMES if (text := (root.findtext(path) or "").strip())), None
    )
    return found


class Store:
    """All mutable state of one simulator, shared by the request handlers."""

    def __init__(self, config: SimulatorConfig) -> None:
        """Create empty state that stores uploaded files under ``config.data_dir/documents``."""
        self.config = config
        self.clock = Clock()
        self.registry = PartyRegistry(config.seed, lambda: self.config.invoice_check_rate)
        self.tokens: dict[str, Token] = {}
        self.holds = Holds()
        self.stopping = asyncio.Event()
        self.dripping = 0
        self.documents_dir = config.data_dir / "documents"
        self.documents_dir.mkdir(parents=True, exist_ok=True)
        self.peppol = PeppolCheck(config.peppol_rules) if config.peppol_rules is not None else None
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
        self.lookups = 0
        self.tokens_created = 0
        self.list_requests = 0
        self.list_examined = 0
        self.list_builds = 0
        self.list_snapshots: OrderedDict[tuple[Any, ...], ListingSnapshot] = OrderedDict()
        self.faults: Counter[str] = Counter({kind: 0 for kind in FAULT_KINDS})
        self.fuzz_shapes: Counter[str] = Counter({shape: 0 for shape in FUZZ_SHAPES})
        self.fuzz_processed = 0
        self.fuzz_recent: deque[dict[str, Any]] = deque(maxlen=FUZZ_RECENT)
        self.rng = random.Random(self.config.seed)
        self.replies = 0
        self.reply_variants: Counter[str] = Counter()
        self.unknown_types = 0
        self.unknown_statuses = 0
        self.peppol_errors: list[str] = []
        self.invoice_check_stops: list[str] = []
        if self.peppol is not None:
            self.peppol.reset()

    def reset(self) -> None:
        """Forget documents, uploads, counters and registered parties, release holds; tokens stay valid.

        The random generator behind latency jitter and faults is reseeded (and the count of replies
        behind the reply variants' draws restarts), so a run after a reset sees the same fault
        sequence and reply shapes as a run on a fresh simulator.
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
        if self.peppol is not None:
            self.peppol.close()

    def shaper(self) -> Shaper:
        """Return the shaper of the next reply in the reply variant in force, and count it."""
        self.replies += 1
        shaper = Shaper.for_reply(self.config.reply_variant, self.config.seed, self.replies)
        self.reply_variants[shaper.variant] += 1
        return shaper

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

        ``path`` is ``None`` when the configuration keeps no upload files. With Peppol rules the
        file's check starts here, in the background (:attr:`Upload.verdict`).

        :param content: the uploaded file.
        """
        guid = str(uuid.uuid4())
        path = self.documents_dir / f"{guid}.xml" if self.config.upload_files else None
        document_type, number, references = read_document(content)
        upload = Upload(guid, path, len(content), document_type, number, references=references)
        if self.peppol is not None:
            upload.verdict = verdict = self.peppol.submit(content)
            verdict.add_done_callback(upload.settle)
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
        recipient_id: str = "",
    ) -> OutboundDocument:
        """Create an outbound document, count the send and fix its outcome.

        The outcome, in order of precedence: ``Error`` when the upload breaks a fatal Peppol rule
        (with Peppol rules only; this waits for the upload's check, which :class:`SimulatorApi`
        awaits first); ``Error`` when the same owner sent a document of the
        same type with the same invoice number within a year (an earlier document that itself ended
        in ``Error`` does not count); ``Stopped`` when it goes electronically (or with the type left
        to InExchange) to a party whose invoice checks it fails (:meth:`PartyRegistry.recipient`,
        found by ``recipient_id`` or the ``recipient_information``); otherwise a seeded draw on
        ``erpDocumentId`` gives ``Stopped`` with probability ``stop_rate``, ``Error`` with
        probability ``error_rate``, else ``Delivered`` for electronic delivery and ``Sent`` for the
        others. The timeline is drawn the same way:
        slow with probability ``slow_rate``, stuck with probability ``stuck_rate``, an undocumented
        status before the final one with probability ``unknown_status_rate``; and so are an
        undocumented ``documentType`` (probability ``unknown_type_rate``) and the notation of the
        document's times.
        """
        config = self.config
        style = time_style(config.seed, erp_document_id)
        aligned = whole_milliseconds(style)
        now = self.clock.tick(whole_ms=aligned)
        number = upload.invoice_number or erp_document_id
        number_key = (owner, upload.document_type, number)
        duplicate = any(
            doc.final_status != "Error" and now - doc.created < DUPLICATE_WINDOW_US
            for doc in self.by_invoice_number.get(number_key, ())
        )
        invalid = upload.peppol_outcome()
        error: dict[str, Any] | None
        if invalid is not None:
            final_status, error = "Error", dict(invalid)
            self.peppol_errors.append(erp_document_id)
        else:
            missing = self._missing_references(upload, send_as, recipient_id, recipient_information)
            if missing and not duplicate:
                self.invoice_check_stops.append(erp_document_id)
            final_status, error = self._outcome(erp_document_id, send_as, pdf_email, number, duplicate, missing)
        slow = unit(config.seed, "slow", erp_document_id) < config.slow_rate
        stuck = unit(config.seed, "stuck", erp_document_id) < config.stuck_rate
        step_us = round(config.status_step_ms * 1000 * (config.slow_factor if slow else 1.0))
        pending_at = now + step_us
        final_at = now + 2 * step_us + (round(config.stuck_ms * 1000) if stuck else 0)
        interim_status = None
        if unit(config.seed, "unknown-status", erp_document_id) < config.unknown_status_rate:
            interim_status = UNKNOWN_STATUSES[int(unit(config.seed, "unknown-status-name", erp_document_id)
                                                  * len(UNKNOWN_STATUSES))]
        interim_at = max(pending_at, final_at - step_us // 2)
        if aligned:
            pending_at, interim_at, final_at = ceil_ms(pending_at), ceil_ms(interim_at), ceil_ms(final_at)
        document_type = upload.document_type
        if unit(config.seed, "unknown-type", erp_document_id) < config.unknown_type_rate:
            document_type = UNKNOWN_DOCUMENT_TYPES[int(unit(config.seed, "unknown-type-name", erp_document_id)
                                                       * len(UNKNOWN_DOCUMENT_TYPES))]
        document = OutboundDocument(
            id=str(uuid.uuid4()),
            owner=owner,
            erp_document_id=erp_document_id,
            document_type=document_type,
            invoice_number=number,
            send_as=send_as,
            recipient_information=recipient_information,
            created=now,
            pending_at=pending_at,
            final_at=final_at,
            final_status=final_status,
            error=error,
            slow=slow,
            stuck=stuck,
            interim_status=interim_status,
            interim_at=interim_at if interim_status is not None else 0,
            time_style=style,
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
        self.unknown_types += document_type != upload.document_type
        self.unknown_statuses += interim_status is not None
        if stuck:
            self.stuck.append(document)
        return document

    def _missing_references(
        self, upload: Upload, send_as: str | None, recipient_id: str, recipient_information: dict[str, Any]
    ) -> list[str]:
        """The invoice checks of the document's electronic recipient that the upload fails (none by PDF or paper)."""
        if send_as not in ("Electronic", None):
            return []
        party = self.registry.recipient(recipient_id, recipient_information)
        if party is None:
            return []
        return missing_references(party, upload.references or {})

    def _outcome(
        self,
        erp_document_id: str,
        send_as: str | None,
        pdf_email: str | None,
        number: str,
        duplicate: bool,
        missing: list[str] | None = None,
    ) -> tuple[str, dict[str, Any] | None]:
        seed = self.config.seed
        if duplicate:
            return "Error", _error("DuplicateInvoiceNumber", f"Duplicate invoice number {number}")
        if missing:
            demanded = "; ".join(CHECK_DEMANDS[check] for check in missing)
            return "Stopped", _error(
                "InvoiceCheckFailed", f"The recipient requires on every invoice what this one lacks: {demanded}"
            )
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
    ) -> Listing:
        """Return how many of the owner's documents match, and the page ``skip``/``take`` of them.

        ``createdFrom`` and ``createdTo`` are inclusive, ``updatedAfter`` is strict and applies to
        the current status time; status filters compare case-insensitively. The result is ordered by
        current status time, then id, so paging with ``skip``/``take`` is stable. The page's
        documents are to be shown as they were at the listing's ``as_of``.

        A listing examines the documents inside the creation window only (counted in
        ``list_examined``), found by bisection in the owner's creation order, computes each one's
        status at that time, and sorts the matches (counted in ``list_builds``): the snapshot of the
        query. The pages of one pass share it:

        - ``skip`` 0 starts a pass and always builds a fresh snapshot, so it sees every document sent
          and every status reached before it;
        - a later ``skip`` of the same query (same owner, bounds, cursor and filters; ``take`` may
          differ) is cut from the query's snapshot when there is one and it is either exact (no
          document of the window has changed status or been sent into it since, so a rebuild would
          give the same answer) or at most :data:`LIST_SNAPSHOT_MAX_AGE_US` old; otherwise it builds
          a fresh one, which the pages after it share.

        A reused snapshot is either the answer a rebuild would give or a consistent picture of the
        listing a few seconds old at most: what a paging API serves from a short-lived result cache
        or a read snapshot, and how a real server's answer may lag behind by the time a page
        arrives anyway. Its pages show every match of the pass exactly once, in one order, and the
        documents as they were at ``as_of``, so a status time shown is never later than a change
        left out: a client that takes the latest status time of a pass as its next ``updatedAfter``
        misses nothing, and a change or a document sent meanwhile is listed by the next pass.
        (Recomputing each page at its own time instead lets a document that changes status move to
        the end of the order mid-pass, so that the documents behind it shift back and one of them
        is stepped over.) For a single request the answer is the one a listing at that moment gives.
        Snapshots are kept per query, at most :data:`LIST_SNAPSHOTS_PER_OWNER` per owner and
        :data:`LIST_SNAPSHOTS` in all, the least recently used going first; :meth:`reset` and
        :meth:`forget_listings` drop them.

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
            return Listing(0, [], now)
        ignored = frozenset(item.lower() for item in ignore_statuses)
        wanted_type = document_type.lower() if document_type is not None else None
        wanted_status = status.lower() if status is not None else None
        key = (owner, created_from, created_to, updated_after, wanted_type, wanted_status, ignored)
        snapshot = self.list_snapshots.get(key) if skip > 0 else None
        if snapshot is not None and (
            now - snapshot.as_of <= LIST_SNAPSHOT_MAX_AGE_US or snapshot.exact(outbox, now, created_from, created_to)
        ):
            self.list_snapshots.move_to_end(key)
        else:
            snapshot = self._build_listing(
                outbox, now, created_from, created_to, updated_after, wanted_type, wanted_status, ignored
            )
            self._keep_listing(key, snapshot)
        matches = snapshot.documents
        end = len(matches) if take is None else skip + take
        return Listing(len(matches), matches[skip:end], snapshot.as_of)

    def _build_listing(
        self,
        outbox: Outbox,
        now: int,
        created_from: int | None,
        created_to: int | None,
        updated_after: int | None,
        wanted_type: str | None,
        wanted_status: str | None,
        ignored: frozenset[str],
    ) -> ListingSnapshot:
        """Examine the window's documents at ``now`` and sort the matches (lower-cased filters)."""
        low, high = outbox.window(created_from, created_to, updated_after)
        self.list_examined += high - low
        self.list_builds += 1
        cursor = -1 if updated_after is None else updated_after
        filtered = bool(ignored) or wanted_type is not None or wanted_status is not None
        documents = outbox.documents
        stable_until = _NEVER
        # (status time, id, index): tuples of atoms only, which the garbage collector stops tracking;
        # holding the documents themselves would make every collection during the loop walk them all
        matches: list[tuple[int, str, int]] = []
        append = matches.append
        for index, document in enumerate(documents[low:high], low):
            # OutboundDocument.current, inline: this loop is the whole cost of a listing
            since = document.final_at
            if now >= since:
                current = document.final_status
            else:
                change = since  # the time of the document's next status
                if document.interim_status is not None and now >= document.interim_at:
                    since, current = document.interim_at, document.interim_status
                elif now >= document.pending_at:
                    since, current = document.pending_at, "Pending"
                    if document.interim_status is not None:
                        change = document.interim_at
                else:
                    since, current = document.created, "PendingInPlatform"
                    change = document.pending_at
                if change < stable_until:
                    stable_until = change
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
        return ListingSnapshot(now, [documents[item[2]] for item in matches], stable_until)

    def _keep_listing(self, key: tuple[Any, ...], snapshot: ListingSnapshot) -> None:
        """Keep ``snapshot`` as the newest of its query, dropping the least recently used beyond the bounds."""
        snapshots = self.list_snapshots
        snapshots[key] = snapshot
        snapshots.move_to_end(key)
        owner = key[0]
        mine = [other for other in snapshots if other[0] == owner]
        for other in mine[: max(0, len(mine) - LIST_SNAPSHOTS_PER_OWNER)]:
            del snapshots[other]
        while len(snapshots) > LIST_SNAPSHOTS:
            snapshots.popitem(last=False)

    def forget_listings(self) -> None:
        """Drop every listing snapshot: the next page of any pass builds its own."""
        self.list_snapshots.clear()

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

        ``peppol`` is ``None`` without Peppol rules, else the check's figures: its ``folder``, the
        uploads ``checked``, how many ``failed``, the CPU time spent (``cpu_ms``, and
        ``cpu_ms_per_document``), and the sends that ended ``Error`` by the rules (``errors``);
        ``peppol_errors`` lists those sends' erpDocumentIds, in order (empty without the rules).
        ``invoice_check_stops`` lists, in order, the erpDocumentIds of the sends stopped because they
        lacked a reference their recipient's invoice checks demand.

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
            "unknown_types": self.unknown_types,
            "unknown_statuses": self.unknown_statuses,
            "replies": self.replies,
            "reply_variants": dict(self.reply_variants),
            "stuck_documents": len(self.stuck),
            "stuck_pending": sorted(stuck_pending),
            "requests": self.requests,
            "lookups": self.lookups,
            "list_requests": self.list_requests,
            "list_examined": self.list_examined,
            "list_builds": self.list_builds,
            "tokens_created": self.tokens_created,
            "faults": dict(self.faults),
            "fuzz_shapes": dict(self.fuzz_shapes),
            "fuzz_processed": self.fuzz_processed,
            "fuzz_recent": list(self.fuzz_recent),
            "dripping": self.dripping,
            "peppol": None if self.peppol is None else {**self.peppol.stats(), "errors": len(self.peppol_errors)},
            "peppol_errors": list(self.peppol_errors),
            "invoice_check_stops": list(self.invoice_check_stops),
            "holds": self.holds.keys(),
            "held": self.holds.waiting(),
        }
        if per_document:
            stats["sends"] = dict(self.sends)
            stats["statuses"] = dict(Counter(document.current(now)[0] for document in self.documents.values()))
        return stats


def _error(status: str, message: str) -> dict[str, Any]:
    return {"status": status, "message": message, "moreInfoUri": None}
