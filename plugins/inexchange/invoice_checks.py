"""A buyer's invoice checks at InExchange, compared with an invoice before it is uploaded.

A buyer may demand a reference on every invoice it receives through InExchange (its party's
``invoiceChecks`` in ``buyerparties/lookup``, see :class:`~inexchange.api.InvoiceCheck`); InExchange
stops an invoice that lacks one, hours after it was sent. The submission compares each invoice with
the checks of the party it is sent to before anything of it is uploaded, and rejects one that would
fail, with a message naming each check and the ERP field to fill:

- ``buyerReferenceNo``: a buyer reference the ERP gives, the customer's Märkning or the invoice's
  "Er referens" (the document's BuyerReference; the customer number it falls back to is no
  reference of the buyer's);
- ``buyerReferenceName``: the buyer's reference person, the invoice's "Er referens" (the document's
  buyer contact name);
- ``buyerOrderNo``: the invoice's order number (the document's OrderReference);
- ``buyerName``: the customer's name exactly as InExchange has the party's (surrounding spaces aside,
  which the document never carries); a party whose name InExchange does not give cannot be compared,
  so that check is left to InExchange.

Pure functions over the ERP's rows: no database, no network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from inexchange.api import InvoiceCheck
from inexchange.values import text_or_empty

#: the order checks are named in a message
ORDER = (
    InvoiceCheck.BUYER_REFERENCE_NO,
    InvoiceCheck.BUYER_REFERENCE_NAME,
    InvoiceCheck.BUYER_ORDER_NO,
    InvoiceCheck.BUYER_NAME,
)
#: the longest name quoted in a message
_MAX_SHOWN = 200


def failed_checks(
    checks: Iterable[InvoiceCheck | str],
    invoice: Mapping[str, Any],
    customer: Mapping[str, Any],
    party_name: str | None,
) -> list[InvoiceCheck]:
    """The checks of a buyer that an invoice would fail, in :data:`ORDER`.

    :param checks: the checks the party turns on (:class:`~inexchange.api.InvoiceCheck` or their values).
    :param invoice: the invoice's ``customer_invoice`` row.
    :param customer: its ``customer`` row.
    :param party_name: the party's name as InExchange gives it (None: unknown, the name is not compared).
    """
    wanted = {InvoiceCheck(check) for check in checks}
    marking, your_reference = text_or_empty(customer.get("marking")), text_or_empty(invoice.get("your_reference"))
    met = {
        InvoiceCheck.BUYER_REFERENCE_NO: bool(marking or your_reference),
        InvoiceCheck.BUYER_REFERENCE_NAME: bool(your_reference),
        InvoiceCheck.BUYER_ORDER_NO: bool(text_or_empty(invoice.get("order_number"))),
        InvoiceCheck.BUYER_NAME: name_matches(customer, party_name),
    }
    return [check for check in ORDER if check in wanted and not met[check]]


def name_matches(customer: Mapping[str, Any], party_name: str | None) -> bool:
    """Whether the customer's name is the party's as InExchange has it (True when InExchange gives none).

    :param customer: the ``customer`` row.
    :param party_name: the party's ``name`` from the lookup.
    """
    expected = (party_name or "").strip()
    return not expected or text_or_empty(customer.get("name")) == expected


def refusal(
    failed: Iterable[InvoiceCheck],
    invoice: Mapping[str, Any],
    customer: Mapping[str, Any],
    party_name: str | None,
) -> str | None:
    """The message of an invoice that fails checks (one message naming them all), or None when it fails none.

    For example ``Faktura 10073: Kunden kräver ordernummer på varje faktura; fyll i ordernummer på
    faktura 10073``.

    :param failed: the checks it fails (:func:`failed_checks`).
    :param invoice: the invoice's ``customer_invoice`` row.
    :param customer: its ``customer`` row.
    :param party_name: the party's name as InExchange gives it.
    """
    failed = [check for check in ORDER if check in set(failed)]
    if not failed:
        return None
    number = text_or_empty(invoice.get("invoice_number"))[:40]
    customer_number = text_or_empty(customer.get("customer_number"))[:40]
    ours = text_or_empty(customer.get("name"))[:_MAX_SHOWN]
    theirs = (party_name or "").strip()[:_MAX_SHOWN]
    demands = {
        InvoiceCheck.BUYER_REFERENCE_NO: "köparens referens (Märkning eller Er referens)",
        InvoiceCheck.BUYER_REFERENCE_NAME: "referensperson (Er referens)",
        InvoiceCheck.BUYER_ORDER_NO: "ordernummer",
        InvoiceCheck.BUYER_NAME: f'köparens namn exakt som InExchange har det, "{theirs}"',
    }
    fixes = {
        InvoiceCheck.BUYER_REFERENCE_NO: f"fyll i Märkning på kund {customer_number} eller Er referens på faktura {number}",
        InvoiceCheck.BUYER_REFERENCE_NAME: f"fyll i Er referens på faktura {number}",
        InvoiceCheck.BUYER_ORDER_NO: f"fyll i ordernummer på faktura {number}",
        InvoiceCheck.BUYER_NAME: (
            f'ändra namnet på kund {customer_number} i ERP från "{ours}" till "{theirs}" så att det stämmer '
            "med InExchange"
        ),
    }
    # Er referens is the reference person, and a buyer reference too: one fix for both
    needed = [
        c for c in failed if not (c is InvoiceCheck.BUYER_REFERENCE_NO and InvoiceCheck.BUYER_REFERENCE_NAME in failed)
    ]
    return (
        f"Faktura {number}: Kunden kräver {_listed([demands[c] for c in failed])} på varje faktura; "
        f"{_listed([fixes[c] for c in needed])}"
    )


def _listed(items: list[str]) -> str:
    """Items joined as Swedish lists them: ``a, b och c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " och " + items[-1]
