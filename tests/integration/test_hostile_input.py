"""Hostile ERP rows through a real ``dag.test()`` run: no crash, every row sent or rejected clearly.

The ERP is a *permissive* copy of the adapter contract: the same four tables and columns without
NOT NULL, CHECK, UNIQUE, primary or foreign keys, as views over a messy ERP give them.

- SQLite keeps the contract's declared types; its dynamic typing lets text into number, date and
  boolean columns, fractions and text into keys, blobs and NUL into text.
- PostgreSQL keeps the keys typed (``BIGINT`` ids, ``INTEGER`` line numbers, ``BYTEA`` content) and
  makes every other column ``TEXT``, like a view that casts nothing over text fields: wrong values
  come through as the ERP holds them, and even the good invoices arrive as text ('2500.00',
  'true', '2026-11-17'). The keys stay typed because the pipeline looks rows up by their integer
  keys (bound integer parameters, so the ERP's indexes serve the look-ups): a view over text keys
  must cast them, and PostgreSQL cannot hold fractional or text keys in such a column anyway.

The hostile cases (:mod:`hostile_corpus`) share the day with the generator's invoices, so that
"nothing else disturbed" is checked too: the good invoices are sent exactly once, their ledger and
report rows right, and the ERP itself is never written to. One customer is deleted by an Airflow
listener after the ``validate`` task succeeded and before ``submit`` runs; its invoice must end
rejected and never reach InExchange. Manual runs follow: one listing hostile invoice numbers (none
found, nothing touched), one listing only blanks (nothing selected, not the whole day), one listing
the invoices no day reaches (rejected, with the reason).
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.listeners import hookimpl
from dispatch_testing.hostile_corpus import (
    CASES,
    CUSTOMER_NULLS,
    HOSTILE_NUMBERS,
    INVOICE_NULLS,
    LINE_NULLS,
    MARKING,
    RUN_DAY,
    Case,
    NotExtracted,
    Rejected,
    Sent,
    WithoutId,
    cases_for,
    iter_rows,
)
from dispatch_testing.support import COLUMNS, SELLER, bound, pg_connect_args, pg_url, postgres_conn_env, sqlite_conn_env
from lxml import etree
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from test_dispatch_e2e import CUSTOMER_PROBLEM, INVOICE_PROBLEM, SIM_TO_LEDGER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
NS = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
      "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"}
OTHER_DAY = RUN_DAY.replace(day=RUN_DAY.day + 10)  # a day without invoices

#: the contract's declared types (include/sql/erp_schema.sql), which SQLite keeps as affinities
CONTRACT_TYPES = {
    "customer": {
        "customer_id": "BIGINT", "customer_number": "VARCHAR(30)", "name": "VARCHAR(200)", "is_active": "BOOLEAN",
        "is_private_person": "BOOLEAN", "org_number": "VARCHAR(20)", "vat_number": "VARCHAR(20)",
        "country_code": "VARCHAR(2)", "language": "VARCHAR(5)", "currency": "VARCHAR(3)",
        "billing_method": "VARCHAR(50)", "invoice_email": "VARCHAR(254)", "gln": "VARCHAR(20)",
        "marking": "VARCHAR(500)", "attach_documents": "BOOLEAN", "street": "VARCHAR(200)",
        "postal_code": "VARCHAR(10)", "city": "VARCHAR(100)",
    },
    "customer_invoice": {
        "invoice_id": "BIGINT", "invoice_number": "VARCHAR(30)", "customer_id": "BIGINT",
        "invoice_type": "VARCHAR(10)", "status": "VARCHAR(10)", "invoice_date": "DATE", "due_date": "DATE",
        "currency": "VARCHAR(3)", "amount_ex_vat": "NUMERIC(18,2)", "vat_amount": "NUMERIC(18,2)",
        "total_amount": "NUMERIC(18,2)", "your_reference": "VARCHAR(100)", "order_number": "VARCHAR(50)",
        "credited_invoice_number": "VARCHAR(30)",
    },
    "customer_invoice_line": {
        "invoice_id": "BIGINT", "line_number": "INTEGER", "article_number": "VARCHAR(30)",
        "description": "VARCHAR(200)", "quantity": "NUMERIC(18,4)", "unit": "VARCHAR(10)",
        "unit_price": "NUMERIC(18,4)", "vat_rate": "NUMERIC(5,2)", "line_amount": "NUMERIC(18,2)",
    },
    "invoice_attachment": {"invoice_id": "BIGINT", "file_name": "VARCHAR(200)", "mime_type": "VARCHAR(100)",
                           "content": "BYTEA"},
}
#: the columns PostgreSQL keeps typed; every other one is TEXT there
PG_TYPED = {("customer", "customer_id"), ("customer_invoice", "invoice_id"), ("customer_invoice", "customer_id"),
            ("customer_invoice_line", "invoice_id"), ("customer_invoice_line", "line_number"),
            ("invoice_attachment", "invoice_id"), ("invoice_attachment", "content")}
INSERTS = {"customer": "erp_insert_customer", "customer_invoice": "erp_insert_invoice",
           "customer_invoice_line": "erp_insert_invoice_line"}


@dataclass
class HostileErp:
    backend: str
    engine: Engine
    conn_env: str
    summary: Any
    cases: list[Case]


def permissive_ddl(backend: str) -> list[str]:
    """CREATE TABLE statements of the permissive copy (names and types are this module's constants)."""
    statements = []
    for table, columns in CONTRACT_TYPES.items():
        assert tuple(columns) == COLUMNS[table], table
        types = {c: (t if backend == "sqlite" or (table, c) in PG_TYPED else "TEXT") for c, t in columns.items()}
        statements.append(f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in types.items())})")
    return statements


def write_cases(engine: Engine, cases: list[Case]) -> None:
    """Store the cases' rows in the permissive copy of the contract (:func:`permissive_ddl`)."""
    from inexchange_devkit.erpgen.generator import insert_statement

    with engine.begin() as conn:
        inserts = {table: insert_statement(conn, table) for table in INSERTS}
        for table, row in iter_rows(cases):
            conn.execute(inserts[table], {k: bound(v) for k, v in row.items()})
        for case in cases:
            for table, column in case.raw_text:  # bytes stored as TEXT: not valid UTF-8
                assert table == "customer" and case.customer is not None
                conn.execute(text(f"UPDATE customer SET {column} = CAST({column} AS TEXT) "
                                  "WHERE customer_number = :number"), {"number": case.customer["customer_number"]})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hostile_erp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HostileErp]:
    from inexchange_devkit.erpgen import generate

    backend = request.param
    if backend == "sqlite":
        path = tmp_path / "erp.db"
        engine, conn_env = create_engine(f"sqlite:///{path}"), sqlite_conn_env(path)
    else:
        schema = request.getfixturevalue("pg_schema")
        engine = create_engine(pg_url(), connect_args=pg_connect_args(schema))
        conn_env = postgres_conn_env(schema)
    with engine.begin() as conn:
        for ddl in permissive_ddl(backend):
            conn.execute(text(ddl))
    summary = generate(engine, seed=23, customers=20, invoices=24, start_date=RUN_DAY, days=1, drafts=3,
                       create_schema=False)
    cases = cases_for(backend)
    write_cases(engine, cases)
    yield HostileErp(backend, engine, conn_env, summary, cases)
    engine.dispose()


@pytest.fixture
def simulator() -> Iterator[Any]:
    from inexchange_devkit.simulator.testing import run_simulator

    with run_simulator(seed=3, status_step_ms=200, stop_rate=0.0, error_rate=0.0, api_key="hostile-key") as sim:
        yield sim


@pytest.fixture
def dispatch_dag(airflow_db: Path, hostile_erp: HostileErp, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", hostile_erp.conn_env)
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", hostile_erp.conn_env)  # the ledger beside the ERP
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": simulator.base_url, "password": simulator.api_key,
        "extra": {"erp_id": "hostile-erp"},
    }))
    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_SELLER", json.dumps(SELLER))
    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_POLL_INTERVAL", "0.3")
    spec = importlib.util.spec_from_file_location("inexchange_dispatch_hostile", ROOT / "dags" / "inexchange_dispatch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.inexchange_dispatch()
    for task in dag.tasks:  # a crash must show as a failed task at once, not after retries minutes apart
        task.retries = 0
    return dag


class DeleteCustomersAfterValidate:
    """An Airflow listener: once ``validate`` succeeded, delete these customers from the ERP.

    ``dag.test()`` runs every task in this process and calls the task-instance listener hooks, so
    the rows disappear exactly between the ``validate`` and ``submit`` tasks of the real run.
    """

    def __init__(self, engine: Engine, customer_ids: list[int], invoice_ids: list[int]) -> None:
        self.engine = engine
        self.customer_ids = customer_ids
        self.invoice_ids = invoice_ids
        self.states_seen: dict[int, str] = {}
        self.fired = 0

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        if task_instance.task_id != "validate" or self.fired:
            return
        self.fired += 1
        with self.engine.begin() as conn:
            for invoice_id in self.invoice_ids:  # what validate decided: they may be sent
                self.states_seen[invoice_id] = conn.execute(
                    text("SELECT state FROM inexchange_dispatch WHERE invoice_id = :id"), {"id": invoice_id}).scalar()
            for customer_id in self.customer_ids:
                conn.execute(text("DELETE FROM customer WHERE customer_id = :id"), {"id": customer_id})


def run_day(dag: Any, day: Any = RUN_DAY, **conf: Any) -> Any:
    run_after = pendulum.datetime(day.year, day.month, day.day, 6, tz="Europe/Stockholm").add(days=1)
    conf = {"fail_on_action_needed": False, "batch_size": 40, "dry_run": False, "retry_rejected": True,
            "invoice_numbers": [], **conf}
    dag_run = dag.test(logical_date=run_after, run_conf=conf)
    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert {state for (task, _), state in states.items() if task != "watcher"} == {"success"}, states
    assert states[("watcher", -1)] == "skipped", states
    return dag_run


def rows(engine: Engine, sql: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql))]


def erp_dump(erp: HostileErp) -> dict[str, list[tuple]]:
    """Every ERP row, exactly as stored (SQLite text as bytes), sorted."""
    result = {}
    if erp.backend == "sqlite":
        raw = erp.engine.raw_connection()
        factory = raw.driver_connection.text_factory
        try:
            raw.driver_connection.text_factory = bytes
            for table in COLUMNS:
                cursor = raw.cursor()
                cursor.execute(f"SELECT {', '.join(COLUMNS[table])} FROM {table}")
                result[table] = sorted(cursor.fetchall(), key=repr)
        finally:
            raw.driver_connection.text_factory = factory
            raw.close()
        return result
    with erp.engine.connect() as conn:
        for table in COLUMNS:
            result[table] = sorted((tuple(r) for r in conn.execute(text(f"SELECT {', '.join(COLUMNS[table])} "
                                                                        f"FROM {table}"))), key=repr)
    return result


def received_documents(simulator: Any) -> dict[str, list[tuple[bytes, etree._Element]]]:
    """The UBL files InExchange received, by their cbc:ID."""
    found: dict[str, list[tuple[bytes, etree._Element]]] = {}
    for path in sorted((simulator.data_dir / "documents").glob("*.xml")):
        content = path.read_bytes()
        root = etree.fromstring(content)
        found.setdefault(root.findtext("cbc:ID", namespaces=NS), []).append((content, root))
    return found


def check_document(case: Case, content: bytes, root: etree._Element) -> None:
    expected = {"cbc:ID": str(case.invoice_number), "cbc:IssueDate": RUN_DAY.isoformat(),
                "cbc:BuyerReference": MARKING, **case.expect.document}
    for path, value in expected.items():
        found = root.xpath(path, namespaces=NS)
        if value is None:
            assert found == [], (case.key, path, found)
            continue
        assert len(found) == 1, (case.key, path, found)
        actual = found[0] if isinstance(found[0], str) else found[0].text
        assert actual == value, (case.key, path, actual, value)
    for escaped in case.expect.escaped:
        assert escaped in content, (case.key, escaped)


#: Python's and pandas' spellings of a missing value, never part of a message
MISSING_WORDS = ("None", "nan", "NaN", "NaT", "<NA>")


def check_message(case: Case, message: str | None) -> None:
    assert message, f"{case.key}: no message"
    for fragment in case.fragments():
        assert fragment in message, f"{case.key}: {fragment!r} not in {message!r}"
    assert not any(f" {word}" in message or f"'{word}'" in message for word in MISSING_WORDS), (case.key, message)
    assert len(message) < 1000, (case.key, len(message))


def test_the_corpus_has_a_null_case_for_every_column() -> None:
    assert set(CUSTOMER_NULLS) == set(COLUMNS["customer"])
    assert set(INVOICE_NULLS) == set(COLUMNS["customer_invoice"])
    assert set(LINE_NULLS) == set(COLUMNS["customer_invoice_line"])
    nulls = [case for case in CASES if case.key.startswith("null-")]
    assert len(nulls) == len(CUSTOMER_NULLS) + len(INVOICE_NULLS) + len(LINE_NULLS)
    for case in nulls:
        table, column = case.key.split("-", 2)[1:]
        row = {"customer": case.customer, "invoice": case.invoice, "line": case.lines[0]}[table]
        assert row is not None and row[column] is None, case.key
    assert {type(case.expect) for case in CASES} == {Sent, Rejected, NotExtracted, WithoutId}


def test_hostile_rows_through_the_dag(dispatch_dag: Any, hostile_erp: HostileErp, simulator: Any) -> None:
    from airflow.sdk.listener import get_listener_manager

    erp, cases = hostile_erp, hostile_erp.cases
    deleted = [case for case in cases if case.delete_customer_after_validate]
    before = erp_dump(erp)
    listener = DeleteCustomersAfterValidate(erp.engine, [c.customer["customer_id"] for c in deleted],
                                            [c.invoice["invoice_id"] for c in deleted])
    manager = get_listener_manager()
    manager.add_listener(listener)
    try:
        started = time.monotonic()
        dag_run = run_day(dispatch_dag)
        elapsed = time.monotonic() - started
    finally:
        manager.pm.unregister(listener)
    assert listener.fired == 1 and set(listener.states_seen.values()) == {"ready"}, listener.states_seen
    assert elapsed < 300, f"the day took {elapsed:.0f} s"

    ledger = {r["invoice_id"]: r for r in rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    report = {r["invoice_id"]: r for r in rows(erp.engine, "SELECT * FROM inexchange_report")}
    stats = simulator.stats()
    sends = stats["sends"]
    documents = received_documents(simulator)
    assert not stats["duplicates"]
    assert set(sends.values()) <= {1}, {k: v for k, v in sends.items() if v != 1}
    assert set(report) == set(ledger)
    extract = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "extract")
    extracted = extract.xcom_pull(task_ids="extract")
    without_id = extracted.get("without_id", [])

    # ---- every hostile case ----------------------------------------------------------------------
    outcomes: dict[str, int] = {}
    for case in cases:
        expect = case.expect
        outcomes[type(expect).__name__] = outcomes.get(type(expect).__name__, 0) + 1
        if isinstance(expect, WithoutId):
            assert case.erp_document_id not in sends, case.key
            matching = [m for m in without_id if m.startswith(f"Faktura {case.invoice_number} ")]
            assert len(matching) == 1, (case.key, without_id)
            check_message(case, matching[0])
            continue
        row = ledger.get(case.invoice["invoice_id"])
        if isinstance(expect, NotExtracted):
            assert row is None, (case.key, expect.reason, row)
            assert case.erp_document_id not in sends, case.key
            continue
        assert row is not None, f"{case.key}: not in the ledger"
        assert report[row["invoice_id"]]["state"] == row["state"], case.key
        assert report[row["invoice_id"]]["message"] == row["message"], case.key
        if isinstance(case.invoice_number, str) and "\x1f" not in case.invoice_number:
            assert row["invoice_number"] == case.invoice_number, case.key  # exactly, SQL and Unicode alike
        if isinstance(expect, Rejected):
            assert row["state"] == "rejected", (case.key, row["state"], row["message"])
            assert case.erp_document_id not in sends, f"{case.key}: rejected but it reached InExchange"
            check_message(case, row["message"])
            continue
        assert row["state"] == "sent", (case.key, row["state"], row["message"])
        assert sends.get(case.erp_document_id) == 1, case.key
        assert row["message"] is None, case.key
        received = documents.get(str(case.invoice_number), [])
        assert len(received) == 1, (case.key, len(received))
        check_document(case, *received[0])
    assert len(without_id) == outcomes.get("WithoutId", 0)
    # they are not in the ledger, but the report task counts them among the invoices that need a person
    reported = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "report").xcom_pull(task_ids="report")
    assert reported["without_id"] == len(without_id) > 0
    assert all(str(case.invoice_number) in reported["action_needed"] for case in cases
               if isinstance(case.expect, WithoutId) and case.invoice_number)
    assert outcomes["Sent"] >= 20 and outcomes["Rejected"] >= 40

    # every change is in the history, from pending to the state the row is in
    history = rows(erp.engine, "SELECT invoice_id, to_state FROM inexchange_dispatch_history ORDER BY changed_at")
    for invoice_id, row in ledger.items():
        states = [h["to_state"] for h in history if h["invoice_id"] == invoice_id]
        assert states[0] == "pending" and states[-1] == row["state"], (invoice_id, states)

    # ---- the generator's invoices: nothing disturbed -----------------------------------------------
    check_generated_invoices(erp, before, ledger, report, sends, documents, simulator)
    hostile_ids = {case.invoice["invoice_id"] for case in cases}
    generated = {i for i in ledger if i not in hostile_ids}
    assert len(sends) == sum(1 for r in ledger.values() if r["state"] == "sent")
    assert generated, "the day has generated invoices"

    # ---- the pipeline never writes to the ERP: only the listener's deletion changed it -------------
    after = erp_dump(erp)
    assert {t: r for t, r in after.items() if t != "customer"} == {t: r for t, r in before.items() if t != "customer"}
    removed = [r for r in before["customer"] if r not in after["customer"]]
    assert len(removed) == len(deleted) and len(after["customer"]) == len(before["customer"]) - len(deleted)

    # ---- a manual run listing hostile numbers finds none and touches nothing ----------------------
    from inexchange.validation import shown

    history = rows(erp.engine, "SELECT * FROM inexchange_dispatch_history ORDER BY history_id")
    report_rows = rows(erp.engine, "SELECT * FROM inexchange_report ORDER BY invoice_id, data_interval_start")
    manual = run_day(dispatch_dag, RUN_DAY, invoice_numbers=list(HOSTILE_NUMBERS))
    extract = next(ti for ti in manual.get_task_instances() if ti.task_id == "extract")
    result = extract.xcom_pull(task_ids="extract")
    assert result["not_found"] == [shown(n, None) for n in HOSTILE_NUMBERS if n.strip()], result
    assert not any("\x00" in n for n in result["not_found"])
    assert result["extracted"] == 0
    # a list of blanks alone is still a list: it selects nothing, not the run's whole day
    blanks = run_day(dispatch_dag, RUN_DAY, invoice_numbers=["  ", ""])
    extract = next(ti for ti in blanks.get_task_instances() if ti.task_id == "extract")
    assert extract.xcom_pull(task_ids="extract")["extracted"] == 0
    assert rows(erp.engine, "SELECT * FROM inexchange_dispatch_history ORDER BY history_id") == history
    assert rows(erp.engine, "SELECT * FROM inexchange_report ORDER BY invoice_id, data_interval_start") == report_rows
    assert simulator.stats()["sends"] == sends
    assert erp_dump(erp) == after

    # ---- a manual run listing the invoices no day reaches rejects them, with the reason -----------
    unreachable = [case for case in cases if isinstance(case.expect, NotExtracted) and case.expect.manual]
    assert {case.key for case in unreachable} >= {"null-invoice-invoice_date", "invoice-date-9999"}
    manual = run_day(dispatch_dag, OTHER_DAY, invoice_numbers=[str(c.invoice_number) for c in unreachable])
    extract = next(ti for ti in manual.get_task_instances() if ti.task_id == "extract")
    assert extract.xcom_pull(task_ids="extract")["not_found"] == []
    now = {r["invoice_id"]: r for r in rows(erp.engine, "SELECT * FROM inexchange_dispatch")}
    for case in unreachable:
        row = now[case.invoice["invoice_id"]]
        assert row["state"] == "rejected", (case.key, row)
        check_message(case, row["message"])
    assert {i: (r["state"], r["message"]) for i, r in now.items() if i in ledger} == {
        i: (r["state"], r["message"]) for i, r in ledger.items()}
    assert simulator.stats()["sends"] == sends


def _flag(value: Any) -> bool:
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip().lower() in ("1", "true", "t")


def _text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_generated_invoices(erp: HostileErp, before: dict[str, list[tuple]], ledger: dict[int, dict[str, Any]],
                             report: dict[int, dict[str, Any]], sends: dict[str, int],
                             documents: dict[str, list[tuple[bytes, etree._Element]]], simulator: Any) -> None:
    """The generator's invoices of the day end as they would without the hostile rows."""
    import httpx

    customer_columns, invoice_columns = COLUMNS["customer"], COLUMNS["customer_invoice"]
    customers = {row[0]: dict(zip(customer_columns, row)) for row in before["customer"]
                 if isinstance(row[0], int) and row[0] < 9000}
    attachments: dict[int, int] = {}
    for row in before["invoice_attachment"]:
        attachments[row[0]] = attachments.get(row[0], 0) + 1
    bad = {n: kind for kind, numbers in erp.summary.bad_customers.items() for n in numbers}
    defective = {n: kind for kind, numbers in erp.summary.defective_invoices.items() for n in numbers}
    in_scope = []
    for row in before["customer_invoice"]:
        invoice = dict(zip(invoice_columns, row))
        if not isinstance(invoice["invoice_id"], int) or invoice["invoice_id"] >= 90000:
            continue
        customer = customers[invoice["customer_id"]]
        if (_text_of(invoice["status"]) == "posted" and _text_of(customer["billing_method"]) == "InExchange utskrift (API)"
                and _text_of(invoice["invoice_date"])[:10] == RUN_DAY.isoformat()):
            in_scope.append((invoice, customer))
    assert len(in_scope) >= 10
    assert {i["invoice_id"] for i, _ in in_scope} == {i for i in ledger if i < 90000}
    with httpx.Client(base_url=simulator.base_url) as client:
        token = client.post("clientTokens/create", headers={"APIKey": simulator.api_key},
                            json={"erpId": "hostile-erp"}).json()["token"]
        for invoice, customer in in_scope:
            row = ledger[invoice["invoice_id"]]
            number, customer_number = _text_of(invoice["invoice_number"]), _text_of(customer["customer_number"])
            assert report[row["invoice_id"]]["state"] == row["state"]
            if customer_number in bad or number in defective:
                assert row["state"] == "rejected", number
                problem = CUSTOMER_PROBLEM[bad[customer_number]] if customer_number in bad else \
                    INVOICE_PROBLEM[defective[number]]
                assert problem in row["message"], row["message"]
                assert row["erp_document_id"] not in sends
                continue
            assert sends.get(row["erp_document_id"]) == 1, number
            at_sim = client.post(f"invoices/outbound/byerpid/{row['erp_document_id']}",
                                 headers={"ClientToken": token}, json={"includeFileInfo": False}).json()
            assert row["state"] == SIM_TO_LEDGER[at_sim["currentStatus"]["status"]], number
            assert row["inexchange_document_id"] == at_sim["id"]
            (content, root), = documents[number]
            embedded = root.findall("cac:AdditionalDocumentReference", NS)
            expected = attachments.get(invoice["invoice_id"], 0) if _flag(customer["attach_documents"]) else 0
            assert len(embedded) == expected, (number, customer["attach_documents"], len(embedded))
