"""A backfill of three days with ``airflow backfill create`` on real Airflow components, twice.

The deployment is the one of ``test_scheduler_triggerer.py`` (see ``inexchange_devkit.services``): a
fresh PostgreSQL metadata database, ``airflow api-server``, ``airflow scheduler`` (LocalExecutor),
``airflow dag-processor`` and ``airflow triggerer`` as processes, the InExchange simulator over
loopback (no stopped or erroneous documents, statuses final after two steps of 300 ms) and a
generated SQLite ERP that holds the ledger too (the reporting connection names the same file). The
ERP has posted invoices on 2026-11-02, -03 and -04, among them invoices of customers that fail
validation (one of each kind the generator plants) and invoices with an integrity defect.

First pass: ``airflow backfill create --dag-id inexchange_dispatch --from-date
2026-11-02T06:00:00+01:00 --to-date 2026-11-04T06:00:00+01:00 --max-active-runs 1
--dag-run-conf '{"fail_on_action_needed": false}'``. While the first two days run, one API call in
ten is processed by the simulator and its reply lost (the client must look a lost send up instead
of sending it again). When the last day's run starts, the simulator holds its uploads; once every
invoice of the day is held they are broken off and every API call answers 5xx until the day's
submit task has ended, so the day's valid invoices end ``failed`` before reaching the send. After
the pass: the invalid invoices are ``rejected`` with the reason, the first two days' valid ones
``sent``, the last day's valid ones ``failed`` with a retry time five minutes ahead, and the
simulator received each sent invoice exactly once and none of the failed ones.

Then the ERP is fixed the way a person would (bound-parameter UPDATEs of the broken customer and
invoice rows), the faults are off, and the same days are backfilled again with ``--reprocess-behavior
completed --run-backwards --dag-run-conf '{"fail_on_action_needed": true}'``: Airflow clears the
three existing runs (same run ids) and runs them again, newest first. Checks: every run succeeds
although a run now fails when any invoice needs action; every posted InExchange invoice of the
three days is ``sent``; the simulator saw each erpDocumentId exactly once; the fixed invoices went
out in this pass, the failed ones too (at once, although their retry time had not come), and the
already sent ones were left alone (no history row of this pass, one claim in all); the report table
has exactly one row per invoice and interval, each ``sent``. Last, the middle day's run is
cleared through the REST API, as "Clear" on a run in the UI does: it runs again (still a backfill
run), sends nothing, writes no history and leaves the report as it was.

A dry run first shows that ``--to-date`` is inclusive on the logical date (the start of the data
interval, 06:00 Stockholm): ``--to-date 2026-11-04`` (midnight UTC) stops before the run of the
invoices dated 2026-11-04.

Run from the repository root (about 2.5 minutes on 2 CPUs; skipped without PostgreSQL unless
INEXCHANGE_REQUIRE_POSTGRES=1)::

    INEXCHANGE_REQUIRE_POSTGRES=1 .venv/bin/python -m pytest tests/integration/test_backfill.py -v

Component logs go to ``<pytest basetemp>/backfill-services0/home/component-logs/`` (task logs under
``home/logs``); a failure prints the tail of every log in its message.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pendulum
import pytest
from sqlalchemy import text

from inexchange_devkit.services import Deployment, PostgresServer, day_interval, dispatch_deployment

from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER, SELLER, generated_erp
from test_dispatch_e2e import CUSTOMER_PROBLEM, INVOICE_PROBLEM

pytestmark = [pytest.mark.system, pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(480)]

DAG_ID = "inexchange_dispatch"
TIMEZONE = "Europe/Stockholm"
DAYS = (date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4))
OUTAGE_DAY = DAYS[-1]
#: the logical dates (data interval starts, 06:00 Stockholm) of the first and the last day's run
FROM_DATE, TO_DATE = "2026-11-02T06:00:00+01:00", "2026-11-04T06:00:00+01:00"
BILLING_METHOD = "InExchange utskrift (API)"
API_KEY = "backfill-key"
ERP_ID = "backfill-erp"
STATUS_STEP_MS = 300
#: share of API calls whose reply is lost (after processing) while the first two days run
LOST_RATE = 0.1
UPLOAD_HOLD = "POST documents before"
TASKS = {"recheck_waiting", "extract", "validate", "plan_batches", "submit", "await_delivery", "report"}
#: task states that mean a run went wrong (the DAG retries after 2 minutes: fail fast instead)
BAD_TASK_STATES = {"failed", "up_for_retry", "upstream_failed", "removed"}
BACKFILL_TIMEOUT_S = 180.0
#: what the rejection message says for each kind of bad customer and defective invoice
PROBLEM = {**CUSTOMER_PROBLEM, **INVOICE_PROBLEM}
CENT = Decimal("0.01")


def interval_of(day: date) -> tuple[str, str]:
    """The data interval (ledger text) of the run that owns the invoices dated ``day``."""
    from inexchange.times import utc_text

    start, end = day_interval(day)
    return utc_text(start), utc_text(end)


def logical_date_of(day: date) -> datetime:
    return day_interval(day)[0].in_timezone("UTC")


@pytest.fixture(scope="module")
def erp_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The ERP (and ledger) as a SQLite file: 42 posted invoices over the three days, and drafts."""
    path = tmp_path_factory.mktemp("erp") / "erp.db"
    return path, generated_erp(path, seed=3, customers=30, invoices=42, start_date=DAYS[0], days=len(DAYS), drafts=6)


@pytest.fixture(scope="module")
def simulator() -> Iterator[Any]:
    from inexchange_devkit.simulator.testing import run_simulator

    with run_simulator(seed=9, status_step_ms=STATUS_STEP_MS, stop_rate=0.0, error_rate=0.0, fault_rate=0.0,
                       faults=["lost"], api_key=API_KEY) as sim:
        yield sim


@pytest.fixture(scope="module")
def deployment(postgres_server: None, tmp_path_factory: pytest.TempPathFactory, erp_file: tuple[Path, Any],
               simulator: Any) -> Iterator[Deployment]:
    """Metadata database, api-server, scheduler, dag-processor and triggerer; all gone afterwards."""
    home = tmp_path_factory.mktemp("backfill-services") / "home"
    home.mkdir()
    pg = PostgresServer(PG_HOST, PG_PORT, PG_USER, maintenance_db=PG_DB)
    with dispatch_deployment(home, erp_file[0], simulator, pg=pg, erp_id=ERP_ID, seller=SELLER) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def summary(erp_file: tuple[Path, Any]) -> Any:
    """What the generator planted in the ERP (bad customers, defective invoices)."""
    return erp_file[1]


# ---- backfills -------------------------------------------------------------------------------
@dataclass
class Run:
    run_id: str
    state: str
    logical_date: datetime
    run_type: str
    clear_number: int
    start_date: datetime | None
    conf: dict[str, Any]


@dataclass
class BackfillWatch:
    backfill_id: int
    runs: dict[str, Run] = field(default_factory=dict)
    tasks: dict[str, dict[str, str]] = field(default_factory=dict)
    took_s: float = 0.0

    def by_day(self) -> dict[date, Run]:
        return {run.logical_date.astimezone(pendulum.timezone(TIMEZONE)).date(): run for run in self.runs.values()}


def create_backfill(deployment: Deployment, *options: str) -> int:
    """``airflow backfill create`` over the three days; returns the new backfill's id."""
    before = deployment.query("SELECT COALESCE(MAX(id), 0) FROM backfill WHERE dag_id = %s", DAG_ID)[0][0]
    deployment.stack.cli("backfill", "create", "--dag-id", DAG_ID, "--from-date", FROM_DATE, "--to-date", TO_DATE,
                         *options)
    created = deployment.query("SELECT id FROM backfill WHERE dag_id = %s AND id > %s", DAG_ID, before)
    assert len(created) == 1, f"expected one new backfill, got {created}"
    return int(created[0][0])


def watch_backfill(deployment: Deployment, backfill_id: int,
                   on_poll: Callable[[BackfillWatch], None] | None = None,
                   timeout: float = BACKFILL_TIMEOUT_S) -> BackfillWatch:
    """Poll the metadata database until the backfill is complete and each of its runs has ended."""
    watch = BackfillWatch(backfill_id)
    started = time.monotonic()
    while True:
        deployment.stack.check_running()
        runs = deployment.query(
            "SELECT run_id, state, logical_date, run_type, clear_number, start_date, conf FROM dag_run "
            "WHERE dag_id = %s AND backfill_id = %s", DAG_ID, backfill_id)
        watch.runs = {r[0]: Run(r[0], r[1], r[2], r[3], r[4], r[5], _conf(r[6])) for r in runs}
        watch.tasks = {run_id: {} for run_id in watch.runs}
        if watch.runs:
            for run_id, task_id, map_index, state in deployment.query(
                    "SELECT run_id, task_id, map_index, state FROM task_instance WHERE dag_id = %s "
                    "AND run_id = ANY(%s)", DAG_ID, list(watch.runs)):
                watch.tasks[run_id][f"{task_id}[{map_index}]" if map_index >= 0 else task_id] = state
        bad = {run_id: {t: s for t, s in tasks.items() if s in BAD_TASK_STATES}
               for run_id, tasks in watch.tasks.items()}
        bad = {run_id: tasks for run_id, tasks in bad.items() if tasks}
        if bad:
            raise AssertionError(f"tasks went wrong in backfill {backfill_id}: {bad}; all: {watch.tasks}\n"
                                 f"{deployment.diagnostics(*bad)}")
        if on_poll is not None:
            on_poll(watch)
        completed = deployment.query("SELECT completed_at FROM backfill WHERE id = %s", backfill_id)[0][0]
        if completed is not None and watch.runs and all(r.state in ("success", "failed") for r in watch.runs.values()):
            watch.took_s = time.monotonic() - started
            return watch
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"backfill {backfill_id} did not complete within {timeout:g} s; runs: "
                f"{ {r.run_id: r.state for r in watch.runs.values()} }, tasks: {watch.tasks}\n"
                f"{deployment.diagnostics(*watch.runs)}")
        time.sleep(0.2)


def clear_run(deployment: Deployment, run_id: str, timeout: float = 90.0) -> tuple[str, str, int]:
    """Clear a whole run through the REST API, as the UI's "Clear" on a run does, and wait for its end.

    Returns the run's final state, its run type and how often it has been cleared.
    """
    import httpx

    response = httpx.post(f"{deployment.api_url}api/v2/dags/{DAG_ID}/dagRuns/{run_id}/clear",
                          json={"dry_run": False}, timeout=30.0)
    assert response.status_code == 200, f"clearing {run_id} failed: {response.status_code} {response.text}"
    started = time.monotonic()
    while True:
        deployment.stack.check_running()
        tasks = deployment.query("SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                                 DAG_ID, run_id)
        bad = {t: s for t, s in tasks if s in BAD_TASK_STATES}
        assert not bad, f"tasks went wrong in cleared {run_id}: {bad}\n{deployment.diagnostics(run_id)}"
        state, run_type, cleared = deployment.query(
            "SELECT state, run_type, clear_number FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id)[0]
        if state in ("success", "failed"):
            return state, run_type, cleared
        assert time.monotonic() - started < timeout, \
            f"cleared {run_id} did not end within {timeout:g} s: {state}, {tasks}\n{deployment.diagnostics(run_id)}"
        time.sleep(0.2)


def _conf(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, (bytes, memoryview)):
        value = bytes(value).decode("utf-8")
    return json.loads(value) if isinstance(value, str) else dict(value)


class UploadOutage:
    """InExchange fails while the last day's run submits; the earlier days only lose some replies.

    Called on every poll of the first backfill. When the outage day's run starts, the lost replies
    stop and the simulator holds every upload (``POST documents``). Once as many uploads are held
    as the day has invoices claimed (``submitting``), each invoice is past its claim and its
    recipient look-up and none has been sent; then every API call answers 5xx and the held uploads
    are broken off, so each upload's retries meet 5xx until the hook gives up and the invoice ends
    ``failed``. When the day's submit task has ended, the faults are switched off.
    """

    def __init__(self, deployment: Deployment, day: date) -> None:
        self.deployment = deployment
        self.day = day
        self.logical_date = logical_date_of(day)
        self.phase = "before"
        self.broken_off = 0

    def __call__(self, watch: BackfillWatch) -> None:
        sim = self.deployment.simulator
        run = next((r for r in watch.runs.values() if r.logical_date == self.logical_date), None)
        if run is None:
            return
        if self.phase == "before" and run.state == "running":
            sim.configure(fault_rate=0.0)
            sim.hold("documents", phase="before")
            self.phase = "holding"
        elif self.phase == "holding":
            claimed = self.deployment.rows(
                "SELECT COUNT(*) AS n FROM inexchange_dispatch WHERE invoice_date = :day AND state = 'submitting'",
                day=self.day.isoformat())[0]["n"]
            held = int(sim.stats()["held"].get(UPLOAD_HOLD, 0))
            if claimed and held >= claimed:
                sim.configure(fault_rate=1.0, faults=["5xx"])
                self.broken_off = sim.release(drop=True)
                self.phase = "outage"
        elif self.phase == "outage":
            submits = [s for t, s in watch.tasks.get(run.run_id, {}).items() if t.startswith("submit")]
            if submits and all(s in ("success", "failed", "skipped") for s in submits):
                sim.configure(fault_rate=0.0)
                self.phase = "over"


# ---- the ERP ---------------------------------------------------------------------------------
def inexchange_invoices(deployment: Deployment) -> dict[int, dict[str, Any]]:
    """The ERP's posted invoices of the three days whose customer is billed through InExchange."""
    rows = deployment.erp_rows(
        "SELECT i.invoice_id, i.invoice_number, i.invoice_date, c.customer_number FROM customer_invoice i "
        "JOIN customer c ON c.customer_id = i.customer_id WHERE i.status = 'posted' "
        "AND c.billing_method = :method AND i.invoice_date >= :first AND i.invoice_date <= :last",
        method=BILLING_METHOD, first=DAYS[0].isoformat(), last=DAYS[-1].isoformat())
    return {int(r["invoice_id"]): {**r, "invoice_date": str(r["invoice_date"])[:10]} for r in rows}


def expected_problems(summary: Any, invoices: dict[int, dict[str, Any]]) -> dict[int, str]:
    """Invoice id -> the problem the validation must name, for every planted defect."""
    customer_problem = {number: kind for kind, numbers in summary.bad_customers.items() for number in numbers}
    invoice_problem = {number: kind for kind, numbers in summary.defective_invoices.items() for number in numbers}
    problems = {}
    for invoice_id, row in invoices.items():
        kind = invoice_problem.get(str(row["invoice_number"])) or customer_problem.get(str(row["customer_number"]))
        if kind is not None:
            problems[invoice_id] = kind
    return problems


def fix_erp(deployment: Deployment, summary: Any, problems: dict[int, str],
            invoices: dict[int, dict[str, Any]]) -> list[str]:
    """Repair every planted defect of the three days the way a person would; returns what was done.

    Every change is an UPDATE with bound parameters, one transaction for all.
    """
    from stdnum import ean, luhn

    done = []
    customers = sorted({str(invoices[i]["customer_number"]) for i, kind in problems.items() if kind in
                        summary.bad_customers})
    kind_of = {number: kind for kind, numbers in summary.bad_customers.items() for number in numbers}
    with deployment.erp.begin() as conn:
        for number in customers:
            kind = kind_of[number]
            row = dict(conn.execute(text("SELECT * FROM customer WHERE customer_number = :number"),
                                    {"number": number}).one()._mapping)
            digits = (row["org_number"] or "").replace("-", "")
            changes: dict[str, Any]
            if kind == "missing_org_number":  # the VAT number still carries it
                digits = row["vat_number"][2:12]
                changes = {"org_number": f"{digits[:6]}-{digits[6:]}"}
            elif kind == "invalid_org_number":
                digits = digits[:9] + luhn.calc_check_digit(digits[:9])
                changes = {"org_number": f"{digits[:6]}-{digits[6:]}", "vat_number": f"SE{digits}01"}
            elif kind in ("missing_vat_number", "vat_org_mismatch"):
                changes = {"vat_number": f"SE{digits}01"}
            elif kind == "invalid_gln":
                changes = {"gln": row["gln"][:12] + ean.calc_check_digit(row["gln"][:12])}
            elif kind == "inactive":
                changes = {"is_active": True}
            elif kind == "marking_too_long":
                changes = {"marking": row["marking"][:60].strip()}
            elif kind == "marking_control_character":
                changes = {"marking": "".join(ch for ch in row["marking"] if unicodedata.category(ch) != "Cc")}
            else:  # pragma: no cover - a new kind of defect needs its fix here
                raise AssertionError(f"no fix for customer defect {kind}")
            # column names come from the literals above, never from data
            assignments = ", ".join(f"{column} = :{column}" for column in changes)
            conn.execute(text(f"UPDATE customer SET {assignments} WHERE customer_number = :number"),
                         {**changes, "number": number})
            done.append(f"customer {number} ({kind}): {changes}")

        invoice_kinds = {number: kind for kind, numbers in summary.defective_invoices.items()
                         for number in numbers}
        for invoice_id in sorted(problems):
            kind = invoice_kinds.get(str(invoices[invoice_id]["invoice_number"]))
            if kind is None:
                continue
            if kind == "due_before_invoice":
                due = date.fromisoformat(invoices[invoice_id]["invoice_date"]) + timedelta(days=30)
                conn.execute(text("UPDATE customer_invoice SET due_date = :due WHERE invoice_id = :id"),
                             {"due": due.isoformat(), "id": invoice_id})
            else:  # total_mismatch, line_amount_mismatch: recompute lines and totals from quantity x price
                lines = conn.execute(text("SELECT line_number, quantity, unit_price, vat_rate FROM "
                                          "customer_invoice_line WHERE invoice_id = :id"), {"id": invoice_id}).all()
                amount, per_rate = Decimal("0.00"), Counter()
                for line_number, quantity, price, rate in lines:
                    line_amount = (Decimal(str(quantity)) * Decimal(str(price))).quantize(CENT, ROUND_HALF_UP)
                    conn.execute(text("UPDATE customer_invoice_line SET line_amount = :amount "
                                      "WHERE invoice_id = :id AND line_number = :line"),
                                 {"amount": str(line_amount), "id": invoice_id, "line": line_number})
                    amount += line_amount
                    per_rate[Decimal(str(rate))] += line_amount
                vat = sum(((base * rate / 100).quantize(CENT, ROUND_HALF_UP) for rate, base in per_rate.items()),
                          Decimal("0.00"))
                conn.execute(text("UPDATE customer_invoice SET amount_ex_vat = :amount, vat_amount = :vat, "
                                  "total_amount = :total WHERE invoice_id = :id"),
                             {"amount": str(amount), "vat": str(vat), "total": str(amount + vat), "id": invoice_id})
            done.append(f"invoice {invoices[invoice_id]['invoice_number']} ({kind})")
    return done


# ---- checks ----------------------------------------------------------------------------------
def check_runs(deployment: Deployment, watch: BackfillWatch, *, conf: dict[str, Any]) -> None:
    context = f"backfill {watch.backfill_id}: runs {watch.runs}, tasks {watch.tasks}"
    assert sorted(watch.by_day()) == list(DAYS), context
    for day, run in watch.by_day().items():
        assert run.state == "success", f"{day}: {context}\n{deployment.diagnostics(run.run_id)}"
        assert run.run_type == "backfill", context
        assert run.conf == conf, context
        tasks = watch.tasks[run.run_id]
        assert TASKS <= {name.split("[")[0] for name in tasks}, context
        assert {state for task, state in tasks.items() if task != "watcher"} == {"success"}, context
        assert tasks.get("watcher") == "skipped", context
    skipped = deployment.query("SELECT logical_date, exception_reason FROM backfill_dag_run "
                               "WHERE backfill_id = %s AND exception_reason IS NOT NULL", watch.backfill_id)
    assert not skipped, f"the backfill left days out: {skipped}"


def ledger(deployment: Deployment) -> dict[int, dict[str, Any]]:
    return {int(r["invoice_id"]): r for r in deployment.rows("SELECT * FROM inexchange_dispatch")}


def history(deployment: Deployment) -> dict[int, list[dict[str, Any]]]:
    trail: dict[int, list[dict[str, Any]]] = {}
    for row in deployment.rows("SELECT invoice_id, from_state, to_state, source, changed_at, dag_run_id "
                               "FROM inexchange_dispatch_history ORDER BY changed_at"):
        trail.setdefault(int(row["invoice_id"]), []).append(row)
    return trail


def check_sends(deployment: Deployment, expected: set[str]) -> dict[str, int]:
    """The simulator received exactly the ``expected`` erpDocumentIds, each once."""
    stats = deployment.simulator.stats()
    sends: dict[str, int] = stats["sends"]
    assert not stats["duplicates"], f"sent more than once: {stats['duplicates']}"
    assert all(count == 1 for count in sends.values()), {k: v for k, v in sends.items() if v != 1}
    assert set(sends) == expected, (f"only at InExchange: {sorted(set(sends) - expected)}; "
                                    f"never received: {sorted(expected - set(sends))}")
    return sends


def dry_run_logical_dates(deployment: Deployment, from_date: str, to_date: str) -> list[str]:
    result = deployment.stack.cli("backfill", "create", "--dag-id", DAG_ID, "--from-date", from_date,
                                  "--to-date", to_date, "--dry-run")
    planned = result.stdout.split("Runs to be attempted")[-1]
    return re.findall(r"(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})\+00:00", planned)


# ---- the test --------------------------------------------------------------------------------
def test_backfill_with_failures_then_reprocess(deployment: Deployment, summary: Any) -> None:
    from inexchange.times import now_text

    sim = deployment.simulator
    invoices = inexchange_invoices(deployment)
    problems = expected_problems(summary, invoices)
    per_day = Counter(row["invoice_date"] for row in invoices.values())
    valid_last_day = [i for i, row in invoices.items() if row["invoice_date"] == OUTAGE_DAY.isoformat()
                      and i not in problems]
    assert sorted(per_day) == [d.isoformat() for d in DAYS] and min(per_day.values()) >= 8, per_day
    assert len(valid_last_day) >= 3 and len(problems) >= 8, (valid_last_day, problems)

    # `--to-date` is inclusive on the logical date, 06:00 Stockholm: a bare date is midnight UTC
    assert dry_run_logical_dates(deployment, "2026-11-02", "2026-11-04") == [
        "2026-11-02 05:00:00", "2026-11-03 05:00:00"]

    # ---- first pass: lost replies on the first two days, InExchange down on the last ----------
    sim.configure(fault_rate=LOST_RATE, faults=["lost"])
    outage = UploadOutage(deployment, OUTAGE_DAY)
    try:
        first_id = create_backfill(deployment, "--max-active-runs", "1",
                                   "--dag-run-conf", json.dumps({"fail_on_action_needed": False}))
        first = watch_backfill(deployment, first_id, on_poll=outage)
    finally:
        sim.release()
        sim.configure(fault_rate=0.0)
    check_runs(deployment, first, conf={"fail_on_action_needed": False})
    assert outage.phase == "over", f"the outage never ran its course: {outage.phase}"
    assert outage.broken_off == len(valid_last_day), (outage.broken_off, valid_last_day)

    rows = ledger(deployment)
    assert set(rows) == set(invoices), f"ledger vs ERP: {sorted(set(rows) ^ set(invoices))}"
    states = {i: r["state"] for i, r in rows.items()}
    for invoice_id, kind in problems.items():
        assert states[invoice_id] == "rejected" and PROBLEM[kind] in (rows[invoice_id]["message"] or ""), \
            (kind, rows[invoice_id])
    for invoice_id in set(rows) - set(problems):
        expected = "failed" if invoices[invoice_id]["invoice_date"] == OUTAGE_DAY.isoformat() else "sent"
        assert states[invoice_id] == expected, (invoices[invoice_id], rows[invoice_id])
    for invoice_id in valid_last_day:
        row = rows[invoice_id]
        assert row["inexchange_document_id"] is None and row["message"].startswith("Sändningen misslyckades"), row
        assert row["next_retry_at"], row
    sent_first = {i for i, s in states.items() if s == "sent"}
    sends = check_sends(deployment, {rows[i]["erp_document_id"] for i in sent_first})
    faults = sim.stats()["faults"]
    assert faults.get("lost", 0) >= 1 and faults.get("5xx", 0) >= 4 * len(valid_last_day), faults
    print(f"first pass: {first.took_s:.0f} s; {Counter(states.values())}; faults {faults}")

    # ---- the ERP is fixed; the same days are backfilled again, newest first -------------------
    fixes = fix_erp(deployment, summary, problems, invoices)
    second_started = now_text()
    not_due = [i for i in valid_last_day if rows[i]["next_retry_at"] > second_started]
    assert not_due == valid_last_day, "the failed invoices' retry time should still be ahead"
    second_id = create_backfill(deployment, "--reprocess-behavior", "completed", "--run-backwards",
                                "--max-active-runs", "1",
                                "--dag-run-conf", json.dumps({"fail_on_action_needed": True}))
    second = watch_backfill(deployment, second_id)
    check_runs(deployment, second, conf={"fail_on_action_needed": True})

    # the existing runs were cleared and run again (same ids), newest first
    assert {r.run_id for r in second.runs.values()} == {r.run_id for r in first.runs.values()}
    assert all(r.clear_number == 1 for r in second.runs.values()), second.runs
    order = sorted(second.by_day(), key=lambda day: second.by_day()[day].start_date)
    assert order == sorted(DAYS, reverse=True), order

    first_rows, rows = rows, ledger(deployment)
    assert set(rows) == set(invoices)
    assert {i: r["state"] for i, r in rows.items() if r["state"] != "sent"} == {}, \
        {i: (r["state"], r["message"]) for i, r in rows.items() if r["state"] != "sent"}
    sends_now = check_sends(deployment, {r["erp_document_id"] for r in rows.values()})
    assert len(sends_now) == len(invoices) > len(sends)

    trail = history(deployment)
    for invoice_id in sent_first:  # left alone: not even re-registered
        later = [h for h in trail[invoice_id] if h["changed_at"] >= second_started]
        claims = [h for h in trail[invoice_id] if h["to_state"] == "submitting"]
        assert not later and len(claims) == 1, (invoices[invoice_id], trail[invoice_id])
    for invoice_id in problems:  # checked again, passed, sent once
        later = [h["to_state"] for h in trail[invoice_id] if h["changed_at"] >= second_started]
        assert later[:3] == ["pending", "ready", "submitting"] and later[-1] == "sent", (invoice_id, later)
        assert [h["to_state"] for h in trail[invoice_id]].count("submitting") == 1, trail[invoice_id]
    for invoice_id in valid_last_day:  # retried at once although next_retry_at was ahead
        claims = [h for h in trail[invoice_id] if h["to_state"] == "submitting"]
        assert len(claims) == 2 and claims[1]["changed_at"] >= second_started, trail[invoice_id]
        assert claims[1]["changed_at"] < first_rows[invoice_id]["next_retry_at"], \
            (trail[invoice_id], first_rows[invoice_id])

    report = deployment.rows("SELECT invoice_id, data_interval_start, data_interval_end, state, invoice_number "
                             "FROM inexchange_report")
    keys = Counter((int(r["invoice_id"]), r["data_interval_start"]) for r in report)
    assert all(count == 1 for count in keys.values()), [k for k, c in keys.items() if c > 1]
    expected_keys = {(i, interval_of(date.fromisoformat(row["invoice_date"]))[0]) for i, row in invoices.items()}
    assert set(keys) == expected_keys, f"report vs ledger: {sorted(set(keys) ^ expected_keys)}"
    assert all(r["state"] == "sent" for r in report), [r for r in report if r["state"] != "sent"]
    day_of = {i: date.fromisoformat(row["invoice_date"]) for i, row in invoices.items()}
    assert all(r["data_interval_end"] == interval_of(day_of[int(r["invoice_id"])])[1] for r in report), report
    print(f"second pass: {second.took_s:.0f} s; {len(fixes)} fixes; {len(sends_now)} invoices sent once each")

    # ---- a person clears a finished run in the UI: it runs again and changes nothing ---------
    run = second.by_day()[DAYS[1]]
    report_before = deployment.rows("SELECT * FROM inexchange_report ORDER BY invoice_id, data_interval_start")
    history_before = sum(len(entries) for entries in history(deployment).values())
    assert clear_run(deployment, run.run_id) == ("success", "backfill", 2)
    check_sends(deployment, set(sends_now))
    assert sum(len(entries) for entries in history(deployment).values()) == history_before
    assert {i: r["state"] for i, r in ledger(deployment).items()} == {i: "sent" for i in invoices}
    assert deployment.rows("SELECT * FROM inexchange_report ORDER BY invoice_id, data_interval_start") == report_before
