"""A document that breaks a Peppol rule at InExchange ends with a person, through the whole DAG.

The simulator runs stand-in Peppol rules (``dispatch_testing.peppol_rules.stand_in_rules``) that flag
one invoice the pipeline's own validation lets through: InExchange accepts its upload and its send,
then the document ends ``Error`` with the rule in ``error.message``. A ``dag.test()`` run of the day
(the e2e fixtures, on SQLite and PostgreSQL) must then leave that invoice in the state the pipeline
maps ``Error`` to, with the rule's id and text in its message in the ledger, in the report table and
in the report task's list of invoices that need a person; every other invoice is sent once, and a
second run of the day sends nothing again.

The same through the official rules (release 3.0.19) at the simulator: the builder's document of one
invoice loses its buyer and order references and gets a wrong amount due (the pipeline's own
validation reads the ERP, not the document, and ``check_peppol`` stays off), so InExchange's check,
not the client's, stops it with the rules' own ids and texts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatch_testing.peppol_rules import (
    BROKEN_DOCUMENT_FAILURES,
    break_official_rules,
    official_rules_folder_or_none,
    stand_in_rules,
)
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
def simulator(request: pytest.FixtureRequest, flagged: str, tmp_path: Path) -> Iterator[Any]:
    """A simulator whose Peppol rules stop ``flagged`` (fatal) and warn about every document; no other
    document ends Stopped or Error. With the indirect parameter ``"official"``, the official rules
    (release 3.0.19) instead: skipped without them, failed when ``INEXCHANGE_REQUIRE_PEPPOL=1``."""
    from inexchange_devkit.simulator.testing import run_simulator

    if getattr(request, "param", None) == "official":
        rules = official_rules_folder_or_none()
        if rules is None:
            pytest.skip("the official Peppol rules or saxonche are missing (INEXCHANGE_REQUIRE_PEPPOL=1 fails instead)")
    else:
        rules = stand_in_rules(tmp_path / "sim-rules", fatal_for=flagged, rule=RULE)
    with run_simulator(seed=5, status_step_ms=300, stop_rate=0.0, error_rate=0.0, api_key="e2e-key",
                       peppol_rules=rules) as sim:
        yield sim


def assert_reported_for_a_person(
    engine: Any, dag_run: Any, flagged: str, row: dict[str, Any], failed_state: str, texts: list[str]
) -> dict[str, Any]:
    """The invoice ``flagged`` is in the report table as in the ledger (``row``), and in the report task's
    list of the invoices that need a person with a message holding every one of ``texts``; return that
    list (invoice number -> entry)."""
    reported = {str(r["invoice_number"]): r for r in _rows(engine, "SELECT * FROM inexchange_report")}
    assert (reported[flagged]["state"], reported[flagged]["message"]) == (failed_state, row["message"])

    report_ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "report")
    needs_person = report_ti.xcom_pull(task_ids="report", key="needs_person")
    listed = {entry["invoice_number"]: entry for entry in needs_person["invoices"]}
    assert flagged in listed, needs_person
    assert listed[flagged]["state"] == failed_state
    assert all(text in listed[flagged]["message"] for text in texts), listed[flagged]["message"]
    assert flagged in report_ti.xcom_pull(task_ids="report")["action_needed"]
    return listed


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

    listed = assert_reported_for_a_person(erp.engine, dag_run, flagged, row, failed_state, [RULE, rule_text])

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


@pytest.fixture
def broken_builds(flagged: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The builder the submit task calls (``inexchange.ubl.build_from_batch``) breaks the official rules in
    ``flagged``'s document only (:func:`dispatch_testing.peppol_rules.break_official_rules`); the list
    gets the invoice number of each document it broke."""
    from lxml import etree

    import inexchange.ubl as ubl

    build = ubl.build_from_batch
    broken: list[str] = []

    def building(batch: Any, invoice_id: int, seller: Any) -> bytes:
        document = build(batch, invoice_id, seller)
        if etree.fromstring(document).findtext(f"{{{ubl.NS_CBC}}}ID") != flagged:
            return document
        broken.append(flagged)
        return break_official_rules(document)

    monkeypatch.setattr(ubl, "build_from_batch", building)
    return broken


@pytest.mark.parametrize("simulator", ["official"], indirect=True)
def test_a_document_that_breaks_the_official_rules_ends_with_a_person(
        dispatch_dag: Any, erp: Erp, simulator: Any, flagged: str, broken_builds: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    monkeypatch.delenv("AIRFLOW__INEXCHANGE__PEPPOL_RULES", raising=False)  # the client has no rules to check with
    dag_run = _run(dispatch_dag)

    assert dag_run.state == "success"
    assert dag_run.conf.get("check_peppol", False) is False and dispatch_dag.params["check_peppol"] is False
    assert broken_builds == [flagged]
    failed_state = ledger_state_for("Error").value
    ledger = {str(r["invoice_number"]): r for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    row = ledger[flagged]
    stats = simulator.stats()
    described = [f"{rule}: {text}" for rule, text in BROKEN_DOCUMENT_FAILURES]

    # at InExchange: accepted and sent once, then Error with the official rules' ids and texts in error.message
    assert stats["sends"].get(row["erp_document_id"]) == 1
    assert stats["peppol_errors"] == [row["erp_document_id"]], stats["peppol_errors"]
    assert stats["peppol"]["checked"] >= len(stats["sends"]) and stats["peppol"]["failed"] == 1, stats["peppol"]
    with httpx.Client(base_url=simulator.base_url) as client:
        token = client.post("clientTokens/create", headers={"APIKey": simulator.api_key},
                            json={"erpId": "e2e-erp"}).json()["token"]
        at_sim = client.post(f"invoices/outbound/byerpid/{row['erp_document_id']}", headers={"ClientToken": token},
                             json={"includeFileInfo": False}).json()
    assert at_sim["currentStatus"]["status"] == "Error", at_sim["currentStatus"]
    error = at_sim["error"]
    assert all(text in error["message"] for text in described), error["message"]

    # in the ledger: the state Error maps to, with InExchange's error (the rules' ids and texts) as its message
    assert (row["state"], row["inexchange_status"]) == (failed_state, "Error"), row
    assert row["inexchange_document_id"] == at_sim["id"]
    assert row["message"] == f"{error['status']}: {error['message']}", row["message"]
    assert all(text in row["message"] for text in described), row["message"]

    listed = assert_reported_for_a_person(erp.engine, dag_run, flagged, row, failed_state, described)

    # every other invoice that passed the validation was sent once and delivered (its document passed
    # the official rules at InExchange); none needs a person
    others = {n: r for n, r in ledger.items() if n != flagged and r["state"] != "rejected"}
    assert len(others) >= 4
    assert {r["state"] for r in others.values()} == {"sent"}, {n: (r["state"], r["message"]) for n, r in others.items()}
    assert {r["erp_document_id"] for r in others.values()} | {row["erp_document_id"]} == set(stats["sends"])
    assert set(stats["sends"].values()) == {1} and not stats["duplicates"]
    assert set(listed) <= {n for n, r in ledger.items() if r["state"] == "rejected"} | {flagged}

    # a second run of the day sends nothing again and builds no document anew
    assert _run(dispatch_dag).state == "success"
    assert simulator.stats()["sends"] == stats["sends"] and broken_builds == [flagged]
    again = {str(r["invoice_number"]): r for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    assert (again[flagged]["state"], again[flagged]["message"]) == (failed_state, row["message"])
