"""Tests of SubmitInvoicesOperator's declaration: what a DAG file gets without the submission loaded.

The submission itself runs against the simulator in tests/integration (test_submit_faults.py,
test_dispatch_e2e.py).
"""

from __future__ import annotations

import pytest

from inexchange.operators import submit
from inexchange.operators.submit import SubmitInvoicesOperator


def test_the_default_connection_is_the_hooks() -> None:
    from inexchange.hooks.inexchange import InExchangeHook

    operator = SubmitInvoicesOperator(task_id="submit")

    assert operator.inexchange_conn_id == InExchangeHook.default_conn_name == submit.DEFAULT_INEXCHANGE_CONN_ID
    assert operator.hook.inexchange_conn_id == InExchangeHook.default_conn_name


def test_the_default_attempts_are_the_ones_the_report_and_the_page_count_with() -> None:
    from inexchange.states import MAX_ATTEMPTS

    assert SubmitInvoicesOperator(task_id="submit").max_attempts == MAX_ATTEMPTS


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"shard": 2, "shards": 2}, "shard 2 is not in 0..1"),
    ({"concurrency": 0}, "at least 1"),
    ({"claim_batch": 0}, "at least 1"),
    ({"settle_rounds": -1}, "must not be negative"),
])
def test_bad_arguments_are_refused_when_the_dag_is_parsed(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SubmitInvoicesOperator(task_id="submit", **kwargs)
