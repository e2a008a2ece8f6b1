"""Report and history rows of the dispatch page tests, the SQLite database holding them, a ledger
with every "needs a person" case, and a client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from inexchange.states import MAX_ATTEMPTS
from inexchange.ledger import Ledger, RunScope

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

VIEWER, VIEWER_PASSWORD = "viewer", "viewer-password-1"
#: a user the simple auth manager knows but gives no role
NOBODY, NOBODY_PASSWORD = "nobody", "nobody-password-1"
JWT_SECRET = "unit-test-jwt-secret-for-the-inexchange-dispatch-page-0123456789abcdef"

REPORT_INSERT = """
INSERT INTO inexchange_report (invoice_id, data_interval_start, data_interval_end, document_type,
    invoice_number, customer_number, customer_name, delivery_type, delivery_method, state,
    inexchange_status, sent_at, message, inexchange_document_id, attempts, dag_run_id)
VALUES (:invoice_id, :data_interval_start, :data_interval_end, :document_type, :invoice_number,
    :customer_number, :customer_name, 'InExchange', :delivery_method, :state, :inexchange_status,
    :sent_at, :message, :inexchange_document_id, :attempts, :dag_run_id)
"""
HISTORY_INSERT = """
INSERT INTO inexchange_dispatch_history (history_id, invoice_id, from_state, to_state,
    inexchange_status, message, source, changed_at, dag_run_id)
VALUES (:history_id, :invoice_id, :from_state, :to_state, :inexchange_status, :message, :source,
    :changed_at, :dag_run_id)
"""
DAY_17 = ("2026-11-17T05:00:00.000000Z", "2026-11-18T05:00:00.000000Z", "scheduled__2026-11-18T05:00:00+00:00")
DAY_18 = ("2026-11-18T05:00:00.000000Z", "2026-11-19T05:00:00.000000Z", "scheduled__2026-11-19T05:00:00+00:00")
SCRIPT_NAME = "<script>alert(1)</script>"
HTML_MESSAGE = 'Kund 1027: <b>VAT-nummer</b> saknas & "Märkning" <img src=x onerror=alert(2)>'


def report_row(invoice_id: int, number: str, customer: tuple[str, str], state: str, day: tuple[str, str, str],
            **extra: Any) -> dict[str, Any]:
    values = {
        "invoice_id": invoice_id, "invoice_number": number, "customer_number": customer[0],
        "customer_name": customer[1], "state": state, "data_interval_start": day[0],
        "data_interval_end": day[1], "dag_run_id": day[2], "document_type": "Kundfaktura",
        "delivery_method": None, "inexchange_status": None, "sent_at": None, "message": None,
        "inexchange_document_id": None, "attempts": 0,
    }
    values.update(extra)
    return values


#: the report rows every page test starts from
REPORT_ROWS = [
    report_row(1001, "10064", ("1003", "Umeå kommun"), "sent", DAY_17, delivery_method="Electronic",
            inexchange_status="Delivered", sent_at="2026-11-18T05:06:10.000000Z",
            inexchange_document_id="7d1c0c3e-0001", attempts=1),
    report_row(1002, "10065", ("1014", "Mälardalens Data AB"), "stopped", DAY_17, delivery_method="Pdf",
            inexchange_status="Stopped", message="AwaitingRecipientApproval: The recipient must approve",
            inexchange_document_id="7d1c0c3e-0002", attempts=1),
    report_row(1003, "10073", ("1031", "Vårgårda kommun"), "rejected", DAY_18,
            message="Faktura 10073: förfallodatum 2026-11-15 är före fakturadatum 2026-11-18"),
    report_row(1004, "10075", ("1027", SCRIPT_NAME), "rejected", DAY_18, message=HTML_MESSAGE),
    report_row(1005, "10080", ("2001", "Karlssons Rör 100% AB"), "waiting", DAY_18, delivery_method="Paper",
            inexchange_status="Pending", inexchange_document_id="7d1c0c3e-0005", attempts=1),
    report_row(1006, "10081", ("2002", "Berg_Ek AB"), "failed", DAY_18, document_type="Kreditfaktura",
            message="Error: Duplicate invoice number", attempts=2),
]
#: invoice 1001's changes, deliberately inserted out of order
HISTORY_ROWS = [
    {"history_id": "h-4", "invoice_id": 1001, "from_state": "submitting", "to_state": "waiting",
     "inexchange_status": "PendingInPlatform", "message": None, "source": "submit",
     "changed_at": "2026-11-18T05:00:03.000000Z", "dag_run_id": DAY_17[2]},
    {"history_id": "h-1", "invoice_id": 1001, "from_state": None, "to_state": "pending",
     "inexchange_status": None, "message": None, "source": "extract",
     "changed_at": "2026-11-18T05:00:00.100000Z", "dag_run_id": DAY_17[2]},
    {"history_id": "h-5", "invoice_id": 1001, "from_state": "waiting", "to_state": "sent",
     "inexchange_status": "Delivered", "message": None, "source": "status poll",
     "changed_at": "2026-11-18T05:06:10.000000Z", "dag_run_id": DAY_17[2]},
    {"history_id": "h-2", "invoice_id": 1001, "from_state": "pending", "to_state": "ready",
     "inexchange_status": None, "message": None, "source": "validate",
     "changed_at": "2026-11-18T05:00:01.000000Z", "dag_run_id": DAY_17[2]},
    {"history_id": "h-3", "invoice_id": 1001, "from_state": "ready", "to_state": "submitting",
     "inexchange_status": None, "message": None, "source": "submit",
     "changed_at": "2026-11-18T05:00:02.000000Z", "dag_run_id": DAY_17[2]},
    {"history_id": "h-6", "invoice_id": 1004, "from_state": None, "to_state": "pending",
     "inexchange_status": None, "message": None, "source": "extract",
     "changed_at": "2026-11-19T05:00:00.100000Z", "dag_run_id": DAY_18[2]},
    {"history_id": "h-7", "invoice_id": 1004, "from_state": "pending", "to_state": "rejected",
     "inexchange_status": None, "message": HTML_MESSAGE, "source": "validate",
     "changed_at": "2026-11-19T05:00:01.000000Z", "dag_run_id": DAY_18[2]},
]


def create_reporting_database(path: Path, report_rows: list[dict[str, Any]],
                              history_rows: list[dict[str, Any]]) -> Path:
    """Create the ledger schema in a SQLite file and insert report and history rows."""
    from inexchange.sql import script

    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            for clause in script("ledger_schema"):
                conn.execute(clause)
            if report_rows:
                conn.execute(text(REPORT_INSERT), report_rows)
            if history_rows:
                conn.execute(text(HISTORY_INSERT), history_rows)
    finally:
        engine.dispose()
    return path


@dataclass(frozen=True)
class LedgerCase:
    """One invoice of the ledger the "needs a person" tests share, and what the page must say of it.

    :param invoice_id: the ERP's invoice id (the invoice number is ``20000 + invoice_id % 1000``).
    :param state: its ledger state.
    :param needs_person: whether a person has to act on it.
    :param next_step: the page's "Next step" cell.
    :param fields: other ledger columns (attempts, InExchange document id, next retry, ...).
    """

    invoice_id: int
    state: str
    needs_person: bool
    next_step: str
    fields: dict[str, Any]

    @property
    def number(self) -> str:
        """The invoice number."""
        return str(20000 + self.invoice_id % 1000)


def _case(invoice_id: int, state: str, needs_person: bool, next_step: str, **fields: Any) -> LedgerCase:
    return LedgerCase(invoice_id, state, needs_person, next_step, fields)


#: every case of "needs a person" and of "retried automatically", and every other ledger state
LEDGER_CASES = [
    _case(2001, "rejected", True, "needs a person",
          message="Kund 4367: organisationsnummer saknas"),
    _case(2002, "stopped", True, "needs a person", attempts=1, inexchange_document_id="9b1e-0002",
          inexchange_status="Stopped", message="InvalidDeliveryMethod: The recipient refused"),
    _case(2003, "in_doubt", True, "needs a person", attempts=1,
          message="send in doubt: InExchange never answered the look-up by ERP id"),
    _case(2004, "failed", True, "needs a person: InExchange reported an error, never resent automatically",
          attempts=1, inexchange_document_id="9b1e-0004", inexchange_status="Error",
          message="Error: Duplicate invoice number"),
    _case(2005, "failed", True, "needs a person: no automatic attempts left", attempts=MAX_ATTEMPTS,
          next_retry_at="2099-11-20T08:12:00.000000Z", message="HTTP 503 from InExchange"),
    _case(2006, "failed", False, "retried automatically at 2099-11-20 09:12 CET", attempts=2,
          next_retry_at="2099-11-20T08:12:00.000000Z", message="HTTP 503 from InExchange"),
    _case(2007, "failed", False, "retried automatically at the next run", attempts=1,
          message="connection reset by InExchange"),
    _case(2008, "failed", False, "retried automatically at the next run (due since 2025-07-01 10:12 CEST)",
          attempts=MAX_ATTEMPTS - 1, inexchange_document_id="", next_retry_at="2025-07-01T08:12:00.000000Z",
          message="HTTP 429 from InExchange"),
    _case(2009, "sent", False, "", attempts=1, inexchange_document_id="9b1e-0009", inexchange_status="Delivered",
          sent_at="2026-11-18T05:06:10.000000Z"),
    _case(2010, "waiting", False, "", attempts=1, inexchange_document_id="9b1e-0010", inexchange_status="Pending"),
    _case(2011, "pending", False, ""),
    _case(2012, "ready", False, ""),
    _case(2013, "submitting", False, "", attempts=1),
]
#: the run that wrote the cases' report rows: the invoices dated 2026-11-17
CASES_SCOPE = RunScope(
    dag_run_id="scheduled__2026-11-18T05:00:00+00:00",
    start=datetime(2026, 11, 17, 5, tzinfo=timezone.utc),
    end=datetime(2026, 11, 18, 5, tzinfo=timezone.utc),
    start_date=date(2026, 11, 17),
    end_date=date(2026, 11, 18),
)
LEDGER_INSERT = """
INSERT INTO inexchange_dispatch (invoice_id, invoice_number, invoice_type, customer_id, customer_number,
    customer_name, invoice_date, currency, total_amount, erp_document_id, state, inexchange_document_id,
    inexchange_status, message, attempts, next_retry_at, sent_at, created_at, updated_at, dag_run_id)
VALUES (:invoice_id, :invoice_number, 'debit', 7, '4367', 'Alingsås kommun', '2026-11-17', 'SEK', 1250.00,
    :erp_document_id, :state, :inexchange_document_id, :inexchange_status, :message, :attempts,
    :next_retry_at, :sent_at, '2026-11-18T05:00:00.000000Z', :updated_at, :dag_run_id)
"""


def fill_ledger(engine: Engine, cases: list[LedgerCase] = LEDGER_CASES) -> None:
    """Create the ledger schema, insert ``cases`` into the ledger, and write their report rows as
    the report task does (:meth:`inexchange.ledger.Ledger.refresh_report`)."""
    ledger = Ledger(engine, CASES_SCOPE)
    ledger.ensure_schema()
    rows = [{
        "invoice_id": case.invoice_id, "invoice_number": case.number, "state": case.state,
        "erp_document_id": f"invoice-{case.invoice_id}", "dag_run_id": CASES_SCOPE.dag_run_id,
        "updated_at": f"2026-11-18T05:{case.invoice_id % 60:02d}:00.000000Z",
        "inexchange_document_id": None, "inexchange_status": None, "message": None, "attempts": 0,
        "next_retry_at": None, "sent_at": None, **case.fields,
    } for case in cases]
    with engine.begin() as conn:
        conn.execute(text(LEDGER_INSERT), rows)
    ledger.refresh_report()


@dataclass
class Site:
    """The page mounted as the api-server mounts it, and a way to log in."""

    client: TestClient

    def login(self, username: str, password: str) -> str:
        """Log in through the simple auth manager's ``POST /auth/token``; return the JWT."""
        response = self.client.post("/auth/token", json={"username": username, "password": password})
        assert response.status_code == 201, response.text
        return str(response.json()["access_token"])

    def get(self, path: str, token: str | None, **kwargs: Any) -> Any:
        """``GET path`` with ``token`` as the ``_token`` cookie (as the browser sends it), or none."""
        self.client.cookies.clear()
        if token is not None:
            self.client.cookies.set("_token", token)
        return self.client.get(path, follow_redirects=False, **kwargs)
