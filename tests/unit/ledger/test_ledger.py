"""The dispatch ledger on real databases: SQLite files and the PostgreSQL server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from dispatch_testing.support import (
    counted_changes,
    ledger_statistics,
    pg_connect_args,
    pg_url,
    without_autovacuum,
)
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

from inexchange.ledger import Ledger, RunScope, Transition, erp_document_id
from inexchange.operators.scope import run_scope
from inexchange.states import LedgerState

SCOPE = RunScope(
    dag_run_id="scheduled__2026-11-17",
    start=datetime(2026, 11, 17, 5, tzinfo=UTC),
    end=datetime(2026, 11, 18, 5, tzinfo=UTC),
    start_date=date(2026, 11, 17),
    end_date=date(2026, 11, 18),
)


@pytest.fixture
def engine(ledger_engine: Engine) -> Engine:
    return ledger_engine


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    ledger = Ledger(engine, SCOPE)
    ledger.ensure_schema()
    ledger.ensure_schema()  # idempotent
    return ledger


def invoice(invoice_id: int, day: date = date(2026, 11, 17)) -> dict:
    return {"invoice_id": invoice_id, "invoice_number": str(10000 + invoice_id), "invoice_type": "debit",
            "customer_id": 7, "customer_number": "4367", "customer_name": "Alingsås kommun",
            "invoice_date": day, "currency": "SEK", "total_amount": 1250.0}


def history(engine: Engine, invoice_id: int) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            text("SELECT from_state, to_state, source FROM inexchange_dispatch_history "
                 "WHERE invoice_id = :id ORDER BY changed_at, to_state"), {"id": invoice_id})]


def test_register_new_rows_pending_with_history(ledger: Ledger, engine: Engine) -> None:
    assert ledger.register([invoice(1), invoice(2)]) == {"new": 2, "rechecked": 0, "unchanged": 0}
    rows = ledger.rows(LedgerState.PENDING)
    assert [r["invoice_id"] for r in rows] == [1, 2]
    assert rows[0]["erp_document_id"] == erp_document_id(1) == "invoice-1"
    assert rows[0]["invoice_date"] == "2026-11-17"
    assert history(engine, 1) == [(None, "pending", "extract")]


def test_register_leaves_sent_and_in_flight_rows_alone(ledger: Ledger) -> None:
    ledger.register([invoice(1), invoice(2), invoice(3)])
    ledger.transition(1, [LedgerState.PENDING], LedgerState.REJECTED, source="validate", message="fix it")
    ledger.transition(2, [LedgerState.PENDING], LedgerState.WAITING, source="submit", inexchange_document_id="d2")
    counts = ledger.register([invoice(1), invoice(2), invoice(3)])
    assert counts == {"new": 0, "rechecked": 2, "unchanged": 1}
    states = {r["invoice_id"]: (r["state"], r["message"]) for r in ledger.rows(*LedgerState)}
    assert states == {1: ("pending", None), 2: ("waiting", None), 3: ("pending", None)}


def test_transition_is_compare_and_set(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1)])
    assert ledger.transition(1, [LedgerState.PENDING], LedgerState.READY, source="validate")
    # a second worker expecting the old state does not move it again
    assert not ledger.transition(1, [LedgerState.PENDING], LedgerState.REJECTED, source="validate", message="x")
    assert ledger.transition(1, [LedgerState.READY], LedgerState.SUBMITTING, source="submit", attempt=1)
    row = ledger.rows(LedgerState.SUBMITTING)[0]
    assert row["attempts"] == 1
    assert [h[1] for h in history(engine, 1)] == ["pending", "ready", "submitting"]


def test_transition_rejects_unknown_fields(ledger: Ledger) -> None:
    with pytest.raises(TypeError, match="unknown ledger fields"):
        ledger.transition(1, [LedgerState.PENDING], LedgerState.READY, source="x", colour="red")


def test_transition_rolls_back_with_its_transaction(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1)])
    with pytest.raises(RuntimeError), engine.begin() as conn:
        ledger.transition(1, [LedgerState.PENDING], LedgerState.READY, source="validate", conn=conn)
        raise RuntimeError("worker died")
    assert ledger.rows(LedgerState.PENDING)[0]["invoice_id"] == 1
    assert [h[1] for h in history(engine, 1)] == ["pending"]


def test_due_rows(ledger: Ledger) -> None:
    ledger.register([invoice(i) for i in range(1, 7)] + [invoice(9, date(2026, 11, 20))])
    ledger.transition(1, [LedgerState.PENDING], LedgerState.READY, source="t")
    ledger.transition(2, [LedgerState.PENDING], LedgerState.SUBMITTING, source="t")
    ledger.transition(3, [LedgerState.PENDING], LedgerState.FAILED, source="t", next_retry_at="2000-01-01T00:00:00.000000Z")
    ledger.transition(4, [LedgerState.PENDING], LedgerState.FAILED, source="t", next_retry_at="2999-01-01T00:00:00.000000Z")
    ledger.transition(5, [LedgerState.PENDING], LedgerState.FAILED, source="t", inexchange_document_id="doc-5")
    ledger.transition(9, [LedgerState.PENDING], LedgerState.READY, source="t")  # another interval
    assert [r["invoice_id"] for r in ledger.due_rows(max_attempts=5, settle=timedelta(0))] == [1, 2, 3]
    assert [r["invoice_id"] for r in ledger.due_rows(max_attempts=0, settle=timedelta(0))] == [1, 2]
    # a claim of this run younger than the settle time may still have its send in flight
    assert [r["invoice_id"] for r in ledger.due_rows(max_attempts=5)] == [1, 3]
    # counted by the database, with the same rules
    assert ledger.count_due(max_attempts=5, settle=timedelta(0)) == 3
    assert ledger.count_due(max_attempts=0, settle=timedelta(0)) == 2
    assert ledger.count_due(max_attempts=5) == 2


def test_due_rows_split_into_disjoint_shards(ledger: Ledger) -> None:
    ledger.register([invoice(i) for i in range(1, 11)])
    ledger.transition_many([Transition(i, [LedgerState.PENDING], LedgerState.READY, {}) for i in range(1, 11)],
                           source="validate")

    shards = [[r["invoice_id"] for r in ledger.due_rows(max_attempts=5, shard=k, shards=3)] for k in range(3)]

    assert shards == [[3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    with pytest.raises(ValueError, match="shard 3"):
        ledger.due_rows(max_attempts=5, shard=3, shards=3)


def test_due_rows_split_into_adjacent_ranges_of_ids(ledger: Ledger) -> None:
    ledger.register([invoice(i) for i in (2, 3, 5, 7, 11, 13, 17)] + [invoice(19, date(2026, 11, 20))])
    ledger.transition_many([Transition(i, [LedgerState.PENDING], LedgerState.READY, {}) for i in (2, 3, 5, 7, 11, 13)],
                           source="validate")  # 17 stays pending; 19 is of another interval

    ranges = ledger.shard_ranges(2, max_attempts=5)

    # cut at every second due id; open below and above, no gap between two ranges
    assert ranges == [(None, 4), (5, 10), (11, None)]
    shards = [[r["invoice_id"] for r in ledger.due_rows(max_attempts=5, first_id=a, last_id=b)] for a, b in ranges]
    assert shards == [[2, 3], [5, 7], [11, 13]]
    # a row that becomes due after the planning falls in exactly one range
    ledger.transition(17, [LedgerState.PENDING], LedgerState.READY, source="validate")
    shards = [[r["invoice_id"] for r in ledger.due_rows(max_attempts=5, first_id=a, last_id=b)] for a, b in ranges]
    assert shards == [[2, 3], [5, 7], [11, 13, 17]]
    # a range leaves the modulo aside, whatever shard and shards say
    assert [r["invoice_id"] for r in ledger.due_rows(max_attempts=5, shard=1, shards=3, first_id=5, last_id=10)] == [5, 7]
    with pytest.raises(ValueError, match="at least 1"):
        ledger.shard_ranges(0, max_attempts=5)


def test_a_ledger_of_an_earlier_version_gains_the_shard_index(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1)])
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_inexchange_dispatch_state_id"))

    ledger.ensure_schema()

    with engine.connect() as conn:
        names = {index["name"] for index in inspect(conn).get_indexes("inexchange_dispatch")}
    assert "ix_inexchange_dispatch_state_id" in names
    assert [r["invoice_id"] for r in ledger.rows(LedgerState.PENDING)] == [1]


def test_batches_of_any_size_write_every_row_and_its_history(ledger: Ledger, engine: Engine) -> None:
    ids = list(range(1, 1200))
    ledger.register([invoice(i) for i in ids])  # 1,199 rows: statements of 512, 512, 128, 32, 8, 4, 2 and 1 rows
    done = 0
    for size in (1, 2, 3, 5, 17, 100, 600, 471):  # a VALUES list pads them to 1, 2, 4, 8, 32, 128 and 512
        moved = ledger.transition_many(
            [Transition(i, [LedgerState.PENDING], LedgerState.READY, {}) for i in ids[done : done + size]], source="t")
        assert moved == [True] * size
        done += size
    assert done == len(ids)
    assert len(ledger.rows(LedgerState.READY)) == len(ids)
    with engine.connect() as conn:
        history = conn.execute(text("SELECT to_state, COUNT(*) FROM inexchange_dispatch_history GROUP BY to_state"))
        assert dict(history.tuples().all()) == {"pending": len(ids), "ready": len(ids)}


def test_a_database_without_arrays_or_json_takes_rows_as_a_padded_values_list(ledger: Ledger, engine: Engine) -> None:
    """The portable form of a set write (a multi-row VALUES, padded with rows of NULLs that match no
    invoice) for any other database, run here on the test's own: every change moves its row, no other."""
    from inexchange.ledger import _CHANGE_ROW, _NOT_TEXT
    from inexchange.sql import rows_statement

    ledger.register([invoice(i) for i in (1, 2, 3, 4)])
    changes = [{**dict.fromkeys(_CHANGE_ROW), "invoice_id": i, "from_state": "pending", "other_from_state": "pending",
                "to_state": "ready", "attempt": 0, "stays_submitting": 0, "doubt_lookup": 0, "check_status": 0}
               for i in (1, 2, 4)]
    query, bound = rows_statement("ledger_transition", _CHANGE_ROW, changes, dialect="other", types=_NOT_TEXT,
                                  padded=True)
    assert len(bound) == 4 * len(_CHANGE_ROW)  # 3 changes padded to 4 rows
    with engine.begin() as conn:
        moved = conn.execute(query, {**bound, "now": "2026-11-17T06:00:00Z", "dag_run_id": SCOPE.dag_run_id})
        assert sorted(moved.scalars()) == [1, 2, 4]
    assert [r["invoice_id"] for r in ledger.rows(LedgerState.READY)] == [1, 2, 4]
    assert [r["invoice_id"] for r in ledger.rows(LedgerState.PENDING)] == [3]


def test_row_counts_are_few_powers_of_two() -> None:
    from inexchange.sql import MAX_ROWS, padded_count, row_counts

    assert row_counts(0) == []
    assert row_counts(5) == [4, 1]
    assert row_counts(1100) == [512, 512, 64, 8, 4]
    assert all(sum(row_counts(n)) == n for n in range(3000))
    assert {c for n in range(3000) for c in row_counts(n)} == {1 << b for b in range(10)}
    assert [padded_count(n) for n in (1, 2, 3, 5, 100, MAX_ROWS)] == [1, 2, 4, 8, 128, 512]
    with pytest.raises(ValueError):
        padded_count(MAX_ROWS + 1)


def test_nothing_due_is_one_open_range(ledger: Ledger) -> None:
    assert ledger.shard_ranges(100, max_attempts=5) == [(None, None)]


def test_due_rows_respect_another_runs_claim_until_its_lease_ends(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1), invoice(2)])
    other_run = Ledger(engine, replace(SCOPE, dag_run_id="backfill__2026-11-17"))
    other_run.transition(1, [LedgerState.PENDING], LedgerState.SUBMITTING, source="submit")  # in flight elsewhere
    ledger.transition(2, [LedgerState.PENDING], LedgerState.SUBMITTING, source="submit")  # an earlier try of ours

    assert [r["invoice_id"] for r in ledger.due_rows(max_attempts=5, settle=timedelta(0))] == [2]
    assert [r["invoice_id"] for r in ledger.due_rows(max_attempts=5, lease=timedelta(0), settle=timedelta(0))] == [1, 2]


def test_claims_of_a_run_that_ended_are_due_once_settled_without_waiting_for_the_lease(ledger: Ledger,
                                                                                      engine: Engine) -> None:
    ledger.register([invoice(1), invoice(2), invoice(3)])
    ended = Ledger(engine, replace(SCOPE, dag_run_id="scheduled__2026-11-16"))
    running = Ledger(engine, replace(SCOPE, dag_run_id="backfill__2026-11-15"))
    ended.transition(1, [LedgerState.PENDING], LedgerState.SUBMITTING, source="submit")
    running.transition(2, [LedgerState.PENDING], LedgerState.SUBMITTING, source="submit")
    ledger.transition(3, [LedgerState.PENDING], LedgerState.READY, source="validate")

    assert ledger.claiming_runs() == ["backfill__2026-11-15", "scheduled__2026-11-16"]
    assert ended.claiming_runs() == ["backfill__2026-11-15"]  # never its own
    # the ended run's claim: due once its send can no longer be in flight; the other run's only after the lease
    assert [r["invoice_id"] for r in ledger.due_rows(max_attempts=5, finished_runs=["scheduled__2026-11-16"])] == [3]
    due = ledger.due_rows(max_attempts=5, settle=timedelta(0), finished_runs=["scheduled__2026-11-16"])
    assert [r["invoice_id"] for r in due] == [1, 3]
    assert ledger.count_due(max_attempts=5, settle=timedelta(0), finished_runs=["scheduled__2026-11-16"]) == 2
    assert [r["invoice_id"] for r in ledger.due_rows(max_attempts=5, settle=timedelta(0))] == [3]


def test_the_sensor_follows_the_intervals_waiting_rows_and_those_the_run_moved_last(ledger: Ledger,
                                                                                    engine: Engine) -> None:
    earlier_day = date(2026, 11, 10)
    ledger.register([invoice(1), invoice(2, earlier_day), invoice(3, earlier_day)])
    ledger.transition(1, [LedgerState.PENDING], LedgerState.WAITING, source="submit")
    ledger.transition(2, [LedgerState.PENDING], LedgerState.WAITING, source="submit")  # an earlier day, sent again
    Ledger(engine, replace(SCOPE, dag_run_id="scheduled__2026-11-10")).transition(
        3, [LedgerState.PENDING], LedgerState.WAITING, source="submit")  # its own run follows it

    assert [r["invoice_id"] for r in ledger.watched()] == [1, 2]
    assert [r["invoice_id"] for r in ledger.rows(LedgerState.WAITING)] == [1]


def test_the_sensors_watch_is_counted_by_the_database(ledger: Ledger, engine: Engine) -> None:
    earlier_day = date(2026, 11, 10)
    ledger.register([invoice(1), invoice(2, earlier_day), invoice(3, earlier_day), invoice(4)])
    sent = {1: "2026-11-17T08:00:00.000000Z", 2: "2026-11-17T09:30:00.000000Z"}
    for i in (1, 2):
        ledger.transition(i, [LedgerState.PENDING], LedgerState.WAITING, source="submit",
                          inexchange_document_id=f"doc-{i}", submitted_at=sent[i])
    Ledger(engine, replace(SCOPE, dag_run_id="scheduled__2026-11-10")).transition(
        3, [LedgerState.PENDING], LedgerState.WAITING, source="submit", inexchange_document_id="doc-3")
    ledger.transition(4, [LedgerState.PENDING], LedgerState.SENT, source="status poll", inexchange_document_id="doc-4")

    # the rows of watched(): 1 (the interval's) and 2 (this run moved it last), never 3 (another run's)
    assert ledger.watch() == (2, sent[1], sent[2])
    assert ledger.watched_documents(["doc-1", "doc-2", "doc-3", "doc-4", "doc-unknown"]) == {"doc-1", "doc-2"}
    assert ledger.watched_documents([]) == set()
    assert ledger.state_counts(LedgerState.SENT, LedgerState.WAITING, LedgerState.FAILED) == {
        "sent": 1, "waiting": 1, "failed": 0}  # the interval's rows, as rows() selects them
    ledger.transition_many([Transition(i, [LedgerState.WAITING], LedgerState.SENT, {}) for i in (1, 2)], source="t")
    assert ledger.watch() == (0, None, None)


def _watched_documents_plan(ledger: Ledger, asked: list[str], found: set[str], *, explain: str, column: int) -> str:
    """Ask :meth:`Ledger.watched_documents` about ``asked`` (expecting ``found``), then the database's
    plan of the statement it ran (``explain`` prefixed, each plan row's ``column`` joined); the
    ledger's engine is disposed of."""
    from sqlalchemy import event

    engine = ledger.engine
    seen: list[tuple] = []
    listener = lambda conn, cursor, statement, parameters, context, many: seen.append((statement, parameters))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert ledger.watched_documents(asked) == found
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    (statement, parameters), = seen
    with engine.connect() as conn:
        plan = " ".join(str(row[column]) for row in conn.exec_driver_sql(f"{explain} {statement}", parameters))
    engine.dispose()
    return plan


def test_which_documents_the_sensor_follows_is_read_by_the_document_index_on_sqlite(tmp_path) -> None:  # noqa: ANN001
    """SQLite's planner, without statistics, prefers the state index: each list of documents would walk
    every waiting row of the day (quadratic in the day's size over a run's status events)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    ledger = Ledger(engine, SCOPE)
    ledger.ensure_schema()
    ledger.register([invoice(i) for i in range(1, 201)])
    ledger.transition_many([Transition(i, [LedgerState.PENDING], LedgerState.WAITING,
                                       {"inexchange_document_id": f"doc-{i}"}) for i in range(1, 201)], source="t")
    plan = _watched_documents_plan(ledger, ["doc-3", "doc-150", "doc-none"], {"doc-3", "doc-150"},
                                   explain="EXPLAIN QUERY PLAN", column=-1)
    assert "USING INDEX ix_inexchange_dispatch_document" in plan, plan
    assert "ix_inexchange_dispatch_state" not in plan, plan


def _a_day_given_document_ids(engine: Engine, n: int) -> Ledger:
    """A ledger of ``n`` invoices waiting with their document ids, its changes counted by the server."""
    ledger = Ledger(engine, SCOPE)
    ledger.ensure_schema()
    without_autovacuum(engine)
    ledger.register([invoice(i) for i in range(1, n + 1)])
    ledger.transition_many([Transition(i, [LedgerState.PENDING], LedgerState.WAITING,
                                       {"inexchange_document_id": f"doc-{i}"}) for i in range(1, n + 1)], source="t")
    counted_changes(engine, 2 * n)
    return ledger


@pytest.mark.postgres
def test_postgres_statistics_are_refreshed_once_they_lag_behind_the_days_changes(pg_schema: str) -> None:
    """A day's rows get their document ids minutes before the sensor reads them by id, before
    autovacuum analyses the table: the sensor's poll has the table analysed, so that PostgreSQL's
    planner reads each list of ids by the document index."""
    engine = create_engine(pg_url(), connect_args=pg_connect_args(pg_schema))
    ledger = _a_day_given_document_ids(engine, 3000)
    assert ledger_statistics(engine) == (None, 6000)  # 3,000 rows inserted, then each updated

    assert ledger.refresh_statistics() is True
    last, changed = ledger_statistics(engine)
    assert last is not None and changed == 0
    assert ledger.refresh_statistics() is False  # fresh statistics: not analysed again
    assert ledger_statistics(engine)[0] == last

    plan = _watched_documents_plan(ledger, ["doc-3", "doc-1500", "doc-none"], {"doc-3", "doc-1500"},
                                   explain="EXPLAIN", column=0)
    assert "ix_inexchange_dispatch_document" in plan, plan


@pytest.mark.postgres
def test_postgres_statistics_not_refreshed_in_time_leave_a_warning(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another session holding the table's maintenance lock (an ANALYZE or VACUUM by hand) keeps the
    statistics as they are: the poll goes on after the lock timeout, with a warning."""
    import inexchange.ledger as ledger_module

    engine = create_engine(pg_url(), connect_args=pg_connect_args(pg_schema))
    ledger = _a_day_given_document_ids(engine, 100)
    monkeypatch.setattr(ledger_module, "ANALYZE_LOCK_TIMEOUT", "200ms")
    other = create_engine(pg_url(), connect_args=pg_connect_args(pg_schema))
    try:
        with other.begin() as conn:
            conn.execute(text("LOCK TABLE inexchange_dispatch IN SHARE UPDATE EXCLUSIVE MODE"))
            with caplog.at_level("WARNING", logger="inexchange.ledger"):
                assert ledger.refresh_statistics() is False
        assert "the ledger's statistics were not refreshed" in caplog.text
        assert "lock timeout" in caplog.text
        assert ledger_statistics(engine)[0] is None
        assert ledger.refresh_statistics() is True  # the lock released
    finally:
        other.dispose()
        engine.dispose()


@pytest.mark.postgres
def test_a_user_who_may_not_analyse_the_ledger_polls_on(pg_schema: str) -> None:
    """A reporting user that writes the ledger but does not own it (created by another user):
    PostgreSQL skips the table with a warning of its own; nothing fails, nothing is analysed."""
    import uuid

    from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT

    owner = create_engine(pg_url(), connect_args=pg_connect_args(pg_schema))
    _a_day_given_document_ids(owner, 100)
    role = f"rw_{uuid.uuid4().hex[:10]}"
    with owner.begin() as conn:  # identifiers made here, not user input
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA "{pg_schema}" TO "{role}"'))
        conn.execute(text(f'GRANT SELECT, UPDATE ON inexchange_dispatch TO "{role}"'))
    writer = create_engine(f"postgresql+psycopg2://{role}@{PG_HOST}:{PG_PORT}/{PG_DB}",
                           connect_args=pg_connect_args(pg_schema))
    try:
        assert Ledger(writer, SCOPE).refresh_statistics() is True  # ANALYZE was run, and skipped the table
        assert ledger_statistics(owner)[0] is None
    finally:
        writer.dispose()
        with owner.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        owner.dispose()


def test_other_databases_keep_their_own_statistics(tmp_path) -> None:  # noqa: ANN001
    """SQLite's planner keeps to the document index without statistics (the query is written so);
    ANALYZE there reads the whole table, so nothing is run."""
    from sqlalchemy import event

    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger(engine, SCOPE)
    ledger.ensure_schema()
    seen: list[str] = []
    listener = lambda conn, cursor, statement, parameters, context, many: seen.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    assert ledger.refresh_statistics() is False
    event.remove(engine, "before_cursor_execute", listener)
    engine.dispose()
    assert seen == []


def test_transition_many_commits_together_and_says_which_rows_moved(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1), invoice(2)])
    ledger.transition(2, [LedgerState.PENDING], LedgerState.REJECTED, source="validate", message="bad")

    moved = ledger.transition_many([
        Transition(1, [LedgerState.PENDING], LedgerState.READY, {}),
        Transition(2, [LedgerState.PENDING], LedgerState.READY, {}),  # no longer pending: untouched
    ], source="validate")

    assert moved == [True, False]
    assert [r["invoice_id"] for r in ledger.rows(LedgerState.READY)] == [1]
    assert history(engine, 2)[-1] == ("pending", "rejected", "validate")
    with pytest.raises(TypeError):
        ledger.transition_many([Transition(1, [LedgerState.READY], LedgerState.SUBMITTING, {"bogus": 1})],
                               source="submit")
    assert [r["invoice_id"] for r in ledger.rows(LedgerState.READY)] == [1]  # rolled back


def test_apply_statuses_maps_and_keeps_history(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1), invoice(2), invoice(3)])
    for i in (1, 2, 3):
        ledger.transition(i, [LedgerState.PENDING], LedgerState.WAITING, source="submit", inexchange_document_id=f"d{i}")
    changes = [
        {"id": "d1", "status": "Delivered", "time": "2026-11-18T07:00:00.000001Z", "message": None},
        {"id": "d2", "status": "Stopped", "time": "2026-11-18T07:00:00Z", "message": "InvalidDeliveryMethod: refused"},
        {"id": "d3", "status": "Pending", "time": "2026-11-18T07:00:00Z", "message": None},
        {"id": "unknown", "status": "Sent", "time": "2026-11-18T07:00:00Z", "message": None},
    ]
    assert ledger.apply_statuses(changes) == 3
    rows = {r["invoice_id"]: r for r in ledger.rows(*LedgerState)}
    assert (rows[1]["state"], rows[1]["inexchange_status"], rows[1]["sent_at"]) == (
        "sent", "Delivered", "2026-11-18T07:00:00.000001Z")
    assert (rows[2]["state"], rows[2]["message"]) == ("stopped", "InvalidDeliveryMethod: refused")
    assert (rows[3]["state"], rows[3]["inexchange_status"]) == ("waiting", "Pending")
    assert history(engine, 2)[-1] == ("waiting", "stopped", "status poll")
    assert ledger.apply_statuses(changes) == 0  # the same statuses again change nothing


def test_report_upsert_is_idempotent(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1), invoice(2, date(2026, 11, 16))])
    ledger.transition(1, [LedgerState.PENDING], LedgerState.REJECTED, source="validate", message="VAT-nummer saknas")
    first = ledger.refresh_report()
    second = ledger.refresh_report()
    assert first == second
    assert [(r["invoice_number"], r["state"], r["document_type"], r["message"]) for r in first] == [
        ("10001", "rejected", "Kundfaktura", "VAT-nummer saknas")]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM inexchange_report")).scalar() == 1


def test_a_status_change_is_recorded_once(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1)])
    ledger.transition(1, [LedgerState.PENDING], LedgerState.WAITING, source="submit",
                      inexchange_document_id="doc-1", inexchange_status="PendingInPlatform")
    change = {"id": "doc-1", "status": "Pending", "time": "2026-11-17T08:00:00Z", "message": None}

    assert ledger.apply_statuses([change]) == 1
    assert ledger.apply_statuses([change]) == 0  # the same status again: nothing to record
    # a poller that read the row before the change: its compare-and-set on the status fails
    assert not ledger.transition(1, [LedgerState.WAITING], LedgerState.WAITING, source="status poll",
                                 inexchange_status="Pending", expected_status="PendingInPlatform")
    assert [h for h in history(engine, 1) if h[2] == "status poll"] == [("waiting", "waiting", "status poll")]


def test_a_manual_run_retries_failed_rows_at_once(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1)])
    ledger.transition(1, [LedgerState.PENDING], LedgerState.FAILED, source="t", next_retry_at="2999-01-01T00:00:00.000000Z")

    assert ledger.due_rows(max_attempts=5) == []  # a scheduled run waits for the retry time
    for run_type in ("manual", "backfill"):
        person = Ledger(engine, replace(SCOPE, run_type=run_type))
        assert [r["invoice_id"] for r in person.due_rows(max_attempts=5)] == [1]
    assert Ledger(engine, replace(SCOPE, run_type="manual")).due_rows(max_attempts=0) == []  # attempts still count


def test_a_list_of_invoice_numbers_selects_those_rows_whatever_their_date(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1), invoice(2), invoice(3, date(2026, 10, 1)), invoice(4, date(2026, 10, 2))])
    for i in (1, 2, 3):
        ledger.transition(i, [LedgerState.PENDING], LedgerState.READY, source="t")
    ledger.transition(4, [LedgerState.PENDING], LedgerState.FAILED, source="t", attempt=9,
                      next_retry_at="2999-01-01T00:00:00.000000Z")
    listed = Ledger(engine, replace(SCOPE, run_type="manual", invoice_numbers=("10002", "10003", "10004")))

    assert [r["invoice_id"] for r in listed.rows(LedgerState.READY)] == [2, 3]
    # listed: ready rows of any date, and a failed one even after its last automatic attempt
    assert [r["invoice_id"] for r in listed.due_rows(max_attempts=5)] == [2, 3, 4]
    assert [r["invoice_id"] for r in ledger.due_rows(max_attempts=5)] == [1, 2]  # no list: the interval


def test_rejected_rows_are_left_alone_when_the_run_says_so(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1), invoice(2)])
    ledger.transition(1, [LedgerState.PENDING], LedgerState.REJECTED, source="validate", message="fix it")

    keep = Ledger(engine, replace(SCOPE, retry_rejected=False))
    assert keep.register([invoice(1), invoice(2)]) == {"new": 0, "rechecked": 1, "unchanged": 1}
    assert {r["invoice_id"]: r["state"] for r in ledger.rows(*LedgerState)} == {1: "rejected", 2: "pending"}
    assert ledger.register([invoice(1)]) == {"new": 0, "rechecked": 1, "unchanged": 0}
    assert ledger.rows(LedgerState.REJECTED) == []


def test_history_says_how_the_run_was_started(engine: Engine) -> None:
    ledger = Ledger(engine, replace(SCOPE, run_type="backfill", try_number=2))
    ledger.ensure_schema()
    ledger.register([invoice(1)])
    with engine.connect() as conn:
        row = conn.execute(text("SELECT source, run_type, try_number, dag_run_id FROM inexchange_dispatch_history")).one()
    assert tuple(row) == ("extract", "backfill", 2, SCOPE.dag_run_id)


def test_an_older_history_table_gets_the_new_columns(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE inexchange_dispatch_history (history_id VARCHAR(36) PRIMARY KEY, "
                          "invoice_id BIGINT NOT NULL, from_state VARCHAR(20), to_state VARCHAR(20) NOT NULL, "
                          "inexchange_status VARCHAR(50), message TEXT, source VARCHAR(20) NOT NULL, "
                          "changed_at VARCHAR(32) NOT NULL, dag_run_id VARCHAR(250))"))
    ledger = Ledger(engine, SCOPE)
    ledger.ensure_schema()
    ledger.register([invoice(1)])
    assert history(engine, 1) == [(None, "pending", "extract")]


def test_a_rerun_rewrites_no_report_row_and_other_intervals_follow_the_ledger(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1)])
    ledger.transition(1, [LedgerState.PENDING], LedgerState.WAITING, source="submit", inexchange_document_id="d1")
    ledger.refresh_report()
    rerun = Ledger(engine, replace(SCOPE, dag_run_id="manual__rerun"))
    rerun.refresh_report()  # nothing changed: the row keeps the run that wrote it
    next_day = Ledger(engine, replace(SCOPE, dag_run_id="scheduled__2026-11-18", start_date=date(2026, 11, 18),
                                      end_date=date(2026, 11, 19), start=SCOPE.end, end=SCOPE.end + timedelta(days=1)))

    def report_row() -> tuple:
        with engine.connect() as conn:
            return tuple(conn.execute(text("SELECT state, inexchange_status, sent_at, dag_run_id FROM inexchange_report")).one())

    assert report_row() == ("waiting", None, None, SCOPE.dag_run_id)
    # the next day's run records the earlier invoice's delivery (recheck) and refreshes its own report
    next_day.apply_statuses([{"id": "d1", "status": "Delivered", "time": "2026-11-18T07:00:00Z", "message": None}])
    assert next_day.refresh_report() == []
    assert report_row() == ("sent", "Delivered", "2026-11-18T07:00:00.000000Z", "scheduled__2026-11-18")


@pytest.mark.postgres
def test_tasks_that_start_at_once_create_the_schema_once(pg_schema: str) -> None:
    """A backfill starts several runs' first tasks together: each creates the ledger when missing.

    On PostgreSQL, concurrent ``CREATE TABLE IF NOT EXISTS`` of a new table race (one of them fails
    with a unique violation in the catalogue); the schema's advisory lock makes them take turns.
    """
    import threading

    tasks = 8
    engines = [create_engine(pg_url(), connect_args=pg_connect_args(pg_schema)) for _ in range(tasks)]
    barrier = threading.Barrier(tasks)
    errors: list[BaseException] = []

    def task(engine: Engine) -> None:
        barrier.wait()
        try:
            Ledger(engine, SCOPE).ensure_schema()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert errors == []
    check = create_engine(pg_url(), connect_args=pg_connect_args(pg_schema))
    with check.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM inexchange_dispatch")).scalar() == 0
    check.dispose()


# ---- raw ERP rows of a messy view -----------------------------------------------------------------------
def test_register_stores_hostile_values_without_failing(ledger: Ledger, engine: Engine) -> None:
    hostile = [
        {**invoice(1), "invoice_number": None, "invoice_type": None, "customer_id": None, "invoice_date": None},
        {**invoice(2), "customer_id": "k-17", "total_amount": "tolv", "currency": "SEKR", "invoice_type": 5},
        {**invoice(3), "customer_name": "N" * 5000, "customer_number": "4" * 80, "invoice_number": "9" * 80},
        {**invoice(4), "customer_name": "Nul\x00AB", "total_amount": Decimal("1E+20"), "invoice_date": "igår"},
        {**invoice(5), "customer_name": b"Blob AB", "customer_id": 7.0, "invoice_date": date(9999, 12, 31)},
        {**invoice(6), "invoice_number": "'; DROP TABLE inexchange_dispatch; --", "customer_name": "Åsa 🧾 \u202eAB"},
    ]
    assert ledger.register(hostile) == {"new": 6, "rechecked": 0, "unchanged": 0}
    listed = Ledger(engine, replace(SCOPE, invoice_numbers=("", "9" * 50, "'; DROP TABLE inexchange_dispatch; --")))
    with engine.connect() as conn:
        rows = {r.invoice_id: r for r in conn.execute(text("SELECT * FROM inexchange_dispatch ORDER BY invoice_id"))}
    assert (rows[1].invoice_number, rows[1].invoice_type, rows[1].customer_id, rows[1].invoice_date) == ("", "", 0, "")
    assert (rows[2].customer_id, rows[2].total_amount, rows[2].currency, rows[2].invoice_type) == (0, None, None, "5")
    assert (rows[3].customer_name, rows[3].customer_number, rows[3].invoice_number) == ("N" * 200, "4" * 50, "9" * 50)
    assert (rows[4].customer_name, rows[4].total_amount, rows[4].invoice_date) == ("Nul\ufffdAB", None, "")
    assert (rows[5].customer_name, rows[5].customer_id, rows[5].invoice_date) == ("Blob AB", 7, "9999-12-31")
    assert (rows[6].invoice_number, rows[6].customer_name) == ("'; DROP TABLE inexchange_dispatch; --", "Åsa 🧾 \u202eAB")
    # rows without a date belong to no interval: only a manual run's list reaches them
    assert [r["invoice_id"] for r in ledger.rows(LedgerState.PENDING)] == [2, 3, 6]
    assert [r["invoice_id"] for r in listed.rows(LedgerState.PENDING)] == [1, 3, 6]


@pytest.mark.parametrize("invoice_id", [None, "abc", 17.5, b"\x01", float("nan")])
def test_register_leaves_out_a_row_without_a_whole_invoice_id(ledger: Ledger, invoice_id: object) -> None:
    counts = ledger.register([invoice(1), {**invoice(2), "invoice_id": invoice_id}])
    assert counts == {"new": 1, "rechecked": 0, "unchanged": 0, "without_id": 1}
    assert [r["invoice_id"] for r in ledger.rows(*LedgerState)] == [1]


@pytest.mark.parametrize("invoice_id", [17, 17.0, Decimal("17"), "17", " 17 ", Decimal("17.000")])
def test_a_whole_invoice_id_of_any_type_is_the_invoice(ledger: Ledger, invoice_id: object) -> None:
    assert ledger.register([{**invoice(17), "invoice_id": invoice_id}])["new"] == 1
    assert [r["erp_document_id"] for r in ledger.rows(LedgerState.PENDING)] == ["invoice-17"]


def test_a_list_of_hostile_numbers_selects_nothing_and_not_the_interval(ledger: Ledger, engine: Engine) -> None:
    ledger.register([invoice(1), invoice(2)])
    numbers = ("'; DROP TABLE inexchange_dispatch; --", "' OR '1'='1", "%", "_", "\\", "1000%", "\x00")
    listed = Ledger(engine, replace(SCOPE, run_type="manual", invoice_numbers=numbers))
    assert listed.rows(*LedgerState) == []
    assert listed.due_rows(max_attempts=5) == []
    only_nul = Ledger(engine, replace(SCOPE, run_type="manual", invoice_numbers=("\x00",)))
    assert only_nul.rows(*LedgerState) == [] and only_nul.refresh_report() == []
    assert [r["invoice_id"] for r in ledger.rows(*LedgerState)] == [1, 2]  # the table is still there


@pytest.mark.parametrize("listed", [[" ", ""], "  ,  ", ["\x00"]])
def test_a_list_of_blanks_selects_nothing_rather_than_the_interval(ledger: Ledger, engine: Engine,
                                                                    listed: object) -> None:
    ledger.register([invoice(1), invoice(2)])
    ledger.transition(1, [LedgerState.PENDING], LedgerState.READY, source="validate")
    scope = run_scope({"data_interval_start": SCOPE.start, "data_interval_end": SCOPE.end,
                       "run_id": "manual__blanks", "params": {"invoice_numbers": listed}})
    assert scope.by_number and scope.start_date == SCOPE.start_date
    run = Ledger(engine, scope)
    assert run.rows(*LedgerState) == [] and run.due_rows(max_attempts=5) == []
    assert [r["invoice_id"] for r in ledger.rows(*LedgerState)] == [1, 2]  # the interval's own run sees them


def test_no_list_is_the_interval() -> None:
    scope = run_scope({"data_interval_start": SCOPE.start, "data_interval_end": SCOPE.end,
                       "run_id": "scheduled__x", "params": {"invoice_numbers": []}})
    assert not scope.by_number and scope.bounds["selected"] == 0


def test_invoice_date_owns_that_day_whatever_the_logical_date() -> None:
    import pendulum

    tz = pendulum.timezone("Europe/Stockholm")
    # a run whose data interval covers 2026-11-18 (06:00 to 06:00), told to send the invoices of the 20th
    start = pendulum.datetime(2026, 11, 18, 6, tz=tz)
    scope = run_scope({"data_interval_start": start.in_timezone("UTC"),
                       "data_interval_end": start.add(days=1).in_timezone("UTC"),
                       "run_id": "manual__day", "params": {"invoice_date": "2026-11-20"}})

    assert (scope.start_date, scope.end_date) == (date(2026, 11, 20), date(2026, 11, 21))
    assert scope.start == pendulum.datetime(2026, 11, 20, 6, tz=tz)  # the scheduled run of that day's interval
    assert scope.end == pendulum.datetime(2026, 11, 21, 6, tz=tz)
    assert scope.bounds["start_date"] == "2026-11-20" and scope.bounds["end_date"] == "2026-11-21"
    assert scope.describe() == "invoices dated 2026-11-20"

    without = run_scope({"data_interval_start": start, "data_interval_end": start.add(days=1),
                         "run_id": "scheduled__x", "params": {"invoice_date": ""}})
    assert without.start_date == date(2026, 11, 18) and without.describe() == "invoices dated 2026-11-18"
    week = run_scope({"data_interval_start": start, "data_interval_end": start.add(days=7),
                      "run_id": "backfill__x", "params": {}})
    assert week.describe() == "invoices dated 2026-11-18 to 2026-11-24"


@pytest.mark.parametrize("value", ["20/11/2026", "2026-13-01", "yesterday"])
def test_an_invoice_date_that_is_no_date_is_named(value: str) -> None:
    with pytest.raises(ValueError, match=r"param invoice_date must be a date such as 2026-11-20, not"):
        run_scope({"data_interval_start": SCOPE.start, "data_interval_end": SCOPE.end,
                   "run_id": "manual__bad", "params": {"invoice_date": value}})


def _triggered(params: dict, run_after: object, timetable: object = None) -> dict:
    """The context of a run triggered without a logical date: Airflow gives it no data interval."""
    from types import SimpleNamespace

    from airflow.sdk import CronDataIntervalTimetable

    timetable = timetable or CronDataIntervalTimetable("0 6 * * *", timezone="Europe/Stockholm")
    return {"run_id": "manual__now", "params": params, "dag": SimpleNamespace(timetable=timetable),
            "dag_run": SimpleNamespace(run_after=run_after, run_type="manual")}


@pytest.mark.parametrize(("run_after", "day"), [
    ("2026-12-03T14:00:00+00:00", date(2026, 12, 2)),  # after 06:00 Stockholm: yesterday's invoices
    ("2026-12-03T04:59:00+00:00", date(2026, 12, 1)),  # before 06:00 (05:00 UTC): the day before yesterday
    ("2026-07-01T04:00:00+00:00", date(2026, 6, 30)),  # summer: 06:00 Stockholm is 04:00 UTC
])
def test_a_run_triggered_without_a_logical_date_owns_the_last_whole_day(run_after: str, day: date) -> None:
    import pendulum

    scope = run_scope(_triggered({}, pendulum.parse(run_after)))
    assert (scope.start_date, scope.end_date) == (day, day + timedelta(days=1))
    assert pendulum.instance(scope.start).in_timezone("Europe/Stockholm").hour == 6
    assert scope.describe() == f"invoices dated {day.isoformat()}"


def test_a_run_triggered_without_a_logical_date_takes_its_invoice_date() -> None:
    import pendulum

    scope = run_scope(_triggered({"invoice_date": "2026-11-17"}, pendulum.parse("2026-12-03T14:00:00Z")))
    tz = pendulum.timezone("Europe/Stockholm")
    assert (scope.start, scope.end) == (pendulum.datetime(2026, 11, 17, 6, tz=tz), pendulum.datetime(2026, 11, 18, 6, tz=tz))


def test_without_an_interval_or_a_cron_schedule_the_run_names_what_to_give() -> None:
    import pendulum
    from airflow.sdk import DeltaDataIntervalTimetable

    context = _triggered({}, pendulum.parse("2026-12-03T14:00:00Z"), DeltaDataIntervalTimetable(timedelta(days=1)))
    with pytest.raises(ValueError, match="give the run the param invoice_date .* or invoice_numbers"):
        run_scope(context)


def test_set_writes_keep_awkward_values_and_bind_few_values(ledger: Ledger, engine: Engine) -> None:
    """Rows and lists of ids go as arrays on PostgreSQL and as JSON text on SQLite: values an array
    literal or JSON would have to escape, NULL-only columns, the largest ids and exact amounts come back
    as written, and no statement binds a value per row."""
    from sqlalchemy import event

    bound: list[int] = []
    writes: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        bound.append(len(parameters))
        writes.extend(s for s in ("INSERT INTO inexchange_dispatch ", "UPDATE inexchange_dispatch", "history") if s in statement)

    awkward = 'Bolaget {"AB"}, \\ \'citat\' NULL\nrad två [1, null] \\u0000 \\"x\\" 😀\t'
    rows = [{**invoice(2**63 - 1 - n), "customer_number": None, "customer_name": awkward,
             "total_amount": Decimal("-1234567.89") + n} for n in range(300)]
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert ledger.register(rows)["new"] == 300
        moved = ledger.transition_many(
            [Transition(row["invoice_id"], [LedgerState.PENDING], LedgerState.REJECTED, {"message": awkward})
             for row in rows], source="validate")
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert moved == [True] * 300
    with engine.connect() as conn:
        stored = conn.execute(text(
            "SELECT invoice_id, customer_number, customer_name, total_amount, message FROM inexchange_dispatch "
            "ORDER BY invoice_id DESC")).all()
        moves = conn.execute(text(
            "SELECT COUNT(*) FROM inexchange_dispatch_history WHERE to_state = 'rejected' AND message = :m"),
            {"m": awkward}).scalar()
    assert [(*r[:3], Decimal(str(r[3])), r[4]) for r in stored] == [  # SQLite reads NUMERIC as a float
        (row["invoice_id"], None, awkward, row["total_amount"], awkward) for row in rows]
    assert moves == 300
    assert {"INSERT INTO inexchange_dispatch ", "UPDATE inexchange_dispatch", "history"} <= set(writes)
    # psycopg parses a statement of more than 50 values every time; SQLAlchemy compiles and binds each
    assert max(bound) <= 50, bound


def test_a_nul_is_refused_rather_than_cut_short_in_sqlites_json() -> None:
    """SQLite's JSON functions end a text at an escaped NUL: a row holding one is refused, not stored
    shorter (the ledger stores NUL as U+FFFD), while an escaped-looking backslash text is no NUL."""
    from inexchange.sql import rows_statement

    def rows(value: str) -> dict[str, object]:
        return rows_statement("ledger_insert_history", ("message",), [{"message": value}], dialect="sqlite",
                              types={})[1]

    with pytest.raises(ValueError, match="NUL"):
        rows("ok\x00cut")
    with pytest.raises(ValueError, match="NUL"):
        rows("\\\x00")
    assert rows("\\u0000") == {"rows_json": '[["\\\\u0000"]]'}


def test_a_runs_resolved_recipients_are_kept_for_the_run_and_other_runs_old_ones_forgotten(
        ledger: Ledger, engine: Engine) -> None:
    other = Ledger(engine, replace(SCOPE, dag_run_id="manual__2026-11-17"))
    other.remember_recipients({7: ('["4367"]', {"method": "PDF"})})
    ledger.remember_recipients({7: ('["4367", "7300009054790"]', {"method": "Electronic", "recipient_id": "r-7"}),
                                8: ('["4368"]', {"method": "Paper"})})
    ledger.remember_recipients({8: ('["4368", "ny"]', {"method": "PDF", "email": "ny@example.se"})})  # resolved again

    assert ledger.recipients([7, 8, 9]) == {
        7: ('["4367", "7300009054790"]', {"method": "Electronic", "recipient_id": "r-7"}),
        8: ('["4368", "ny"]', {"method": "PDF", "email": "ny@example.se"}),
    }
    assert other.recipients([7, 8]) == {7: ('["4367"]', {"method": "PDF"})}  # each run its own
    assert ledger.recipients([]) == {}

    with engine.begin() as conn:  # the other run's row is days old; an unreadable row of ours is skipped
        conn.execute(text("UPDATE inexchange_recipient SET resolved_at = '2020-01-01T00:00:00+00:00' "
                          "WHERE dag_run_id = 'manual__2026-11-17'"))
        conn.execute(text("UPDATE inexchange_recipient SET resolved = 'not json' WHERE customer_id = 8"))
    ledger.remember_recipients({9: ('["4369"]', {"method": "Paper"})})
    assert other.recipients([7]) == {}
    assert set(ledger.recipients([7, 8, 9])) == {7, 9}
