"""The simulated InExchange buyer-party registry behind ``POST buyerparties/lookup``.

The registry is derived from the seed, so every org number has a fixed fate without any set-up:

* about 70 % are known parties that receive e-invoices (``exactHit`` true),
* about 15 % are known parties that do not receive e-invoices (``exactHit`` true),
* about 15 % are unknown (``parties`` null, ``exactHit`` false).

A 13-digit GLN always names a known receiving party. Parties registered explicitly through
``POST /_sim/parties`` take precedence over the derived ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from inexchange_devkit.simulator.seeded import stable_uuid, unit

RECEIVING = "ReceivingElectronicInvoices"
NOT_RECEIVING = "NotReceivingElectronicInvoices"
CAPABILITIES = (RECEIVING, NOT_RECEIVING)

KNOWN_RECEIVING_SHARE = 0.70
KNOWN_NOT_RECEIVING_SHARE = 0.15

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


class PartyRegistry:
    """Seed-derived buyer parties plus explicitly registered overrides."""

    def __init__(self, seed: int) -> None:
        """Create an empty override table over the registry derived from ``seed``."""
        self._seed = seed
        self._by_org: dict[str, dict[str, Any]] = {}
        self._by_gln: dict[str, dict[str, Any]] = {}
        self._by_vat: dict[str, dict[str, Any]] = {}
        self._registered: list[dict[str, Any]] = []

    def clear(self) -> None:
        """Forget every explicitly registered party."""
        self._by_org.clear()
        self._by_gln.clear()
        self._by_vat.clear()
        self._registered.clear()

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
        }
        if org_no:
            self._by_org[org_digits(org_no)] = party
        if gln:
            self._by_gln[digits(gln)] = party
        if vat_no:
            self._by_vat[vat_no.replace(" ", "").upper()] = party
        self._registered.append(party)
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
        return {"parties": [dict(party)], "potentialMatches": 0, "exactHit": True}

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
        }
