"""Builders of ERP rows (customer, invoice, line, attachment) and InvoiceBatch objects.

Rows follow the adapter contract of ``include/sql/erp_schema.sql`` and the column order of the
``erp_select_*`` queries. By default values have the types PostgreSQL returns (``Decimal``,
``date``, ``bool``); :func:`sqlite_row` turns a row into what SQLite returns (``float``/``int``,
ISO date text, 0/1). Part of the test helpers' package: ``from dispatch_testing.erp_rows import ...``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pandas as pd

from inexchange.erp import INEXCHANGE_BILLING_METHOD, InvoiceBatch

CUSTOMER_COLUMNS = (
    "customer_id", "customer_number", "name", "is_active", "is_private_person", "org_number",
    "vat_number", "country_code", "language", "currency", "billing_method", "invoice_email", "gln",
    "marking", "attach_documents", "street", "postal_code", "city",
)
INVOICE_COLUMNS = (
    "invoice_id", "invoice_number", "customer_id", "invoice_type", "status", "invoice_date",
    "due_date", "currency", "amount_ex_vat", "vat_amount", "total_amount", "your_reference",
    "order_number", "credited_invoice_number",
)
LINE_COLUMNS = (
    "invoice_id", "line_number", "article_number", "description", "quantity", "unit", "unit_price",
    "vat_rate", "line_amount",
)
ATTACHMENT_COLUMNS = ("invoice_id", "file_name", "mime_type", "content")

#: the run's data interval [START, END) and a date inside it
START = date(2026, 3, 1)
END = date(2026, 4, 1)
INVOICE_DATE = date(2026, 3, 10)
DUE_DATE = date(2026, 4, 9)

CUSTOMER_ID = 7
CUSTOMER_NUMBER = "4367"
CUSTOMER_NAME = "Alingsås kommun"
ORG_NUMBER = "212000-1553"
VAT_NUMBER = "SE212000155301"
#: another valid organisation number (not the customer's)
OTHER_ORG_NUMBER = "556036-0793"
#: a valid personnummer (its third digit is 0: no legal entity may use it)
PERSONNUMMER = "880320-0016"
GLN = "7350000000016"

INVOICE_ID = 101
INVOICE_NUMBER = "10001"

#: (quantity, unit price, VAT rate) of the default invoice: 2 500.00 + 25 % VAT
DEFAULT_ITEMS: tuple[tuple[str, str, str], ...] = (("10", "250", "25"),)
CENT = Decimal("0.01")
_SQLITE_INTEGER_LIMIT = Decimal(2) ** 63

#: a valid ``inexchange_seller`` configuration
SELLER_CONFIG: dict[str, Any] = {
    "name": "Västgöta Bygg & Service AB",
    "org_number": "556036-0793",
    "vat_number": "SE556036079301",
    "street": "Storgatan 1",
    "postal_code": "441 30",
    "city": "Alingsås",
    "bankgiro": "5050-1055",
    "contact_email": "faktura@vgbygg.se",
}


def customer_row(customer_id: int = CUSTOMER_ID, **fields: Any) -> dict[str, Any]:
    """Return a customer that may receive invoices through InExchange, fields overridden.

    :param customer_id: the ERP's internal id.
    :param fields: columns to replace.
    """
    row: dict[str, Any] = {
        "customer_id": customer_id,
        "customer_number": CUSTOMER_NUMBER,
        "name": CUSTOMER_NAME,
        "is_active": True,
        "is_private_person": False,
        "org_number": ORG_NUMBER,
        "vat_number": VAT_NUMBER,
        "country_code": "SE",
        "language": "sv",
        "currency": "SEK",
        "billing_method": INEXCHANGE_BILLING_METHOD,
        "invoice_email": "fakturor@alingsas.se",
        "gln": None,
        "marking": None,
        "attach_documents": False,
        "street": "Box 658",
        "postal_code": "441 81",
        "city": "Alingsås",
    }
    return _override(row, fields, CUSTOMER_COLUMNS)


def line_row(invoice_id: int, line_number: int, quantity: Decimal | str, unit_price: Decimal | str,
             vat_rate: Decimal | str = "25", **fields: Any) -> dict[str, Any]:
    """Return an invoice line whose amount is quantity x price rounded half up, fields overridden.

    :param invoice_id: the invoice.
    :param line_number: 1, 2, ... within the invoice.
    :param quantity: negative on a credit note.
    :param unit_price: price per unit, excluding VAT.
    :param vat_rate: VAT rate in percent.
    :param fields: columns to replace (``line_amount`` to break the line).
    """
    quantity, unit_price, vat_rate = Decimal(quantity), Decimal(unit_price), Decimal(vat_rate)
    row: dict[str, Any] = {
        "invoice_id": invoice_id,
        "line_number": line_number,
        "article_number": f"A-{line_number:03d}",
        "description": f"Konsulttjänst {line_number}",
        "quantity": quantity,
        "unit": "st",
        "unit_price": unit_price,
        "vat_rate": vat_rate,
        "line_amount": (quantity * unit_price).quantize(CENT, ROUND_HALF_UP),
    }
    return _override(row, fields, LINE_COLUMNS)


def invoice_rows(invoice_id: int = INVOICE_ID, customer_id: int = CUSTOMER_ID,
                 items: Sequence[tuple[str, str, str]] = DEFAULT_ITEMS,
                 **fields: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return a posted debit invoice and its lines, with header amounts that add up.

    :param invoice_id: the ERP's internal id; the invoice number is 10001 for id 101, and so on.
    :param customer_id: the invoiced customer.
    :param items: (quantity, unit price, VAT rate) per line.
    :param fields: header columns to replace after the amounts are computed.
    """
    lines = [line_row(invoice_id, n, *item) for n, item in enumerate(items, start=1)]
    return invoice_from_lines(lines, invoice_id, customer_id, **fields), lines


def invoice_from_lines(lines: Sequence[dict[str, Any]], invoice_id: int = INVOICE_ID,
                       customer_id: int = CUSTOMER_ID, **fields: Any) -> dict[str, Any]:
    """Return a posted debit invoice whose header amounts are those of ``lines``.

    :param lines: rows of :func:`line_row`, as stored (their amounts are summed as they are).
    :param invoice_id: the ERP's internal id.
    :param customer_id: the invoiced customer.
    :param fields: header columns to replace after the amounts are computed.
    """
    amount_ex_vat, vat_amount = totals(lines)
    row: dict[str, Any] = {
        "invoice_id": invoice_id,
        "invoice_number": str(int(INVOICE_NUMBER) + invoice_id - INVOICE_ID),
        "customer_id": customer_id,
        "invoice_type": "debit",
        "status": "posted",
        "invoice_date": INVOICE_DATE,
        "due_date": DUE_DATE,
        "currency": "SEK",
        "amount_ex_vat": amount_ex_vat,
        "vat_amount": vat_amount,
        "total_amount": amount_ex_vat + vat_amount,
        "your_reference": "Eva Lind",
        "order_number": None,
        "credited_invoice_number": None,
    }
    return _override(row, fields, INVOICE_COLUMNS)


def credit_rows(invoice_id: int = INVOICE_ID + 1, customer_id: int = CUSTOMER_ID,
                items: Sequence[tuple[str, str, str]] = DEFAULT_ITEMS, credited: str | None = INVOICE_NUMBER,
                **fields: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return a credit note as the ERP stores it: negative quantities and amounts, positive prices.

    :param invoice_id: the ERP's internal id.
    :param customer_id: the credited customer.
    :param items: (quantity, unit price, VAT rate) per line, quantities given positive.
    :param credited: invoice number of the credited debit invoice.
    :param fields: header columns to replace.
    """
    negative = [(str(-Decimal(q)), p, r) for q, p, r in items]
    return invoice_rows(invoice_id, customer_id, negative, invoice_type="credit",
                        credited_invoice_number=credited, **fields)


def attachment_row(invoice_id: int = INVOICE_ID, file_name: str = "tidrapport.pdf",
                   content: bytes = b"%PDF-1.4\n% tidrapport\n", mime_type: str = "application/pdf") -> dict[str, Any]:
    """Return an attachment of an invoice.

    :param invoice_id: the invoice.
    :param file_name: unique within the invoice.
    :param content: the file's bytes.
    :param mime_type: its MIME type.
    """
    return {"invoice_id": invoice_id, "file_name": file_name, "mime_type": mime_type, "content": content}


def with_values(row: dict[str, Any], **values: Any) -> dict[str, Any]:
    """Return a copy of a row with values set as given, without any conversion.

    For values a badly mapped ERP view may return: text in a NUMERIC or DATE column, NULL keys,
    NaN or infinite amounts.

    :param row: a row of any builder.
    :param values: columns to set; each must already be a column of the row.
    """
    unknown = set(values) - set(row)
    if unknown:
        raise KeyError(f"not a column: {sorted(unknown)}")
    return {**row, **values}


def totals(lines: Iterable[dict[str, Any]]) -> tuple[Decimal, Decimal]:
    """Return (amount excluding VAT, VAT rounded per rate) of lines.

    :param lines: rows of :func:`line_row`.
    """
    per_rate: dict[Decimal, Decimal] = defaultdict(Decimal)
    for line in lines:
        per_rate[Decimal(line["vat_rate"])] += Decimal(line["line_amount"])
    vat = sum(((base * rate / 100).quantize(CENT, ROUND_HALF_UP) for rate, base in per_rate.items()), Decimal("0"))
    return sum(per_rate.values(), Decimal("0")), vat


def sqlite_row(row: dict[str, Any]) -> dict[str, Any]:
    """Return a row as SQLite gives it: numbers as float or int, dates as text, booleans as 0/1.

    :param row: a row with PostgreSQL types.
    """
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, Decimal):
            # NaN, infinities and integers beyond SQLite's 64-bit INTEGER come back as REAL
            if not value.is_finite() or abs(value) >= _SQLITE_INTEGER_LIMIT:
                return float(value)
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, date):
            return value.isoformat()
        return value

    return {key: convert(value) for key, value in row.items()}


def make_batch(customers: Sequence[dict[str, Any]],
               invoices: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]],
               attachments: Sequence[dict[str, Any]] = (), *, sqlite: bool = False) -> InvoiceBatch:
    """Return an InvoiceBatch shaped as :meth:`ErpReader.load` returns it.

    :param customers: customer rows.
    :param invoices: (invoice row, its lines) pairs.
    :param attachments: attachment rows.
    :param sqlite: give values the types SQLite returns instead of PostgreSQL's.
    """
    convert = sqlite_row if sqlite else dict
    invoice_frame = _frame([convert(i) for i, _ in invoices], INVOICE_COLUMNS)
    customer_frame = _frame([convert(c) for c in customers], CUSTOMER_COLUMNS)
    lines = _frame([convert(line) for _, rows in invoices for line in rows], LINE_COLUMNS)
    return InvoiceBatch(
        invoices=invoice_frame.set_index("invoice_id", drop=False),
        customers=customer_frame.set_index("customer_id", drop=False),
        lines=lines,
        attachments=_frame([convert(a) for a in attachments], ATTACHMENT_COLUMNS),
    )


def single_batch(customer: dict[str, Any] | None = None,
                 invoice: tuple[dict[str, Any], list[dict[str, Any]]] | None = None,
                 attachments: Sequence[dict[str, Any]] = (), *, sqlite: bool = False) -> InvoiceBatch:
    """Return a batch of one invoice of one customer (the defaults when not given).

    :param customer: the customer row.
    :param invoice: the invoice row and its lines.
    :param attachments: attachment rows.
    :param sqlite: give values the types SQLite returns.
    """
    return make_batch([customer or customer_row()], [invoice or invoice_rows()], attachments, sqlite=sqlite)


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=list(columns)) if rows else pd.DataFrame(columns=list(columns))


def _override(row: dict[str, Any], fields: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    unknown = set(fields) - set(columns)
    if unknown:
        raise KeyError(f"not a column: {sorted(unknown)}")
    return {**row, **fields}
