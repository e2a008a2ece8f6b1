"""SubmitInvoicesOperator: build, upload and send the ledger's ready invoices exactly once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from inexchange.api import LedgerState, SendMethod
from inexchange.db import engine_for, reporting_engine, utc_text
from inexchange.exceptions import InExchangeApiError, InExchangeError
from inexchange.hooks.inexchange import InExchangeHook
from inexchange.ledger import Ledger, RunScope

if TYPE_CHECKING:
    from airflow.sdk import Context

    from inexchange.erp import InvoiceBatch
    from inexchange.ubl import Seller

SOURCE = "submit"


class SubmitInvoicesOperator(BaseOperator):
    """Send the ledger's ``ready`` invoices (and ``failed`` ones whose retry is due) to InExchange.

    Per invoice: build the UBL document, claim the row (``submitting``, committed), upload the
    document, send it with ``erpDocumentId`` = the invoice's stable key, and record ``waiting`` with
    InExchange's document id. A row found in ``submitting`` is first looked up at InExchange by its
    ERP id and only sent again when InExchange never received it. Permanent refusals (400) end
    ``rejected`` with InExchange's message; other failures end ``failed`` with a next-retry time.

    :param erp_conn_id: connection of the ERP database.
    :param reporting_conn_id: connection of the database holding the ledger (the ERP's if undefined).
    :param inexchange_conn_id: ``inexchange`` connection (API base URL, API key, ERP id).
    :param seller: seller configuration; by default the Airflow Variable ``inexchange_seller``.
    :param let_inexchange_choose: send ``sendDocumentAs.type`` empty and let InExchange pick
        e-invoice, PDF or paper, instead of resolving the recipient here.
    :param max_attempts: attempts per invoice before it stays ``failed`` for a person.
    :param retry_delay_base: wait before the first retry of a failed invoice; doubles per attempt.
    :param timezone: time zone of the ERP's invoice dates.
    """

    template_fields: Sequence[str] = ("erp_conn_id", "reporting_conn_id", "inexchange_conn_id")
    ui_color = "#d6e9f8"

    def __init__(
        self,
        *,
        erp_conn_id: str = "erp_default",
        reporting_conn_id: str = "inexchange_reporting",
        inexchange_conn_id: str = InExchangeHook.default_conn_name,
        seller: dict[str, Any] | None = None,
        let_inexchange_choose: bool = False,
        max_attempts: int = 5,
        retry_delay_base: timedelta = timedelta(minutes=5),
        timezone: str = "Europe/Stockholm",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.erp_conn_id = erp_conn_id
        self.reporting_conn_id = reporting_conn_id
        self.inexchange_conn_id = inexchange_conn_id
        self.seller = seller
        self.let_inexchange_choose = let_inexchange_choose
        self.max_attempts = max_attempts
        self.retry_delay_base = retry_delay_base
        self.timezone = timezone

    @cached_property
    def hook(self) -> InExchangeHook:
        """The InExchange hook, created at run time."""
        return InExchangeHook(self.inexchange_conn_id)

    def execute(self, context: Context) -> dict[str, int]:
        # pandas, pandera and lxml load when the task runs, never when the DAG file is parsed
        from inexchange.erp import ErpReader
        from inexchange.ubl import Seller

        seller = Seller.from_config(self.seller if self.seller is not None else _seller_variable())
        ledger = Ledger(reporting_engine(self.reporting_conn_id, self.erp_conn_id), RunScope.from_context(context, self.timezone))
        ledger.ensure_schema()
        counts = {"sent": 0, "reconciled": 0, "rejected": 0, "failed": 0, "skipped": 0}
        rows = ledger.due_rows(max_attempts=self.max_attempts)
        try:
            to_send = []
            for row in rows:
                if row["state"] == LedgerState.SUBMITTING.value:
                    outcome = self._reconcile(ledger, row)
                    counts["reconciled"] += outcome == "found"
                    if outcome != "not found":
                        continue
                to_send.append(row)
            if to_send:
                batch = ErpReader(engine_for(self.erp_conn_id)).load([r["invoice_id"] for r in to_send])
                recipients: dict[int, dict[str, Any]] = {}
                for row in to_send:
                    counts[self._submit(ledger, row, batch, seller, recipients)] += 1
        finally:
            self.hook.close()
        self.log.info("submission: %s (of %d due rows)", counts, len(rows))
        return counts

    # ---- one invoice ---------------------------------------------------------------------------
    def _submit(self, ledger: Ledger, row: dict[str, Any], batch: InvoiceBatch, seller: Seller,
                recipients: dict[int, dict[str, Any]]) -> str:
        from inexchange.ubl import DocumentError, build_from_batch

        invoice_id = int(row["invoice_id"])
        from_states = [LedgerState(row["state"])] if row["state"] != LedgerState.SUBMITTING.value else [LedgerState.FAILED]
        invoice = batch.invoice(invoice_id) if invoice_id in batch.invoices.index else None
        customer = None if invoice is None or invoice["customer_id"] not in batch.customers.index else (
            batch.customer(invoice["customer_id"]))
        if invoice is None or customer is None:
            missing = "fakturan" if invoice is None else f"kunden {row['customer_number']} {row['customer_name']}"
            ledger.transition(invoice_id, from_states, LedgerState.REJECTED, source=SOURCE,
                              message=f"Faktura {row['invoice_number']}: {missing} finns inte längre i ERP")
            return "rejected"
        try:
            document = build_from_batch(batch, invoice_id, seller)
        except DocumentError as exc:
            ledger.transition(invoice_id, from_states, LedgerState.REJECTED, source=SOURCE,
                              message=f"Kund {row['customer_number']} {row['customer_name']}: {exc}")
            return "rejected"
        try:
            recipient = recipients.get(int(invoice["customer_id"]))
            if recipient is None:
                recipient = recipients[int(invoice["customer_id"])] = self._recipient(customer)
        except InExchangeError as exc:
            return self._failed(ledger, row, from_states[0], exc)
        if not ledger.transition(invoice_id, from_states, LedgerState.SUBMITTING, source=SOURCE, attempt=1,
                                 submitted_at=utc_text(_now()), delivery_method=recipient["method"]):
            self.log.warning("invoice %s was claimed by another worker; skipped", row["invoice_number"])
            return "skipped"
        try:
            document_uri = self.hook.upload_document(document)
            document_id = self.hook.send_outbound(_send_body(row, customer, recipient, document_uri))
        except InExchangeApiError as exc:
            if exc.permanent:
                ledger.transition(invoice_id, [LedgerState.SUBMITTING], LedgerState.REJECTED, source=SOURCE,
                                  message=f"InExchange avvisade fakturan: {exc.describe()}")
                return "rejected"
            return self._after_uncertain_send(ledger, row, exc)
        except InExchangeError as exc:
            return self._after_uncertain_send(ledger, row, exc)
        ledger.transition(invoice_id, [LedgerState.SUBMITTING], LedgerState.WAITING, source=SOURCE,
                          inexchange_document_id=document_id, document_uri=document_uri)
        return "sent"

    def _after_uncertain_send(self, ledger: Ledger, row: dict[str, Any], exc: Exception) -> str:
        """The send may have reached InExchange: look it up before deciding anything."""
        outcome = self._reconcile(ledger, row)
        if outcome == "found":
            return "sent"
        if outcome == "not found":
            return self._failed(ledger, row, LedgerState.FAILED, exc)
        return "failed"  # still submitting: the next run reconciles it

    def _reconcile(self, ledger: Ledger, row: dict[str, Any]) -> str:
        """Settle a ``submitting`` row through ``invoices/outbound/byerpid``.

        Returns ``found`` (now waiting or final), ``not found`` (now failed, safe to send) or
        ``unknown`` (the look-up failed; the row stays ``submitting``).
        """
        invoice_id = int(row["invoice_id"])
        try:
            found = self.hook.find_by_erp_id(row["erp_document_id"])
        except InExchangeError as exc:
            self.log.warning("invoice %s: could not reconcile (%s); left submitting", row["invoice_number"], exc)
            return "unknown"
        if found is None:
            ledger.transition(invoice_id, [LedgerState.SUBMITTING], LedgerState.FAILED, source=SOURCE,
                              message="InExchange tog aldrig emot fakturan; den skickas igen")
            return "not found"
        ledger.transition(invoice_id, [LedgerState.SUBMITTING], found.ledger_state, source=SOURCE,
                          inexchange_document_id=found.id, inexchange_status=found.status,
                          message=found.message,
                          status_time=utc_text(found.status_time) if found.status_time else None)
        self.log.info("invoice %s: InExchange already had it as %s", row["invoice_number"], found.id)
        return "found"

    def _failed(self, ledger: Ledger, row: dict[str, Any], from_state: LedgerState, exc: Exception) -> str:
        delay = self.retry_delay_base * 2 ** int(row["attempts"] or 0)
        ledger.transition(int(row["invoice_id"]), [from_state], LedgerState.FAILED, source=SOURCE,
                          message=f"Sändningen misslyckades, nytt försök senare: {exc}",
                          next_retry_at=utc_text(_now() + delay))
        return "failed"

    def _recipient(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        """Choose how InExchange delivers to a customer: e-invoice, PDF by e-mail, or paper."""
        email = _text(customer.get("invoice_email"))
        if self.let_inexchange_choose:
            return {"method": SendMethod.AUTO.value, "email": email}
        gln, org = _text(customer.get("gln")), _text(customer.get("org_number"))
        if gln or org:
            result = self.hook.lookup_buyer(party_id=_text(customer["customer_number"]), gln=gln or None,
                                            org_no=None if gln else org or None)
            party = next((p for p in result.parties if p.can_receive_einvoice), None) if result.exact_hit else None
            if party is not None and party.company_id:
                return {"method": SendMethod.ELECTRONIC.value, "recipient_id": party.company_id}
        if email:
            return {"method": SendMethod.PDF.value, "email": email}
        return {"method": SendMethod.PAPER.value}


def _send_body(row: dict[str, Any], customer: Mapping[str, Any], recipient: dict[str, Any], document_uri: str) -> dict[str, Any]:
    """The body of ``documents/outbound`` for one invoice."""
    method = recipient["method"]
    send_as: dict[str, Any] = {"type": None if method == SendMethod.AUTO.value else method}
    if method == SendMethod.ELECTRONIC.value:
        send_as["electronic"] = {"recipientId": recipient["recipient_id"]}
    elif recipient.get("email"):
        send_as["pdf"] = {"recipientEmail": recipient["email"]}
    language = _text(customer.get("language")) or "sv"
    return {
        "sendDocumentAs": send_as,
        "recipientInformation": {
            "gln": _text(customer.get("gln")) or None,
            "orgNo": _text(customer.get("org_number")) or None,
            "vatNo": _text(customer.get("vat_number")) or None,
            "name": _text(customer.get("name")),
            "recipientNo": _text(customer.get("customer_number")),
            "countryCode": _text(customer.get("country_code")) or "SE",
        },
        "document": {
            "documentFormat": "bis3",
            "erpDocumentId": row["erp_document_id"],
            "documentUri": document_uri,
            "language": language,
            "culture": "sv-SE" if language == "sv" else "en-GB",
        },
    }


def _seller_variable() -> dict[str, Any]:
    from airflow.sdk import Variable

    return Variable.get("inexchange_seller", deserialize_json=True)


def _text(value: Any) -> str:
    import pandas as pd

    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


def _now() -> datetime:
    return datetime.now(timezone.utc)
