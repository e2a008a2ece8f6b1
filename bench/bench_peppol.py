"""Documents per second with and without the official Peppol BIS 3 check, in the same process.

Generates a demo ERP (SQLite) with N invoices, loads the batch, keeps the invoices the validation
passes (what the pipeline sends), builds every document once (the baseline: what the submit task
does today), then builds and checks every document with the official
rules (``inexchange.peppol``: the CEN and Peppol stylesheets of release 3.0.19, run by saxonche).
Prints documents per second of each, the check's cost per document in milliseconds and the ratio:
what turning ``check_peppol`` on costs the submit task (whose sends take about 2 ms of CPU per
invoice, bench_submit.py). Single-threaded, so the figures are per core. The rules' folder is
``INEXCHANGE_PEPPOL_RULES`` or ``../shared/peppol-artefacts/3.0.19`` beside the repository; without
the two stylesheets there, it prints a line saying it is skipped and exits 0.
Usage: python bench/bench_peppol.py [N ...] (default 2000).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import date
from pathlib import Path

from bench_support import SELLER_CONFIG, generated_batch

ROOT = Path(__file__).resolve().parents[1]


def run(n: int, folder: Path) -> None:

    from inexchange.peppol import rules_in
    from inexchange.ubl import DocumentError, Seller, build_from_batch
    from inexchange.validation import validate

    started = time.perf_counter()
    rules = rules_in(str(folder))
    compiled = time.perf_counter() - started
    ids, batch = generated_batch(n)
    seller = Seller.from_config(SELLER_CONFIG)
    # what the pipeline sends: the invoices the validation passes (the generator's defects are rejected)
    verdicts = validate(batch, start=date(2026, 11, 16), end=date(2026, 11, 23), duplicate_numbers=set()).messages
    buildable = []
    for invoice_id in (i for i in ids if verdicts.get(int(i), "missing") is None):
        try:
            build_from_batch(batch, invoice_id, seller)
            buildable.append(invoice_id)
        except DocumentError:
            continue

    started = time.perf_counter()
    for invoice_id in buildable:
        build_from_batch(batch, invoice_id, seller)
    built = time.perf_counter() - started

    started = time.perf_counter()
    fatal = 0
    for invoice_id in buildable:
        fatal += any(failure.fatal for failure in rules.check(build_from_batch(batch, invoice_id, seller)))
    checked = time.perf_counter() - started

    count = len(buildable)
    print(f"\n{count} documents (of {len(ids)} invoices, the rest rejected by the validation); "
          f"the rules compiled once in {compiled:.2f} s")
    print(f"build                 {count / built:>8.0f} documents/s")
    print(f"build + official check{count / checked:>8.0f} documents/s  ({checked / built:.1f}x the time of build alone)")
    print(f"the check alone       {(checked - built) / count * 1000:>8.2f} ms of CPU per document; {fatal} with a fatal failure")


if __name__ == "__main__":
    rules_folder = Path(os.environ.get("INEXCHANGE_PEPPOL_RULES") or ROOT.parent / "shared" / "peppol-artefacts" / "3.0.19")
    from inexchange.peppol import STYLESHEETS

    missing = [name for name in STYLESHEETS if not (rules_folder / name).is_file()]
    if missing:  # not an error: `make bench` runs every bench, the artefacts are not part of the repository
        print(f"bench_peppol: skipped, {', '.join(missing)} not in {rules_folder} (set INEXCHANGE_PEPPOL_RULES)")
        sys.exit(0)
    for size in [int(a) for a in sys.argv[1:]] or [2000]:
        run(size, rules_folder)
