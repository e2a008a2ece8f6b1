"""A document that breaks a Peppol rule at InExchange ends with a person, through the whole DAG.

The simulator runs stand-in Peppol rules (``dispatch_testing.peppol_rules.stand_in_rules``) that flag
one invoice the pipeline's own validation lets through: InExchange accepts its upload and its send,
then the document ends ``Error`` with the rule in ``error.message``. A ``dag.test()`` run of the day
(the e2e fixtures, on SQLite and PostgreSQL) must then leave that invoice in the state the pipeline
maps ``Error`` to, with the rule's id and text in its message in the ledger, in the report table and
in the report task's list of invoices that need a person; every other invoice is sent once, and a
second run of the day sends nothing again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatch_testing.peppol_rules import stand_in_rules
from inexchange.states import ledger_state_for
from test_dispatch_e2e import RUN_DAY, Erp, _day, _rows, _run, dispatch_dag, erp  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

RULE = "TEST-R001"


def passing_invoice(erp: Erp) -> str:
    """The first invoice number of the run day that the pipeline's validation lets through (posted,
    billed through InExchange, neither of a bad customer nor defective)."""
    bad_customers = {n for numbers in erp.summary.bad_customers.values() for n in numbers}
    defective = {n for numbers in erp.summary.defective_invoices.values() for n in numbers}
    rows = _rows(erp.engine, """
        SELECT i.invoice_number, i.status, i.invoice_date, c.customer_number, c.billing_method
          FROM customer_invoice i JOIN customer c ON c.customer_id = i.customer_id""")
    candidates = sorted(
        str(r["invoice_number"]) for r in rows
        if r["status"] == "posted" and r["billing_method"] == "InExchange utskrift (API)"
        and _day(r["invoice_date"]) == RUN_DAY and str(r["customer_number"]) not in bad_customers
        and str(r["invoice_number"]) not in defective
    )
    assert len(candidates) >= 5, "the run day should hold invoices that pass the validation"
    return candidates[0]


@pytest.fixture
def flagged(erp: Erp) -> str:
    """The invoice the simulator's rules stop."""
    return passing_invoice(erp)


@pytest.fixture
def simulator(flagged: str, tmp_path: Path) -> Iterator[Any]:
    """A simulator whose Peppol rules stop ``flagged`` (fatal) and warn about every document; no other
    document ends Stopped or Error."""
    from inexchange_devkit.simulator.testing import run_simulator

    rules = stand_in_rules(tmp_path / "sim-rules", fatal_for=flagged, rule=RULE)
    with run_simulator(seed=5, status_step_ms=300, stop_rate=0.0, error_rate=0.0, api_key="e2e-key",
                       peppol_rules=rules) as sim:
        yield sim


def test_a_document_inexchange_stops_on_a_peppol_rule_ends_with_a_person(
        dispatch_dag: Any, erp: Erp, simulator: Any, flagged: str) -> None:
    dag_run = _run(dispatch_dag)

    assert dag_run.state == "success"
    failed_state = ledger_state_for("Error").value
    ledger = {str(r["invoice_number"]): r for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    row = ledger[flagged]
    stats = simulator.stats()
    rule_text = f"[{RULE}]-Testregeln stoppar dokument {flagged}"

    # at InExchange: accepted, sent once, then Error with the rule in error.message
    assert stats["sends"].get(row["erp_document_id"]) == 1
    assert stats["peppol_errors"] == [row["erp_document_id"]], stats["peppol_errors"]
    assert stats["peppol"]["checked"] >= len(stats["sends"])

    # in the ledger: the state Error maps to, InExchange's status and the rule's id and text
    assert (row["state"], row["inexchange_status"]) == (failed_state, "Error"), row
    assert row["inexchange_document_id"]
    assert f"{RULE}: {rule_text}" in row["message"], row["message"]
    assert row["message"].startswith("ValidationFailed: "), row["message"]

    # in the report table
    reported = {str(r["invoice_number"]): r for r in _rows(erp.engine, "SELECT * FROM inexchange_report")}
    assert (reported[flagged]["state"], reported[flagged]["message"]) == (failed_state, row["message"])

    # in the report task's list of the invoices that need a person
    report_ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "report")
    needs_person = report_ti.xcom_pull(task_ids="report", key="needs_person")
    listed = {entry["invoice_number"]: entry for entry in needs_person["invoices"]}
    assert flagged in listed, needs_person
    assert listed[flagged]["state"] == failed_state and RULE in listed[flagged]["message"]
    assert rule_text in listed[flagged]["message"]
    assert flagged in report_ti.xcom_pull(task_ids="report")["action_needed"]

    # every other invoice that passed the validation was sent once and delivered; none needs a person
    others = {n: r for n, r in ledger.items() if n != flagged and r["state"] != "rejected"}
    assert len(others) >= 4
    assert {r["state"] for r in others.values()} == {"sent"}, {n: r["state"] for n, r in others.items()}
    assert {r["erp_document_id"] for r in others.values()} | {row["erp_document_id"]} == set(stats["sends"])
    assert set(stats["sends"].values()) == {1} and not stats["duplicates"]
    assert set(listed) <= {n for n, r in ledger.items() if r["state"] == "rejected"} | {flagged}

    # a second run of the day sends nothing again: InExchange has the document, a person must act
    assert _run(dispatch_dag).state == "success"
    assert simulator.stats()["sends"] == stats["sends"]
    again = {str(r["invoice_number"]): r for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    assert (again[flagged]["state"], again[flagged]["message"]) == (failed_state, row["message"])
