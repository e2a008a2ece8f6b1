"""Buyers' invoice checks end to end: a real ``dag.test()`` run against the simulator over loopback.

The simulator's parties demand references on every invoice (InExchange's invoice checks:
``buyerReferenceNo``, ``buyerReferenceName``, ``buyerOrderNo``, ``buyerName``) and stop a document
that lacks one, as InExchange does. Each buyer here has one kind of check (one has them all) and two
invoices: the one that lacks the reference is rejected before anything of it is uploaded, with a
message naming the check and the ERP field to fill, and the simulator never sees it; the one that has
it is sent once. Once the ERP is fixed, a rerun of the day (what Clear or a backfill does) sends the
rejected ones, and a manual run listing one sends it; a run with ``let_inexchange_choose`` (no
delivery type) checks the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from dispatch_testing.erp_rows import customer_row, invoice_rows
from dispatch_testing.support import SELLER, bound, erp_database
from sqlalchemy import text
from sqlalchemy.engine import Engine
from stdnum import luhn
from test_dispatch_e2e import RUN_DAY, Erp, _rows, dispatch_dag  # noqa: F401

from inexchange import vat

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ALL = ("buyerReferenceNo", "buyerReferenceName", "buyerOrderNo", "buyerName")


def org_number(n: int) -> str:
    """A valid org number of a legal entity (third digit 6, Luhn check digit), written 556600-NNNC."""
    base = f"55660{n:04d}"
    return f"{base[:6]}-{base[6:]}{luhn.calc_check_digit(base)}"


#: customer number -> (ERP name, the checks its party demands, the party's name at InExchange)
BUYERS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "2001": ("Referens AB", ("buyerReferenceNo",), "Referens AB"),
    "2002": ("Referensperson AB", ("buyerReferenceName",), "Referensperson AB"),
    "2003": ("Ordernummer AB", ("buyerOrderNo",), "Ordernummer AB"),
    "2004": ("Kvarnen Fastigheter AB", ("buyerName",), "Fastighets AB Kvarnen"),
    "2005": ("Namnet Stämmer AB", ("buyerName",), "Namnet Stämmer AB"),
    "2006": ("Alla Kontroller AB", ALL, "Alla Kontroller Aktiebolag"),
    "2007": ("Inga Kontroller AB", (), "Inga Kontroller AB"),
}
#: invoice number -> (customer number, Er referens, ordernummer); the customers' Märkning below
INVOICES: dict[str, tuple[str, str | None, str | None]] = {
    "30001": ("2001", None, None),  # no buyer reference
    "30002": ("2001", "Eva Lind", None),
    "30003": ("2002", None, None),  # the customer's Märkning is no reference person
    "30004": ("2002", "Per Holm", None),
    "30005": ("2003", "Eva Lind", None),  # no order number
    "30006": ("2003", "Eva Lind", "PO-7781"),
    "30007": ("2004", "Eva Lind", "PO-1"),  # the name is not InExchange's
    "30008": ("2005", "Eva Lind", None),
    "30009": ("2006", None, None),  # fails all four
    "30010": ("2007", None, None),  # no checks: sent as it is
}
MARKING = {"2002": "Projekt 7"}
#: what each refused invoice's message says, in full
REFUSED = {
    "30001": "Faktura 30001: Kunden kräver köparens referens (Märkning eller Er referens) på varje faktura; "
             "fyll i Märkning på kund 2001 eller Er referens på faktura 30001",
    "30003": "Faktura 30003: Kunden kräver referensperson (Er referens) på varje faktura; "
             "fyll i Er referens på faktura 30003",
    "30005": "Faktura 30005: Kunden kräver ordernummer på varje faktura; fyll i ordernummer på faktura 30005",
    "30007": 'Faktura 30007: Kunden kräver köparens namn exakt som InExchange har det, "Fastighets AB Kvarnen" '
             'på varje faktura; ändra namnet på kund 2004 i ERP från "Kvarnen Fastigheter AB" till '
             '"Fastighets AB Kvarnen" så att det stämmer med InExchange',
    "30009": "Faktura 30009: Kunden kräver köparens referens (Märkning eller Er referens), referensperson "
             '(Er referens), ordernummer och köparens namn exakt som InExchange har det, "Alla Kontroller '
             'Aktiebolag" på varje faktura; fyll i Er referens på faktura 30009, fyll i ordernummer på faktura '
             '30009 och ändra namnet på kund 2006 i ERP från "Alla Kontroller AB" till "Alla Kontroller '
             'Aktiebolag" så att det stämmer med InExchange',
}
#: the ERP fixes a person makes after reading those messages
FIXES = [
    ("UPDATE customer_invoice SET your_reference = 'Anna Berg' WHERE invoice_number IN ('30001', '30003')", {}),
    ("UPDATE customer_invoice SET order_number = 'PO-9' WHERE invoice_number = '30005'", {}),
    ("UPDATE customer SET name = :name WHERE customer_number = '2004'", {"name": "Fastighets AB Kvarnen"}),
]
FIX_ALL_CHECKS = [
    ("UPDATE customer_invoice SET your_reference = 'Anna Berg', order_number = 'PO-10' "
     "WHERE invoice_number = '30009'", {}),
    ("UPDATE customer SET name = :name WHERE customer_number = '2006'", {"name": "Alla Kontroller Aktiebolag"}),
]


def write_erp(engine: Engine) -> None:
    """The buyers and their invoices, all dated the run day, in the contract's tables."""
    from inexchange_devkit.erpgen.generator import create_tables, insert_statement

    create_tables(engine)
    rows: list[tuple[str, dict[str, Any]]] = []
    for index, (number, (name, _, _)) in enumerate(BUYERS.items()):
        org = org_number(index + 1)
        digits = org.replace("-", "")
        rows.append(("customer", customer_row(
            customer_id=int(number), customer_number=number, name=name, org_number=org, vat_number=f"SE{digits}01",
            marking=MARKING.get(number), invoice_email=f"faktura@{number}.example") | {"peppol_id": None}))
    for index, (number, (customer, reference, order)) in enumerate(INVOICES.items()):
        header, lines = invoice_rows(
            invoice_id=index + 1, customer_id=int(customer), invoice_number=number, invoice_date=RUN_DAY,
            due_date=RUN_DAY + timedelta(days=30), your_reference=reference, order_number=order)
        rows.append(("customer_invoice", header))
        rows.extend(("customer_invoice_line", line | dict.fromkeys(vat.LINE_COLUMNS)) for line in lines)
    with engine.begin() as conn:
        inserts = {table: insert_statement(conn, table) for table in ("customer", "customer_invoice",
                                                                      "customer_invoice_line")}
        for table, row in rows:
            conn.execute(inserts[table], {key: bound(value) for key, value in row.items()})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def erp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Erp]:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    engine, conn_env = erp_database(request.param, tmp_path, schema)
    write_erp(engine)
    yield Erp(engine, conn_env, None)
    engine.dispose()


@pytest.fixture
def simulator() -> Iterator[Any]:
    """The simulator with a party per buyer, demanding the buyer's checks (every document ends delivered
    unless a check stops it)."""
    from inexchange_devkit.simulator.testing import run_simulator

    with run_simulator(seed=5, status_step_ms=200, stop_rate=0.0, error_rate=0.0, api_key="checks-key") as sim:
        parties = []
        for index, (_, (_, checks, party_name)) in enumerate(BUYERS.items()):
            party: dict[str, Any] = {"orgNo": org_number(index + 1).replace("-", ""), "name": party_name}
            if checks:
                party["invoiceChecks"] = {check: check in checks for check in ALL}
            parties.append(party)
        sim.register_parties(parties)
        yield sim


def run(dag: Any, day: Any = RUN_DAY, **conf: Any) -> Any:
    """Run the interval of invoice date ``day``; the run must end green (the report does not fail it)."""
    run_after = pendulum.datetime(day.year, day.month, day.day, 6, tz="Europe/Stockholm").add(days=1)
    # every manual param is given: dag.test() keeps an earlier call's conf in a reused DAG object
    conf = {"fail_on_action_needed": False, "batch_size": 4, "dry_run": False, "check_peppol": False,
            "retry_rejected": True, "invoice_numbers": [], "delivery_timeout_minutes": 360, "deferrable": True,
            **conf}
    dag_run = dag.test(logical_date=run_after, run_conf=conf)
    assert dag_run.state == "success"
    return dag_run


def ledger(erp: Erp) -> dict[str, dict[str, Any]]:
    return {str(r["invoice_number"]): r for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}


def fix(erp: Erp, statements: list[tuple[str, dict[str, Any]]]) -> None:
    with erp.engine.begin() as conn:
        for sql, params in statements:
            conn.execute(text(sql), params)


def test_each_check_refuses_the_invoice_that_lacks_its_reference_before_upload(
        dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    from inexchange.ui.queries import parse_filter, report_page

    run(dispatch_dag)

    rows = ledger(erp)
    assert set(rows) == set(INVOICES)
    stats = simulator.stats()
    sends = stats["sends"]
    for number, row in rows.items():
        if number in REFUSED:
            assert row["state"] == "rejected", (number, row["state"], row["message"])
            assert row["message"] == REFUSED[number]
            assert row["erp_document_id"] not in sends, f"refused invoice {number} reached InExchange"
            assert not row["inexchange_document_id"] and not row["attempts"], row
        else:
            assert row["state"] == "sent", (number, row["state"], row["message"])
            assert sends.get(row["erp_document_id"]) == 1, number
            assert row["delivery_method"] == "Electronic"
    # nothing of a refused invoice was even uploaded, and InExchange had nothing to stop
    assert stats["documents_uploaded"] == len(sends) == len(INVOICES) - len(REFUSED)
    assert stats["invoice_check_stops"] == [] and not stats["duplicates"]
    assert set(stats["statuses"]) == {"Delivered"}
    # the history: claimed, then refused by the submit task
    history = _rows(erp.engine, "SELECT invoice_id, from_state, to_state, source FROM inexchange_dispatch_history")
    for number in REFUSED:
        changes = {(h["from_state"], h["to_state"], h["source"]) for h in history
                   if h["invoice_id"] == rows[number]["invoice_id"]}
        assert {("ready", "submitting", "submit"), ("submitting", "rejected", "submit")} <= changes, (number, changes)

    # the report and the page show them like any other rejection
    report = {str(r["invoice_number"]): r for r in _rows(erp.engine, "SELECT * FROM inexchange_report")}
    assert {n: (r["state"], r["message"]) for n, r in report.items() if n in REFUSED} == {
        n: ("rejected", m) for n, m in REFUSED.items()}
    page = report_page(erp.engine, parse_filter(date_from="", date_to="", state="rejected", customer="", page=1))
    assert {str(r["invoice_number"]): r["message"] for r in page.rows} == REFUSED
    assert all(r["needs_person"] for r in page.rows)
    attention = report_page(erp.engine, parse_filter(date_from="", date_to="", state="", customer="", page=1))
    assert {str(r["invoice_number"]) for r in attention.rows} == set(REFUSED)


def test_an_invoice_fixed_in_the_erp_is_sent_by_the_next_run(dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    run(dispatch_dag)
    first = ledger(erp)
    sent_before = simulator.stats()["sends"]
    assert {n for n, r in first.items() if r["state"] == "rejected"} == set(REFUSED)

    fix(erp, FIXES)
    run(dispatch_dag)  # the day again, as Clear or a backfill runs it: rejected invoices are checked again

    second = ledger(erp)
    sends = simulator.stats()["sends"]
    fixed = {"30001", "30003", "30005", "30007"}
    for number in fixed:
        assert second[number]["state"] == "sent", (number, second[number]["message"])
        assert sends[second[number]["erp_document_id"]] == 1
    assert second["30009"]["state"] == "rejected" and second["30009"]["message"] == REFUSED["30009"]
    assert {k: v for k, v in sends.items() if k in sent_before} == sent_before, "nothing sent twice"
    assert len(sends) == len(sent_before) + len(fixed)

    fix(erp, FIX_ALL_CHECKS)
    # a manual run listing the invoice sends it, whatever day the run owns
    run(dispatch_dag, RUN_DAY + timedelta(days=10), invoice_numbers=["30009"])

    last = ledger(erp)
    sends = simulator.stats()["sends"]
    assert last["30009"]["state"] == "sent" and sends[last["30009"]["erp_document_id"]] == 1
    assert set(sends.values()) == {1} and len(sends) == len(INVOICES)
    assert {r["state"] for r in last.values()} == {"sent"}
    assert simulator.stats()["invoice_check_stops"] == []


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
def test_with_the_delivery_left_to_inexchange_the_checks_still_apply(
        erp: Erp, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange import pipeline
    from inexchange.operators.scope import run_scope
    from inexchange.operators.submit import SubmitInvoicesOperator

    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", erp.conn_env)
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": simulator.base_url, "password": simulator.api_key,
        "extra": {"erp_id": "checks-auto"}}))
    start = pendulum.datetime(RUN_DAY.year, RUN_DAY.month, RUN_DAY.day, 6, tz="Europe/Stockholm")
    context = {"run_id": "auto", "data_interval_start": start, "data_interval_end": start.add(days=1)}
    pipeline.extract(run_scope(context), erp_conn_id="erp_default", reporting_conn_id="erp_default")
    assert pipeline.validate(run_scope(context), erp_conn_id="erp_default",
                             reporting_conn_id="erp_default")["ready"] == len(INVOICES)

    result = SubmitInvoicesOperator(task_id="submit", erp_conn_id="erp_default", reporting_conn_id="erp_default",
                                    seller=SELLER, let_inexchange_choose=True).execute(context)

    assert result["rejected"] == len(REFUSED) and result["sent"] == len(INVOICES) - len(REFUSED)
    rows = ledger(erp)
    sends = simulator.stats()["sends"]
    assert {n: r["message"] for n, r in rows.items() if r["state"] == "rejected"} == REFUSED
    assert all(r["erp_document_id"] not in sends for n, r in rows.items() if n in REFUSED)
    assert {r["delivery_method"] for n, r in rows.items() if n not in REFUSED} == {"Auto"}
    assert set(sends.values()) == {1} and len(sends) == len(INVOICES) - len(REFUSED)
    assert simulator.stats()["invoice_check_stops"] == []
