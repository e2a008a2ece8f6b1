"""Reply variants: the shapes of the fields a client does not use, varied on purpose.

The JSON replies of ``clientTokens/create``, ``buyerparties/lookup``, ``documents/outbound/list``,
``documents/outbound/{id}`` and ``invoices/outbound/byerpid/{erpId}`` are first built in their
documented shape and then passed through the variant in force (``reply_variant``, set with
``--reply-variant``, ``POST /_sim/config`` or, as the default, the environment variable
``INEXCHANGE_SIM_VARIANT``):

``documented``
    the documented shapes, unchanged: ``potentialMatches`` an integer, ``parties`` ``null`` when
    nothing is found, ``documentType`` a string, and so on.
``sparse``
    fields the client does not use are ``null`` or missing (each one drawn): ``potentialMatches``;
    a party's ``name`` (unless the party checks the buyer's name), ``orgNo``, ``vatNo``, ``gln`` and
    ``peppolParticipantIdentifiers``; a
    document's ``documentType``, ``statusHistory``, ``created``, ``sendDocumentAs`` and
    ``recipientInformation``, and its ``error`` when it has none.
``loose``
    fields the client does not use come in another plausible type (each one drawn):
    ``potentialMatches`` a boolean; ``peppolParticipantIdentifiers`` a list of objects
    (``{"scheme": "0007", "identifier": "5560000001"}``); ``documentType`` an integer (a .NET
    enum); ``statusHistory`` items with extra keys; ``orgNo`` a number where its digits allow
    (a party's and the recipient's); ``created`` epoch milliseconds.
``extra``
    extra fields of every JSON type everywhere: in the reply object, each party, each document,
    its ``currentStatus``, ``statusHistory`` items, ``recipientInformation`` and ``error``
    (``altName``, ``connectionStatus``, ``hasInvoiceChecks: false`` and ``invoiceChecks`` all false on
    a party without checks, ``fileInfo``, ``links``, ``_meta``, nulls, nested lists, numbers).
``mixed``
    for each reply, one of the four above, drawn.

Whatever the variant, the fields the client uses keep their documented shape: the token; the
lookup's ``parties`` (a list, or ``null`` when none) and ``exactHit``; each party's ``companyId``,
``receiveElectronicInvoiceCapability``, ``hasInvoiceChecks`` and ``invoiceChecks`` (when it has
them), and its ``name`` when it checks the buyer's name; a page's ``documents`` and ``totalCount``; each
document's ``id``, ``erpDocumentId``, ``currentStatus.status`` and ``currentStatus.time`` (in the
document's own notation, see :mod:`inexchange_devkit.simulator.times`), and ``error.status`` and
``error.message`` of a document that shows an error. Error answers (400, 401, 404) are never varied.

Every draw comes from a generator seeded with the seed and the number of the reply, so a run
repeats its shapes when it repeats its requests (a reset starts the count again).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from inexchange_devkit.simulator.times import parse_time

#: The variants a ``mixed`` reply draws from.
MIXED_FROM: tuple[str, ...] = ("documented", "sparse", "loose", "extra")

#: How likely each unused field of an object is varied in ``sparse`` and ``loose``.
VARY_SHARE = 0.5

#: A document's fields that ``sparse`` may leave null or out (``error`` only when it is ``null``).
SPARSE_DOCUMENT_FIELDS: tuple[str, ...] = (
    "documentType",
    "statusHistory",
    "created",
    "sendDocumentAs",
    "recipientInformation",
)
#: A party's fields that ``sparse`` may leave null or out.
SPARSE_PARTY_FIELDS: tuple[str, ...] = ("name", "orgNo", "vatNo", "gln", "peppolParticipantIdentifiers")

#: ``documentType`` as the integer of a .NET enum (``loose``).
DOCUMENT_TYPE_NUMBERS: dict[str, int] = {"Invoice": 0, "CreditNote": 1, "EInvoice": 5, "SelfBillingInvoice": 6}
#: Status numbers that ``loose`` history items carry.
STATUS_NUMBERS: dict[str, int] = {
    "PendingInPlatform": 0,
    "Pending": 1,
    "Sent": 2,
    "Delivered": 3,
    "Error": 4,
    "Stopped": 5,
}

_MISSING = object()


def _org_number(value: Any) -> Any:
    """Return an org number as an integer when it is digits (a hyphen allowed) without a leading 0."""
    if not isinstance(value, str):
        return value
    digits = value.replace("-", "")
    if digits.isdigit() and not digits.startswith("0") and value.count("-") <= 1:
        return int(digits)
    return value


def _peppol_object(identifier: Any) -> Any:
    if not isinstance(identifier, str) or ":" not in identifier:
        return identifier
    scheme, value = identifier.split(":", 1)
    return {"scheme": scheme, "identifier": value}


class Shaper:
    """Shapes the replies of one request in one variant, with one seeded generator."""

    def __init__(self, variant: str, rng: random.Random) -> None:
        """Shape replies as ``variant`` (not ``mixed``: pick first) with draws from ``rng``."""
        self.variant = variant
        self.rng = rng

    @classmethod
    def for_reply(cls, configured: str, seed: int, reply: int) -> Shaper:
        """Return the shaper of reply number ``reply`` when ``configured`` is in force."""
        rng = random.Random(f"{seed}:reply:{reply}")
        variant = rng.choice(MIXED_FROM) if configured == "mixed" else configured
        return cls(variant, rng)

    def _vary(self) -> bool:
        return self.rng.random() < VARY_SHARE

    def _drop(self, obj: dict[str, Any], name: str) -> None:
        """Make ``obj[name]`` null or leave it out, as drawn."""
        if self.rng.random() < 0.5:
            obj[name] = None
        else:
            obj.pop(name, None)

    def _sparse(self, obj: dict[str, Any], names: tuple[str, ...]) -> None:
        for name in names:
            if self._vary():
                self._drop(obj, name)

    def _change(self, obj: dict[str, Any], name: str, change: Callable[[Any], Any]) -> None:
        value = obj.get(name, _MISSING)
        if value is not _MISSING and self._vary():
            obj[name] = change(value)

    # Replies ------------------------------------------------------------------------------

    def token(self, reply: dict[str, Any]) -> dict[str, Any]:
        """Shape a ``clientTokens/create`` reply (only ``extra`` changes it)."""
        if self.variant == "extra":
            reply.update(tokenType="ClientToken", scopes=["documents", "buyerparties"], refreshToken=None,
                         _meta={"issuer": "inexchange-sim", "version": 1})
        return reply

    def lookup(self, reply: dict[str, Any]) -> dict[str, Any]:
        """Shape a ``buyerparties/lookup`` reply and its parties."""
        variant = self.variant
        parties = reply.get("parties")
        for party in parties or ():
            self._party(party)
        if variant == "sparse" and self._vary():
            self._drop(reply, "potentialMatches")
        elif variant == "loose" and self._vary():
            reply["potentialMatches"] = bool(reply.get("potentialMatches"))
        elif variant == "extra":
            reply.update(searchId=f"{self.rng.getrandbits(64):016x}", elapsedMs=round(self.rng.uniform(1, 90), 3),
                         suggestions=[], _meta={"source": "registry", "cached": False, "hints": [[], ["name"]]},
                         warning=None)
        return reply

    def page(self, reply: dict[str, Any]) -> dict[str, Any]:
        """Shape a ``documents/outbound/list`` reply and its documents."""
        for document in reply["documents"]:
            self.document(document)
        if self.variant == "extra":
            reply.update(pageSize=len(reply["documents"]), links=[{"rel": "self", "href": "documents/outbound/list"}],
                         _meta={"generated": True, "shards": [[0, 1], [2]]}, continuationToken=None)
        return reply

    def document(self, document: dict[str, Any]) -> dict[str, Any]:
        """Shape one outbound document."""
        variant = self.variant
        if variant == "sparse":
            self._sparse(document, SPARSE_DOCUMENT_FIELDS)
            if "error" in document and document["error"] is None and self._vary():
                del document["error"]
        elif variant == "loose":
            self._change(document, "documentType", lambda value: DOCUMENT_TYPE_NUMBERS.get(value, 99))
            self._change(document, "created", lambda value: parse_time(value) // 1000)
            self._change(document, "statusHistory", self._loose_history)
            recipient = document.get("recipientInformation")
            if isinstance(recipient, dict):
                self._change(recipient, "orgNo", _org_number)
        elif variant == "extra":
            self._document_extras(document)
        return document

    # Parts --------------------------------------------------------------------------------

    def _party(self, party: dict[str, Any]) -> None:
        variant = self.variant
        if variant == "sparse":
            checks = party.get("invoiceChecks")
            name_checked = party.get("hasInvoiceChecks") and isinstance(checks, dict) and checks.get("buyerName")
            self._sparse(party, tuple(f for f in SPARSE_PARTY_FIELDS if not (name_checked and f == "name")))
        elif variant == "loose":
            self._change(party, "peppolParticipantIdentifiers",
                         lambda ids: [_peppol_object(item) for item in ids] if isinstance(ids, list) else ids)
            self._change(party, "orgNo", _org_number)
        elif variant == "extra":
            name = party.get("name") or "Buyer"
            if "hasInvoiceChecks" not in party and "invoiceChecks" not in party:  # a party's own checks stay
                party.update(hasInvoiceChecks=False, invoiceChecks={
                    "buyerReferenceNo": False, "buyerReferenceName": False, "buyerOrderNo": False, "buyerName": False})
            party.update(
                altName=f"{name} (alt)",
                connectionStatus=self.rng.choice(("Connected", "NotConnected", "Unknown")),
                streetName="Storgatan 1",
                postBox=None,
                city="Stockholm",
                postalZone="111 22",
                countryCode="SE",
                phoneNo=None,
                sendsElectronicOrderCapability="NotSendingElectronicOrders",
                score=round(self.rng.random(), 4),
                links=[{"rel": "self", "href": f"buyerparties/{party.get('companyId')}"}],
                aliases=[[name], []],
                _meta={"source": "registry", "revision": self.rng.randint(1, 9), "flags": []},
            )

    def _status_extras(self, status: dict[str, Any]) -> None:
        status.update(statusCode=STATUS_NUMBERS.get(status.get("status"), 99), description=None,
                      changedBy="system", details=[], _meta={"source": "platform"})

    def _loose_history(self, history: Any) -> Any:
        if not isinstance(history, list):
            return history
        return [
            {**item, "statusId": STATUS_NUMBERS.get(item.get("status"), 99), "comment": None, "changedBy": "system"}
            if isinstance(item, dict) else item
            for item in history
        ]

    def _document_extras(self, document: dict[str, Any]) -> None:
        rng = self.rng
        status = document.get("currentStatus")
        if isinstance(status, dict):
            self._status_extras(status)
        for item in document.get("statusHistory") or ():
            if isinstance(item, dict):
                item.update(statusId=STATUS_NUMBERS.get(item.get("status"), 99), comment=None)
        error = document.get("error")
        if isinstance(error, dict):
            error.update(code=rng.randint(1000, 9999), details=[{"field": None, "text": error.get("message")}],
                         retryable=False, _meta={"origin": "platform"})
        recipient = document.get("recipientInformation")
        if isinstance(recipient, dict):
            recipient.update(peppolId=None, contact={"email": None, "phone": None})
        document.update(
            fileInfo=rng.choice((None, {"fileName": "invoice.xml", "size": rng.randint(900, 90_000),
                                        "contentType": "application/xml", "pages": None})),
            links=[{"rel": "self", "href": f"documents/outbound/{document.get('id')}"}, {"rel": "portal", "href": None}],
            _meta={"version": rng.randint(1, 5), "etag": f"{rng.getrandbits(32):08x}", "tags": []},
            archived=False,
            attachmentCount=0,
            amount=round(rng.uniform(10, 99_999), 2),
            senderReference=None,
            routing=[["0007", "0088"], []],
        )
