"""Write a realistic, deterministic SoftOne GO-like ERP data set into the adapter-contract tables.

The data set exercises everything the dispatch pipeline must tell apart: good InExchange customers,
customers with exactly one defect each (:data:`BAD_CUSTOMER_CATEGORIES`), customers billed by another
method, a private person, EU customers, debit and credit invoices, drafts, invoices with an integrity
defect (:data:`INVOICE_DEFECTS`) and attachments. The :class:`GenerationSummary` names them all, so
tests can check the pipeline's verdict on each.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, TextClause, inspect, literal, select, table, text

from inexchange_devkit.erpgen.customers import (
    BAD_CUSTOMER_CATEGORIES,
    GOOD,
    MIN_CUSTOMERS,
    OTHER_BILLING,
    build_customers,
)
from inexchange_devkit.erpgen.invoices import INVOICE_DEFECTS, SHOWCASE_FROM, Invoice, InvoiceFactory, plan_invoices
from inexchange.sql import load_sql, script, statement
from inexchange.erp import OPTIONAL_COLUMNS

ERP_TABLES = ("customer", "customer_invoice", "customer_invoice_line", "invoice_attachment")
"""The adapter-contract tables, parents first."""


_DAY_COLUMN = {GOOD: "posted_good", OTHER_BILLING: "posted_other_billing"}
"""Which :class:`DayCounts` field a posted invoice counts in, by customer category (else bad)."""


class TablesNotEmptyError(RuntimeError):
    """Raised when the ERP tables already hold rows and the generator would mix data sets."""


@dataclass(frozen=True)
class DayCounts:
    """Invoices of one invoice date, by what the pipeline should do with them."""

    posted_good: int
    posted_bad: int
    posted_other_billing: int
    credits: int
    drafts: int

    @property
    def posted(self) -> int:
        """All posted invoices of the day (credits included)."""
        return self.posted_good + self.posted_bad + self.posted_other_billing


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate` wrote; customer and invoice numbers are the ERP's (strings).

    ``invoices`` counts every ``customer_invoice`` row (``posted`` + ``drafts``); ``credits`` are
    among the posted ones. ``good_customers`` are the InExchange customers without a defect (they
    include the private person and the EU customers, listed again on their own); ``bad_customers``
    maps each category of :data:`BAD_CUSTOMER_CATEGORIES` to its customers; ``defective_invoices``
    maps each kind of :data:`INVOICE_DEFECTS` to posted debit invoices of good customers.
    """

    seed: int
    start_date: date
    days: int
    customers: int
    invoices: int
    posted: int
    drafts: int
    credits: int
    lines: int
    attachments: int
    per_day: dict[date, DayCounts]
    good_customers: list[str]
    bad_customers: dict[str, list[str]]
    other_billing_customers: list[str]
    private_person_customers: list[str]
    foreign_customers: list[str]
    defective_invoices: dict[str, list[str]]

    @property
    def defective_invoice_numbers(self) -> set[str]:
        """Every invoice number listed in :attr:`defective_invoices`."""
        return {number for numbers in self.defective_invoices.values() for number in numbers}

    def describe(self) -> str:
        """Return a one-paragraph human summary."""
        last_day = self.start_date + timedelta(days=self.days - 1)
        bad = "; ".join(f"{category} {_listing(numbers)}" for category, numbers in self.bad_customers.items())
        defects = "; ".join(
            f"{kind} {_listing(numbers)}" for kind, numbers in self.defective_invoices.items()
        )
        days = ", ".join(
            f"{day.isoformat()}: {counts.posted} posted ({counts.posted_good} good, {counts.posted_bad} bad, "
            f"{counts.posted_other_billing} other billing) + {counts.drafts} drafts"
            for day, counts in self.per_day.items()
        )
        return (
            f"Generated seed {self.seed}: {self.customers} customers and {self.invoices} invoices "
            f"({self.posted} posted of which {self.credits} credit notes, {self.drafts} drafts) with "
            f"{self.lines} lines and {self.attachments} attachments, invoice dates "
            f"{self.start_date.isoformat()} to {last_day.isoformat()}. "
            f"Good InExchange customers: {len(self.good_customers)} (private person "
            f"{_listing(self.private_person_customers)}; abroad {_listing(self.foreign_customers)}). "
            f"Bad customers: {bad}. Other billing methods (never sent): "
            f"{_listing(self.other_billing_customers)}. Defective invoices: {defects}. Per day: {days}."
        )


def _listing(numbers: list[str], limit: int = 10) -> str:
    """Join up to ``limit`` numbers with commas, then say how many more there are."""
    if not numbers:
        return "-"
    shown = ", ".join(numbers[:limit])
    return shown if len(numbers) <= limit else f"{shown} and {len(numbers) - limit} more"


def create_tables(engine: Engine) -> None:
    """Create the four adapter-contract tables and their indexes if missing (``erp_schema.sql``)."""
    with engine.begin() as connection:
        for clause in script("erp_schema"):
            connection.execute(clause)


def drop_tables(engine: Engine) -> None:
    """Drop the four adapter-contract tables if they exist, children first."""
    metadata = MetaData()
    with engine.begin() as connection:
        for name in reversed(ERP_TABLES):
            Table(name, metadata).drop(connection, checkfirst=True)


def non_empty_tables(connection: Connection) -> list[str]:
    """Return the adapter-contract tables that exist and hold at least one row."""
    existing = set(inspect(connection).get_table_names())
    return [
        name
        for name in ERP_TABLES
        if name in existing
        and connection.execute(select(literal(1)).select_from(table(name)).limit(1)).first() is not None
    ]


def _sqlite_value(value: Any) -> Any:
    """Bind decimals as exact decimal text and dates as ISO text (sqlite3 adapts neither natively)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


class _Tally:
    """Counts what has been generated: per day, lines, attachments and defective invoices."""

    def __init__(self) -> None:
        self.per_day: dict[date, dict[str, int]] = {}
        self.defective: dict[str, list[str]] = {kind: [] for kind in INVOICE_DEFECTS}
        self.lines = 0
        self.attachments = 0

    def count(self, invoice: Invoice) -> None:
        """Add ``invoice`` to the counts."""
        self.lines += len(invoice.lines)
        self.attachments += len(invoice.attachments)
        day = self.per_day.setdefault(invoice.invoice_date, {item.name: 0 for item in fields(DayCounts)})
        if invoice.status == "draft":
            day["drafts"] += 1
        else:
            day[_DAY_COLUMN.get(invoice.customer.category, "posted_bad")] += 1
            day["credits"] += invoice.invoice_type == "credit"
        if invoice.defect is not None:
            self.defective[invoice.defect].append(invoice.invoice_number)


class _Writer:
    """Buffers rows per statement and writes each buffer with one executemany call."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.convert = connection.dialect.name == "sqlite"
        self.statements = {
            "customer": insert_statement(connection, "customer"),
            "invoice": insert_statement(connection, "customer_invoice"),
            "line": insert_statement(connection, "customer_invoice_line"),
            "attachment": insert_statement(connection, "invoice_attachment"),
        }
        self.buffers: dict[str, list[dict[str, Any]]] = {name: [] for name in self.statements}

    def add(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        """Queue ``rows`` for the statement ``name``."""
        if self.convert:
            rows = ({key: _sqlite_value(value) for key, value in row.items()} for row in rows)
        self.buffers[name].extend(rows)

    def flush(self) -> None:
        """Write all buffers, parents before children."""
        for name, clause in self.statements.items():
            rows = self.buffers[name]
            if rows:
                self.connection.execute(clause, rows)
                rows.clear()


#: the insert statement of each table
INSERTS = {
    "customer": "erp_insert_customer",
    "customer_invoice": "erp_insert_invoice",
    "customer_invoice_line": "erp_insert_invoice_line",
    "invoice_attachment": "erp_insert_attachment",
}
#: the optional columns of the contract, per table, as the ERP reader knows them
_OPTIONAL = dict(OPTIONAL_COLUMNS.values())


def insert_statement(connection: Connection, table: str) -> TextClause:
    """The insert of ``table``, without the optional columns the table lacks (one made for an earlier
    contract, or a copy without them): its customers are then written without their Peppol ids (each is
    still addressed by its GLN, org number or VAT number), its lines without their VAT categories (which
    the pipeline derives from their rates, as such an ERP's would)."""
    name, optional = INSERTS[table], _OPTIONAL.get(table, ())
    present = {column["name"].lower() for column in inspect(connection).get_columns(table)} if optional else set()
    missing = [column for column in optional if column not in present]
    if not missing:
        return statement(name)
    body = load_sql(name)
    for column in missing:
        body = re.sub(rf",\s*:?{column}\b", "", body)
    return text(body)


def check_arguments(*, customers: int, invoices: int, days: int, drafts: int, chunk_size: int) -> None:
    """Raise ``ValueError`` unless every day can get each kind of invoice from each kind of customer."""
    if customers < MIN_CUSTOMERS:
        raise ValueError(f"customers must be at least {MIN_CUSTOMERS}, got {customers}")
    if days < 1 or invoices < 3 * days:
        raise ValueError(
            f"need days >= 1 and at least 3 posted invoices per day, got {invoices} over {days} days"
        )
    if drafts < 0 or chunk_size < 1:
        raise ValueError(f"drafts must be >= 0 and chunk_size >= 1, got {drafts} and {chunk_size}")


def generate(
    engine: Engine,
    *,
    seed: int = 7,
    customers: int = 40,
    invoices: int = 200,
    start_date: date = date(2026, 11, 16),
    days: int = 7,
    drafts: int = 15,
    create_schema: bool = True,
    chunk_size: int = 5000,
) -> GenerationSummary:
    """Generate the data set for ``seed`` and write it through ``engine`` in one transaction.

    Rows go out with executemany in chunks; the single transaction means a failed run leaves the
    tables as they were (empty), so it can simply be run again. The same arguments always give the
    same rows, on any database.

    :param customers: number of customers (at least 15).
    :param invoices: number of posted invoices (debits and credit notes), at least 3 per day.
    :param start_date: first invoice date; invoices are spread evenly over ``days`` days.
    :param drafts: number of draft invoices over the same days (never to be sent).
    :param create_schema: create the tables first (``CREATE TABLE IF NOT EXISTS``).
    :param chunk_size: invoices per executemany batch (their lines and attachments go along).
    :raises TablesNotEmptyError: when any of the four tables already holds rows.
    :raises ValueError: when the arguments cannot give every day each kind of invoice.
    """
    check_arguments(customers=customers, invoices=invoices, days=days, drafts=drafts, chunk_size=chunk_size)
    rng = random.Random(seed)
    customer_list = build_customers(rng, customers)
    plan = plan_invoices(rng, customer_list, invoices=invoices, drafts=drafts, days=days)
    factory = InvoiceFactory(rng, start_date, showcase=invoices >= SHOWCASE_FROM)

    if create_schema:
        create_tables(engine)
    tally = _Tally()
    with engine.begin() as connection:
        occupied = non_empty_tables(connection)
        if occupied:
            raise TablesNotEmptyError(
                f"ERP tables already hold rows ({', '.join(occupied)}); refusing to add a second data set. "
                "Drop them first (drop_tables, or --replace on the command line)."
            )
        writer = _Writer(connection)
        writer.add("customer", (customer.row() for customer in customer_list))
        writer.flush()
        for invoice_id, planned in enumerate(plan, start=1):
            invoice = factory.make(invoice_id, planned)
            writer.add("invoice", [invoice.row()])
            writer.add("line", invoice.line_rows())
            writer.add("attachment", invoice.attachment_rows())
            tally.count(invoice)
            if invoice_id % chunk_size == 0:
                writer.flush()
        writer.flush()

    def numbers(category: str) -> list[str]:
        """Return the customer numbers of ``category``."""
        return [customer.customer_number for customer in customer_list if customer.category == category]

    per_day = {day: DayCounts(**counts) for day, counts in sorted(tally.per_day.items())}
    return GenerationSummary(
        seed=seed,
        start_date=start_date,
        days=days,
        customers=len(customer_list),
        invoices=len(plan),
        posted=invoices,
        drafts=drafts,
        credits=sum(counts.credits for counts in per_day.values()),
        lines=tally.lines,
        attachments=tally.attachments,
        per_day=per_day,
        good_customers=numbers(GOOD),
        bad_customers={category: numbers(category) for category in BAD_CUSTOMER_CATEGORIES},
        other_billing_customers=numbers(OTHER_BILLING),
        private_person_customers=[c.customer_number for c in customer_list if c.is_private_person],
        foreign_customers=[c.customer_number for c in customer_list if c.is_foreign],
        defective_invoices=tally.defective,
    )
