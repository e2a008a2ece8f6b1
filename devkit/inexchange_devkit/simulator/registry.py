"""The simulated InExchange buyer-party registry behind ``POST buyerparties/lookup``.

The registry is derived from the seed, so every org number has a fixed fate without any set-up:

* about 70 % are known parties that receive e-invoices (``exactHit`` true),
* about 15 % are known parties that do not receive e-invoices (``exactHit`` true),
* about 15 % are unknown (``parties`` null, ``exactHit`` false).

A 13-digit GLN always names a known receiving party. Parties registered explicitly through
``POST /_sim/parties`` take precedence over the derived ones.

Invoice checks: a party may demand references on every invoice (``hasInvoiceChecks`` and
``invoiceChecks {buyerReferenceNo, buyerReferenceName, buyerOrderNo, buyerName}``). A registered
party carries the ``invoiceChecks`` it is registered with; a share ``invoice_check_rate`` of the
derived receiving parties (none by default) carries checks drawn from the seed and its GLN or org
number: one or more of the three reference checks (never ``buyerName``, since a derived party's name
is made up). A party without checks carries neither field, as the documented shape has it. The store
stops a sent document that lacks a reference its recipient demands (see :func:`missing_references`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from inexchange_devkit.simulator.seeded import stable_uuid, unit

RECEIVING = "ReceivingElectronicInvoices"
NOT_RECEIVING = "NotReceivingElectronicInvoices"
CAPABILITIES = (RECEIVING, NOT_RECEIVING)

KNOWN_RECEIVING_SHARE = 0.70
KNOWN_NOT_RECEIVING_SHARE = 0.15

#: the invoice checks a party may turn on, in the order of the API's ``invoiceChecks``
INVOICE_CHECKS = ("buyerReferenceNo", "buyerReferenceName", "buyerOrderNo", "buyerName")
#: the checks a derived party may draw (its name is made up, so never ``buyerName``)
DERIVED_CHECKS = ("buyerReferenceNo", "buyerReferenceName", "buyerOrderNo")
#: what each check demands of a document, for the ``error.message`` of a document it stops
CHECK_DEMANDS = {
    "buyerReferenceNo": "a buyer reference (BuyerReference)",
    "buyerReferenceName": "the buyer's reference person (AccountingCustomerParty Contact Name)",
    "buyerOrderNo": "an order reference (OrderReference ID)",
    "buyerName": "the buyer's name as registered",
}

_SWEDISH_VAT = re.compile(r"^SE(\d{10})01$")


def digits(value: str) -> str:
    """Return only the digits of ``value`` (``"556677-8899"`` -> ``"5566778899"``)."""
    return "".join(ch for ch in value if ch.isdigit())


def org_digits(value: str) -> str:
    """Normalise an org number to its 10 digits; a 12-digit form loses its century prefix."""
    number = digits(value)
    return number[2:] if len(number) == 12 else number


def format_org_no(number: str) -> str:
    """Format 10 org-number digits the Swedish way, ``NNNNNN-NNNN``."""
    return f"{number[:6]}-{number[6:]}" if len(number) == 10 else number


def vat_org_digits(vat_no: str) -> str | None:
    """Return the org-number digits inside a Swedish VAT number, or ``None`` for any other."""
    match = _SWEDISH_VAT.match(vat_no.replace(" ", "").upper())
    return match.group(1) if match else None


def party_checks(party: Mapping[str, Any]) -> list[str]:
    """The invoice checks a party turns on: none when ``hasInvoiceChecks`` is false."""
    flags = party.get("invoiceChecks")
    if not party.get("hasInvoiceChecks") or not isinstance(flags, Mapping):
        return []
    return [check for check in INVOICE_CHECKS if flags.get(check) is True]


def missing_references(party: Mapping[str, Any], references: Mapping[str, str | None]) -> list[str]:
    """The checks of ``party`` that a document with these ``references`` fails, in the API's order.

    :param party: the recipient, as the registry holds it.
    :param references: what the document carries: ``buyer_reference``, ``contact_name``,
        ``order_reference`` and ``buyer_name`` (see :func:`~inexchange_devkit.simulator.store.read_ubl`).
    """
    carried = {
        "buyerReferenceNo": bool(references.get("buyer_reference")),
        "buyerReferenceName": bool(references.get("contact_name")),
        "buyerOrderNo": bool(references.get("order_reference")),
        "buyerName": references.get("buyer_name") == party.get("name"),
    }
    return [check for check in party_checks(party) if not carried[check]]


def _checks_from(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The ``hasInvoiceChecks`` and ``invoiceChecks`` a registered party is given (both absent: none)."""
    if "invoiceChecks" not in raw and "hasInvoiceChecks" not in raw:
        return {}
    flags = raw.get("invoiceChecks")
    if flags is not None:
        if not isinstance(flags, Mapping) or not all(isinstance(v, bool) for v in flags.values()):
            raise ValueError("invoiceChecks must be an object of booleans (or null)")
        unknown = sorted(set(flags) - set(INVOICE_CHECKS))
        if unknown:
            raise ValueError(f"unknown invoice checks {', '.join(unknown)}; known: {', '.join(INVOICE_CHECKS)}")
        flags = {check: bool(flags.get(check, False)) for check in INVOICE_CHECKS}
    has = raw.get("hasInvoiceChecks", any((flags or {}).values()))
    if not isinstance(has, bool):
        raise ValueError("hasInvoiceChecks must be true or false")
    return {"hasInvoiceChecks": has, "invoiceChecks": flags}


class PartyRegistry:
    """Seed-derived buyer parties plus explicitly registered overrides."""

    def __init__(self, seed: int, check_rate: Callable[[], float] = lambda: 0.0) -> None:
        """Create an empty override table over the registry derived from ``seed``.

        :param check_rate: the share of derived receiving parties with invoice checks, asked for at each
            look-up (a runtime setting).
        """
        self._seed = seed
        self._check_rate = check_rate
        self._by_org: dict[str, dict[str, Any]] = {}
        self._by_gln: dict[str, dict[str, Any]] = {}
        self._by_vat: dict[str, dict[str, Any]] = {}
        self._registered: list[dict[str, Any]] = []
        self._by_company: dict[str, dict[str, Any]] = {}

    def clear(self) -> None:
        """Forget every explicitly registered party, and the parties looked up."""
        self._by_org.clear()
        self._by_gln.clear()
        self._by_vat.clear()
        self._registered.clear()
        self._by_company.clear()

    def register(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Register or override one party; returns the stored party.

        Raises ``ValueError`` when the party has none of ``orgNo``, ``vatNo`` and ``gln`` or an
        unknown ``receiveElectronicInvoiceCapability``.
        """
        org_no = str(raw.get("orgNo") or "")
        vat_no = str(raw.get("vatNo") or "")
        gln = str(raw.get("gln") or "")
        if not (org_no or vat_no or gln):
            raise ValueError("a party needs at least one of orgNo, vatNo and gln")
        capability = raw.get("receiveElectronicInvoiceCapability", RECEIVING)
        if capability not in CAPABILITIES:
            raise ValueError(f"receiveElectronicInvoiceCapability must be one of {', '.join(CAPABILITIES)}")
        identifiers = raw.get("peppolParticipantIdentifiers")
        if identifiers is None:
            identifiers = self._peppol_ids(capability, org_digits(org_no) or None, gln or None)
        if not isinstance(identifiers, list) or not all(isinstance(item, str) for item in identifiers):
            raise ValueError("peppolParticipantIdentifiers must be a list of strings")
        key = org_no or vat_no or gln
        party = {
            "companyId": str(raw.get("companyId") or stable_uuid(self._seed, "registered", key)),
            "name": str(raw.get("name") or f"Registered party {key}"),
            "orgNo": org_no or None,
            "vatNo": vat_no or None,
            "gln": gln or None,
            "peppolParticipantIdentifiers": identifiers,
            "receiveElectronicInvoiceCapability": capability,
            **_checks_from(raw),
        }
        if org_no:
            self._by_org[org_digits(org_no)] = party
        if gln:
            self._by_gln[digits(gln)] = party
        if vat_no:
            self._by_vat[vat_no.replace(" ", "").upper()] = party
        self._registered.append(party)
        self._by_company[party["companyId"].casefold()] = party
        return party

    def lookup(self, *, org_no: str, vat_no: str, gln: str, name: str) -> dict[str, Any]:
        """Answer a lookup the way ``buyerparties/lookup`` does.

        The most specific identifier wins: GLN, then org number, then VAT number. A lookup by name
        alone only finds registered parties and reports them as potential matches, never as an
        exact hit. The answer has the documented shape: ``parties`` a list, or ``null`` when nothing
        is found; ``potentialMatches`` the number of parties a search by name matched (0 for the
        other searches); ``exactHit`` a boolean. The parties are copies, free to be reshaped.
        """
        party: dict[str, Any] | None = None
        if gln:
            party = self._by_gln.get(digits(gln)) or self._derived_gln_party(digits(gln))
        elif org_no:
            number = org_digits(org_no)
            party = self._by_org.get(number) or self._derived_org_party(number)
        elif vat_no:
            party = self._by_vat.get(vat_no.replace(" ", "").upper())
            number = vat_org_digits(vat_no)
            if party is None and number is not None:
                party = self._by_org.get(number) or self._derived_org_party(number)
        elif name:
            needle = name.casefold()
            matches = [dict(p) for p in self._registered if needle in p["name"].casefold()]
            return {"parties": matches or None, "potentialMatches": len(matches), "exactHit": False}
        if party is None:
            return {"parties": None, "potentialMatches": 0, "exactHit": False}
        self._by_company[party["companyId"].casefold()] = party
        return {"parties": [dict(party)], "potentialMatches": 0, "exactHit": True}

    def recipient(self, recipient_id: str, recipient_information: Mapping[str, Any]) -> dict[str, Any] | None:
        """The party a document is delivered to electronically, whose invoice checks it must pass.

        The party a look-up gave under ``recipient_id`` (``sendDocumentAs.electronic.recipientId``);
        else the receiving party that a look-up of the ``recipientInformation`` finds exactly (GLN, org
        number, then VAT number, as a look-up does), which is where InExchange delivers an e-invoice
        when the sender leaves the type to it. None when there is none.
        """
        party = self._by_company.get(recipient_id.strip().casefold()) if recipient_id else None
        if party is not None:
            return party

        def text(name: str) -> str:
            value = recipient_information.get(name)
            return "" if value is None or isinstance(value, (dict, list, bool)) else str(value).strip()

        found = self.lookup(org_no=text("orgNo"), vat_no=text("vatNo"), gln=text("gln"), name="")
        parties = found["parties"] if found["exactHit"] else None
        if not parties or parties[0]["receiveElectronicInvoiceCapability"] != RECEIVING:
            return None
        return self._by_company.get(parties[0]["companyId"].casefold())

    def _drawn_checks(self, kind: str, key: str) -> dict[str, Any]:
        """The invoice checks of a derived receiving party: none for most, drawn from the seed for a share."""
        if unit(self._seed, "checks", kind, key) >= self._check_rate():
            return {}
        flags = {check: unit(self._seed, "check", check, kind, key) < 0.5 for check in DERIVED_CHECKS}
        if not any(flags.values()):
            flags[DERIVED_CHECKS[int(unit(self._seed, "check-one", kind, key) * len(DERIVED_CHECKS))]] = True
        return {"hasInvoiceChecks": True, "invoiceChecks": {check: flags.get(check, False) for check in INVOICE_CHECKS}}

    def _peppol_ids(self, capability: str, org_no: str | None, gln: str | None) -> list[str]:
        if capability != RECEIVING:
            return []
        ids = []
        if gln:
            ids.append(f"0088:{gln}")
        if org_no:
            ids.append(f"0007:{org_no}")
        return ids

    def _derived_gln_party(self, gln: str) -> dict[str, Any] | None:
        if len(gln) != 13:
            return None
        return {
            "companyId": stable_uuid(self._seed, "gln", gln),
            "name": f"GLN party {gln}",
            "orgNo": None,
            "vatNo": None,
            "gln": gln,
            "peppolParticipantIdentifiers": self._peppol_ids(RECEIVING, None, gln),
            "receiveElectronicInvoiceCapability": RECEIVING,
            **self._drawn_checks("gln", gln),
        }

    def _derived_org_party(self, number: str) -> dict[str, Any] | None:
        if len(number) != 10:
            return None
        draw = unit(self._seed, "org", number)
        if draw < KNOWN_RECEIVING_SHARE:
            capability = RECEIVING
        elif draw < KNOWN_RECEIVING_SHARE + KNOWN_NOT_RECEIVING_SHARE:
            capability = NOT_RECEIVING
        else:
            return None
        return {
            "companyId": stable_uuid(self._seed, "org", number),
            "name": f"Buyer {format_org_no(number)} AB",
            "orgNo": format_org_no(number),
            "vatNo": f"SE{number}01",
            "gln": None,
            "peppolParticipantIdentifiers": self._peppol_ids(capability, number, None),
            "receiveElectronicInvoiceCapability": capability,
            **(self._drawn_checks("org", number) if capability == RECEIVING else {}),
        }
