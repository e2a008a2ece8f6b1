"""Reruns and manual runs through ``dag.test()``: the report stays true, nothing is sent twice.

Covers the DAG params of a manual run (``dry_run``, ``invoice_numbers``, ``retry_rejected``), the
report's idempotency (the same interval three times), the history's run type and the submit
task's portal link. Each runs on the embedded default (SQLite) and on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
import pytest
from sqlalchemy import text

from dispatch_testing.peppol_rules import stand_in_rules
from inexchange.api import SendMethod
from test_dispatch_e2e import FIXES, RUN_DAY, Erp, _rows, dispatch_dag, erp, simulator  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PORTAL_URL = "https://portal.example.test/"


def run(dag: Any, day: Any = RUN_DAY, **conf: Any) -> Any:
    """Run the interval of invoice date ``day`` with small batches; the run must end green."""
    run_after = pendulum.datetime(day.year, day.month, day.day, 6, tz="Europe/Stockholm").add(days=1)
    # every manual param is given: dag.test() keeps an earlier call's conf in a reused DAG object
    conf = {"fail_on_action_needed": False, "batch_size": 7, "dry_run": False, "check_peppol": False, "retry_rejected": True,
            "invoice_numbers": [], "delivery_timeout_minutes": 360, "deferrable": True, **conf}
    dag_run = dag.test(logical_date=run_after, run_conf=conf)
    assert dag_run.state == "success"
    return dag_run


def report(erp: Erp) -> list[dict[str, Any]]:
    return _rows(erp.engine, "SELECT * FROM inexchange_report ORDER BY invoice_id, data_interval_start")


def states(erp: Erp) -> dict[str, str]:
    return {str(r["invoice_number"]): r["state"] for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}


def fix_customer(erp: Erp, customer: str, kind: str) -> None:
    with erp.engine.begin() as conn:
        org = conn.execute(text("SELECT org_number FROM customer WHERE customer_number = :number"),
                           {"number": customer}).scalar()
        conn.execute(text(FIXES[kind]), {"number": customer, "vat": "SE" + "".join(c for c in org if c.isdigit()) + "01"})


def fixable_rejected(erp: Erp) -> tuple[str, str, list[str]]:
    """A rejected customer whose defect a person can fix: its number, the defect, its invoice numbers."""
    bad = {n: kind for kind, numbers in erp.summary.bad_customers.items() for n in numbers if kind in FIXES}
    rows = _rows(erp.engine, "SELECT * FROM inexchange_dispatch WHERE state = 'rejected'")
    customer = sorted({r["customer_number"] for r in rows if r["customer_number"] in bad})[0]
    return customer, bad[customer], sorted(str(r["invoice_number"]) for r in rows if r["customer_number"] == customer)


def test_the_same_interval_three_times_gives_the_same_report(dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    snapshots, sends = [], []
    for _ in range(3):
        run(dispatch_dag)
        snapshots.append(report(erp))
        sends.append(simulator.stats()["sends"])

    assert snapshots[0], "the run day has invoices"
    assert snapshots[1] == snapshots[0] and snapshots[2] == snapshots[0]
    assert sends[1] == sends[0] == sends[2] and set(sends[0].values()) == {1}
    assert not simulator.stats()["duplicates"]
    ledger = _rows(erp.engine, "SELECT * FROM inexchange_dispatch")
    assert {r["invoice_id"] for r in snapshots[0]} == {r["invoice_id"] for r in ledger}
    for row in snapshots[0]:
        assert row["document_type"] in ("Kundfaktura", "Kreditfaktura") and row["delivery_type"] == "InExchange"
        assert row["data_interval_start"] < row["data_interval_end"]
        if row["state"] not in ("rejected",):
            assert row["inexchange_document_id"] and row["delivery_method"] in {m.value for m in SendMethod}
        if row["state"] in ("rejected", "stopped", "failed"):
            assert row["message"], row
    history = _rows(erp.engine, "SELECT * FROM inexchange_dispatch_history")
    assert {h["run_type"] for h in history} == {"manual"} and all(h["try_number"] >= 1 for h in history)
    assert {h["source"] for h in history} >= {"extract", "validate", "submit"}


def test_a_dry_run_builds_everything_and_sends_nothing(dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    dag_run = run(dispatch_dag, dry_run=True)

    assert simulator.stats()["sends"] == {}
    ledger = states(erp)
    assert set(ledger.values()) <= {"ready", "rejected"} and "ready" in ledger.values()
    submits = [ti for ti in dag_run.get_task_instances() if ti.task_id == "submit"]
    counts = [ti.xcom_pull(task_ids="submit", map_indexes=ti.map_index) for ti in submits]
    assert sum(c["would send"] for c in counts) == sum(1 for s in ledger.values() if s == "ready")

    run(dispatch_dag)  # the real run then sends them, once
    assert set(simulator.stats()["sends"].values()) == {1}
    assert "ready" not in states(erp).values()


def test_check_peppol_rejects_a_document_that_breaks_a_fatal_rule_before_upload(
    dispatch_dag: Any, erp: Erp, simulator: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(dispatch_dag, dry_run=True)
    ready = sorted(n for n, s in states(erp).items() if s == "ready")
    flagged = ready[0]
    # rules that stop this one document (fatal) and warn about every document
    monkeypatch.setenv("AIRFLOW__INEXCHANGE__PEPPOL_RULES", str(stand_in_rules(tmp_path / "rules", fatal_for=flagged)))

    run(dispatch_dag, check_peppol=True)

    rows = {str(r["invoice_number"]): r for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    assert rows[flagged]["state"] == "rejected"
    assert rows[flagged]["message"].startswith(f"Faktura {flagged}: dokumentet bryter mot Peppol BIS 3-reglerna")
    assert "TEST-R001: [TEST-R001]-Testregeln stoppar dokument" in rows[flagged]["message"]
    sends = simulator.stats()["sends"]
    assert rows[flagged]["erp_document_id"] not in sends  # never uploaded nor sent
    assert set(sends.values()) == {1} and len(sends) == len(ready) - 1  # warnings stop nothing
    assert all(rows[n]["state"] not in ("ready", "rejected") for n in ready[1:])  # sent on, whatever InExchange did


def test_a_list_of_invoice_numbers_resends_only_those(dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    run(dispatch_dag)
    customer, kind, rejected = fixable_rejected(erp)
    sent = sorted(n for n, s in states(erp).items() if s in ("waiting", "sent"))[0]
    fix_customer(erp, customer, kind)
    before_states, before_sends = states(erp), simulator.stats()["sends"]
    other_day = RUN_DAY + timedelta(days=10)  # a day without invoices: the list alone decides

    dag_run = run(dispatch_dag, other_day, invoice_numbers=[rejected[0], sent, "no-such-invoice"])

    after, sends = states(erp), simulator.stats()["sends"]
    assert after[rejected[0]] in ("waiting", "sent", "stopped", "failed")
    new_sends = {k: v for k, v in sends.items() if k not in before_sends}
    assert list(new_sends.values()) == [1], "exactly the listed rejected invoice went out"
    assert {k: v for k, v in sends.items() if k in before_sends} == before_sends, "the sent one was not resent"
    assert {n: s for n, s in after.items() if n != rejected[0]} == {
        n: s for n, s in before_states.items() if n != rejected[0]}
    extract = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "extract")
    assert extract.xcom_pull(task_ids="extract")["not_found"] == ["no-such-invoice"]
    # the invoice's own interval's report row says what the ledger says now
    own = [r for r in report(erp) if str(r["invoice_number"]) == rejected[0]]
    assert own and all(r["state"] == after[rejected[0]] for r in own)


def test_rejected_invoices_stay_rejected_when_the_run_says_so(dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    run(dispatch_dag)
    customer, kind, rejected = fixable_rejected(erp)
    fix_customer(erp, customer, kind)
    before = simulator.stats()["sends"]

    run(dispatch_dag, retry_rejected=False)
    assert all(states(erp)[n] == "rejected" for n in rejected)
    assert simulator.stats()["sends"] == before

    run(dispatch_dag)  # by default they are checked again, and now pass
    assert all(states(erp)[n] != "rejected" for n in rejected)


def test_the_submit_task_links_to_the_portal(dispatch_dag: Any, erp: Erp, simulator: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": simulator.base_url, "password": simulator.api_key,
        "extra": {"erp_id": "e2e-erp", "portal_url": PORTAL_URL},
    }))
    dag_run = run(dispatch_dag)

    from inexchange.links.portal import InExchangePortalLink

    link = InExchangePortalLink()
    submit = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "submit")
    assert submit.xcom_pull(task_ids="submit", key=link.xcom_key, map_indexes=submit.map_index) == PORTAL_URL
    assert dispatch_dag.get_task("submit").operator_extra_links[0].name == "InExchange portal"


def test_each_run_updates_the_report_asset(dispatch_dag: Any, erp: Erp, simulator: Any) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    def events() -> int:
        with create_session() as session:
            return int(session.scalar(select(func.count()).select_from(AssetEvent).join(
                AssetModel, AssetModel.id == AssetEvent.asset_id).where(AssetModel.name == "inexchange_report")) or 0)

    before = events()
    run(dispatch_dag)
    assert events() == before + 1


def test_claims_left_by_a_run_that_ended_are_settled_by_the_next_run(dispatch_dag: Any, erp: Erp,
                                                                     simulator: Any) -> None:
    """Sends left in doubt by a run that has ended are looked up by the next run at once, not after the lease.

    The first run sends the day. Three of its invoices are then put back as its run left them when
    the replies of their sends were lost beyond its settle rounds: ``submitting`` under its run id,
    with no document id. A fourth is claimed under a run id Airflow does not know (another
    deployment's, say), whose lease must be respected. The next day's run asks Airflow, learns the
    first run has ended, finds the three at InExchange (sent nothing again) and follows them to their
    final status; the fourth stays as it was.
    """
    from inexchange.submission import IN_DOUBT_MESSAGE

    first = run(dispatch_dag)
    sends = simulator.stats()["sends"]
    sent = _rows(erp.engine, "SELECT * FROM inexchange_dispatch WHERE state = 'sent' ORDER BY invoice_id")
    assert len(sent) >= 4, "the run day should have sent invoices"
    doubted, foreign = sent[:3], sent[3]
    # older than the settle time (90 s), well within the lease (15 minutes)
    stamp = (pendulum.now("UTC") - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with erp.engine.begin() as conn:
        for row, run_id in [*((r, first.run_id) for r in doubted), (foreign, "scheduled__elsewhere")]:
            conn.execute(text("UPDATE inexchange_dispatch SET state = 'submitting', inexchange_document_id = NULL, "
                              "inexchange_status = NULL, sent_at = NULL, message = :message, dag_run_id = :run, "
                              "updated_at = :stamp WHERE invoice_id = :id"),
                         {"message": IN_DOUBT_MESSAGE, "run": run_id, "stamp": stamp, "id": row["invoice_id"]})

    nxt = run(dispatch_dag, RUN_DAY + timedelta(days=1))

    after = {r["invoice_id"]: r for r in _rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    for row in doubted:
        settled = after[row["invoice_id"]]
        assert settled["state"] == "sent" and settled["dag_run_id"] == nxt.run_id, settled
        assert settled["inexchange_document_id"] == row["inexchange_document_id"]
    assert after[foreign["invoice_id"]]["state"] == "submitting"  # its lease still runs
    # nothing of the first day went out again (the next day's own invoices went out once each)
    now_sent = simulator.stats()["sends"]
    assert {k: now_sent[k] for k in sends} == sends and set(now_sent.values()) == {1}
    assert not simulator.stats()["duplicates"]
    # each settled invoice's report line, on its own day, says so
    lines = {r["invoice_id"]: r for r in report(erp) if r["invoice_id"] in {d["invoice_id"] for d in doubted}}
    assert {line["state"] for line in lines.values()} == {"sent"} and len(lines) == 3
