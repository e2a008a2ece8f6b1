"""Build Peppol BIS Billing 3.0 (UBL 2.1) Invoices and CreditNotes with lxml.

One invoice of the ERP (header, lines, customer, attachments) and the seller's configuration give one
document. The output is deterministic: the same input gives byte-identical XML (no timestamps, lines
in ERP order, VAT subtotals sorted by category and rate). Where the ERP data cannot make a valid
document, :class:`DocumentError` names the rule and the invoice is rejected before upload.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pandas as pd
from lxml import etree

from inexchange import vat
from inexchange.exceptions import InExchangeConfigError
from inexchange.identifiers import EU_COUNTRIES, buyer_endpoint, endpoint_refusal, in_eu, vat_in_document
from inexchange.units import UNIT_CODES
from inexchange.validation import TEXT_FIELDS, flag, money, number
from inexchange.values import as_date, text_or_empty

if TYPE_CHECKING:
    from inexchange.erp import InvoiceBatch

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
NS_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
NS_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
NS_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
NS_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024

_CENT = Decimal("0.01")


class DocumentError(ValueError):
    """The ERP data cannot make a valid Peppol BIS 3 document; the message names the rule."""


@dataclass(frozen=True)
class Seller:
    """Our company, as it appears as AccountingSupplierParty and in PaymentMeans.

    Configured as the Airflow Variable ``inexchange_seller`` (JSON with these keys).
    """

    name: str
    org_number: str
    vat_number: str
    street: str
    postal_code: str
    city: str
    country_code: str = "SE"
    f_skatt: bool = True
    bankgiro: str | None = None
    plusgiro: str | None = None
    iban: str | None = None
    bic: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Seller:
        """Build and check the seller configuration; every problem is named at once."""
        from stdnum import bic as bic_check
        from stdnum import iban as iban_check
        from stdnum.se import orgnr, vat

        known = {f.name for f in fields(cls)}
        problems = [f"unknown key {k!r}" for k in sorted(set(config) - known)]
        for key in ("name", "org_number", "vat_number", "street", "postal_code", "city"):
            if not str(config.get(key) or "").strip():
                problems.append(f"{key} is required")
        org, vat_no = str(config.get("org_number") or ""), str(config.get("vat_number") or "")
        if org and not orgnr.is_valid(org):
            problems.append(f"org_number {org} is not a valid Swedish organisation number")
        if vat_no and (
            not vat.is_valid(vat_no) or (orgnr.is_valid(org) and vat.compact(vat_no)[:10] != orgnr.compact(org))
        ):
            problems.append(f"vat_number {vat_no} must be SE + org_number + 01")
        if not any(config.get(k) for k in ("bankgiro", "plusgiro", "iban")):
            problems.append("one of bankgiro, plusgiro or iban is required for PaymentMeans")
        if config.get("iban") and not iban_check.is_valid(config["iban"]):
            problems.append(f"iban {config['iban']} is not valid")
        for key, lengths in _GIRO_LENGTHS.items():
            if config.get(key) and not _giro_is_valid(str(config[key]), lengths):
                problems.append(
                    f"{key} {config[key]} is not valid ({min(lengths)} to {max(lengths)} digits with a check digit)"
                )
        if config.get("bic") and not bic_check.is_valid(str(config["bic"])):
            problems.append(f"bic {config['bic']} is not a valid BIC (8 or 11 characters, e.g. ESSESESS)")
        if problems:
            raise InExchangeConfigError("seller configuration (Variable inexchange_seller): " + "; ".join(problems))
        values = {k: v for k, v in config.items() if k in known}
        values["org_number"] = orgnr.compact(org)
        values["vat_number"] = "SE" + vat.compact(vat_no)
        return cls(**values)


#: digits of a Swedish bankgiro (7 or 8) and plusgiro (2 to 8) number, both ending in a Luhn check digit
_GIRO_LENGTHS = {"bankgiro": range(7, 9), "plusgiro": range(2, 9)}


def _giro_is_valid(number: str, lengths: range) -> bool:
    """A bankgiro or plusgiro number, written with or without spaces and hyphens: its digits count and
    check digit (Luhn, mod 10)."""
    from stdnum import luhn

    digits = number.replace(" ", "").replace("-", "")
    return digits.isdigit() and len(digits) in lengths and luhn.is_valid(digits)


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


class _Builder:
    """Appends UBL elements in schema order."""

    def __init__(self, root: etree._Element, currency: str, reverse_charge: bool = False) -> None:
        self.root = root
        self.currency = currency
        self.reverse_charge = reverse_charge

    def cbc(self, parent: etree._Element, tag: str, text: Any, **attrib: str) -> etree._Element:
        element = etree.SubElement(parent, _q(NS_CBC, tag), attrib)
        try:
            element.text = str(text)
        except ValueError:  # control characters cannot be written in XML
            raise DocumentError(
                f"{tag} innehåller tecken som XML inte kan bära (styrtecken): {str(text)[:40]!r}; ta bort dem i ERP"
            ) from None
        return element

    def cac(self, parent: etree._Element, tag: str) -> etree._Element:
        return etree.SubElement(parent, _q(NS_CAC, tag))

    def amount(self, parent: etree._Element, tag: str, value: Decimal) -> etree._Element:
        return self.cbc(parent, tag, f"{value.quantize(_CENT, ROUND_HALF_UP):.2f}", currencyID=self.currency)


def _digits(value: Any) -> str:
    return "".join(ch for ch in text_or_empty(value) if ch.isdigit())


def _category(b: _Builder, rate: Decimal) -> str:
    """VAT category of a line that states none: S for a rate above 0; at 0 %, AE (reverse charge) for an
    EU buyer abroad with a VAT number, else Z (a buyer outside the EU included: an export is G only where
    the ERP states it, with its reason)."""
    if rate > 0:
        return "S"
    return "AE" if b.reverse_charge else "Z"


def buyer_reference(invoice: pd.Series, customer: pd.Series) -> str:
    """BuyerReference: Märkning, else your reference, else the customer number (PEPPOL-EN16931-R003)."""
    return (
        text_or_empty(customer.get("marking"))
        or text_or_empty(invoice.get("your_reference"))
        or text_or_empty(customer.get("customer_number"))
    )


def build_document(
    invoice: Mapping[str, Any],
    lines: pd.DataFrame | list[dict[str, Any]],
    customer: Mapping[str, Any],
    seller: Seller,
    attachments: pd.DataFrame | list[dict[str, Any]] | None = None,
) -> bytes:
    """Return the UBL XML of one invoice: an Invoice (380) for debit, a CreditNote (381) for credit.

    :param invoice: a ``customer_invoice`` row (a pandas Series or a dict).
    :param lines: its ``customer_invoice_line`` rows, in line order.
    :param customer: its ``customer`` row.
    :param seller: our company.
    :param attachments: its ``invoice_attachment`` rows, embedded when the customer wants them.
    :raises DocumentError: naming the invoice (``Faktura 10073: ...``), the rule and what to fix, in Swedish.
    """
    try:
        return _document(invoice, lines, customer, seller, attachments)
    except DocumentError as exc:
        raise DocumentError(f"Faktura {text_or_empty(invoice.get('invoice_number'))[:40]}: {exc}") from None


def _document(
    invoice: Mapping[str, Any],
    lines: pd.DataFrame | list[dict[str, Any]],
    customer: Mapping[str, Any],
    seller: Seller,
    attachments: pd.DataFrame | list[dict[str, Any]] | None,
) -> bytes:
    credit = text_or_empty(invoice["invoice_type"]) == "credit"
    sign = Decimal(-1) if credit else Decimal(1)
    currency = text_or_empty(invoice["currency"]) or "SEK"
    root_ns, root_tag = (NS_CREDIT_NOTE, "CreditNote") if credit else (NS_INVOICE, "Invoice")
    root = etree.Element(_q(root_ns, root_tag), nsmap={None: root_ns, "cac": NS_CAC, "cbc": NS_CBC})
    country = (text_or_empty(customer.get("country_code")) or "SE").upper()
    # reverse charge is for a buyer in another EU country only
    intra_eu = country != "SE" and in_eu(country)
    b = _Builder(root, currency, reverse_charge=intra_eu and bool(text_or_empty(customer.get("vat_number"))))
    number_text = text_or_empty(invoice["invoice_number"])

    b.cbc(root, "CustomizationID", CUSTOMIZATION_ID)
    b.cbc(root, "ProfileID", PROFILE_ID)
    b.cbc(root, "ID", number_text)
    b.cbc(root, "IssueDate", as_date(invoice["invoice_date"]).isoformat())
    if not credit and text_or_empty(invoice.get("due_date")):
        b.cbc(root, "DueDate", as_date(invoice["due_date"]).isoformat())
    b.cbc(root, "CreditNoteTypeCode" if credit else "InvoiceTypeCode", "381" if credit else "380")
    b.cbc(root, "DocumentCurrencyCode", currency)
    b.cbc(root, "BuyerReference", buyer_reference(invoice, customer))
    if text_or_empty(invoice.get("order_number")):
        b.cbc(b.cac(root, "OrderReference"), "ID", text_or_empty(invoice["order_number"]))
    if credit:
        credited = text_or_empty(invoice.get("credited_invoice_number"))
        if not credited:
            raise DocumentError("kreditfakturan anger inte vilken faktura den krediterar (BR-55)")
        b.cbc(b.cac(b.cac(root, "BillingReference"), "InvoiceDocumentReference"), "ID", credited)
    if attachments is not None and flag(customer.get("attach_documents")):
        _attachments(b, attachments)
    _supplier(b, seller)
    _customer(b, customer, invoice)
    _payment_means(b, seller, number_text)

    line_rows = _lines(lines, sign)
    breakdown = _breakdown(b, line_rows, customer)
    categories = {subtotal.category for subtotal in breakdown}
    if "K" in categories:  # BR-IC-11, BR-IC-12
        _delivery(b, invoice, customer)
    if "O" in categories:  # BR-O-02: a document not subject to VAT names no VAT identifiers
        _drop_vat_identifiers(b)
    tax_total = b.cac(root, "TaxTotal")
    tax_sum = sum((subtotal.tax for subtotal in breakdown), Decimal("0"))
    b.amount(tax_total, "TaxAmount", tax_sum)
    for subtotal in breakdown:
        element = b.cac(tax_total, "TaxSubtotal")
        b.amount(element, "TaxableAmount", subtotal.base)
        b.amount(element, "TaxAmount", subtotal.tax)
        _tax_category(b, b.cac(element, "TaxCategory"), subtotal)

    line_total = sum((subtotal.base for subtotal in breakdown), Decimal("0"))
    rounding = _payable_rounding(money(invoice.get("total_amount")), sign, line_total + tax_sum)
    totals = b.cac(root, "LegalMonetaryTotal")
    b.amount(totals, "LineExtensionAmount", line_total)
    b.amount(totals, "TaxExclusiveAmount", line_total)
    b.amount(totals, "TaxInclusiveAmount", line_total + tax_sum)
    if rounding:
        b.amount(totals, "PayableRoundingAmount", rounding)
    b.amount(totals, "PayableAmount", line_total + tax_sum + rounding)

    for row in line_rows:
        _line(b, credit, row)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def build_from_batch(batch: InvoiceBatch, invoice_id: int, seller: Seller) -> bytes:
    """Build the document of one invoice of an :class:`~inexchange.erp.InvoiceBatch`.

    :param batch: invoices with their customers, lines and attachments.
    :param invoice_id: the invoice to build.
    :param seller: our company.
    """
    invoice = batch.invoice(invoice_id)
    try:
        return build_document(
            invoice,
            batch.lines_of(invoice_id),
            batch.customer(invoice["customer_id"]),
            seller,
            batch.attachments_of(invoice_id),
        )
    except DocumentError:
        raise
    except (ArithmeticError, ValueError, TypeError) as exc:  # a value validation let through by mistake
        raise DocumentError(
            f"Faktura {text_or_empty(invoice.get('invoice_number'))[:40]}: ERP-raden kan inte läsas "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


def _payable_rounding(erp_total: Decimal | None, sign: Decimal, computed: Decimal) -> Decimal:
    """PayableRoundingAmount: what the ERP's total adds to the computed one (BR-CO-16).

    Zero when the totals agree; the difference when the ERP rounded to whole kronor (at most 50
    öre); any other difference means the document would bill another amount than the ERP did.
    """
    if erp_total is None or erp_total * sign == computed:
        return Decimal("0.00")
    difference = erp_total * sign - computed
    if erp_total == erp_total.to_integral_value() and abs(difference) <= Decimal("0.50"):
        return difference
    raise DocumentError(
        f"totalbeloppet {erp_total} i ERP skiljer sig från radernas summa med moms {computed * sign} (BR-CO-15); "
        "rätta fakturan i ERP"
    )


def _attachments(b: _Builder, attachments: pd.DataFrame) -> None:
    for record in _records(attachments):
        row = SimpleNamespace(**record)
        content = bytes(row.content or b"")
        if len(content) > MAX_ATTACHMENT_BYTES:
            raise DocumentError(
                f"bilagan {row.file_name} är {len(content)} byte; InExchange tar emot högst "
                f"{MAX_ATTACHMENT_BYTES} byte per bilaga"
            )
        reference = b.cac(b.root, "AdditionalDocumentReference")
        b.cbc(reference, "ID", text_or_empty(row.file_name))
        attachment = b.cac(reference, "Attachment")
        b.cbc(
            attachment,
            "EmbeddedDocumentBinaryObject",
            base64.b64encode(content).decode("ascii"),
            mimeCode=text_or_empty(row.mime_type) or "application/pdf",
            filename=text_or_empty(row.file_name),
        )


def _supplier(b: _Builder, seller: Seller) -> None:
    party = b.cac(b.cac(b.root, "AccountingSupplierParty"), "Party")
    b.cbc(party, "EndpointID", seller.org_number, schemeID="0007")
    b.cbc(b.cac(party, "PartyName"), "Name", seller.name)
    _address(b, party, seller.street, seller.city, seller.postal_code, seller.country_code)
    _tax_scheme(b, party, seller.vat_number, "VAT")
    if seller.f_skatt:
        _tax_scheme(b, party, "Godkänd för F-skatt", "TAX")
    legal = b.cac(party, "PartyLegalEntity")
    b.cbc(legal, "RegistrationName", seller.name)
    b.cbc(legal, "CompanyID", seller.org_number, schemeID="0007")
    if seller.contact_name or seller.contact_email or seller.contact_phone:
        contact = b.cac(party, "Contact")
        for tag, value in (
            ("Name", seller.contact_name),
            ("Telephone", seller.contact_phone),
            ("ElectronicMail", seller.contact_email),
        ):
            if value:
                b.cbc(contact, tag, value)


def _customer(b: _Builder, customer: pd.Series, invoice: Mapping[str, Any]) -> None:
    """AccountingCustomerParty; its Contact names the buyer's reference person ("Er referens", BT-56),
    where a buyer's invoice check on the reference name reads it, and the invoice e-mail."""
    party = b.cac(b.cac(b.root, "AccountingCustomerParty"), "Party")
    org, vat_number = _digits(customer.get("org_number")), text_or_empty(customer.get("vat_number"))
    country = (text_or_empty(customer.get("country_code")) or "SE").upper()
    buyer = (country, text_or_empty(customer.get("org_number")), vat_number, _digits(customer.get("gln")))
    endpoint = buyer_endpoint(*buyer, text_or_empty(customer.get("peppol_id")))
    if endpoint is None:  # validation refuses these first; the reason in its words
        problem = endpoint_refusal(*buyer, text_or_empty(customer.get("peppol_id")))
        raise DocumentError(f"kunden {text_or_empty(customer.get('customer_number'))}: {problem} (BT-49)")
    b.cbc(party, "EndpointID", endpoint.identifier, schemeID=endpoint.scheme)
    b.cbc(b.cac(party, "PartyName"), "Name", text_or_empty(customer["name"]))
    _address(
        b,
        party,
        text_or_empty(customer.get("street")),
        text_or_empty(customer.get("city")),
        text_or_empty(customer.get("postal_code")),
        text_or_empty(customer.get("country_code")) or "SE",
    )
    if vat_number:  # outside the EU as the document needs it: with its country prefix (BR-CO-09)
        abroad = country != "SE" and not in_eu(country)
        _tax_scheme(b, party, (abroad and vat_in_document(vat_number, country)) or vat_number.replace(" ", ""), "VAT")
    legal = b.cac(party, "PartyLegalEntity")
    b.cbc(legal, "RegistrationName", text_or_empty(customer["name"]))
    if org and (text_or_empty(customer.get("country_code")) or "SE") == "SE":
        b.cbc(legal, "CompanyID", org, schemeID="0007")
    contact_name, email = text_or_empty(invoice.get("your_reference")), text_or_empty(customer.get("invoice_email"))
    if contact_name or email:
        contact = b.cac(party, "Contact")
        if contact_name:
            b.cbc(contact, "Name", contact_name)
        if email:
            b.cbc(contact, "ElectronicMail", email)


def _address(b: _Builder, party: etree._Element, street: str, city: str, postal: str, country: str) -> None:
    address = b.cac(party, "PostalAddress")
    for tag, value in (("StreetName", street), ("CityName", city), ("PostalZone", postal)):
        if value:
            b.cbc(address, tag, value)
    b.cbc(b.cac(address, "Country"), "IdentificationCode", country)


def _tax_scheme(b: _Builder, party: etree._Element, company_id: str, scheme: str) -> None:
    tax = b.cac(party, "PartyTaxScheme")
    b.cbc(tax, "CompanyID", company_id)
    b.cbc(b.cac(tax, "TaxScheme"), "ID", scheme)


def _payment_means(b: _Builder, seller: Seller, number_text: str) -> None:
    means = b.cac(b.root, "PaymentMeans")
    b.cbc(means, "PaymentMeansCode", "30")
    b.cbc(means, "PaymentID", number_text)
    account = b.cac(means, "PayeeFinancialAccount")
    if seller.bankgiro or seller.plusgiro:
        b.cbc(account, "ID", _digits(seller.bankgiro or seller.plusgiro))
        b.cbc(b.cac(account, "FinancialInstitutionBranch"), "ID", "SE:BANKGIRO" if seller.bankgiro else "SE:PLUSGIRO")
    else:
        b.cbc(account, "ID", (seller.iban or "").replace(" ", ""))
        if seller.bic:
            b.cbc(b.cac(account, "FinancialInstitutionBranch"), "ID", seller.bic)


@dataclass(frozen=True)
class _Subtotal:
    """One VAT breakdown (BG-23): a category and rate, its taxable amount and VAT, and why no VAT is charged."""

    category: str
    rate: Decimal
    base: Decimal
    tax: Decimal
    reason_code: str = ""
    reason: str = ""


def _breakdown(b: _Builder, rows: list[dict[str, Any]], customer: Mapping[str, Any]) -> list[_Subtotal]:
    """The VAT breakdown: one subtotal per category and rate, sorted by them.

    A line without a stated category gets the one its rate and the buyer give (:func:`_category`). A
    category that needs an exemption reason (BR-E-10, BR-AE-10, BR-IC-10, BR-G-10, BR-O-10) takes the
    one its lines state; a derived AE takes its reason of :data:`~inexchange.vat.DERIVED_REASONS`.
    """
    for row in rows:
        if not row["category"]:
            row["category"], row["derived"] = _category(b, row["rate"]), True
    categories = {row["category"] for row in rows}
    if "O" in categories and len(categories) > 1:
        raise DocumentError(vat.not_subject_mixed(sorted(categories - {"O"})))
    without_vat = [
        c for c in sorted(vat.BUYER_VAT_RULES) if c in categories and not text_or_empty(customer.get("vat_number"))
    ]
    if without_vat:
        raise DocumentError(vat.buyer_vat_missing(without_vat))
    country = (text_or_empty(customer.get("country_code")) or "SE").upper()
    if "K" in categories and country not in EU_COUNTRIES - {"SE"}:
        raise DocumentError(vat.not_intra_community(country[:10]))
    reasons: dict[str, tuple[str, str]] = {}
    for category in sorted(categories & set(vat.REASON_RULES)):
        stated = [row for row in rows if row["category"] == category and not row["derived"]]
        reason = vat.reason_of((row["reason_code"], row["reason"]) for row in stated)
        if reason is None:
            raise DocumentError(vat.conflicting_reasons(category))
        if reason == ("", ""):
            if stated or category not in vat.DERIVED_REASONS:
                raise DocumentError(vat.missing_reason(category))
            reason = vat.DERIVED_REASONS[category]
        reasons[category] = reason
    bases: dict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
    for row in rows:
        bases[(row["category"], row["rate"])] += row["amount"]
    return [
        _Subtotal(
            category, rate, base, (base * rate / 100).quantize(_CENT, ROUND_HALF_UP), *reasons.get(category, ("", ""))
        )
        for (category, rate), base in sorted(bases.items())
    ]


def _tax_category(b: _Builder, category: etree._Element, subtotal: _Subtotal) -> None:
    b.cbc(category, "ID", subtotal.category)
    if subtotal.category != "O":  # BR-48: a breakdown not subject to VAT has no rate
        b.cbc(category, "Percent", f"{subtotal.rate:.2f}".rstrip("0").rstrip("."))
    if subtotal.reason_code:
        b.cbc(category, "TaxExemptionReasonCode", subtotal.reason_code)
    if subtotal.reason:
        b.cbc(category, "TaxExemptionReason", subtotal.reason)
    b.cbc(b.cac(category, "TaxScheme"), "ID", "VAT")


def _delivery(b: _Builder, invoice: Mapping[str, Any], customer: Mapping[str, Any]) -> None:
    """Delivery (BG-13) of an intra-community supply: the actual delivery date (BR-IC-11) and the deliver-to
    country (BR-IC-12). The contract carries neither: the invoice date and the customer's country stand
    for them. Placed before PaymentMeans, as UBL orders it."""
    delivery = etree.Element(_q(NS_CAC, "Delivery"))
    b.cbc(delivery, "ActualDeliveryDate", as_date(invoice["invoice_date"]).isoformat())
    address = b.cac(b.cac(delivery, "DeliveryLocation"), "Address")
    b.cbc(
        b.cac(address, "Country"), "IdentificationCode", (text_or_empty(customer.get("country_code")) or "SE").upper()
    )
    b.root.find(_q(NS_CAC, "PaymentMeans")).addprevious(delivery)


def _drop_vat_identifiers(b: _Builder) -> None:
    """Remove the seller's and the buyer's VAT identifiers (BT-31, BT-48), which BR-O-02 forbids."""
    for party in ("AccountingSupplierParty", "AccountingCustomerParty"):
        for scheme in b.root.findall(f"{_q(NS_CAC, party)}/{_q(NS_CAC, 'Party')}/{_q(NS_CAC, 'PartyTaxScheme')}"):
            if scheme.findtext(f"{_q(NS_CAC, 'TaxScheme')}/{_q(NS_CBC, 'ID')}") == "VAT":
                scheme.getparent().remove(scheme)


def _lines(lines: pd.DataFrame, sign: Decimal) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if len(lines) == 0:
        raise DocumentError("fakturan saknar rader (BR-16)")
    for line in (SimpleNamespace(**record) for record in _records(lines)):
        unit = text_or_empty(line.unit).lower()
        if unit not in UNIT_CODES:
            raise DocumentError(
                f"rad {line.line_number}: enheten '{line.unit}' saknar kod i UN/ECE rek. 20; "
                f"använd en av {', '.join(sorted(u for u in UNIT_CODES if u))}"
            )
        quantity, price, amount, rate = (
            number(line.quantity),
            number(line.unit_price),
            money(line.line_amount),
            number(line.vat_rate),
        )
        if quantity is None or price is None or amount is None or rate is None:
            raise DocumentError(f"rad {line.line_number}: antal, pris, belopp och momssats måste anges")
        if abs(quantity * price - amount) > Decimal("0.02"):
            raise DocumentError(
                f"rad {line.line_number}: beloppet {amount} är inte antal {_plain(quantity)} × pris "
                f"{_plain(price)} (PEPPOL-EN16931-R120)"
            )
        if price < 0:
            raise DocumentError(
                f"rad {line.line_number}: priset {_plain(price)} är negativt (BR-27); ge rabatt "
                "som negativt antal till positivt pris"
            )
        quantity, amount = quantity * sign, amount * sign
        name = text_or_empty(line.description) or text_or_empty(line.article_number)
        if len(name) > _MAX_ITEM_NAME:
            raise DocumentError(
                f"rad {line.line_number}: radtexten har {len(name)} tecken, högst {_MAX_ITEM_NAME} skickas"
            )
        category, reason_code, reason = (text_or_empty(getattr(line, column, None)) for column in vat.LINE_COLUMNS)
        category, reason_code = category.upper(), reason_code.upper()
        problem = vat.line_problem(category, rate, reason_code, reason)
        if problem:
            raise DocumentError(f"rad {line.line_number}: {problem}")
        rows.append(
            {
                "id": _line_id(line.line_number),
                "quantity": quantity,
                "unit": UNIT_CODES[unit],
                "amount": amount,
                "price": price,
                "rate": rate,
                "name": name,
                "article": text_or_empty(line.article_number),
                "category": category,
                "derived": False,
                "reason_code": reason_code,
                "reason": reason,
            }
        )
    return rows


def _line(b: _Builder, credit: bool, row: dict[str, Any]) -> None:
    line = b.cac(b.root, "CreditNoteLine" if credit else "InvoiceLine")
    b.cbc(line, "ID", row["id"])
    b.cbc(line, "CreditedQuantity" if credit else "InvoicedQuantity", _plain(row["quantity"]), unitCode=row["unit"])
    b.amount(line, "LineExtensionAmount", row["amount"])
    item = b.cac(line, "Item")
    b.cbc(item, "Name", row["name"] or "Artikel")
    if row["article"]:
        b.cbc(b.cac(item, "SellersItemIdentification"), "ID", row["article"])
    category = b.cac(item, "ClassifiedTaxCategory")
    b.cbc(category, "ID", row["category"])
    if row["category"] != "O":  # BR-O-05: a line not subject to VAT has no rate
        b.cbc(category, "Percent", f"{row['rate']:.2f}".rstrip("0").rstrip("."))
    b.cbc(b.cac(category, "TaxScheme"), "ID", "VAT")
    b.cbc(b.cac(line, "Price"), "PriceAmount", _plain(row["price"]), currencyID=b.currency)


#: longest item name (a line's description) the document carries: the contract's description width
_MAX_ITEM_NAME = TEXT_FIELDS["description"][1]


def _line_id(value: Any) -> str:
    """A line's ID (BT-126): its whole line number ('2' also for 2.0)."""
    try:
        line_number = Decimal(text_or_empty(value))
    except ArithmeticError:
        line_number = Decimal("NaN")
    if not line_number.is_finite() or line_number != line_number.to_integral_value():
        raise DocumentError(f"radnumret {text_or_empty(value)[:40]!r} är inget heltal (BT-126)")
    return str(int(line_number))


def _records(rows: pd.DataFrame | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as plain dicts: a DataFrame is converted once, a list of dicts is used as it is."""
    return rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros ('2', '12.5')."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
