"""The page's "needs a person" view: the default filter, "all states", one state, and retry times.

The reporting database (SQLite file and PostgreSQL) holds ``LEDGER_CASES`` in the ledger and the
report rows the report task's code wrote from it, so that a failed row's retry time comes from the
ledger as in production.
"""

from __future__ import annotations

import html as html_text
import re

import pytest
from sqlalchemy.engine import Engine

from dispatch_page_support import LEDGER_CASES, VIEWER, VIEWER_PASSWORD, Site
from inexchange.states import LedgerState

PAGE = "/inexchange/"
ROW = re.compile(r'<tr data-invoice-id="(\d+)"( class="needs-person")?>(.*?)</tr>', re.S)
NUMBER = re.compile(r'<td class="invoice-number"><a href="[^"]+">([^<]+)</a></td>')
NEXT_STEP = re.compile(r'<td class="next-step( action)?"(?: title="([^"]*)")?>([^<]*)</td>')
NEEDING = [case for case in LEDGER_CASES if case.needs_person]


def listed(html: str) -> dict[str, tuple[bool, str]]:
    """Invoice number -> (marked as needing a person, "Next step" text), in page order."""
    rows = {}
    for _invoice_id, marked, cells in ROW.findall(html):
        number, step = NUMBER.search(cells), NEXT_STEP.search(cells)
        assert number is not None and step is not None, cells
        assert bool(step.group(1)) == bool(marked)
        rows[number.group(1)] = (bool(marked), html_text.unescape(step.group(3)))
    return rows


def summary(html: str) -> str:
    found = re.search(r'<p class="note" id="summary">(.*?)</p>', html, re.S)
    assert found is not None
    return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split())


@pytest.fixture
def token(site: Site, cases_engine: Engine) -> str:
    return site.login(VIEWER, VIEWER_PASSWORD)


def test_default_lists_exactly_the_invoices_that_need_a_person(site: Site, token: str) -> None:
    response = site.get(PAGE, token)
    assert response.status_code == 200
    rows = listed(response.text)
    assert list(rows) == [case.number for case in NEEDING]
    assert rows == {case.number: (True, case.next_step) for case in NEEDING}
    assert summary(response.text) == f"{len(NEEDING)} invoice rows need a person."
    assert '<strong id="active-state">invoices that need a person</strong>' in response.text
    assert '<option value="attention" selected>needs a person</option>' in response.text
    assert "20006" not in response.text  # failed, retried automatically


def test_explicit_attention_is_the_default(site: Site, token: str) -> None:
    assert site.get(PAGE, token, params={"state": "attention"}).text == site.get(PAGE, token).text


def test_all_states_lists_every_row_and_says_what_happens_next(site: Site, token: str) -> None:
    html = site.get(PAGE, token, params={"state": "all"}).text
    assert listed(html) == {case.number: (case.needs_person, case.next_step) for case in LEDGER_CASES}
    assert summary(html) == f"{len(LEDGER_CASES)} invoice rows. {len(NEEDING)} of them need a person."
    assert '<strong id="active-state">all states</strong>' in html
    assert '<option value="all" selected>all states</option>' in html


def test_retry_times_are_local_with_their_zone(site: Site, token: str) -> None:
    rows = listed(site.get(PAGE, token, params={"state": "failed"}).text)
    assert rows["20006"] == (False, "retried automatically at 2099-11-20 09:12 CET")
    assert rows["20007"] == (False, "retried automatically at the next run")
    assert rows["20008"] == (False, "retried automatically at the next run (due since 2025-07-01 10:12 CEST)")
    # a time set on the last attempt means nothing: a person must act
    assert rows["20005"] == (True, "needs a person: no automatic attempts left")
    assert rows["20004"] == (True, "needs a person: InExchange reported an error, never resent automatically")


def test_the_retry_cell_keeps_the_ledger_time_in_utc(site: Site, token: str) -> None:
    html = site.get(PAGE, token, params={"state": "failed", "customer": "alingsås"}).text
    assert ('<td class="next-step" title="2099-11-20T08:12:00.000000Z">retried automatically at '
            "2099-11-20 09:12 CET</td>") in html


@pytest.mark.parametrize("state", [state.value for state in LedgerState])
def test_one_state(site: Site, token: str, state: str) -> None:
    html = site.get(PAGE, token, params={"state": state}).text
    expected = [case for case in LEDGER_CASES if case.state == state]
    assert listed(html) == {case.number: (case.needs_person, case.next_step) for case in expected}
    assert f'<option value="{state}" selected>{state}</option>' in html
    assert f'<strong id="active-state">state {state}</strong>' in html
    needing = sum(case.needs_person for case in expected)
    assert summary(html).endswith("None of them needs a person." if not needing else
                                  f"{needing} of them need{'s' if needing == 1 else ''} a person.")


def test_failed_rows_are_counted_apart(site: Site, token: str) -> None:
    html = site.get(PAGE, token, params={"state": "failed"}).text
    assert summary(html) == "5 invoice rows. 2 of them need a person."


def test_links_between_the_views_keep_the_other_filters(site: Site, token: str) -> None:
    html = site.get(PAGE, token, params={"customer": "4367", "date_from": "2026-11-17", "page": "1"}).text
    show_all = re.search(r'<a href="([^"]+)" id="show-all">Show all states</a>', html)
    assert show_all is not None
    assert html_text.unescape(show_all.group(1)) == "?customer=4367&date_from=2026-11-17&state=all"
    every = site.get(PAGE + html_text.unescape(show_all.group(1)), token).text
    assert len(listed(every)) == len(LEDGER_CASES)
    back = re.search(r'<a href="([^"]+)" id="show-attention">', every)
    assert back is not None
    assert html_text.unescape(back.group(1)) == "?customer=4367&date_from=2026-11-17&state=attention"


def test_nothing_to_do_is_said_plainly(site: Site, token: str) -> None:
    html = site.get(PAGE, token, params={"date_from": "2026-11-18"}).text
    assert listed(html) == {} and "No invoices need a person." in html
    assert "No invoices match." in site.get(PAGE, token, params={"state": "all", "date_from": "2026-11-18"}).text


def test_unknown_state_names_the_choices(site: Site, token: str) -> None:
    response = site.get(PAGE, token, params={"state": "needs-person"})
    assert response.status_code == 400
    assert "unknown state needs-person; choose attention (needs a person), all, or one of pending" in response.text
    assert listed(response.text) == {}
