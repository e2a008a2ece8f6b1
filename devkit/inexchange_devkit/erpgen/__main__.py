"""Command line: ``python -m inexchange_devkit.erpgen --url sqlite:///erp.db [--seed 7] [--replace] ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date

from sqlalchemy import create_engine, make_url

from inexchange_devkit.erpgen.generator import TablesNotEmptyError, check_arguments, drop_tables, generate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inexchange_devkit.erpgen",
        description="Fill the ERP adapter-contract tables with a deterministic Swedish test data set.",
    )
    parser.add_argument("--url", required=True, help="SQLAlchemy database URL, e.g. sqlite:///erp.db")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--customers", type=int, default=40, help="customers (default 40, at least 15)")
    parser.add_argument("--invoices", type=int, default=200, help="posted invoices (default 200)")
    parser.add_argument(
        "--start-date", type=date.fromisoformat, default=date(2026, 11, 16), help="first invoice date (ISO)"
    )
    parser.add_argument("--days", type=int, default=7, help="number of invoice dates (default 7)")
    parser.add_argument("--drafts", type=int, default=15, help="draft invoices (default 15)")
    parser.add_argument("--chunk-size", type=int, default=5000, help="invoices per executemany batch")
    parser.add_argument(
        "--replace", action="store_true", help="drop and recreate the four ERP tables before writing"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generator from the command line; return the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    url = make_url(args.url)
    options = {"executemany_mode": "values_plus_batch"} if url.get_driver_name() == "psycopg2" else {}
    try:
        check_arguments(
            customers=args.customers,
            invoices=args.invoices,
            days=args.days,
            drafts=args.drafts,
            chunk_size=args.chunk_size,
        )
    except ValueError as error:
        parser.error(str(error))
    engine = create_engine(url, **options)
    try:
        if args.replace:
            drop_tables(engine)
        summary = generate(
            engine,
            seed=args.seed,
            customers=args.customers,
            invoices=args.invoices,
            start_date=args.start_date,
            days=args.days,
            drafts=args.drafts,
            chunk_size=args.chunk_size,
        )
        print(f"{summary.describe()} Database: {url.render_as_string(hide_password=True)}.")
        return 0
    except TablesNotEmptyError as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
