"""Exactly-once submission under faults, against the simulator over loopback.

The submit operator runs round after round (as Airflow's retries and the next runs would) against a
simulator that fails a share of all requests: 5xx, dropped connections, sends whose reply is lost
after InExchange processed them, 429 with Retry-After, requests that time out at the client and are
processed later, and client tokens that expire mid-run. A worker process running the task is also
SIGKILLed after its claims, after its uploads, and after its sends but before it records them, then
the task runs again. In every case each ready invoice reaches InExchange exactly once and its ledger
row ends final or retryable. The simulator runs the official Peppol BIS 3 rules over every upload
when the artefacts are here, and no document may break one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from dispatch_testing.peppol_rules import official_rules_folder_or_none
from dispatch_testing.support import SELLER, sqlite_conn_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DAY = date(2026, 11, 16)
WORKER = Path(__file__).with_name("submit_worker.py")
#: rows that still need the submit task: not yet sent, or sent with an unknown outcome
OPEN_ROWS = ("SELECT COUNT(*) FROM inexchange_dispatch WHERE state IN ('ready', 'submitting') "
             "OR (state = 'failed' AND inexchange_document_id IS NULL)")


@dataclass
class Erp:
    """A generated ERP whose day of invoices is in the ledger, validated, ready to submit."""

    engine: Engine
    context: dict[str, Any]
    ready: int = 0

    def count(self, sql: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar())

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(
                "SELECT state, erp_document_id, inexchange_document_id, message FROM inexchange_dispatch "
                "WHERE state <> 'rejected'"))]


@pytest.fixture
def erp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Erp]:
    from inexchange_devkit.erpgen import generate

    path = tmp_path / "erp.db"
    engine = create_engine(f"sqlite:///{path}")
    generate(engine, seed=3, customers=30, invoices=60, start_date=DAY, days=1, drafts=3)
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", sqlite_conn_env(path))
    start = pendulum.datetime(DAY.year, DAY.month, DAY.day, 6, tz="Europe/Stockholm")
    yield Erp(engine, {"run_id": "faults", "data_interval_start": start, "data_interval_end": start.add(days=1)})
    engine.dispose()


def ready_for(erp: Erp, sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point ``inexchange_default`` at the simulator; extract and validate the day."""
    from inexchange import pipeline
    from inexchange.operators.scope import run_scope

    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": sim.base_url, "password": sim.api_key, "extra": {"erp_id": "f"}}))
    pipeline.extract(run_scope(erp.context), erp_conn_id="erp_default", reporting_conn_id="erp_default")
    erp.ready = pipeline.validate(run_scope(erp.context), erp_conn_id="erp_default", reporting_conn_id="erp_default")["ready"]
    assert erp.ready >= 20


def assert_each_sent_once(erp: Erp, stats: dict[str, Any]) -> None:
    """Every ready invoice reached InExchange exactly once and its row says so."""
    rows = erp.rows()
    assert len(rows) == erp.ready
    assert erp.count(OPEN_ROWS) == 0
    # waiting, or already final when a lost reply was reconciled through byerpid
    assert {r["state"] for r in rows} <= {"waiting", "sent", "stopped", "failed"}
    assert all(r["inexchange_document_id"] for r in rows)
    assert stats["duplicates"] == []
    assert stats["sends"] == {r["erp_document_id"]: 1 for r in rows}
    broke = set(stats.get("peppol_errors") or ())  # every document passes the Peppol rules at the simulator
    assert not broke, [r["message"] for r in rows if r["erp_document_id"] in broke]


#: fault scenarios: simulator settings, operator arguments, and the fault that must have happened
SCENARIOS = {
    "5xx, drops and lost replies": ({"fault_rate": 0.25, "faults": ["5xx", "drop", "lost"]}, {}, "lost"),
    "429 with Retry-After": ({"fault_rate": 0.2, "faults": ["429"]}, {}, "429"),
    "timeouts (processed after the client gave up)": (
        {"fault_rate": 0.15, "faults": ["timeout"], "timeout_ms": 1200}, {"request_timeout": 0.5}, "timeout"),
    "token expiry mid-run": ({"token_ttl_s": 0.25, "latency_ms": 25}, {"concurrency": 4}, None),
    "HTML error pages, garbled and huge replies": (
        {"fault_rate": 0.2, "faults": ["html", "garbled", "huge"]}, {}, "garbled"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_invoice_sent_exactly_once_despite_faults(
        scenario: str, erp: Erp, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange.operators.submit import SubmitInvoicesOperator
    from inexchange_devkit.simulator.testing import run_simulator

    sim_settings, operator_args, fault = SCENARIOS[scenario]
    settle = timedelta(seconds=1.5)
    with run_simulator(seed=9, status_step_ms=100, peppol_rules=official_rules_folder_or_none()) as sim:
        sim.configure(**sim_settings)
        ready_for(erp, sim, monkeypatch)
        operator = SubmitInvoicesOperator(task_id="submit", erp_conn_id="erp_default",
                                          reporting_conn_id="erp_default", seller=SELLER, max_attempts=50,
                                          retry_delay_base=timedelta(0), settle_time=settle, **operator_args)
        for _ in range(25):  # as Airflow's retries and the next runs would
            try:
                operator.execute(erp.context)
            except Exception:  # a round may die (a fault beyond the hook's retries): the next one resumes
                pass
            if erp.count(OPEN_ROWS) == 0:
                break
            time.sleep(settle.total_seconds())  # sends in doubt are looked up again once settled
        stats = sim.stats()

    assert_each_sent_once(erp, stats)
    if fault:
        assert stats["faults"].get(fault, 0) > 0, f"the run should have met {fault} faults"
    else:
        assert stats["tokens_created"] >= 2, "the token should have expired and been renewed during the run"


#: where the worker is killed: the request it is held at, the phase, and what InExchange has by then
KILL_POINTS = {
    "after the claim": ("documents", "before"),
    "after the upload": ("documents/outbound", "before"),
    "after the send, before the record": ("documents/outbound", "after"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_worker_killed_then_rerun_sends_each_invoice_once(
        point: str, erp: Erp, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange_devkit.simulator.testing import run_simulator

    path, phase = KILL_POINTS[point]
    spec = json.dumps({"run_id": "killed", "start": erp.context["data_interval_start"].isoformat(),
                       "seller": SELLER, "concurrency": 8, "settle_s": 0})
    with run_simulator(seed=11, status_step_ms=100, peppol_rules=official_rules_folder_or_none()) as sim:
        ready_for(erp, sim, monkeypatch)
        key = sim.hold(path, phase=phase)
        worker = subprocess.Popen([sys.executable, str(WORKER), spec], env=os.environ.copy(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            sim.wait_held(key, count=8, timeout=60)  # every slot is stuck at the same point
            claimed = erp.count("SELECT COUNT(*) FROM inexchange_dispatch WHERE state = 'submitting'")
            processed = dict(sim.stats()["sends"])
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        # the held requests die with their worker: one held before is never processed
        sim.release(drop=True)
        assert claimed >= 8, "the claims are committed before anything is sent"
        assert len(processed) == (8 if phase == "after" else 0)

        rerun = subprocess.run([sys.executable, str(WORKER), spec], env=os.environ.copy(),
                               capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        counts = json.loads(rerun.stdout.strip().splitlines()[-1])
        stats = sim.stats()

    assert_each_sent_once(erp, stats)
    assert counts["reconciled"] == len(processed)  # found at InExchange by ERP id, not sent again
    for erp_id in processed:
        assert stats["sends"][erp_id] == 1


def test_customer_deleted_between_validation_and_submission_is_rejected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange import pipeline
    from inexchange.operators.scope import run_scope
    from inexchange_devkit.erpgen import generate
    from inexchange.operators.submit import SubmitInvoicesOperator
    from inexchange_devkit.simulator.testing import run_simulator

    path = tmp_path / "erp.db"
    engine = create_engine(f"sqlite:///{path}")
    generate(engine, seed=3, customers=20, invoices=20, start_date=date(2026, 11, 16), days=1, drafts=1)
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", sqlite_conn_env(path))
    start = pendulum.datetime(2026, 11, 16, 6, tz="Europe/Stockholm")
    context: dict[str, Any] = {"run_id": "deleted", "data_interval_start": start, "data_interval_end": start.add(days=1)}
    with run_simulator(peppol_rules=official_rules_folder_or_none()) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
            "conn_type": "inexchange", "host": sim.base_url, "password": sim.api_key, "extra": {"erp_id": "d"}}))
        pipeline.extract(run_scope(context), erp_conn_id="erp_default", reporting_conn_id="erp_default")
        pipeline.validate(run_scope(context), erp_conn_id="erp_default", reporting_conn_id="erp_default")
        with engine.begin() as conn:
            victim = conn.execute(text("SELECT customer_id, customer_number FROM inexchange_dispatch "
                                       "WHERE state = 'ready' ORDER BY invoice_id")).first()
            conn.execute(text("PRAGMA foreign_keys = OFF"))
            conn.execute(text("DELETE FROM customer WHERE customer_id = :id"), {"id": victim.customer_id})
        counts = SubmitInvoicesOperator(task_id="submit", erp_conn_id="erp_default", reporting_conn_id="erp_default",
                                        seller=SELLER).execute(context)
        stats = sim.stats()
        sends = stats["sends"]
    assert not stats.get("peppol_errors"), "every document passes the Peppol rules at the simulator"
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            "SELECT state, message, erp_document_id FROM inexchange_dispatch WHERE customer_id = :id"),
            {"id": victim.customer_id})]
    assert rows and counts["rejected"] >= len(rows) and counts["sent"] > 0
    for row in rows:
        assert row["state"] == "rejected"
        assert f"kunden {victim.customer_number} " in row["message"] and "finns inte längre i ERP" in row["message"]
        assert row["erp_document_id"] not in sends


@pytest.mark.parametrize("settle_rounds", [3, 0])
def test_sends_in_doubt_are_settled_before_the_task_ends(settle_rounds: int, erp: Erp,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests that time out at the client and are processed afterwards leave their sends in doubt.

    The task stamps each such row when the doubt arises, looks it up again and, once it has settled,
    sends it again only if InExchange never got it, so it ends with every invoice recorded; without
    settle rounds the doubts are left for the next try.
    """
    from inexchange.operators.submit import SubmitInvoicesOperator
    from inexchange_devkit.simulator.testing import run_simulator

    with run_simulator(seed=9, status_step_ms=100, peppol_rules=official_rules_folder_or_none()) as sim:
        ready_for(erp, sim, monkeypatch)
        sim.configure(fault_rate=0.3, faults=["timeout"], timeout_ms=1200)
        operator = SubmitInvoicesOperator(task_id="submit", erp_conn_id="erp_default", reporting_conn_id="erp_default",
                                          seller=SELLER, max_attempts=50, request_timeout=0.4,
                                          settle_time=timedelta(seconds=2), settle_rounds=settle_rounds)
        counts = operator.execute(erp.context)
        stats = sim.stats()
    with erp.engine.connect() as conn:
        doubts = conn.execute(text("SELECT COUNT(*) FROM inexchange_dispatch_history WHERE from_state = 'submitting' "
                                   "AND to_state = 'submitting'")).scalar()
    assert stats["faults"]["timeout"] > 0 and doubts > 0, "sends should have been left in doubt"
    assert not stats["duplicates"]
    assert not stats.get("peppol_errors"), "every document passes the Peppol rules at the simulator"
    if settle_rounds:
        assert counts["in doubt"] == 0
        assert erp.count("SELECT COUNT(*) FROM inexchange_dispatch WHERE state = 'submitting'") == 0
        rows = erp.rows()
        received = {r["erp_document_id"] for r in rows if r["inexchange_document_id"]}
        assert stats["sends"] == dict.fromkeys(received, 1)
        # the rest failed before their send (an upload or look-up beyond its retries): retried later
        assert all(r["state"] == "failed" for r in rows if not r["inexchange_document_id"])
    else:
        assert counts["in doubt"] == erp.count("SELECT COUNT(*) FROM inexchange_dispatch WHERE state = 'submitting'") > 0


def test_the_runs_batches_look_each_customer_up_once(erp: Erp, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapped submit tasks of one run share the recipients they resolved: a customer whose invoices
    fall in several batches is looked up by the first only, unless its values changed in the ERP since."""
    from inexchange.operators.submit import SubmitInvoicesOperator
    from inexchange_devkit.simulator.testing import run_simulator

    def submit(shard: int) -> int:
        SubmitInvoicesOperator(task_id="submit", erp_conn_id="erp_default", reporting_conn_id="erp_default",
                               seller=SELLER, shard=shard, shards=2).execute(erp.context)
        return int(sim.stats()["lookups"])

    with run_simulator() as sim:
        ready_for(erp, sim, monkeypatch)
        with erp.engine.connect() as conn:
            rows = conn.execute(text(  # the ready invoices of customers with a GLN or an org number: looked up
                "SELECT d.invoice_id % 2 AS shard, d.customer_id FROM inexchange_dispatch d "
                "JOIN customer c ON c.customer_id = d.customer_id WHERE d.state = 'ready' "
                "AND (COALESCE(c.gln, '') <> '' OR COALESCE(c.org_number, '') <> '')")).all()
        shards = [{r.customer_id for r in rows if r.shard == shard} for shard in (0, 1)]
        both = shards[0] & shards[1]
        assert len(both) >= 3, "the day must have customers in both batches"
        changed = min(both)
        first = submit(0)
        with erp.engine.begin() as conn:  # a customer's e-mail changes between the batches
            conn.execute(text("UPDATE customer SET invoice_email = 'ny@example.se' WHERE customer_id = :id"),
                         {"id": changed})
        second = submit(1) - first
        assert_each_sent_once(erp, sim.stats())
    assert first == len(shards[0])
    assert second == len(shards[1] - shards[0]) + 1  # its own customers, and the one that changed
