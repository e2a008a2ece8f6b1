"""The extract, validate and report stages in chunks, on real databases (SQLite files and the
PostgreSQL server) and a generated ERP.

With a chunk of a few invoices (``pipeline.CHUNK_SIZE`` patched) the stages must give what one chunk
of the whole day gives: the same counts, ledger states and messages, history, report rows, log
summary and XCom values. Validation commits each chunk in one transaction, and the lists that go to
XCom stay a page long however many invoices they would name.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from dispatch_testing.support import pg_connect_args, pg_url, postgres_conn_env, sqlite_conn_env
from inexchange_devkit.erpgen import generate
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from inexchange import pipeline
from inexchange.erp import INEXCHANGE_BILLING_METHOD
from inexchange.ledger import Ledger, RunScope, Transition
from inexchange.states import LedgerState

DAY = date(2026, 11, 16)
SCOPE = RunScope(
    dag_run_id="scheduled__2026-11-15T23:00:00+00:00",
    start=datetime(2026, 11, 15, 23, tzinfo=UTC),
    end=datetime(2026, 11, 17, 23, tzinfo=UTC),
    start_date=DAY,
    end_date=DAY + timedelta(days=2),
)
#: a chunk far smaller than the day, and one that holds all of it
SMALL, WHOLE = 7, 1_000_000
#: the ERP's invoices without a whole-number invoice_id (SQLite only: PostgreSQL keeps the key a BIGINT)
WITHOUT_ID = 10
ERP_CONN, LEDGER_CONN = "erp_default", "inexchange_reporting"


@dataclass
class Backend:
    """Where a test's ERP lives, and how a fresh ledger is made next to it."""

    name: str
    erp_env: str
    new_ledger: Callable[[str], tuple[str, Engine]]  # name -> (AIRFLOW_CONN_* value, engine)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A generated ERP of 50 posted invoices over the scope's two days (some rejected, for their
    customer or themselves), and a factory of fresh, empty ledgers on the same kind of database."""
    engines: list[Engine] = []
    if request.param == "sqlite":
        erp = create_engine(f"sqlite:///{tmp_path / 'erp.db'}")
        generate(erp, seed=7, customers=15, invoices=50, start_date=DAY, days=2, drafts=3)
        add_invoices_without_id(erp)
        erp.dispose()

        def sqlite_ledger(name: str) -> tuple[str, Engine]:
            path = tmp_path / f"ledger-{name}.db"
            engines.append(create_engine(f"sqlite:///{path}"))
            return sqlite_conn_env(path), engines[-1]

        yield Backend("sqlite", sqlite_conn_env(tmp_path / "erp.db"), sqlite_ledger)
    else:
        schemas: list[str] = [request.getfixturevalue("pg_schema")]
        erp = create_engine(pg_url(), connect_args=pg_connect_args(schemas[0]))
        generate(erp, seed=7, customers=15, invoices=50, start_date=DAY, days=2, drafts=3)
        erp.dispose()
        admin = create_engine(pg_url())

        def postgres_ledger(name: str) -> tuple[str, Engine]:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))  # a name made here, not input
            schemas.append(schema)
            engines.append(create_engine(pg_url(), connect_args=pg_connect_args(schema)))
            return postgres_conn_env(schema), engines[-1]

        yield Backend("postgres", postgres_conn_env(schemas[0]), postgres_ledger)
        for engine in engines:
            engine.dispose()
        with admin.begin() as conn:
            for schema in schemas[1:]:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    for engine in engines:
        engine.dispose()


def add_invoices_without_id(erp: Engine) -> None:
    """Copy the first posted InExchange invoices under ids that are no whole number ('utan-id-1'...),
    as a view over a messy ERP may give them: the extract names them and never takes them."""
    columns = (
        "invoice_number, customer_id, invoice_type, status, invoice_date, due_date, currency, amount_ex_vat, "
        "vat_amount, total_amount, your_reference, order_number, credited_invoice_number"
    )
    copied = ", ".join(f"i.{c.strip()}" for c in columns.split(",")[1:])
    with erp.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO customer_invoice (invoice_id, {columns}) "
                f"SELECT 'utan-id-' || i.invoice_id, 'U-' || i.invoice_number, {copied} "
                "FROM customer_invoice i JOIN customer c ON c.customer_id = i.customer_id "
                "WHERE i.status = 'posted' AND c.billing_method = :method ORDER BY i.invoice_id LIMIT :n"
            ),
            {"method": INEXCHANGE_BILLING_METHOD, "n": WITHOUT_ID},
        )


@dataclass
class Day:
    """What the three stages returned and logged, and what they left in the ledger."""

    extracted: dict[str, Any]
    validated: dict[str, Any]
    reported: dict[str, Any]
    published: list[dict[str, Any]]
    logs: list[logging.LogRecord]
    ledger: list[tuple[Any, ...]]
    history: list[tuple[Any, ...]]
    report_rows: list[dict[str, Any]]

    def messages(self, start: str) -> list[str]:
        return [record.getMessage() for record in self.logs if record.getMessage().startswith(start)]


def run_day(
    backend: Backend,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    name: str,
    chunk: int,
    scope: RunScope = SCOPE,
) -> Day:
    """Extract, validate and report the scope's invoices into a fresh ledger with ``CHUNK_SIZE`` = ``chunk``."""
    ledger_env, engine = backend.new_ledger(name)
    monkeypatch.setenv(f"AIRFLOW_CONN_{ERP_CONN.upper()}", backend.erp_env)
    monkeypatch.setenv(f"AIRFLOW_CONN_{LEDGER_CONN.upper()}", ledger_env)
    monkeypatch.setattr(pipeline, "CHUNK_SIZE", chunk)
    caplog.clear()
    published: list[dict[str, Any]] = []
    with caplog.at_level(logging.INFO, logger="inexchange.pipeline"):
        extracted = pipeline.extract(scope, erp_conn_id=ERP_CONN, reporting_conn_id=LEDGER_CONN)
        validated = pipeline.validate(scope, erp_conn_id=ERP_CONN, reporting_conn_id=LEDGER_CONN)
        reported = pipeline.report(
            scope,
            reporting_conn_id=LEDGER_CONN,
            fail_on_action_needed=False,
            without_id=extracted.get("without_id", []),
            publish=published.append,
        )
    logs = [record for record in caplog.records if record.name == "inexchange.pipeline"]
    with engine.connect() as conn:
        ledger = [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT invoice_id, invoice_number, customer_id, invoice_date, total_amount, state, message, "
                    "attempts, dag_run_id FROM inexchange_dispatch ORDER BY invoice_id"
                )
            )
        ]
        history = [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT invoice_id, from_state, to_state, source, message FROM inexchange_dispatch_history "
                    "ORDER BY invoice_id, to_state"
                )
            )
        ]
    report_rows = Ledger(engine, scope).refresh_report()  # a rerun's refresh: it changes nothing
    return Day(extracted, validated, reported, published, logs, ledger, history, report_rows)


def test_a_day_in_small_chunks_gives_what_one_chunk_gives(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    whole = run_day(backend, monkeypatch, caplog, "whole", WHOLE)
    small = run_day(backend, monkeypatch, caplog, "small", SMALL)

    # the day spans several chunks in every stage, rejections and invoices needing a person included
    assert whole.extracted["extracted"] > 4 * SMALL
    assert whole.validated["rejected"] > 2 * SMALL
    assert len(whole.reported["action_needed"]) > 2 * SMALL
    assert small.extracted == whole.extracted
    assert small.validated == whole.validated
    assert small.reported == whole.reported
    assert small.published == whole.published
    assert small.ledger == whole.ledger
    assert small.history == whole.history
    assert small.report_rows == whole.report_rows
    # validation's summary counts every chunk: the log says what one summary of the day says
    assert small.messages("validation, ") == whole.messages("validation, ")
    assert "kontrollerade" in whole.messages("validation, ")[0]
    assert small.messages("rejected: ") == whole.messages("rejected: ")
    assert small.messages("per state: ") == whole.messages("per state: ")
    if backend.name == "sqlite":  # the ERP rows without a whole-number id, named in XCom and the log
        assert len(small.extracted["without_id"]) == WITHOUT_ID
        assert small.messages("not sent: ") == whole.messages("not sent: ")


def test_the_report_logs_every_row_a_page_at_a_time(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    whole = run_day(backend, monkeypatch, caplog, "whole", WHOLE)
    small = run_day(backend, monkeypatch, caplog, "small", SMALL)
    total = whole.reported["total"]

    # one chunk: one table, titled as it always was
    [table] = whole.messages("Elektroniska utskick, ")
    assert table.startswith(f"Elektroniska utskick, {SCOPE.describe()}:\n")
    # small chunks: a table per page, each page titled with its part, every invoice in exactly one
    parts = small.messages("Elektroniska utskick, ")
    assert len(parts) == math.ceil(total / SMALL)
    assert [part.split(":", 1)[0] for part in parts] == [
        f"Elektroniska utskick, {SCOPE.describe()}, part {k}" for k in range(1, len(parts) + 1)
    ]
    numbers = [row["invoice_number"] for row in whole.report_rows]
    for number in numbers:
        assert sum(f" {number} " in part for part in parts) == 1, number
    # the invoices that need a person: more than a chunk holds, so read again and logged in blocks,
    # with every invoice's line once, under the same count
    count = whole.published[0]["count"]
    assert count > SMALL
    [block] = whole.messages(f"{count} invoices need a person:\n")
    blocks = [
        record.getMessage()
        for record in small.logs
        if record.levelno == logging.WARNING
        and record.getMessage().startswith((f"{count} invoices need a person:", "  Faktura "))
    ]
    assert len(blocks) > 1
    assert blocks[0].startswith(f"{count} invoices need a person:")
    lines = "\n".join(blocks).splitlines()
    assert lines[0] == block.splitlines()[0]
    assert sorted(lines[1:]) == sorted(block.splitlines()[1:])
    # pages of 25: two tables, but a chunk holds every invoice needing a person: the one block of old
    middle = run_day(backend, monkeypatch, caplog, "middle", 25)
    assert len(middle.messages("Elektroniska utskick, ")) == math.ceil(total / 25) > 1
    assert middle.messages(f"{count} invoices need a person:") == [block]
    assert middle.reported == whole.reported


def test_validate_commits_each_chunk_in_one_transaction(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[list[Transition]] = []
    single: list[int] = []
    many, one = Ledger.transition_many, Ledger.transition

    def transition_many(self: Ledger, changes: Any, *, source: str) -> list[bool]:
        calls.append(list(changes))
        return many(self, calls[-1], source=source)

    def transition(self: Ledger, invoice_id: int, *args: Any, **kwargs: Any) -> bool:
        single.append(invoice_id)
        return one(self, invoice_id, *args, **kwargs)

    monkeypatch.setattr(Ledger, "transition_many", transition_many)
    monkeypatch.setattr(Ledger, "transition", transition)
    day = run_day(backend, monkeypatch, caplog, "small", SMALL)

    checked = day.validated["ready"] + day.validated["rejected"]
    sizes = [SMALL] * (checked // SMALL) + ([checked % SMALL] if checked % SMALL else [])
    assert [len(changes) for changes in calls] == sizes
    assert not single  # no change outside a chunk's transaction
    ids = [change.invoice_id for changes in calls for change in changes]
    assert ids == sorted(ids) and len(set(ids)) == checked  # invoice_id order, each invoice once
    for changes in calls:
        assert {change.to_state for change in changes} <= {LedgerState.READY, LedgerState.REJECTED}
        assert all(change.from_states == [LedgerState.PENDING] for change in changes)


def test_the_lists_for_xcom_stay_a_page_long(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    whole = run_day(backend, monkeypatch, caplog, "whole", WHOLE)
    monkeypatch.setattr(pipeline, "_MAX_LISTED", 3)
    capped = run_day(backend, monkeypatch, caplog, "capped", SMALL)

    assert capped.validated["rejected_invoices"] == whole.validated["rejected_invoices"][:3]
    assert capped.validated["rejected"] == whole.validated["rejected"] > 3
    assert capped.validated["ready"] == whole.validated["ready"]
    assert len(capped.messages("rejected: ")) == whole.validated["rejected"]  # the log names every one
    without_id = whole.extracted.get("without_id", [])
    needing = whole.reported["action_needed"][: len(whole.reported["action_needed"]) - len(without_id)]
    assert needing == sorted(needing) and len(needing) > 3
    assert capped.reported["states"] == whole.reported["states"]
    # counted in full: the invoices of the ledger, and the ERP rows without an id that XCom names
    assert capped.published[0]["count"] == len(needing) + len(capped.extracted.get("without_id", []))
    assert [row["invoice_number"] for row in capped.published[0]["invoices"]] == needing[:3]
    if backend.name == "sqlite":
        # the ERP rows without an id: logged, every one; named in XCom up to a page
        assert len(without_id) == WITHOUT_ID
        assert capped.extracted["without_id"] == without_id[:3]
        assert len(capped.messages("not sent: ")) == WITHOUT_ID
    named = [message.split(" (", 1)[0].removeprefix("Faktura ") for message in capped.extracted.get("without_id", [])]
    assert capped.reported["action_needed"] == needing[:3] + named


def test_a_run_failing_on_more_invoices_than_it_names_says_how_many(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    day = run_day(backend, monkeypatch, caplog, "day", SMALL)
    without_id = day.extracted.get("without_id", [])
    needing = day.reported["action_needed"][: len(day.reported["action_needed"]) - len(without_id)]
    monkeypatch.setattr(pipeline, "_MAX_LISTED", 3)

    with pytest.raises(AirflowFailException) as failed:
        pipeline.report(SCOPE, reporting_conn_id=LEDGER_CONN, fail_on_action_needed=True, without_id=without_id)

    named = needing[:3] + [message.split(" (", 1)[0].removeprefix("Faktura ") for message in without_id]
    count = len(needing) + len(without_id)
    assert str(failed.value) == (
        f"{count} invoices need a person in the ERP or InExchange: {', '.join(named)} "
        f"and {count - len(named)} more (see the log)"
    )


def test_a_manual_run_in_small_chunks_gives_what_one_chunk_gives(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    day = run_day(backend, monkeypatch, caplog, "day", WHOLE)
    numbers = (*(row[1] for row in day.ledger[::3]), "99999")
    manual = replace(SCOPE, dag_run_id="manual__2026-11-20", run_type="manual", invoice_numbers=numbers, listed=True)
    whole = run_day(backend, monkeypatch, caplog, "manual-whole", WHOLE, manual)
    small = run_day(backend, monkeypatch, caplog, "manual-small", 3, manual)

    assert whole.extracted["not_found"] == ["99999"]
    assert whole.validated["ready"] + whole.validated["rejected"] == len(numbers) - 1
    assert small.extracted == whole.extracted
    assert small.validated == whole.validated
    assert small.reported == whole.reported
    assert small.ledger == whole.ledger
    assert small.messages("validation, ") == whole.messages("validation, ")
    assert small.messages("manual run for invoices ") == whole.messages("manual run for invoices ")


def test_the_extract_reads_the_erp_while_the_ledger_in_the_same_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded setup: ERP, ledger and report in one SQLite file; the extract's cursor stays open
    on the ERP's rows while each chunk is registered."""
    path = tmp_path / "erp.db"
    generate(create_engine(f"sqlite:///{path}"), seed=7, customers=15, invoices=50, start_date=DAY, days=2, drafts=3)
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", sqlite_conn_env(path))
    monkeypatch.setattr(pipeline, "CHUNK_SIZE", SMALL)

    extracted = pipeline.extract(SCOPE, erp_conn_id="erp_default", reporting_conn_id="erp_default")
    validated = pipeline.validate(SCOPE, erp_conn_id="erp_default", reporting_conn_id="erp_default")

    assert extracted["new"] == extracted["extracted"] > 4 * SMALL
    assert validated["ready"] + validated["rejected"] == extracted["extracted"]


def test_a_chunk_never_splits_the_rows_of_one_invoice() -> None:
    """A view repeating an invoice's row gives the repeats one after the other; they stay together,
    whichever chunk they straddle (17 and '17' are one invoice_id to the ledger)."""
    ids = [1, 2, 3, 3, 3, "3", 4, 5, 6, 7, 7, None, None, "x"]
    rows = [{"invoice_id": i, "n": n} for n, i in enumerate(ids)]
    chunks = [rows[k : k + 3] for k in range(0, len(rows), 3)]

    whole = list(pipeline._whole_invoices(chunks))

    assert [row for chunk in whole for row in chunk] == rows
    assert [[row["invoice_id"] for row in chunk] for chunk in whole] == [
        [1, 2],
        [3, 3, 3, "3", 4, 5],
        [6, 7, 7, None],
        [None, "x"],
    ]
    assert list(pipeline._whole_invoices([])) == []
    assert list(pipeline._whole_invoices([[], rows[:2]])) == [rows[:1], rows[1:2]]


def invoice(invoice_id: int, day: date = DAY) -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "invoice_number": f"N{invoice_id}",
        "invoice_type": "debit",
        "customer_id": 7,
        "customer_number": "4367",
        "customer_name": "Alingsås kommun",
        "invoice_date": day,
        "currency": "SEK",
        "total_amount": 1250.0,
    }


#: the lowest and highest ids a BIGINT holds, and some between, of the day and of the day before
EDGE_IDS = [-(2**63), -5, 0, 1, 2, 3, 10, 11, 12, 13, 2**62, 2**63 - 1]


def test_the_ledger_hands_out_its_rows_a_page_at_a_time(ledger_engine: Engine) -> None:
    ledger = Ledger(ledger_engine, SCOPE)
    ledger.ensure_schema()
    ledger.register([invoice(i, DAY if i % 5 else DAY - timedelta(days=1)) for i in EDGE_IDS])
    of_the_day = [i for i in EDGE_IDS if i % 5]
    assert [r["invoice_id"] for r in ledger.rows(LedgerState.PENDING)] == of_the_day

    for chunk in (1, 2, 3, 100):
        pages = list(ledger.iter_rows(LedgerState.PENDING, chunk=chunk))
        assert [[r["invoice_id"] for r in page] for page in pages] == [
            of_the_day[k : k + chunk] for k in range(0, len(of_the_day), chunk)
        ]
        assert pages[0][0] == ledger.rows(LedgerState.PENDING)[0]
    assert ledger.id_range(LedgerState.PENDING) == (of_the_day[0], of_the_day[-1], len(of_the_day))
    assert ledger.id_range(LedgerState.READY) is None
    assert list(ledger.iter_rows(LedgerState.READY, chunk=2)) == []

    # moving each page's rows on while paging (as validate does) neither skips nor repeats a row
    seen = []
    for page in ledger.iter_rows(LedgerState.PENDING, chunk=2):
        seen += [r["invoice_id"] for r in page]
        ledger.transition_many(
            [Transition(r["invoice_id"], [LedgerState.PENDING], LedgerState.READY, {}) for r in page], source="test"
        )
    assert seen == of_the_day
    assert ledger.rows(LedgerState.PENDING) == []

    # the report's rows, a page at a time, are the rows refresh_report reads at once
    rows = ledger.refresh_report()
    assert ledger.refresh_report(read_back=False) == []
    for chunk in (1, 3, 100):
        pages = list(ledger.report_pages(chunk))
        assert all(0 < len(page) <= chunk for page in pages)
        paged = [row for page in pages for row in page]
        assert sorted(paged, key=lambda r: r["invoice_number"]) == sorted(rows, key=lambda r: r["invoice_number"])
        assert len(paged) == len(of_the_day)
