"""End to end: a real ``dag.test()`` run from the ERP through the simulator into the report.

Runs on the embedded default (SQLite files) and on the PostgreSQL server, each checked per invoice:
the interval's posted InExchange invoices end sent, stopped or failed exactly as the simulator
decided (or rejected when the generator made them bad), nothing else is touched, no invoice reaches
InExchange twice, and a second run of the same interval sends nothing new.

Airflow runs as a generated ``airflow.cfg`` leaves it (``[operators] default_deferrable`` False); the
ledger is in the ERP's database through its own connection ``inexchange_reporting`` (the ERP's
connection is opened read-only).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pendulum
import pytest
from dispatch_testing.peppol_rules import official_rules_folder_or_none
from dispatch_testing.support import SELLER, erp_database
from sqlalchemy import text
from sqlalchemy.engine import Engine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
START = date(2026, 11, 16)
RUN_DAY = date(2026, 11, 17)
#: what the rejection message says for each kind of bad customer the generator plants
CUSTOMER_PROBLEM = {
    "missing_org_number": "organisationsnummer saknas",
    "invalid_org_number": "är ogiltigt",
    "missing_vat_number": "VAT-nummer saknas",
    "vat_org_mismatch": "matchar inte organisationsnumret",
    "invalid_gln": "GLN-nummer",
    "inactive": "kunden är inaktiv",
    "marking_too_long": "Märkning är för lång",
    "marking_control_character": "Märkning innehåller styrtecken",
}
#: ... and for each kind of defective invoice
INVOICE_PROBLEM = {
    "total_mismatch": "totalbelopp",
    "line_amount_mismatch": "radbelopp stämmer inte",
    "due_before_invoice": "är före fakturadatum",
}
#: ERP fixes a person would make for a rejected customer, as bound-parameter UPDATEs
FIXES = {
    "missing_vat_number": "UPDATE customer SET vat_number = :vat WHERE customer_number = :number",
    "vat_org_mismatch": "UPDATE customer SET vat_number = :vat WHERE customer_number = :number",
    "inactive": "UPDATE customer SET is_active = TRUE WHERE customer_number = :number",
    "invalid_gln": "UPDATE customer SET gln = NULL WHERE customer_number = :number",
    "marking_too_long": "UPDATE customer SET marking = 'Projekt 1' WHERE customer_number = :number",
    "marking_control_character": "UPDATE customer SET marking = 'Projekt 1' WHERE customer_number = :number",
}
SIM_TO_LEDGER = {"Delivered": "sent", "Sent": "sent", "Stopped": "stopped", "Error": "failed"}


@dataclass
class Erp:
    engine: Engine
    conn_env: str
    summary: Any


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def erp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Erp]:
    from inexchange_devkit.erpgen import generate

    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    engine, conn_env = erp_database(request.param, tmp_path, schema)
    summary = generate(engine, seed=11, customers=40, invoices=90, start_date=START, days=3, drafts=9)
    yield Erp(engine, conn_env, summary)
    engine.dispose()


@pytest.fixture
def simulator() -> Iterator[Any]:
    from inexchange_devkit.simulator.testing import run_simulator

    # the official Peppol rules at "InExchange" too (when the artefacts are here): a document the
    # pipeline makes that breaks one would end Error, which the checks below do not expect
    with run_simulator(seed=5, status_step_ms=300, stop_rate=0.1, error_rate=0.05, api_key="e2e-key",
                       peppol_rules=official_rules_folder_or_none()) as sim:
        yield sim


@pytest.fixture
def dispatch_dag(airflow_db: Path, erp: Erp, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    import json

    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", erp.conn_env)
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", erp.conn_env)  # writable: the ledger beside the ERP
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")  # as a generated airflow.cfg has it
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": simulator.base_url, "password": simulator.api_key,
        "extra": {"erp_id": "e2e-erp"},
    }))
    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_SELLER", json.dumps(SELLER))
    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_POLL_INTERVAL", "0.5")
    spec = importlib.util.spec_from_file_location("inexchange_dispatch_dag", ROOT / "dags" / "inexchange_dispatch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.inexchange_dispatch()


def _run(dag: Any, **test_args: Any) -> Any:
    run_after = pendulum.datetime(RUN_DAY.year, RUN_DAY.month, RUN_DAY.day, 6, tz="Europe/Stockholm").add(days=1)
    # small batches, so that several mapped submit tasks share the day's invoices
    return dag.test(logical_date=run_after, run_conf={"fail_on_action_needed": False, "batch_size": 7}, **test_args)


def _rows(engine: Engine, sql: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql))]


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def test_dispatch_run_end_to_end(dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    _check_day_sent_once(dispatch_dag, erp, simulator)


#: reply variants of the simulator: the fields the client does not use null or missing, of another
#: type, joined by unknown fields, or each of these drawn per reply (the documented shapes are the default)
REPLY_VARIANTS = ["sparse", "loose", "extra", "mixed"]


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
@pytest.mark.parametrize("variant", REPLY_VARIANTS)
def test_every_valid_invoice_sent_once_in_each_reply_variant(
        variant: str, dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    simulator.configure(reply_variant=variant)
    _check_day_sent_once(dispatch_dag, erp, simulator)
    assert set(simulator.stats()["reply_variants"]) - {"documented"}, "the variant should have shaped replies"


def _check_day_sent_once(dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    """One day's run: each valid invoice reaches InExchange once and ends as InExchange says; a rerun sends nothing."""
    dag_run = _run(dispatch_dag)
    assert dag_run.state == "success"
    instances = dag_run.get_task_instances()
    assert {ti.task_id: ti.state for ti in instances} == {
        "preflight": "success", "recheck_waiting": "success", "extract": "success", "validate": "success",
        "plan_batches": "success",
        "submit": "success",
        "await_delivery": "success", "report": "success", "watcher": "skipped",
    }
    batches = sorted(ti.map_index for ti in instances if ti.task_id == "submit")
    assert len(batches) >= 2 and batches == list(range(len(batches)))
    assert all(ti.state == "success" for ti in instances if ti.task_id != "watcher")

    invoices = _rows(erp.engine, """
        SELECT i.invoice_id, i.invoice_number, i.status, i.invoice_date, c.customer_number, c.billing_method
          FROM customer_invoice i JOIN customer c ON c.customer_id = i.customer_id""")
    ledger = {r["invoice_id"]: r for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    report = {r["invoice_id"]: r for r in _rows(erp.engine, "SELECT * FROM inexchange_report")}
    stats = simulator.stats()
    sends = stats["sends"]
    bad_customers = {n: kind for kind, numbers in erp.summary.bad_customers.items() for n in numbers}
    defective = {n: kind for kind, numbers in erp.summary.defective_invoices.items() for n in numbers}
    assert set(erp.summary.bad_customers) == set(CUSTOMER_PROBLEM)
    assert set(erp.summary.defective_invoices) == set(INVOICE_PROBLEM)

    expected_in_scope = [
        i for i in invoices
        if i["status"] == "posted" and i["billing_method"] == "InExchange utskrift (API)" and _day(i["invoice_date"]) == RUN_DAY
    ]
    assert len(expected_in_scope) >= 15, "the generator should give the run day enough invoices"
    assert set(ledger) == {i["invoice_id"] for i in expected_in_scope}, "only the day's posted InExchange invoices"
    assert set(report) == set(ledger)

    outcomes: dict[str, int] = {}
    with httpx.Client(base_url=simulator.base_url) as client:
        token = client.post("clientTokens/create", headers={"APIKey": simulator.api_key},
                            json={"erpId": "e2e-erp"}).json()["token"]
        for invoice in expected_in_scope:
            row = ledger[invoice["invoice_id"]]
            number, customer = str(invoice["invoice_number"]), str(invoice["customer_number"])
            if customer in bad_customers or number in defective:
                assert row["state"] == "rejected", number
                if customer in bad_customers:
                    assert row["message"].startswith(f"Kund {customer} "), row["message"]
                    assert CUSTOMER_PROBLEM[bad_customers[customer]] in row["message"], row["message"]
                if number in defective:
                    assert f"Faktura {number}: " in row["message"], row["message"]
                    assert INVOICE_PROBLEM[defective[number]] in row["message"], row["message"]
                outcomes["rejected"] = outcomes.get("rejected", 0) + 1
                assert row["erp_document_id"] not in sends, f"rejected invoice {number} reached InExchange"
                continue
            assert sends.get(row["erp_document_id"]) == 1, f"invoice {number} sent {sends.get(row['erp_document_id'])} times"
            at_sim = client.post(f"invoices/outbound/byerpid/{row['erp_document_id']}", headers={"ClientToken": token},
                                 json={"includeFileInfo": False}).json()
            status = at_sim["currentStatus"]["status"]
            assert row["inexchange_document_id"] == at_sim["id"]
            assert row["inexchange_status"] == status
            assert row["state"] == SIM_TO_LEDGER[status], (number, status)
            if row["state"] in ("stopped", "failed"):
                assert row["message"] == f"{at_sim['error']['status']}: {at_sim['error']['message']}"
            outcomes[row["state"]] = outcomes.get(row["state"], 0) + 1
    assert outcomes.get("sent", 0) >= 5
    assert outcomes.get("rejected", 0) >= 3, "the run day should hold bad customers' invoices"
    assert not stats["duplicates"]
    assert len(sends) == sum(1 for r in ledger.values() if r["state"] != "rejected")
    if stats["peppol"] is not None:  # every document the pipeline made passed the official rules
        broke = set(stats["peppol_errors"])
        assert not broke, [(r["invoice_number"], r["message"]) for r in ledger.values() if r["erp_document_id"] in broke]
        assert stats["peppol"]["checked"] >= len(sends), stats["peppol"]

    # every change is in the history, starting from pending
    history = _rows(erp.engine, "SELECT invoice_id, to_state, source FROM inexchange_dispatch_history")
    for invoice_id, row in ledger.items():
        states = [h["to_state"] for h in history if h["invoice_id"] == invoice_id]
        assert states[0] == "pending" and states[-1] == row["state"], (invoice_id, states)

    # a second run of the same interval sends nothing new and changes no outcome
    second = _run(dispatch_dag)
    assert second.state == "success"
    assert simulator.stats()["sends"] == sends
    after = {r["invoice_id"]: r for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    assert {k: (v["state"], v["inexchange_document_id"]) for k, v in after.items()} == {
        k: (v["state"], v["inexchange_document_id"]) for k, v in ledger.items()
    }


@pytest.fixture
def inline_triggers(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The triggers ``dag.test()`` runs in line (one per deferral of a task), in order."""
    from airflow.sdk.definitions import dag as dag_module

    seen: list[Any] = []
    run_inline = dag_module._run_inline_trigger

    def recording(trigger: Any, task_sdk_ti: Any) -> Any:
        seen.append(trigger)
        return run_inline(trigger, task_sdk_ti)

    monkeypatch.setattr(dag_module, "_run_inline_trigger", recording)
    return seen


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
def test_the_sensor_defers_although_default_deferrable_is_off(
        dispatch_dag: Any, erp: Erp, simulator: Any, inline_triggers: list[Any]) -> None:
    """The DAG asks for deferral itself: a generated airflow.cfg (default_deferrable False) changes nothing."""
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.sdk import conf
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    from inexchange.triggers.delivery import DeliveryStatusTrigger

    assert conf.getboolean("operators", "default_deferrable") is False
    simulator.configure(status_step_ms=2000)  # the sensor's first poll finds the documents still pending

    dag_run = _run(dispatch_dag)

    assert dag_run.state == "success"
    assert any(isinstance(trigger, DeliveryStatusTrigger) for trigger in inline_triggers)
    sensor = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "await_delivery")
    with create_session() as session:
        reschedules = session.scalar(select(func.count()).select_from(TaskReschedule)
                                     .where(TaskReschedule.ti_id == sensor.id))
    assert (sensor.state, reschedules) == ("success", 0)
    assert not _rows(erp.engine, "SELECT invoice_id FROM inexchange_dispatch WHERE state = 'waiting'")


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
def test_without_the_reporting_connection_the_first_task_stops_the_run(
        dispatch_dag: Any, erp: Erp, simulator: Any, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """No fallback to the ERP's database: the first task (preflight) fails at once, without retries, and
    nothing is touched."""
    from sqlalchemy import inspect

    monkeypatch.delenv("AIRFLOW_CONN_INEXCHANGE_REPORTING")
    tables = set(inspect(erp.engine).get_table_names())

    dag_run = _run(dispatch_dag)

    assert dag_run.state == "failed"
    instances = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    first = instances["preflight"]
    assert (first.state, first.try_number) == ("failed", 1)  # AirflowFailException: no retry
    assert {t: ti.state for t, ti in instances.items() if t not in ("preflight", "report")} == {
        "recheck_waiting": "upstream_failed", "extract": "upstream_failed", "validate": "upstream_failed", "plan_batches": "upstream_failed",
        "submit": "upstream_failed", "await_delivery": "upstream_failed", "watcher": "failed",
    }
    output = capfd.readouterr()
    assert ("connection 'inexchange_reporting' is not defined: define inexchange_reporting as the database that "
            "holds the ledger and the report") in output.out + output.err
    inspect(erp.engine).clear_cache()
    assert set(inspect(erp.engine).get_table_names()) == tables  # no ledger, no report in the ERP
    assert not simulator.stats()["sends"]


def test_fixed_customer_is_sent_on_the_next_run(dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    """A rejected invoice is picked up again once the ERP row is fixed, and sent exactly once."""
    assert _run(dispatch_dag).state == "success"
    ledger = _rows(erp.engine, "SELECT invoice_id, customer_number, state, erp_document_id FROM inexchange_dispatch")
    bad = {n: kind for kind, numbers in erp.summary.bad_customers.items() for n in numbers if kind in FIXES}
    fixable = sorted({r["customer_number"] for r in ledger if r["state"] == "rejected" and r["customer_number"] in bad})
    assert fixable, "the run day should hold an invoice of a customer whose defect can be fixed"
    customer = fixable[0]
    with erp.engine.begin() as conn:
        org = conn.execute(text("SELECT org_number FROM customer WHERE customer_number = :number"),
                           {"number": customer}).scalar()
        conn.execute(text(FIXES[bad[customer]]),
                     {"number": customer, "vat": "SE" + "".join(ch for ch in org if ch.isdigit()) + "01"})
    before = simulator.stats()["sends"]

    assert _run(dispatch_dag).state == "success"

    after = {r["invoice_id"]: r for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    fixed = [r for r in ledger if r["customer_number"] == customer]
    sends = simulator.stats()["sends"]
    for row in fixed:
        assert after[row["invoice_id"]]["state"] in ("sent", "stopped", "failed"), after[row["invoice_id"]]
        assert sends.get(row["erp_document_id"]) == 1
    assert {k: v for k, v in sends.items() if k not in {r["erp_document_id"] for r in fixed}} == before


def _without_retries(dag: Any) -> Any:
    """The DAG with no retries, so that a failing stage fails at its first try (the run's state is
    under test here, not the retry policy)."""
    for task in dag.tasks:
        task.retries = 0
    return dag


def _states(dag_run: Any) -> dict[str, set[str]]:
    states: dict[str, set[str]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(ti.task_id, set()).add(str(ti.state))
    return states


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
def test_a_day_that_succeeds_skips_the_watcher(dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    dag_run = _run(_without_retries(dispatch_dag))

    assert dag_run.state == "success"
    states = _states(dag_run)
    assert states.pop("watcher") == {"skipped"}
    assert all(s == {"success"} for s in states.values()), states


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
@pytest.mark.parametrize("stage", ["extract", "submit", "await_delivery"])
def test_a_failed_stage_turns_the_run_red_and_report_still_runs(
        stage: str, dispatch_dag: Any, erp: Erp, simulator: Any, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """The watcher pattern: report (all_done) runs whatever failed, and the run ends failed, with the
    watcher naming the stage."""
    import json

    if stage == "extract":  # the ERP lost a table of the adapter contract
        with erp.engine.begin() as conn:
            conn.execute(text("ALTER TABLE customer_invoice RENAME TO customer_invoice_old"))
    elif stage == "submit":  # our company's details are not configured
        monkeypatch.delenv("AIRFLOW_VAR_INEXCHANGE_SELLER")
    else:  # the sensor's API key is refused
        monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REVOKED", json.dumps({
            "conn_type": "inexchange", "host": simulator.base_url, "password": "revoked-key",
            "extra": {"erp_id": "e2e-erp"}}))
        dispatch_dag.get_task("await_delivery").inexchange_conn_id = "inexchange_revoked"

    # the preflight would name each of these before any stage runs (its own test); here it is marked
    # done, so that the stage itself meets the fault
    dag_run = _run(_without_retries(dispatch_dag), mark_success_pattern="^preflight$")

    assert dag_run.state == "failed"
    states = _states(dag_run)
    assert states[stage] == {"failed"}, states
    assert states["report"] == {"success"}, states  # fail_on_action_needed is off in _run
    assert states["watcher"] == {"failed"}, states
    output = capfd.readouterr()
    text_out = output.out + output.err
    assert "stages of this run did not succeed" in text_out
    failed_line = next(line for line in text_out.splitlines() if "stages of this run did not succeed" in line)
    assert stage in failed_line, failed_line
    if stage != "await_delivery":  # nothing was sent; the sensor's case sent the day before it failed
        assert not simulator.stats()["sends"]


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
def test_invoices_that_need_a_person_fail_the_report_once_with_one_block(
        dispatch_dag: Any, erp: Erp, simulator: Any, caplog: pytest.LogCaptureFixture) -> None:
    """No retries (a retry finds the same invoices), and every such invoice with its whole message
    in one log record."""
    run_after = pendulum.datetime(RUN_DAY.year, RUN_DAY.month, RUN_DAY.day, 6, tz="Europe/Stockholm").add(days=1)

    with caplog.at_level("WARNING", logger="inexchange.pipeline"):
        dag_run = dispatch_dag.test(logical_date=run_after, run_conf={"fail_on_action_needed": True, "batch_size": 7})

    assert dag_run.state == "failed"
    instances = {ti.task_id: ti for ti in dag_run.get_task_instances() if ti.task_id != "submit"}
    assert (instances["report"].state, instances["report"].try_number) == ("failed", 1)
    assert instances["watcher"].state == "skipped"  # every stage succeeded; the invoices are what fails
    reported = _rows(erp.engine, "SELECT invoice_number, customer_number, state, inexchange_status, message "
                                 "FROM inexchange_report")
    # rejected, stopped or in doubt; failed once InExchange has the document (this run's attempts are its first)
    needing = [r for r in reported
               if r["state"] in ("rejected", "stopped", "in_doubt") or (r["state"] == "failed" and r["inexchange_status"])]
    assert len(needing) >= 2, reported
    blocks = [r.getMessage() for r in caplog.records if "invoices need a person:" in r.getMessage()]
    assert len(blocks) == 1, blocks
    lines = blocks[0].splitlines()
    assert lines[0] == f"{len(needing)} invoices need a person:", lines
    assert len(lines) == 1 + len(needing), lines
    for row in needing:
        line = next((entry for entry in lines if f"Faktura {row['invoice_number']} (kund {row['customer_number']}" in entry),
                    None)
        assert line is not None, (row, lines)
        assert f": {row['state']}" in line and line.endswith(row["message"] or "inget meddelande"), (row, line)


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
def test_invoice_date_sends_that_day_whatever_the_logical_date(
        dispatch_dag: Any, erp: Erp, simulator: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A run whose logical date covers the first day, told invoice_date = the last day, sends the
    last day's invoices and no others, and says so in its logs."""
    first, last = START, START + timedelta(days=2)
    run_after = pendulum.datetime(first.year, first.month, first.day, 6, tz="Europe/Stockholm").add(days=1)

    with caplog.at_level("INFO", logger="inexchange"):
        dag_run = dispatch_dag.test(logical_date=run_after, run_conf={
            "fail_on_action_needed": False, "invoice_date": last.isoformat()})

    assert dag_run.state == "success"
    sent = _rows(erp.engine, "SELECT d.invoice_id, i.invoice_date FROM inexchange_dispatch d "
                             "JOIN customer_invoice i ON i.invoice_id = d.invoice_id")
    assert sent and {_day(r["invoice_date"]) for r in sent} == {last}, sent
    sends = simulator.stats()["sends"]  # by ERP document id: only ledger rows, all of them dated the last day
    ledger_ids = {r["erp_document_id"] for r in _rows(erp.engine, "SELECT erp_document_id FROM inexchange_dispatch")}
    assert sends and set(sends) <= ledger_ids, (sends, ledger_ids)
    said = [r.getMessage() for r in caplog.records if f"invoices dated {last.isoformat()}" in r.getMessage()]
    assert any(m.startswith("this run: ") for m in said) and any(m.startswith("Elektroniska utskick") for m in said)
    assert not [r.getMessage() for r in caplog.records if f"invoices dated {first.isoformat()}" in r.getMessage()]


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
def test_the_preflight_names_every_configuration_problem_at_once(
        dispatch_dag: Any, erp: Erp, simulator: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A bad bankgiro, an ERP without a contract table and a refused API key: one message, one line each,
    at the first task's first try; nothing read into the ledger, nothing sent."""
    import json

    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_SELLER", json.dumps({**SELLER, "bankgiro": "123"}))
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": simulator.base_url, "password": "wrong-key", "extra": {"erp_id": "e2e-erp"}}))
    with erp.engine.begin() as conn:
        conn.execute(text("ALTER TABLE customer_invoice_line RENAME TO customer_invoice_line_old"))

    with caplog.at_level("ERROR"):
        dag_run = _run(dispatch_dag)

    assert dag_run.state == "failed"
    instances = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert (instances["preflight"].state, instances["preflight"].try_number) == ("failed", 1)
    assert instances["extract"].state == "upstream_failed"
    blocks = [r.getMessage() for r in caplog.records if "configuration problem(s)" in r.getMessage()]
    assert blocks, [r.getMessage() for r in caplog.records]
    lines = blocks[0].splitlines()
    assert lines[0].startswith("the run cannot start: 3 configuration problem(s)"), lines
    assert any("Variable inexchange_seller: bankgiro 123 is not valid" in line for line in lines[1:]), lines
    assert any("connection 'erp_default' (the ERP)" in line and "customer_invoice_line" in line for line in lines[1:]), lines
    assert any("did not accept the connection 'inexchange_default'" in line and "401" in line for line in lines[1:]), lines
    assert not any("wrong-key" in line for line in lines)
    assert _rows(erp.engine, "SELECT COUNT(*) AS n FROM inexchange_dispatch")[0]["n"] == 0
    assert not simulator.stats()["sends"]
