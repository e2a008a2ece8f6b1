"""A corpus of hostile ERP rows: each case its own customer and invoice, with the outcome it must have.

Every case starts from one good invoice of one good customer (:func:`good_customer`,
:func:`good_invoice`) dated on :data:`RUN_DAY`, and changes what the case is about: a NULL in one
column, a value of the wrong type, SQL metacharacters or Unicode in a text, a 10 MB description,
negative quantities and prices, dates in year 9999, a duplicated invoice number, a missing or
deleted customer. The expected outcome is one of

- :class:`Sent`: sent once, and the UBL document InExchange received holds exactly these texts;
- :class:`Rejected`: rejected, never sent, and its message holds these fragments (which invoice or
  customer, which field as the ERP shows it, what to fix);
- :class:`NotExtracted`: not an InExchange invoice of the day (no billing method, not posted, no
  invoice date to put it in a day): the day's run leaves it alone; when ``manual`` is given, a
  manual run listing its number rejects it with that message;
- :class:`WithoutId`: the row has no usable ``invoice_id``, so it cannot be kept in the ledger or
  sent exactly once; the extract task names it (XCom ``without_id``) with these fragments.

Fragments are ``str.format`` templates over the case's ``invoice`` (number), ``invoice_id``,
``customer`` (number), ``customer_id`` and ``name``. Cases whose values only SQLite can hold (text
or fractional keys, blobs, NUL, invalid UTF-8) are marked ``sqlite_only``: the PostgreSQL copy of
the contract keeps typed keys and cannot store NUL or bytes in text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

RUN_DAY = date(2026, 11, 17)
DUE_DAY = RUN_DAY + timedelta(days=30)
BILLING_METHOD = "InExchange utskrift (API)"
ORG_NUMBER = "212000-1553"
VAT_NUMBER = "SE212000155301"
GLN = "7350000000016"
MARKING = "Projekt Ö-17"
YOUR_REFERENCE = "Eva Lind"
ORDER_NUMBER = "PO-4711"
FIRST_CUSTOMER_ID = 9000
FIRST_INVOICE_ID = 90000
#: a description of 10 MiB, far beyond the 200 characters a line text may have
TEN_MB = 10 * 1024 * 1024
CENT = Decimal("0.01")

#: XPaths (prefixes ``cbc``/``cac``) of the document InExchange received
BUYER = "cac:AccountingCustomerParty/cac:Party"
LINE1 = "cac:InvoiceLine[1]"
LINE2 = "cac:InvoiceLine[2]"
NAME = f"{BUYER}/cac:PartyName/cbc:Name"
REGISTRATION_NAME = f"{BUYER}/cac:PartyLegalEntity/cbc:RegistrationName"


@dataclass(frozen=True)
class Sent:
    """Sent once; ``document`` maps XPaths to the exact text they hold (None: the element is absent).

    :param escaped: byte strings the serialised document must hold (XML escaping of ``&`` and ``<``).
    """

    document: Mapping[str, str | None] = field(default_factory=dict)
    escaped: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Rejected:
    """Rejected before anything reached InExchange; the message holds every fragment."""

    fragments: tuple[str, ...]


@dataclass(frozen=True)
class NotExtracted:
    """Not an InExchange invoice of the day; ``manual`` is what a manual run listing its number does."""

    reason: str
    manual: Rejected | None = None


@dataclass(frozen=True)
class WithoutId:
    """No usable invoice_id: named by the extract task (XCom ``without_id``) with these fragments."""

    fragments: tuple[str, ...]


Outcome = Sent | Rejected | NotExtracted | WithoutId


@dataclass(frozen=True)
class Case:
    """One hostile case: its rows and its expected outcome.

    :param key: short id (pytest output, failure messages).
    :param customer: the customer row, or None for an invoice whose customer row does not exist.
    :param invoice: the customer_invoice row.
    :param lines: its customer_invoice_line rows.
    :param expect: the outcome.
    :param sqlite_only: holds values the PostgreSQL copy cannot store.
    :param raw_text: ``(table, column)`` whose bytes value is stored as TEXT (invalid UTF-8), SQLite only.
    :param delete_customer_after_validate: the customer row is deleted once ``validate`` succeeded.
    :param extra_rows: ``(table, row)`` stored besides the case's rows (a second copy of one of them).
    """

    key: str
    n: int
    customer: dict[str, Any] | None
    invoice: dict[str, Any]
    lines: tuple[dict[str, Any], ...]
    expect: Outcome
    sqlite_only: bool = False
    raw_text: tuple[tuple[str, str], ...] = ()
    delete_customer_after_validate: bool = False
    extra_rows: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def invoice_number(self) -> Any:
        return self.invoice["invoice_number"]

    @property
    def erp_document_id(self) -> str:
        return f"invoice-{self.invoice['invoice_id']}"

    def names(self) -> dict[str, Any]:
        """The values fragment templates may use."""
        customer = self.customer or {}
        return {"invoice": self.invoice["invoice_number"], "invoice_id": self.invoice["invoice_id"],
                "customer": customer.get("customer_number"), "customer_id": customer_id(self.n),
                "name": customer.get("name")}

    def fragments(self) -> list[str]:
        """The expected message fragments, filled in."""
        expect = self.expect.manual if isinstance(self.expect, NotExtracted) else self.expect
        assert isinstance(expect, Rejected | WithoutId), self.key
        return [fragment.format(**self.names()) for fragment in expect.fragments]


# ---- the good rows every case starts from ------------------------------------------------------------
def customer_id(n: int) -> int:
    return FIRST_CUSTOMER_ID + n


def invoice_id(n: int) -> int:
    return FIRST_INVOICE_ID + n


def good_customer(n: int, **values: Any) -> dict[str, Any]:
    """A customer that may receive invoices through InExchange (with GLN and Märkning)."""
    row = {
        "customer_id": customer_id(n), "customer_number": str(customer_id(n)), "name": f"Provkund {n} AB",
        "is_active": True, "is_private_person": False, "org_number": ORG_NUMBER, "vat_number": VAT_NUMBER,
        "country_code": "SE", "language": "sv", "currency": "SEK", "billing_method": BILLING_METHOD,
        "invoice_email": f"faktura{n}@provkund.se", "gln": GLN, "marking": MARKING, "attach_documents": False,
        "street": "Box 658", "postal_code": "441 81", "city": "Alingsås",
    }
    return _set(row, values)


def good_line(n: int, line_number: int = 1, quantity: str = "10", price: str = "250", rate: str = "25",
              **values: Any) -> dict[str, Any]:
    """A line whose amount is quantity x price rounded half up."""
    amount = (Decimal(quantity) * Decimal(price)).quantize(CENT, ROUND_HALF_UP)
    row = {"invoice_id": invoice_id(n), "line_number": line_number, "article_number": f"A-{line_number}",
           "description": "Konsulttimmar", "quantity": Decimal(quantity), "unit": "tim",
           "unit_price": Decimal(price), "vat_rate": Decimal(rate), "line_amount": amount}
    return _set(row, values)


def good_invoice(n: int, lines: tuple[dict[str, Any], ...], **values: Any) -> dict[str, Any]:
    """A posted debit invoice of :data:`RUN_DAY` whose header adds up its lines."""
    per_rate: dict[Decimal, Decimal] = defaultdict(Decimal)
    for line in lines:
        if isinstance(line["line_amount"], Decimal) and isinstance(line["vat_rate"], Decimal):
            per_rate[line["vat_rate"]] += line["line_amount"]
    ex_vat = sum(per_rate.values(), Decimal("0.00"))
    vat = sum(((b * r / 100).quantize(CENT, ROUND_HALF_UP) for r, b in per_rate.items()), Decimal("0.00"))
    row = {
        "invoice_id": invoice_id(n), "invoice_number": str(invoice_id(n)), "customer_id": customer_id(n),
        "invoice_type": "debit", "status": "posted", "invoice_date": RUN_DAY, "due_date": DUE_DAY,
        "currency": "SEK", "amount_ex_vat": ex_vat, "vat_amount": vat, "total_amount": ex_vat + vat,
        "your_reference": YOUR_REFERENCE, "order_number": ORDER_NUMBER, "credited_invoice_number": None,
    }
    return _set(row, values)


def _set(row: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(values) - set(row)
    if unknown:
        raise KeyError(f"not a column: {sorted(unknown)}")
    return {**row, **values}


class _Builder:
    """Numbers the cases; each gets its own customer id, invoice id and invoice number."""

    def __init__(self) -> None:
        self.cases: list[Case] = []

    def add(self, key: str, expect: Outcome, *, customer: Mapping[str, Any] | None = None,
            no_customer: bool = False, invoice: Mapping[str, Any] | None = None,
            lines: tuple[Mapping[str, Any], ...] | None = None, items: tuple[tuple[str, str], ...] | None = None,
            twice: tuple[str, Mapping[str, Any]] | None = None, **options: Any) -> Case:
        """Add a case: overrides of the good customer, invoice and line(s).

        :param items: (quantity, price) per line instead of the one good line.
        :param lines: overrides per line (one mapping per line), applied after ``items``.
        :param twice: ``("customer" or "customer_invoice", overrides)``: store that row a second time.
        """
        n = len(self.cases) + 1
        built = [good_line(n, i, q, p) for i, (q, p) in enumerate(items or (("10", "250"),), start=1)]
        header = good_invoice(n, tuple(built))  # the header adds up the good lines...
        for i, overrides in enumerate(lines or ()):  # ...before the case breaks a line or the header
            built[i] = _set(built[i], overrides)
        header = _set(header, invoice or {})
        row = None if no_customer else good_customer(n, **(customer or {}))
        if twice is not None:
            table, overrides = twice
            options["extra_rows"] = ((table, _set(row if table == "customer" else header, overrides)),)
        case = Case(key, n, row, header, tuple(built), expect, **options)
        self.cases.append(case)
        return case


def _doc(**paths: str | None) -> dict[str, str | None]:
    return dict(paths)


# ---- NULL in every column ------------------------------------------------------------------------------
INVOICE = "Faktura {invoice}:"
CUSTOMER = "Kund {customer} {name}:"

#: per customer column: what a NULL there does
CUSTOMER_NULLS: dict[str, Outcome] = {
    "customer_id": Rejected((INVOICE, "kund med id {customer_id} finns inte i ERP",
                             "koppla fakturan till en befintlig kund")),
    "customer_number": Rejected(("Kund med id {customer_id} {name}:", "kundnummer saknas")),
    "name": Rejected(("Kund {customer}:", "namn saknas")),
    "is_active": Rejected((CUSTOMER, "kunden är inaktiv; aktivera kunden")),
    "is_private_person": Sent(),
    "org_number": Rejected((CUSTOMER, "organisationsnummer saknas")),
    "vat_number": Rejected((CUSTOMER, "VAT-nummer saknas")),
    "country_code": Sent(_doc(**{f"{BUYER}/cac:PostalAddress/cac:Country/cbc:IdentificationCode": "SE"})),
    "language": Sent(),
    "currency": Sent(),
    "billing_method": NotExtracted("no billing method: not an InExchange customer"),
    "invoice_email": Sent(_doc(**{f"{BUYER}/cac:Contact/cbc:ElectronicMail": None})),
    "gln": Sent(_doc(**{f"{BUYER}/cbc:EndpointID": "2120001553"})),
    "marking": Sent(_doc(**{"cbc:BuyerReference": YOUR_REFERENCE})),
    "attach_documents": Sent(_doc(**{"cac:AdditionalDocumentReference": None})),
    "street": Sent(_doc(**{f"{BUYER}/cac:PostalAddress/cbc:StreetName": None})),
    "postal_code": Sent(_doc(**{f"{BUYER}/cac:PostalAddress/cbc:PostalZone": None})),
    "city": Sent(_doc(**{f"{BUYER}/cac:PostalAddress/cbc:CityName": None})),
}

#: per customer_invoice column
INVOICE_NULLS: dict[str, Outcome] = {
    "invoice_id": WithoutId(("Faktura {invoice}", "invoice_id saknas", "ge fakturan ett id i ERP")),
    "invoice_number": Rejected(("Faktura med id {invoice_id}:", "fakturanummer saknas")),
    "customer_id": Rejected((INVOICE, "kund saknas", "koppla fakturan till en kund")),
    "invoice_type": Rejected((INVOICE, "fakturatyp saknas", "debet eller kredit")),
    "status": NotExtracted("no status: not posted"),
    "invoice_date": NotExtracted("no invoice date: belongs to no day",
                                 manual=Rejected((INVOICE, "fakturadatum saknas"))),
    "due_date": Rejected((INVOICE, "förfallodatum saknas", "ange förfallodatum")),
    "currency": Rejected((INVOICE, "valuta saknas")),
    "amount_ex_vat": Rejected((INVOICE, "belopp exkl. moms saknas")),
    "vat_amount": Rejected((INVOICE, "momsbelopp saknas")),
    "total_amount": Rejected((INVOICE, "totalbelopp saknas")),
    "your_reference": Sent(_doc(**{"cbc:BuyerReference": MARKING})),
    "order_number": Sent(_doc(**{"cac:OrderReference": None})),
    "credited_invoice_number": Sent(_doc(**{"cac:BillingReference": None})),
}

#: per customer_invoice_line column
LINE_NULLS: dict[str, Outcome] = {
    "invoice_id": Rejected((INVOICE, "fakturan saknar rader")),
    "line_number": Rejected((INVOICE, "radnummer saknas")),
    "article_number": Sent(_doc(**{f"{LINE1}/cac:Item/cac:SellersItemIdentification": None,
                                   f"{LINE1}/cac:Item/cbc:Name": "Konsulttimmar"})),
    "description": Sent(_doc(**{f"{LINE1}/cac:Item/cbc:Name": "A-1"})),
    "quantity": Rejected((INVOICE, "rad 1: antal saknas")),
    "unit": Sent(_doc(**{f"{LINE1}/cbc:InvoicedQuantity/@unitCode": "C62"})),
    "unit_price": Rejected((INVOICE, "rad 1: pris saknas")),
    "vat_rate": Rejected((INVOICE, "rad 1: momssats saknas")),
    "line_amount": Rejected((INVOICE, "rad 1: radbelopp saknas")),
}


def _null_cases(b: _Builder) -> None:
    for column, expect in CUSTOMER_NULLS.items():
        b.add(f"null-customer-{column}", expect, customer={column: None})
    for column, expect in INVOICE_NULLS.items():
        b.add(f"null-invoice-{column}", expect, invoice={column: None})
    for column, expect in LINE_NULLS.items():
        b.add(f"null-line-{column}", expect, lines=({column: None},))


# ---- wrong types ---------------------------------------------------------------------------------------
def _wrong_type_cases(b: _Builder) -> None:
    unreadable = "kan inte läsas"
    # text in amounts, quantities, prices, rates
    b.add("text-amount-ex-vat", Rejected((INVOICE, "belopp exkl. moms 'tolv' kan inte läsas")),
          invoice={"amount_ex_vat": "tolv"})
    b.add("text-vat-amount", Rejected((INVOICE, "momsbelopp 'moms' kan inte läsas")), invoice={"vat_amount": "moms"})
    b.add("text-total-decimal-comma", Rejected((INVOICE, "totalbelopp '3 125,00' kan inte läsas")),
          invoice={"total_amount": "3 125,00"})
    b.add("text-quantity", Rejected((INVOICE, "rad 1: antal 'tio' kan inte läsas")), lines=({"quantity": "tio"},))
    b.add("text-unit-price", Rejected((INVOICE, "rad 1: pris '250 kr' kan inte läsas")),
          lines=({"unit_price": "250 kr"},))
    b.add("text-vat-rate", Rejected((INVOICE, "rad 1: momssats '25%' kan inte läsas")), lines=({"vat_rate": "25%"},))
    b.add("text-line-amount", Rejected((INVOICE, "rad 1: radbelopp 'x' kan inte läsas")),
          lines=({"line_amount": "x"},))
    # text in dates
    b.add("text-due-date", Rejected((INVOICE, "förfallodatum 'snart' kan inte läsas", "ÅÅÅÅ-MM-DD")),
          invoice={"due_date": "snart"})
    b.add("text-invoice-date", NotExtracted("an unreadable invoice date belongs to no day",
                                            manual=Rejected((INVOICE, "fakturadatum 'igår' kan inte läsas"))),
          invoice={"invoice_date": "igår"})
    # text in booleans
    b.add("text-is-active", Rejected((CUSTOMER, "Aktiv 'kanske' kan inte läsas", "ja eller nej")),
          customer={"is_active": "kanske"})
    b.add("text-is-private-person", Rejected((CUSTOMER, "Privatperson 'kanske' kan inte läsas")),
          customer={"is_private_person": "kanske"})
    b.add("text-attach-documents", Rejected((CUSTOMER, "Bifoga dokument vid digitalt utskick 'kanske' kan inte läsas")),
          customer={"attach_documents": "kanske"})
    b.add("text-false-is-active", Rejected((CUSTOMER, "kunden är inaktiv")), customer={"is_active": "false"})
    b.add("text-true-flags", Sent(), customer={"is_active": "true", "is_private_person": "false",
                                                "attach_documents": "false"})
    # numbers in text columns
    b.add("number-in-text-columns", Sent(_doc(**{
        f"{BUYER}/cac:PartyLegalEntity/cbc:CompanyID": "2120001553",
        f"{BUYER}/cac:PostalAddress/cbc:PostalZone": "44181",
        NAME: "4711", REGISTRATION_NAME: "4711"})),
        customer={"org_number": 2120001553, "postal_code": 44181, "name": 4711})
    b.add("number-in-invoice-type", Rejected((INVOICE, "fakturatyp '5' är varken debet eller kredit")),
          invoice={"invoice_type": 5})
    # keys of the wrong type (SQLite only: PostgreSQL keeps typed keys)
    b.add("text-invoice-id", WithoutId(("Faktura {invoice}", "invoice_id 'abc' är inget heltal")),
          invoice={"invoice_id": "abc"}, sqlite_only=True)
    b.add("fractional-invoice-id", WithoutId(("Faktura {invoice}", "invoice_id '90000.5' är inget heltal")),
          invoice={"invoice_id": 90000.5}, sqlite_only=True)
    b.add("text-customer-id", Rejected((INVOICE, f"kund 'k-17' {unreadable}")),
          customer={"customer_id": "k-17"}, invoice={"customer_id": "k-17"}, sqlite_only=True)
    b.add("fractional-customer-id", Rejected((INVOICE, f"kund '9000.5' {unreadable}")),
          customer={"customer_id": 9000.5}, invoice={"customer_id": 9000.5}, sqlite_only=True)
    b.add("text-line-number", Rejected((INVOICE, "radnummer 'ett' kan inte läsas")),
          lines=({"line_number": "ett"},), sqlite_only=True)
    b.add("fractional-line-number", Rejected((INVOICE, "radnummer '1.5' kan inte läsas")),
          lines=({"line_number": 1.5},), sqlite_only=True)
    # blobs and bytes that are not UTF-8 text (SQLite only)
    b.add("blob-in-name", Rejected(("Kund {customer}", "namn kan inte läsas (binära data)")),
          customer={"name": b"Blob AB"}, sqlite_only=True)
    b.add("blob-in-quantity", Rejected((INVOICE, "rad 1: antal", "kan inte läsas")),
          lines=({"quantity": b"\x00\x01"},), sqlite_only=True)
    b.add("invalid-utf8-name", Rejected(("Kund {customer}", "namn är inte giltig text")),
          customer={"name": "Caf\xe9 AB".encode("latin-1")}, raw_text=(("customer", "name"),), sqlite_only=True)
    b.add("nul-in-name", Rejected(("Kund {customer}", "namn innehåller styrtecken; ta bort dem")),
          customer={"name": "Nul\x00AB"}, sqlite_only=True)


# ---- SQL metacharacters and Unicode ---------------------------------------------------------------------
SQL_NAME = "'; DROP TABLE customer; --"
QUOTES_NAME = "O'Brien & Söner \"AB\" <Ltd>"
PATTERN_NAME = "100% _rabatt_ \\ back\\slash \\'"
EMOJI_NAME = "Åsa Öberg 🧾✨ AB"
RTL_NAME = "شركة الاختبار \u202eBA\u202c"
COMBINING_NAME = "A\u0308ngelholms kommun"  # Ä as A + combining diaeresis, kept as it is
ZERO_WIDTH_NAME = "\u200bNoll\u200cbredd\u200d\u2060AB\ufeff"
SQL_MARKING = "Märkning '; DELETE FROM customer_invoice; --"
SQL_REFERENCE = "Ref 50% _x_ \\' \"; --"
SQL_ORDER = "PO'; DROP TABLE customer_invoice_line; --"
HTML_DESCRIPTION = "Rör & koppling <DN15> \"1/2\" 'tum'; --"
UNICODE_DESCRIPTION = "Städning 🧹 – Ångström ‮txet‬ e\u0301 \u200b"
SQL_NUMBER = "9%_\\'; DROP TABLE customer;--"
UNICODE_NUMBER = "Å-🧾-\u05d0"


def _text_cases(b: _Builder) -> None:
    for key, name in (("sql-name", SQL_NAME), ("quotes-name", QUOTES_NAME), ("pattern-name", PATTERN_NAME),
                      ("emoji-name", EMOJI_NAME), ("rtl-name", RTL_NAME), ("combining-name", COMBINING_NAME),
                      ("zero-width-name", ZERO_WIDTH_NAME)):
        b.add(key, Sent(_doc(**{NAME: name, REGISTRATION_NAME: name}),
                        escaped=(b"&amp;", b"&lt;Ltd&gt;") if "<" in name else ()),
              customer={"name": name})
    b.add("sql-marking", Sent(_doc(**{"cbc:BuyerReference": SQL_MARKING})), customer={"marking": SQL_MARKING})
    b.add("sql-your-reference", Sent(_doc(**{"cbc:BuyerReference": SQL_REFERENCE})),
          customer={"marking": None}, invoice={"your_reference": SQL_REFERENCE})
    b.add("sql-order-number", Sent(_doc(**{"cac:OrderReference/cbc:ID": SQL_ORDER})),
          invoice={"order_number": SQL_ORDER})
    b.add("html-description", Sent(_doc(**{f"{LINE1}/cac:Item/cbc:Name": HTML_DESCRIPTION}),
                                   escaped=(b"&amp; koppling &lt;DN15&gt;",)),
          lines=({"description": HTML_DESCRIPTION},))
    b.add("unicode-description", Sent(_doc(**{f"{LINE1}/cac:Item/cbc:Name": UNICODE_DESCRIPTION.strip()})),
          lines=({"description": UNICODE_DESCRIPTION},))
    b.add("unicode-street-city", Sent(_doc(**{f"{BUYER}/cac:PostalAddress/cbc:StreetName": "Gatan 1 🏠 \u202eA\u202c",
                                              f"{BUYER}/cac:PostalAddress/cbc:CityName": "Malmö\u200b"})),
          customer={"street": "Gatan 1 🏠 \u202eA\u202c", "city": "Malmö\u200b"})
    for key, number in (("sql-invoice-number", SQL_NUMBER), ("unicode-invoice-number", UNICODE_NUMBER)):
        b.add(key, Sent(_doc(**{"cbc:ID": number, "cac:PaymentMeans/cbc:PaymentID": number})),
              invoice={"invoice_number": number})
    # characters XML 1.0 cannot carry
    control = "innehåller styrtecken; ta bort dem"
    b.add("control-in-name", Rejected(("Kund {customer}", f"namn {control}")), customer={"name": "Kund\x01 AB"})
    b.add("control-in-street", Rejected(("Kund {customer}", f"gatuadress {control}")),
          customer={"street": "Box\x0b 12"})
    b.add("noncharacter-in-city", Rejected(("Kund {customer}", f"ort {control}")), customer={"city": "Borås\ufffe"})
    b.add("control-in-marking", Rejected(("Kund {customer}", f"Märkning {control}")), customer={"marking": "Avd\x07"})
    b.add("control-in-your-reference", Rejected((INVOICE, f"Er referens {control}")),
          invoice={"your_reference": "Eva\x08 Lind"})
    b.add("control-in-order-number", Rejected((INVOICE, f"ordernummer {control}")), invoice={"order_number": "PO\x02"})
    b.add("control-in-description", Rejected((INVOICE, f"rad 1: beskrivning {control}")),
          lines=({"description": "Rad\x0cmed sidbrytning"},))
    b.add("control-in-invoice-number", Rejected(("Faktura 90\\x1f77:", f"fakturanummer {control}")),
          invoice={"invoice_number": "90\x1f77"})


# ---- sizes, signs, dates, duplicates, customers ----------------------------------------------------------
def _other_cases(b: _Builder) -> None:
    b.add("ten-mb-description", Rejected((INVOICE, f"rad 1: beskrivning är för lång ({TEN_MB} tecken, högst 200)",
                                          "korta texten")),
          lines=({"description": "x" * TEN_MB},))
    b.add("description-at-limit", Sent(_doc(**{f"{LINE1}/cac:Item/cbc:Name": "Å" * 200})),
          lines=({"description": "Å" * 200},))
    b.add("long-name", Rejected(("Kund {customer}", "namn är för långt (5000 tecken, högst 200)")),
          customer={"name": "N" * 5000})
    # signs: a discount line is a negative quantity at a positive price
    b.add("debit-with-discount-line", Sent(_doc(**{
        f"{LINE2}/cbc:InvoicedQuantity": "-1", f"{LINE2}/cbc:LineExtensionAmount": "-200.00",
        f"{LINE2}/cac:Price/cbc:PriceAmount": "200", "cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount": "2300.00",
        "cac:TaxTotal/cbc:TaxAmount": "575.00", "cac:LegalMonetaryTotal/cbc:PayableAmount": "2875.00"})),
        items=(("10", "250"), ("-1", "200")))
    b.add("debit-total-negative", Rejected((INVOICE, "en debetfaktura ska ha positivt totalbelopp")),
          items=(("1", "100"), ("-2", "200")))
    b.add("negative-unit-price", Rejected((INVOICE, "rad 2: pris -200 är negativt",
                                           "negativt antal till positivt pris")),
          items=(("10", "250"), ("1", "-200")))
    # dates in year 9999
    b.add("due-date-9999", Rejected((INVOICE, "förfallodatum 9999-12-31 ligger mer än ett år efter fakturadatum "
                                              f"{RUN_DAY}", "kontrollera förfallodatum")),
          invoice={"due_date": date(9999, 12, 31)})
    b.add("invoice-date-9999", NotExtracted("dated in year 9999: belongs to a day far ahead", manual=Rejected(
        (INVOICE, "fakturadatum 9999-12-31 ligger utanför körningens period"))),
        invoice={"invoice_date": date(9999, 12, 31), "due_date": date(9999, 12, 31)})
    # one invoice number used twice: both rejected
    for key in ("duplicate-number-first", "duplicate-number-second"):
        b.add(key, Rejected((INVOICE, "fakturanummer 90999 används av flera fakturor")),
              invoice={"invoice_number": "90999"})
    # a view without keys that repeats a row (a join too many): ambiguous, rejected
    b.add("customer-on-two-rows", Rejected((CUSTOMER, "kunden finns på 2 rader i ERP (customer_id {customer_id})",
                                            "en kund ska finnas på en rad")),
          twice=("customer", {"name": "Provkund, kontakt 2", "vat_number": None}))
    b.add("invoice-on-two-rows", Rejected((INVOICE, "fakturan finns på 2 rader i ERP (invoice_id {invoice_id})",
                                           "en faktura ska finnas på en rad")),
          twice=("customer_invoice", {"total_amount": Decimal("1.00")}))
    # customers that do not exist
    b.add("customer-row-missing", Rejected((INVOICE, "kund med id {customer_id} finns inte i ERP",
                                            "koppla fakturan till en befintlig kund")), no_customer=True)
    b.add("customer-deleted-before-submit", Rejected((INVOICE, "kunden {customer} {name} finns inte längre i ERP")),
          delete_customer_after_validate=True)


def build_cases() -> list[Case]:
    """Every case, numbered from 1."""
    b = _Builder()
    _null_cases(b)
    _wrong_type_cases(b)
    _text_cases(b)
    _other_cases(b)
    keys = [case.key for case in b.cases]
    assert len(keys) == len(set(keys)), "duplicate case keys"
    return b.cases


CASES = build_cases()

#: invoice numbers a manual run lists that are no invoice's (SQL metacharacters, patterns, Unicode, NUL)
HOSTILE_NUMBERS = (
    "'; DROP TABLE customer; --", "' OR '1'='1", "%", "_", "\\", "90%", "9000_", "\x00",
    "Å🧾\u202e", "no-such-invoice", "9" * 300, "  ",
)


def cases_for(backend: str) -> list[Case]:
    """The cases a backend can store."""
    return [case for case in CASES if backend == "sqlite" or not case.sqlite_only]


def iter_rows(cases: list[Case]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, row) of every case, parents first."""
    for case in cases:
        if case.customer is not None:
            yield "customer", case.customer
        yield from ((table, row) for table, row in case.extra_rows if table == "customer")
    for case in cases:
        yield "customer_invoice", case.invoice
        yield from ((table, row) for table, row in case.extra_rows if table == "customer_invoice")
    for case in cases:
        for line in case.lines:
            yield "customer_invoice_line", line
