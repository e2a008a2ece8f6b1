"""Read invoices, their lines, customers and attachments from the ERP database.

The ERP is reached through the adapter contract of docs/erp-contract.md (tables ``customer``,
``customer_invoice``, ``customer_invoice_line``, ``invoice_attachment``); a user maps their own ERP to
it with views of those names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, Unpack

import pandas as pd
from sqlalchemy import inspect

from inexchange import vat
from inexchange.sql import SELECTION, listing, selection, statement, with_columns
from inexchange.values import integer_id

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

#: the ERP billing method of customers invoiced through InExchange
INEXCHANGE_BILLING_METHOD = "InExchange utskrift (API)"

_CHUNK = 900  # stay below every database's bound-parameter limit
#: rows fetched at a time when the whole extract is read into one list
_EXTRACT_PAGE = 10_000


class ExtractSelection(TypedDict):
    """Which invoices :meth:`ErpReader.extract` and :meth:`ErpReader.extract_chunks` read."""

    start_date: str
    end_date: str
    numbers: NotRequired[Sequence[str]]
    billing_method: NotRequired[str]
    by_number: NotRequired[bool]


#: the optional columns of the adapter contract (docs/erp-contract.md), per statement: the table or view
#: it reads and the columns it adds when that table has them. An ERP without them is read as before.
OPTIONAL_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "erp_select_customers": ("customer", ("peppol_id",)),
    "erp_select_lines": ("customer_invoice_line", vat.LINE_COLUMNS),
}


@dataclass
class InvoiceBatch:
    """Everything needed to validate and build a set of invoices, as DataFrames.

    :param invoices: one row per invoice (``customer_invoice``), indexed by invoice_id.
    :param customers: one row per customer of those invoices, indexed by customer_id.
    :param lines: invoice lines, in line order.
    :param attachments: attachments (``content`` as bytes).
    """

    invoices: pd.DataFrame
    customers: pd.DataFrame
    lines: pd.DataFrame
    attachments: pd.DataFrame
    _records: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def invoice(self, invoice_id: int) -> dict[str, Any]:
        """One invoice as a dict (all invoices are converted once, on first use)."""
        return self._by_key("invoices")[int(invoice_id)]

    def customer(self, customer_id: int) -> dict[str, Any]:
        """One customer as a dict."""
        return self._by_key("customers")[int(customer_id)]

    def lines_of(self, invoice_id: int) -> list[dict[str, Any]]:
        """The lines of one invoice as dicts, in line order (grouped once: a lookup costs no scan)."""
        return self._grouped("lines").get(int(invoice_id), [])

    def attachments_of(self, invoice_id: int) -> list[dict[str, Any]]:
        """The attachments of one invoice as dicts."""
        return self._grouped("attachments").get(int(invoice_id), [])

    def _by_key(self, name: str) -> dict[int, dict[str, Any]]:
        if name not in self._records:
            frame = getattr(self, name)
            if not frame.index.is_unique:  # a view without keys repeats a row: validation rejects it; here the first
                frame = frame[~frame.index.duplicated()]
            self._records[name] = {int(k): v for k, v in frame.to_dict("index").items()}
        return self._records[name]

    def _grouped(self, name: str) -> dict[int, list[dict[str, Any]]]:
        if name not in self._records:
            grouped: dict[int, list[dict[str, Any]]] = {}
            for record in getattr(self, name).to_dict("records"):
                grouped.setdefault(int(record["invoice_id"]), []).append(record)
            self._records[name] = grouped
        return self._records[name]


class ErpReader:
    """Query the ERP database through bound parameters only.

    :param engine: SQLAlchemy engine of the ERP database.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._present: dict[str, tuple[str, ...]] = {}

    def optional_columns(self, name: str) -> tuple[str, ...]:
        """The optional columns of statement ``name`` that the ERP's table or view has (asked once per reader)."""
        if name not in self._present:
            table, wanted = OPTIONAL_COLUMNS.get(name, ("", ()))
            have = {column["name"].lower() for column in inspect(self.engine).get_columns(table)} if wanted else set()
            self._present[name] = tuple(column for column in wanted if column in have)
        return self._present[name]

    def extract(self, **selection: Unpack[ExtractSelection]) -> list[dict[str, Any]]:
        """Posted invoices of customers billed through InExchange: those numbered ``numbers`` when
        given (whatever their date), else those dated in ``[start_date, end_date)`` (the arguments
        of :meth:`extract_chunks`, but its ``size``), all in one list.
        """
        return [row for chunk in self.extract_chunks(size=_EXTRACT_PAGE, **selection) for row in chunk]

    def extract_chunks(
        self,
        *,
        start_date: str,
        end_date: str,
        numbers: Sequence[str] = (),
        billing_method: str = INEXCHANGE_BILLING_METHOD,
        by_number: bool = False,
        size: int,
    ) -> Iterator[list[dict[str, Any]]]:
        """Posted invoices of customers billed through InExchange, in chunks of at most ``size`` rows:
        those numbered ``numbers`` when given (whatever their date), else those dated in
        ``[start_date, end_date)``.

        One query, read through a streaming cursor (a server-side cursor on PostgreSQL, SQLite's own
        step by step): the rows come from the database a chunk at a time, so the caller holds one
        chunk, never the whole interval. The connection stays open until the last chunk is taken.

        :param by_number: select by ``numbers`` even when it is empty (then nothing).
        :param size: most rows a chunk.
        """
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        query = statement("extract_unsent_invoices").bindparams(SELECTION)
        params = _extract_params(start_date, end_date, numbers, billing_method, by_number)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=size).execute(query, params)
            for part in result.partitions(size):
                yield [dict(row._mapping) for row in part]

    def load(self, invoice_ids: Sequence[int]) -> InvoiceBatch:
        """Load invoices with their customers, lines and attachments."""
        ids = sorted({int(i) for i in invoice_ids})
        invoices = self._frame("erp_select_invoices", ids)
        # only whole-number keys are looked up; an invoice whose customer_id is none is named by validation
        customer_ids = sorted({i for c in invoices["customer_id"] if (i := integer_id(c)) is not None})
        return InvoiceBatch(
            invoices=invoices.set_index("invoice_id", drop=False),
            customers=self._frame("erp_select_customers", customer_ids).set_index("customer_id", drop=False),
            lines=self._frame("erp_select_lines", ids),
            attachments=self._frame("erp_select_attachments", ids),
        )

    def duplicate_invoice_numbers(self, numbers: Iterable[str]) -> set[str]:
        """Invoice numbers among ``numbers`` that more than one ERP invoice uses."""
        query = listing(statement("erp_duplicate_invoice_numbers"), "numbers", self.engine.dialect.name)
        found: set[str] = set()
        numbers = sorted({str(n) for n in numbers})
        with self.engine.connect() as conn:
            for start in range(0, len(numbers), _CHUNK):
                result = conn.execute(query, {"numbers": numbers[start : start + _CHUNK]})
                found.update(str(row[0]) for row in result)
        return found

    def _frame(self, name: str, ids: Sequence[int]) -> pd.DataFrame:
        extra = self.optional_columns(name)
        query = listing(with_columns(name, extra) if extra else statement(name), "ids", self.engine.dialect.name)
        frames = []
        with self.engine.connect() as conn:
            for start in range(0, max(len(ids), 1), _CHUNK):
                result = conn.execute(query, {"ids": list(ids[start : start + _CHUNK])})
                # plain tuples: pandas probes each SQLAlchemy Row for namedtuple fields, a failed lookup a row
                frames.append(pd.DataFrame(list(map(tuple, result)), columns=list(result.keys())))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _extract_params(
    start_date: str, end_date: str, numbers: Sequence[str], billing_method: str, by_number: bool
) -> dict[str, Any]:
    """The bind parameters of ``extract_unsent_invoices.sql``."""
    return {
        "start_date": start_date,
        "end_date": end_date,
        "billing_method": billing_method,
        **selection(numbers, by_number=by_number),
    }
