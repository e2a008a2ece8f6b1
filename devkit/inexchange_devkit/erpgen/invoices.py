"""Plan which customer gets an invoice on which day, then draw the invoices with lines and attachments."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from inexchange_devkit.erpgen import catalog, documents
from inexchange_devkit.erpgen.customers import BAD_CUSTOMER_CATEGORIES, GOOD, OTHER_BILLING, Customer

INVOICE_DEFECTS = ("total_mismatch", "line_amount_mismatch", "due_before_invoice")
"""Integrity defects put on a few posted debit invoices of good customers."""

FIRST_INVOICE_NUMBER = 10001
PAYMENT_TERMS_DAYS = 30
CREDIT_SHARE = 0.10
DEFECT_SHARE = 0.05
CREDITABLE_PER_CUSTOMER = 5
"""How many recent debit invoices per customer are kept as candidates for a credit note."""

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
ZERO_RATE = Decimal("0.00")
INTERNATIONAL_SHARE = 4
SHOWCASE_FROM = 1000
"""From this many posted invoices, a register also shows what smaller ones leave out: every
:data:`SHOWCASE_EVERY`-th invoice gets a line of one of :data:`catalog.RARE_ARTICLES` (every unit, a
long text), and every :data:`ROUNDING_EVERY`-th good debit a total rounded to whole kronor
(öresavrundning). Neither draws a random number: smaller registers stay as they were."""
SHOWCASE_EVERY = 23
ROUNDING_EVERY = 17
"""Every fourth invoice's passenger transport (of a customer in Sweden) is international, zero rated (Z)."""
NOT_SUBJECT_EVERY = 29
"""In larger registers (see :data:`SHOWCASE_FROM`), every :data:`NOT_SUBJECT_EVERY`-th invoice of a customer
in Sweden (one without a rare line) bills only :data:`catalog.NOT_SUBJECT_ARTICLES`: every line not subject
to VAT (O) with the code VATEX-EU-O and one reason (BR-O-10), no other category on it (BR-O-11..14)."""
UNSTATED_EVERY = 3
"""In larger registers, every :data:`UNSTATED_EVERY`-th invoice of a customer abroad states no VAT category on
its lines, as an ERP without the columns: its 0 % lines get AE from an EU customer with a VAT number, Z
from one outside the EU."""
EU_EXEMPTION_CODES = {"K": "VATEX-EU-IC", "AE": "VATEX-EU-AE"}
"""The VATEX codes the lines of EU customers abroad state: goods K, services AE."""


@dataclass(slots=True)
class Line:
    """One invoice line; ``line_amount`` is quantity x unit price rounded half up to cents.

    The VAT category and exemption reason are stated for lines without Swedish VAT only (E, Z, K, AE, G,
    O); a line at 25, 12 or 6 % states none, and the pipeline derives S from its rate. The 0 % lines of
    some invoices of customers abroad state none either (:data:`UNSTATED_EVERY`).
    """

    article_number: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    vat_rate: Decimal
    line_amount: Decimal
    vat_category: str | None = None
    vat_exemption_reason_code: str | None = None
    vat_exemption_reason: str | None = None


@dataclass(slots=True)
class Attachment:
    """One file attached to an invoice."""

    file_name: str
    mime_type: str
    content: bytes


@dataclass(slots=True)
class Invoice:
    """A customer invoice or credit note with its lines, attachments and deliberate defect, if any."""

    invoice_id: int
    invoice_number: str
    customer: Customer
    invoice_type: str
    status: str
    invoice_date: date
    due_date: date
    amount_ex_vat: Decimal
    vat_amount: Decimal
    total_amount: Decimal
    your_reference: str
    order_number: str | None
    credited_invoice_number: str | None
    lines: list[Line]
    attachments: list[Attachment] = field(default_factory=list)
    defect: str | None = None

    def row(self) -> dict[str, Any]:
        """Return the ``customer_invoice`` columns as bind parameters."""
        return {
            "invoice_id": self.invoice_id,
            "invoice_number": self.invoice_number,
            "customer_id": self.customer.customer_id,
            "invoice_type": self.invoice_type,
            "status": self.status,
            "invoice_date": self.invoice_date,
            "due_date": self.due_date,
            "currency": self.customer.currency,
            "amount_ex_vat": self.amount_ex_vat,
            "vat_amount": self.vat_amount,
            "total_amount": self.total_amount,
            "your_reference": self.your_reference,
            "order_number": self.order_number,
            "credited_invoice_number": self.credited_invoice_number,
        }

    def line_rows(self) -> Iterator[dict[str, Any]]:
        """Yield the ``customer_invoice_line`` rows, numbered from 1."""
        for number, line in enumerate(self.lines, start=1):
            yield {
                "invoice_id": self.invoice_id,
                "line_number": number,
                "article_number": line.article_number,
                "description": line.description,
                "quantity": line.quantity,
                "unit": line.unit,
                "unit_price": line.unit_price,
                "vat_rate": line.vat_rate,
                "line_amount": line.line_amount,
                "vat_category": line.vat_category,
                "vat_exemption_reason_code": line.vat_exemption_reason_code,
                "vat_exemption_reason": line.vat_exemption_reason,
            }

    def attachment_rows(self) -> Iterator[dict[str, Any]]:
        """Yield the ``invoice_attachment`` rows."""
        for attachment in self.attachments:
            yield {
                "invoice_id": self.invoice_id,
                "file_name": attachment.file_name,
                "mime_type": attachment.mime_type,
                "content": attachment.content,
            }


@dataclass(frozen=True, slots=True)
class PlannedInvoice:
    """Who gets an invoice on which day (0-based offset from the start date), and whether it is a draft."""

    day: int
    customer: Customer
    is_draft: bool


def totals(lines: Sequence[Line]) -> tuple[Decimal, Decimal, Decimal]:
    """Return amount ex VAT, VAT and total: VAT is rounded half up per rate, then summed."""
    amount = sum((line.line_amount for line in lines), Decimal("0.00"))
    per_rate: dict[Decimal, Decimal] = defaultdict(Decimal)
    for line in lines:
        per_rate[line.vat_rate] += line.line_amount
    vat = sum(
        ((base * rate / HUNDRED).quantize(CENT, ROUND_HALF_UP) for rate, base in per_rate.items()),
        Decimal("0.00"),
    )
    return amount, vat, amount + vat


def line_vat(article: catalog.Article, customer: Customer, invoice_id: int) -> dict[str, Any]:
    """The VAT of a line of ``article`` (no random draw: the invoices' other values stay as they were).

    Exempt articles are E with their reason; EU customers abroad get 0 %: goods as intra-community
    supply (K), services as reverse charge (AE), each with its VATEX code; every
    :data:`INTERNATIONAL_SHARE`-th invoice's passenger transport is international, zero rated (Z). Any
    other line keeps its article's rate and states no category.
    """
    if article.exemption:
        return {"vat_rate": ZERO_RATE, "vat_category": "E", "vat_exemption_reason": article.exemption}
    if customer.is_foreign and not customer.in_eu:  # outside the EU: export (G), goods and services alike
        return {"vat_rate": ZERO_RATE, "vat_category": "G", "vat_exemption_reason_code": "VATEX-EU-G"}
    if customer.is_foreign:
        category = "K" if article.goods else "AE"
        code = EU_EXEMPTION_CODES[category]
        return {"vat_rate": ZERO_RATE, "vat_category": category, "vat_exemption_reason_code": code}
    number, description = catalog.INTERNATIONAL_TRANSPORT
    if article.number == number and invoice_id % INTERNATIONAL_SHARE == 0:
        return {"vat_rate": ZERO_RATE, "vat_category": "Z", "description": description}
    return {}


def _rare_line(customer: Customer, invoice_id: int) -> Line:
    """A line of one of :data:`catalog.RARE_ARTICLES`, chosen and priced by the invoice id (no random draw)."""
    article = catalog.RARE_ARTICLES[(invoice_id // SHOWCASE_EVERY) % len(catalog.RARE_ARTICLES)]
    quantity = Decimal(1 + invoice_id % 9)
    price = Decimal(article.min_price + invoice_id % (article.max_price - article.min_price + 1))
    values: dict[str, Any] = {"description": article.description, "vat_rate": article.vat_rate}
    values.update(line_vat(article, customer, invoice_id))
    return Line(
        article_number=article.number,
        quantity=quantity,
        unit=article.unit,
        unit_price=price,
        line_amount=(quantity * price).quantize(CENT, ROUND_HALF_UP),
        **values,
    )


def _not_subject_lines(invoice_id: int) -> list[Line]:
    """The lines of an invoice not subject to VAT: an outlay, and on every other such invoice a reminder fee;
    priced by the invoice id (no random draw)."""
    outlay, fee = catalog.NOT_SUBJECT_ARTICLES
    chosen = [(outlay, Decimal(outlay.min_price + invoice_id % (outlay.max_price - outlay.min_price + 1)))]
    if invoice_id % 2:
        chosen.append((fee, Decimal(fee.min_price)))
    return [
        Line(
            article_number=article.number,
            description=article.description,
            quantity=Decimal(1),
            unit=article.unit,
            unit_price=price,
            vat_rate=ZERO_RATE,
            line_amount=price.quantize(CENT, ROUND_HALF_UP),
            vat_category="O",
            vat_exemption_reason_code="VATEX-EU-O",
            vat_exemption_reason=catalog.NOT_SUBJECT_REASON,
        )
        for article, price in chosen
    ]


def _cycle(rng: random.Random, pool: Sequence[Customer]) -> Iterator[Customer]:
    """Yield the customers of ``pool`` endlessly, reshuffled on every round."""
    while True:
        order = list(pool)
        rng.shuffle(order)
        yield from order


def plan_invoices(
    rng: random.Random, customers: Sequence[Customer], *, invoices: int, drafts: int, days: int
) -> list[PlannedInvoice]:
    """Spread ``invoices`` posted and ``drafts`` draft invoices over ``days`` days, in numbering order.

    Every day gets at least one posted invoice of a bad customer, one of a customer with another
    billing method and one of a good customer; the other posted invoices go first to customers not
    yet invoiced, then by volume weight. Drafts go to good customers.
    """
    good = [customer for customer in customers if customer.category == GOOD]
    bad = [customer for customer in customers if customer.category in BAD_CUSTOMER_CATEGORIES]
    other = [customer for customer in customers if customer.category == OTHER_BILLING]
    posted_per_day = [0] * days
    for index in range(invoices):
        posted_per_day[index * days // invoices] += 1

    cycles = (_cycle(rng, bad), _cycle(rng, other), _cycle(rng, good))
    reserved = [[next(cycle) for cycle in cycles] for _ in range(days)]
    used = {customer.customer_id for picks in reserved for customer in picks}
    free_slots = invoices - len(cycles) * days
    unused = [customer for customer in customers if customer.customer_id not in used]
    rng.shuffle(unused)
    unused = unused[:free_slots]
    fill = unused + rng.choices(
        customers, weights=[customer.weight for customer in customers], k=free_slots - len(unused)
    )
    rng.shuffle(fill)

    draft_customers = rng.choices(good, weights=[customer.weight for customer in good], k=drafts)
    drafts_per_day: list[list[Customer]] = [[] for _ in range(days)]
    for index, customer in enumerate(draft_customers):
        drafts_per_day[index * days // drafts].append(customer)

    plan: list[PlannedInvoice] = []
    position = 0
    for day in range(days):
        extra = posted_per_day[day] - len(cycles)
        posted = reserved[day] + fill[position : position + extra]
        position += extra
        entries = [PlannedInvoice(day, customer, False) for customer in posted]
        entries += [PlannedInvoice(day, customer, True) for customer in drafts_per_day[day]]
        rng.shuffle(entries)
        plan.extend(entries)
    return plan


class InvoiceFactory:
    """Draws invoices in numbering order; remembers recent debits so credit notes credit real invoices."""

    def __init__(self, rng: random.Random, start_date: date, *, showcase: bool = False) -> None:
        self.rng = rng
        self.start_date = start_date
        #: add the rare articles and the rounded totals (see :data:`SHOWCASE_FROM`)
        self.showcase = showcase
        self.creditable: dict[int, list[Invoice]] = defaultdict(list)
        self.posted_seen = 0
        self.credits = 0
        self.good_debits_seen = 0
        self.defects = 0

    def make(self, invoice_id: int, planned: PlannedInvoice) -> Invoice:
        """Return invoice ``invoice_id`` (number 10000 + id) for ``planned``."""
        rng = self.rng
        customer = planned.customer
        invoice_date = self.start_date + timedelta(days=planned.day)
        number = str(FIRST_INVOICE_NUMBER - 1 + invoice_id)
        candidates = self.creditable[customer.customer_id]
        credit_of: Invoice | None = None
        if not planned.is_draft:
            self.posted_seen += 1
            if candidates and self.credits < CREDIT_SHARE * self.posted_seen and rng.random() < 0.5:
                credit_of = candidates.pop(rng.randrange(len(candidates)))
                self.credits += 1
        if credit_of is None:
            lines = self._lines(customer, invoice_id)
            reference = f"{rng.choice(catalog.FIRST_NAMES)} {rng.choice(catalog.LAST_NAMES)}"
            order_number = f"45{rng.randrange(10**6):06d}" if rng.random() < 0.3 else None
        else:
            lines = self._credit_lines(credit_of.lines)
            reference, order_number = credit_of.your_reference, credit_of.order_number
        amount, vat, total = totals(lines)
        invoice = Invoice(
            invoice_id=invoice_id,
            invoice_number=number,
            customer=customer,
            invoice_type="debit" if credit_of is None else "credit",
            status="draft" if planned.is_draft else "posted",
            invoice_date=invoice_date,
            due_date=invoice_date + timedelta(days=PAYMENT_TERMS_DAYS),
            amount_ex_vat=amount,
            vat_amount=vat,
            total_amount=total,
            your_reference=reference,
            order_number=order_number,
            credited_invoice_number=None if credit_of is None else credit_of.invoice_number,
            lines=lines,
        )
        if invoice.status == "posted" and invoice.invoice_type == "debit":
            if customer.category == GOOD:
                self.good_debits_seen += 1
                if self.defects < DEFECT_SHARE * self.good_debits_seen and rng.random() < 0.5:
                    self._spoil(invoice, INVOICE_DEFECTS[self.defects % len(INVOICE_DEFECTS)])
                    self.defects += 1
            if invoice.defect is None:
                candidates.append(invoice)
                del candidates[:-CREDITABLE_PER_CUSTOMER]
                if self.showcase and invoice_id % ROUNDING_EVERY == 0:  # öresavrundning: whole kronor
                    invoice.total_amount = invoice.total_amount.quantize(Decimal(1), ROUND_HALF_UP)
        if customer.attach_documents:
            invoice.attachments = self._attachments(invoice)
        return invoice

    def _lines(self, customer: Customer, invoice_id: int) -> list[Line]:
        """Draw 1-5 lines from the price list, with their VAT (see :func:`line_vat`); in larger registers
        the invoices of :data:`NOT_SUBJECT_EVERY` and :data:`UNSTATED_EVERY` are changed after the draw, so
        the other invoices stay as they were."""
        rng = self.rng
        lines = []
        for article in rng.choices(catalog.ARTICLES, weights=catalog.ARTICLE_WEIGHTS, k=rng.randint(1, 5)):
            low, high, step = catalog.QUANTITY_STEPS[article.unit]
            quantity = Decimal(rng.randint(low, high) * step).scaleb(-2)
            price = Decimal(rng.randint(article.min_price * 100, article.max_price * 100)).scaleb(-2)
            values: dict[str, Any] = {"description": article.description, "vat_rate": article.vat_rate}
            values.update(line_vat(article, customer, invoice_id))
            lines.append(
                Line(
                    article_number=article.number,
                    quantity=quantity,
                    unit=article.unit,
                    unit_price=price,
                    line_amount=(quantity * price).quantize(CENT, ROUND_HALF_UP),
                    **values,
                )
            )
        if self.showcase and invoice_id % SHOWCASE_EVERY == 0:
            lines.append(_rare_line(customer, invoice_id))
        elif self.showcase and not customer.is_foreign and invoice_id % NOT_SUBJECT_EVERY == 0:
            lines = _not_subject_lines(invoice_id)
        if self.showcase and customer.is_foreign and invoice_id % UNSTATED_EVERY == 0:
            for line in lines:  # as an ERP without the columns: the pipeline derives AE or Z
                line.vat_category = line.vat_exemption_reason_code = line.vat_exemption_reason = None
        return lines

    def _credit_lines(self, debit_lines: Sequence[Line]) -> list[Line]:
        """Credit all lines of a debit invoice, or some of them: negative quantities, same prices."""
        rng = self.rng
        chosen = list(debit_lines)
        if len(chosen) > 1 and rng.random() < 0.4:
            chosen = rng.sample(chosen, rng.randint(1, len(chosen) - 1))
        credited = []
        for line in chosen:
            quantity = -line.quantity
            credited.append(
                Line(
                    article_number=line.article_number,
                    description=line.description,
                    quantity=quantity,
                    unit=line.unit,
                    unit_price=line.unit_price,
                    vat_rate=line.vat_rate,
                    line_amount=(quantity * line.unit_price).quantize(CENT, ROUND_HALF_UP),
                    vat_category=line.vat_category,
                    vat_exemption_reason_code=line.vat_exemption_reason_code,
                    vat_exemption_reason=line.vat_exemption_reason,
                )
            )
        return credited

    def _spoil(self, invoice: Invoice, defect: str) -> None:
        """Give ``invoice`` one integrity defect the validator must catch."""
        rng = self.rng
        if defect == "total_mismatch":
            delta = Decimal(rng.randint(1, 9999)).scaleb(-2)
            invoice.total_amount += delta if rng.random() < 0.5 else -delta
        elif defect == "line_amount_mismatch":
            line = rng.choice(invoice.lines)
            line.line_amount += Decimal(rng.randint(100, 50000)).scaleb(-2)
            invoice.amount_ex_vat, invoice.vat_amount, invoice.total_amount = totals(invoice.lines)
        elif defect == "due_before_invoice":
            invoice.due_date = invoice.invoice_date - timedelta(days=rng.randint(1, 15))
        else:
            raise ValueError(f"unknown invoice defect {defect!r}")
        invoice.defect = defect

    def _attachments(self, invoice: Invoice) -> list[Attachment]:
        """Return one or two small files (PDF time report, delivery note or PNG receipt) for ``invoice``."""
        rng = self.rng
        kinds = [catalog.ATTACHMENT_KINDS[0]]
        if rng.random() < 0.5:
            kinds.append(rng.choice(catalog.ATTACHMENT_KINDS[1:]))
        attachments = []
        for stem, title, mime_type in kinds:
            file_name = f"{stem}_{invoice.invoice_number}"
            if mime_type == "image/png":
                image = documents.png_barcode(invoice.invoice_number)
                attachments.append(Attachment(f"{file_name}.png", mime_type, image))
                continue
            text = [
                f"Kund: {invoice.customer.customer_number} {invoice.customer.name}",
                f"Fakturadatum: {invoice.invoice_date.isoformat()}",
                f"Er referens: {invoice.your_reference}",
                "",
            ]
            text += [f"{line.description}: {line.quantity} {line.unit}" for line in invoice.lines]
            content = documents.pdf_document(f"{title} till faktura {invoice.invoice_number}", text)
            attachments.append(Attachment(f"{file_name}.pdf", mime_type, content))
        return attachments
