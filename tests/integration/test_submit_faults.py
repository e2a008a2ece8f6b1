"""Exactly-once submission under faults: lost replies, dropped connections and 5xx from the simulator.

The submit operator runs round after round (as Airflow's retries and the next runs would) against a
simulator that fails a share of all requests, including sends whose reply is lost after InExchange
processed them. In the end every ready invoice is waiting at InExchange and was sent exactly once.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from sqlalchemy import create_engine, text

from support import sqlite_conn_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SELLER = {
    "name": "Testbolaget AB", "org_number": "556677-8899", "vat_number": "SE556677889901",
    "street": "Storgatan 1", "postal_code": "111 22", "city": "Stockholm", "bankgiro": "5050-1055",
}


def test_every_invoice_sent_exactly_once_despite_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange import pipeline
    from inexchange.erpgen import generate
    from inexchange.operators.submit import SubmitInvoicesOperator
    from inexchange.simulator.testing import run_simulator

    path = tmp_path / "erp.db"
    engine = create_engine(f"sqlite:///{path}")
    generate(engine, seed=3, customers=30, invoices=60, start_date=date(2026, 11, 16), days=1, drafts=3)
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", sqlite_conn_env(path))
    start = pendulum.datetime(2026, 11, 16, 6, tz="Europe/Stockholm")
    context: dict[str, Any] = {"run_id": "faults", "data_interval_start": start,
                               "data_interval_end": start.add(days=1)}

    with run_simulator(seed=9, fault_rate=0.25, faults=["5xx", "drop", "lost"], status_step_ms=100) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
            "conn_type": "inexchange", "host": sim.base_url, "password": sim.api_key, "extra": {"erp_id": "f"}}))
        pipeline.extract(context, erp_conn_id="erp_default", reporting_conn_id="erp_default")
        ready = pipeline.validate(context, erp_conn_id="erp_default", reporting_conn_id="erp_default")["ready"]
        assert ready >= 20

        operator = SubmitInvoicesOperator(task_id="submit", erp_conn_id="erp_default",
                                          reporting_conn_id="erp_default", seller=SELLER,
                                          max_attempts=50, retry_delay_base=timedelta(0))
        for _ in range(25):
            try:
                operator.execute(context)
            except Exception:  # a round may die (a fault beyond the hook's retries): the next one resumes
                pass
            with engine.connect() as conn:
                open_rows = conn.execute(text(
                    "SELECT COUNT(*) FROM inexchange_dispatch WHERE state IN ('ready', 'submitting') "
                    "OR (state = 'failed' AND inexchange_document_id IS NULL)"
                )).scalar()
            if open_rows == 0:
                break
        stats = sim.stats()

    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            "SELECT state, erp_document_id, inexchange_document_id FROM inexchange_dispatch "
            "WHERE state NOT IN ('rejected')"))]
    assert len(rows) == ready
    assert open_rows == 0
    # waiting, or already final when a lost reply was reconciled through byerpid
    assert {r["state"] for r in rows} <= {"waiting", "sent", "stopped", "failed"}
    assert all(r["inexchange_document_id"] for r in rows)
    assert stats["faults"].get("lost", 0) > 0, "the run should have lost some replies"
    assert stats["duplicates"] == []
    assert {r["erp_document_id"]: 1 for r in rows} == stats["sends"]


def test_customer_deleted_between_validation_and_submission_is_rejected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange import pipeline
    from inexchange.erpgen import generate
    from inexchange.operators.submit import SubmitInvoicesOperator
    from inexchange.simulator.testing import run_simulator

    path = tmp_path / "erp.db"
    engine = create_engine(f"sqlite:///{path}")
    generate(engine, seed=3, customers=20, invoices=20, start_date=date(2026, 11, 16), days=1, drafts=1)
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", sqlite_conn_env(path))
    start = pendulum.datetime(2026, 11, 16, 6, tz="Europe/Stockholm")
    context: dict[str, Any] = {"run_id": "deleted", "data_interval_start": start, "data_interval_end": start.add(days=1)}
    with run_simulator() as sim:
        monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
            "conn_type": "inexchange", "host": sim.base_url, "password": sim.api_key, "extra": {"erp_id": "d"}}))
        pipeline.extract(context, erp_conn_id="erp_default", reporting_conn_id="erp_default")
        pipeline.validate(context, erp_conn_id="erp_default", reporting_conn_id="erp_default")
        with engine.begin() as conn:
            victim = conn.execute(text("SELECT customer_id, customer_number FROM inexchange_dispatch "
                                       "WHERE state = 'ready' ORDER BY invoice_id")).first()
            conn.execute(text("PRAGMA foreign_keys = OFF"))
            conn.execute(text("DELETE FROM customer WHERE customer_id = :id"), {"id": victim.customer_id})
        counts = SubmitInvoicesOperator(task_id="submit", erp_conn_id="erp_default", reporting_conn_id="erp_default",
                                        seller=SELLER).execute(context)
        sends = sim.stats()["sends"]
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            "SELECT state, message, erp_document_id FROM inexchange_dispatch WHERE customer_id = :id"),
            {"id": victim.customer_id})]
    assert rows and counts["rejected"] >= len(rows) and counts["sent"] > 0
    for row in rows:
        assert row["state"] == "rejected"
        assert f"kunden {victim.customer_number} " in row["message"] and "finns inte längre i ERP" in row["message"]
        assert row["erp_document_id"] not in sends
