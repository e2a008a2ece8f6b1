"""Read invoices, their lines, customers and attachments from the ERP database.

The ERP is reached through the adapter contract of README.md (tables ``customer``,
``customer_invoice``, ``customer_invoice_line``, ``invoice_attachment``); a user maps their own ERP to
it with views of those names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import bindparam

from inexchange.sql import statement

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

#: the ERP billing method of customers invoiced through InExchange
INEXCHANGE_BILLING_METHOD = "InExchange utskrift (API)"

_CHUNK = 900  # stay below every database's bound-parameter limit


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
    _groups: dict[str, dict[int, pd.DataFrame]] = field(default_factory=dict, init=False, repr=False)

    def lines_of(self, invoice_id: int) -> pd.DataFrame:
        """The lines of one invoice (grouped once, so a lookup costs no scan)."""
        return self._rows_of("lines", int(invoice_id))

    def attachments_of(self, invoice_id: int) -> pd.DataFrame:
        """The attachments of one invoice."""
        return self._rows_of("attachments", int(invoice_id))

    def _rows_of(self, name: str, invoice_id: int) -> pd.DataFrame:
        frame = getattr(self, name)
        if name not in self._groups:
            self._groups[name] = {int(key): rows for key, rows in frame.groupby("invoice_id", sort=False)}
        found = self._groups[name].get(invoice_id)
        return frame.iloc[0:0] if found is None else found


class ErpReader:
    """Query the ERP database through bound parameters only.

    :param engine: SQLAlchemy engine of the ERP database.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def extract(self, *, start_date: str, end_date: str,
                billing_method: str = INEXCHANGE_BILLING_METHOD) -> list[dict[str, Any]]:
        """Posted invoices dated in ``[start_date, end_date)`` of customers billed through InExchange."""
        with self.engine.connect() as conn:
            result = conn.execute(
                statement("extract_unsent_invoices"),
                {"start_date": start_date, "end_date": end_date, "billing_method": billing_method},
            )
            return [dict(row._mapping) for row in result]

    def load(self, invoice_ids: Sequence[int]) -> InvoiceBatch:
        """Load invoices with their customers, lines and attachments."""
        ids = sorted({int(i) for i in invoice_ids})
        invoices = self._frame("erp_select_invoices", ids)
        customer_ids = sorted({int(c) for c in invoices["customer_id"].dropna()}) if len(invoices) else []
        return InvoiceBatch(
            invoices=invoices.set_index("invoice_id", drop=False),
            customers=self._frame("erp_select_customers", customer_ids).set_index("customer_id", drop=False),
            lines=self._frame("erp_select_lines", ids),
            attachments=self._frame("erp_select_attachments", ids),
        )

    def duplicate_invoice_numbers(self, numbers: Iterable[str]) -> set[str]:
        """Invoice numbers among ``numbers`` that more than one ERP invoice uses."""
        query = statement("erp_duplicate_invoice_numbers").bindparams(bindparam("numbers", expanding=True))
        found: set[str] = set()
        numbers = sorted({str(n) for n in numbers})
        with self.engine.connect() as conn:
            for start in range(0, len(numbers), _CHUNK):
                result = conn.execute(query, {"numbers": numbers[start : start + _CHUNK]})
                found.update(str(row[0]) for row in result)
        return found

    def _frame(self, name: str, ids: Sequence[int]) -> pd.DataFrame:
        query = statement(name).bindparams(bindparam("ids", expanding=True))
        frames = []
        with self.engine.connect() as conn:
            for start in range(0, max(len(ids), 1), _CHUNK):
                result = conn.execute(query, {"ids": list(ids[start : start + _CHUNK])})
                frames.append(pd.DataFrame(result.fetchall(), columns=list(result.keys())))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
