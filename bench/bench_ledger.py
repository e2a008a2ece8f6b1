"""The ledger's writes and shard reads at a day's scale, on SQLite and PostgreSQL.

For each backend (a SQLite file, and a fresh schema of the PostgreSQL test database when the server
answers) and each size N (default 10,000 and 100,000 ledger rows of one day), this measures the
ledger calls the submit stage makes, with the same statements the tasks run:

- register: the extract's ``Ledger.register`` of N invoices (pending);
- claim: every row ready -> submitting through ``Ledger.transition_many``, in the submit task's
  claim batches (100 changes a call), and the history rows they write;
- record: every row submitting -> waiting with its document id, in batches of 100 as the recorder
  writes them;
- due rows: the day's ``ready`` rows read in shards of about 2,500 rows, as plan_batches and the
  mapped submit tasks read them: ``Ledger.shard_ranges`` and ``Ledger.due_rows`` of each range;
- baseline claim: the same claims written one statement per change (a batch of one), in the same
  process, so the ratio says what the set-based writes save;
- baseline due: the same shards read as ``invoice_id % shards`` (each shard scans the whole day).

Each figure is wall seconds per 1,000 rows; ``x 10k`` is the cost per row at N against the smallest
N (linear is 1.0). Usage: python bench/bench_ledger.py [N ...] [--backends sqlite,postgres].
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dispatch_testing.support import PG_DB, PG_HOST, PG_PORT, PG_USER
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

DAY = date(2026, 11, 17)
BATCH = 100
SHARD_ROWS = 2500


def _scope() -> Any:
    from inexchange.ledger import RunScope

    start = datetime(2026, 11, 16, 23, tzinfo=UTC)
    return RunScope("bench__ledger", start, start.replace(day=17), DAY, date(2026, 11, 18))


def _invoices(n: int) -> Iterator[dict[str, Any]]:
    for i in range(1, n + 1):
        yield {
            "invoice_id": 100_000 + i,
            "invoice_number": str(10_000 + i),
            "invoice_type": "debit",
            "customer_id": 1 + i % 500,
            "customer_number": f"K{i % 500}",
            "customer_name": f"Kund {i % 500} AB",
            "invoice_date": DAY.isoformat(),
            "currency": "SEK",
            "total_amount": 1250.0,
        }


@contextmanager
def _engine(backend: str, workdir: Path, n: int) -> Iterator[Engine]:
    if backend == "sqlite":
        engine = create_engine(f"sqlite:///{workdir / f'ledger-{n}.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    schema = f"bench_ledger_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _one_by_one(ledger: Any, changes: list[Any]) -> None:
    """The baseline: each compare-and-set its own UPDATE, with its history row, in one transaction."""
    for start in range(0, len(changes), BATCH):
        with ledger.engine.begin() as conn:
            for change in changes[start : start + BATCH]:
                ledger.transition(
                    change.invoice_id, change.from_states, change.to_state, source="bench", conn=conn, **change.fields
                )


def run(backend: str, n: int, workdir: Path) -> dict[str, float]:
    from inexchange.ledger import Ledger, Transition
    from inexchange.states import LedgerState

    figures: dict[str, float] = {}
    with _engine(backend, workdir, n) as engine:
        ledger = Ledger(engine, _scope())
        ledger.ensure_schema()
        figures["register"] = _timed(lambda: ledger.register(_invoices(n)))
        ids = list(range(100_001, 100_001 + n))
        ready = [Transition(i, [LedgerState.PENDING], LedgerState.READY, {}) for i in ids]
        ledger.transition_many(ready, source="bench")
        shards = max(1, -(-n // SHARD_ROWS))

        def by_ranges() -> None:
            for first, last in ledger.shard_ranges(SHARD_ROWS, max_attempts=5):
                ledger.due_rows(max_attempts=5, first_id=first, last_id=last)

        figures["baseline due"] = _timed(
            lambda: [ledger.due_rows(max_attempts=5, shard=k, shards=shards) for k in range(shards)]
        )
        figures["due rows"] = _timed(by_ranges)
        half = n // 2
        claims = [Transition(i, [LedgerState.READY], LedgerState.SUBMITTING, {"attempt": 1}) for i in ids]

        def batched(changes: list[Any]) -> None:
            for start in range(0, len(changes), BATCH):
                ledger.transition_many(changes[start : start + BATCH], source="bench")

        figures["baseline claim"] = _timed(lambda: _one_by_one(ledger, claims[:half])) * n / half
        figures["claim"] = _timed(lambda: batched(claims[half:])) * n / (n - half)

        records = [
            Transition(
                i,
                [LedgerState.SUBMITTING],
                LedgerState.WAITING,
                {"inexchange_document_id": str(uuid.UUID(int=i)), "inexchange_status": "PendingInPlatform"},
            )
            for i in ids
        ]
        figures["record"] = _timed(lambda: batched(records))
        with engine.connect() as conn:
            history = conn.execute(text("SELECT COUNT(*) FROM inexchange_dispatch_history")).scalar_one()
            waiting = conn.execute(
                text("SELECT COUNT(*) FROM inexchange_dispatch WHERE state = 'waiting'")
            ).scalar_one()
        if waiting != n or history != 4 * n:
            raise SystemExit(
                f"{backend} {n}: {waiting} rows waiting and {history} history rows, expected {n} and {4 * n}"
            )
    return {stage: seconds * 1000 / n for stage, seconds in figures.items()}


def _postgres_answers() -> bool:
    try:
        engine = create_engine(f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB}")
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception as exc:
        print(f"PostgreSQL at {PG_HOST}:{PG_PORT} does not answer ({type(exc).__name__}); SQLite only")
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b != "postgres" or _postgres_answers()]
    stages = ("register", "baseline claim", "claim", "record", "baseline due", "due rows")
    print(f"seconds per 1,000 ledger rows ({BATCH} changes a call, shards of {SHARD_ROWS} rows)")
    print(f"{'backend':<10} {'rows':>9} " + " ".join(f"{s:>15}" for s in stages) + f" {'claim vs baseline':>18}")
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        for backend in backends:
            first: dict[str, float] | None = None
            for n in sorted(args.sizes):
                per_k = run(backend, n, Path(tmp))
                first = first or per_k
                cells = " ".join(
                    f"{per_k[s]:>7.3f} (x{per_k[s] / first[s]:.2f})" if first is not per_k else f"{per_k[s]:>15.3f}"
                    for s in stages
                )
                print(f"{backend:<10} {n:>9,} {cells} {per_k['baseline claim'] / per_k['claim']:>17.1f}x")


if __name__ == "__main__":
    main()
