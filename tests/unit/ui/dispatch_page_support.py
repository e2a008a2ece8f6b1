"""Report and history rows of the dispatch page tests, the SQLite database holding them, and a client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

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
