"""The "InExchange dispatch" page: filters, escaping, history, no secrets, and Airflow's auth.

Every test reads a real SQLite reporting database through the page's own engine factory
(``inexchange_reporting``, from ``AIRFLOW_CONN_*``; never the ERP's), and logs in through the
simple auth manager's real token endpoint.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI

from dispatch_page_support import (
    DAY_18,
    HTML_MESSAGE,
    NOBODY,
    NOBODY_PASSWORD,
    REPORT_ROWS,
    SCRIPT_NAME,
    VIEWER,
    VIEWER_PASSWORD,
    Site,
    create_reporting_database,
    report_row,
)
from dispatch_testing.support import sqlite_conn_env

PAGE = "/inexchange/"
NUMBER_CELL = re.compile(r'<td class="invoice-number"><a href="([^"]+)">([^<]+)</a></td>')


def invoice_numbers(html: str) -> list[str]:
    """The invoice numbers listed in the report table, in page order."""
    return [number for _href, number in NUMBER_CELL.findall(html)]


def summary(html: str) -> str:
    """The text of the line under the filters that counts the rows (tags dropped, spaces collapsed)."""
    found = re.search(r'<p class="note" id="summary">(.*?)</p>', html, re.S)
    assert found is not None, "no summary line"
    return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split())


@pytest.fixture
def token(site: Site, reporting_db: Path) -> str:
    """A viewer's JWT, issued by the simple auth manager."""
    return site.login(VIEWER, VIEWER_PASSWORD)


# ---- the listing and its filters -------------------------------------------------------------
def test_lists_every_row_newest_interval_first(site: Site, token: str) -> None:
    response = site.get(PAGE, token, params={"state": "all"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert invoice_numbers(response.text) == ["10073", "10075", "10080", "10081", "10064", "10065"]
    assert summary(response.text) == "6 invoice rows. 3 of them need a person."
    assert "AwaitingRecipientApproval: The recipient must approve" in response.text
    assert "scheduled__2026-11-18T05:00:00+00:00" in response.text
    assert '<option value="all" selected>all states</option>' in response.text


@pytest.mark.parametrize("query", ["", "?state=", "?state=+", "?customer=&date_from=&date_to="])
def test_without_a_state_the_page_lists_what_needs_a_person(site: Site, token: str, query: str) -> None:
    """The failed row with attempts left (10081) is retried automatically: not listed."""
    html = site.get(PAGE + query, token).text
    assert invoice_numbers(html) == ["10073", "10075", "10065"]
    assert '<option value="attention" selected>needs a person</option>' in html
    assert '<strong id="active-state">invoices that need a person</strong>' in html
    assert summary(html) == "3 invoice rows need a person."


def test_filter_by_state(site: Site, token: str) -> None:
    html = site.get(PAGE, token, params={"state": "rejected"}).text
    assert invoice_numbers(html) == ["10073", "10075"]
    assert '<option value="rejected" selected>' in html


def test_filter_by_interval_start_date(site: Site, token: str) -> None:
    every = {"state": "all"}
    day_17 = site.get(PAGE, token, params={**every, "date_from": "2026-11-17", "date_to": "2026-11-17"}).text
    assert invoice_numbers(day_17) == ["10064", "10065"]
    from_18 = site.get(PAGE, token, params={**every, "date_from": "2026-11-18"}).text
    assert invoice_numbers(from_18) == ["10073", "10075", "10080", "10081"]
    until_16 = site.get(PAGE, token, params={**every, "date_to": "2026-11-16"}).text
    assert invoice_numbers(until_16) == [] and "No invoices match" in until_16
    needing_17 = site.get(PAGE, token, params={"date_from": "2026-11-17", "date_to": "2026-11-17"}).text
    assert invoice_numbers(needing_17) == ["10065"]


def test_filter_by_customer_number_or_name(site: Site, token: str) -> None:
    def listed(customer: str, state: str = "all") -> list[str]:
        return invoice_numbers(site.get(PAGE, token, params={"customer": customer, "state": state}).text)

    assert listed("KOMMUN") == ["10073", "10064"]
    assert listed("KOMMUN", state="attention") == ["10073"]
    assert listed("101") == ["10065"]
    assert listed(" data ab ") == ["10065"]


def test_customer_text_is_not_a_like_pattern(site: Site, token: str) -> None:
    def listed(customer: str) -> list[str]:
        return invoice_numbers(site.get(PAGE, token, params={"customer": customer, "state": "all"}).text)

    assert listed("100%") == ["10080"]
    assert listed("g_e") == ["10081"]
    assert listed("%") == ["10080"]
    assert listed("r_r") == []


def test_filters_combine(site: Site, token: str) -> None:
    params = {"state": "rejected", "customer": "1031", "date_from": "2026-11-18", "date_to": "2026-11-18"}
    assert invoice_numbers(site.get(PAGE, token, params=params).text) == ["10073"]


@pytest.mark.parametrize(("params", "message"), [
    ({"date_from": "18/11/2026"}, "From must be a date like 2026-11-17 (got 18/11/2026)"),
    ({"date_from": "2026-11-18", "date_to": "2026-11-17"}, "is before"),
    ({"state": "delivered"}, "unknown state"),
])
def test_unusable_filter_is_named(site: Site, token: str, params: dict[str, str], message: str) -> None:
    response = site.get(PAGE, token, params=params)
    assert response.status_code == 400
    assert message in response.text
    assert invoice_numbers(response.text) == []


def test_pages_of_one_hundred(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [report_row(5000 + i, f"2{i:04d}", ("3000", "Bulk AB"), "sent", DAY_18) for i in range(250)]
    path = create_reporting_database(tmp_path / "bulk.db", rows, [])
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", sqlite_conn_env(path))
    token = site.login(VIEWER, VIEWER_PASSWORD)

    first = site.get(PAGE, token, params={"state": "sent"}).text
    assert invoice_numbers(first) == [f"2{i:04d}" for i in range(100)]
    assert summary(first) == "250 invoice rows, page 1 of 3 (100 a page). None of them needs a person."
    assert 'id="previous-page"' not in first
    next_link = re.search(r'<a href="([^"]+)" id="next-page">', first)
    assert next_link is not None
    assert "state=sent" in next_link.group(1) and "page=2" in next_link.group(1)
    last = site.get(PAGE, token, params={"state": "sent", "page": "3"}).text
    assert invoice_numbers(last) == [f"2{i:04d}" for i in range(200, 250)]
    assert 'id="next-page"' not in last and 'id="previous-page"' in last
    past = site.get(PAGE, token, params={"state": "sent", "page": "9"}).text
    assert invoice_numbers(past) == [] and "No invoices match on page 9" in past


# ---- escaping --------------------------------------------------------------------------------
def test_erp_text_is_escaped(site: Site, token: str) -> None:
    html = site.get(PAGE, token).text
    assert SCRIPT_NAME not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>VAT-nummer</b>" not in html and "<img" not in html
    assert "&lt;b&gt;VAT-nummer&lt;/b&gt; saknas &amp; &#34;Märkning&#34;" in html
    assert "<script" not in html


def test_search_text_is_escaped_when_echoed(site: Site, token: str) -> None:
    typed = '"><script>alert(3)</script>'
    html = site.get(PAGE, token, params={"customer": typed, "date_from": "<i>x</i>"}).text
    assert "<script" not in html and "<i>x</i>" not in html
    assert "(got &lt;i&gt;x&lt;/i&gt;)" in html


# ---- one invoice -----------------------------------------------------------------------------
def test_invoice_link_opens_its_history_in_order(site: Site, token: str) -> None:
    listing = site.get(PAGE, token, params={"customer": "Umeå", "state": "all"}).text
    links = dict((number, href) for href, number in NUMBER_CELL.findall(listing))
    assert links == {"10064": "/inexchange/invoices/1001"}
    response = site.get(links["10064"], token)
    assert response.status_code == 200
    html = response.text
    assert "Kundfaktura 10064: 1003 Umeå kommun" in html
    history = html.split('id="history"', 1)[1]
    changed = re.findall(r"<td>(2026-11-18T05:0\d:\d\d\.\d{6}Z)</td>", history)
    assert changed == sorted(changed) and len(changed) == 5
    to_states = re.findall(r'class="state state-(\w+)"', history)
    assert to_states == ["pending", "ready", "submitting", "waiting", "sent"]
    assert "7d1c0c3e-0001" in html and "status poll" in html


def test_invoice_history_is_escaped(site: Site, token: str) -> None:
    html = site.get("/inexchange/invoices/1004", token).text
    assert "<script" not in html and "<img" not in html
    assert html.count("&lt;img src=x onerror=alert(2)&gt;") == 2  # the report row and the history row
    assert HTML_MESSAGE not in html


def test_unknown_invoice_is_404(site: Site, token: str) -> None:
    response = site.get("/inexchange/invoices/999999", token)
    assert response.status_code == 404
    assert "No history recorded for invoice 999999" in response.text


# ---- connections and secrets -----------------------------------------------------------------
@pytest.mark.parametrize("path", [PAGE, "/inexchange/invoices/1001"])
def test_without_the_reporting_connection_the_page_says_to_define_it(
        site: Site, reporting_db: Path, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No fallback to the ERP's database, even when it holds a report: the page names the missing connection."""
    monkeypatch.delenv("AIRFLOW_CONN_INEXCHANGE_REPORTING")
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", sqlite_conn_env(reporting_db))
    token = site.login(VIEWER, VIEWER_PASSWORD)

    response = site.get(path, token)

    assert response.status_code == 503
    assert "The connection inexchange_reporting is not defined. Define inexchange_reporting as the database" in (
        response.text)
    assert invoice_numbers(response.text) == [] and "10065" not in response.text
    assert str(reporting_db) not in response.text and "Traceback" not in response.text


def test_pages_never_show_connections_or_keys(site: Site, reporting_db: Path, token: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"db-password-Qx81", "api-key-Zr55", "erp-login-Wk27"}
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", json.dumps({
        "conn_type": "postgres", "host": "erp-db.internal", "login": "erp-login-Wk27", "password": "db-password-Qx81",
        "schema": "softone",
    }))
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": "https://testapi.inexchange.se/v1/api/", "password": "api-key-Zr55",
        "extra": {"erp_id": "unit-erp"},
    }))
    pages = [site.get(PAGE, token), site.get("/inexchange/invoices/1001", token)]
    assert [p.status_code for p in pages] == [200, 200]
    for page in pages:
        assert not any(secret in page.text for secret in secrets)
        assert str(reporting_db) not in page.text and "sqlite" not in page.text.lower()
        assert "erp-db.internal" not in page.text
        assert token not in page.text
        assert page.headers["cache-control"] == "no-store"


def test_database_error_shows_no_details(site: Site, token: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-dir" / "reporting.db"
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", json.dumps({
        "conn_type": "sqlite", "host": str(missing), "password": "db-password-Qx81",
    }))
    response = site.get(PAGE, token)
    assert response.status_code == 503
    assert "The reporting database could not be read" in response.text
    assert "db-password-Qx81" not in response.text and "no-such-dir" not in response.text
    assert "Traceback" not in response.text and "OperationalError" not in response.text


def test_missing_report_table_is_a_clear_message(site: Site, token: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", sqlite_conn_env(empty))
    response = site.get("/inexchange/invoices/1001", token)
    assert response.status_code == 503
    assert "may not exist yet" in response.text and "inexchange_dispatch_history" not in response.text


# ---- authentication --------------------------------------------------------------------------
@pytest.mark.parametrize("path", [PAGE, "/inexchange/invoices/1001"])
def test_no_token_is_refused(site: Site, reporting_db: Path, path: str) -> None:
    response = site.get(path, None)
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    assert "10064" not in response.text


def test_browser_without_session_is_sent_to_the_login_page(site: Site, reporting_db: Path) -> None:
    response = site.get("/inexchange/?state=rejected", None, headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/auth/login?next=http%3A%2F%2Ftestserver%2Finexchange%2F%3Fstate%3Drejected")


def test_forged_token_is_refused(site: Site, reporting_db: Path) -> None:
    import jwt

    forged = jwt.encode({"sub": VIEWER, "role": "admin", "aud": "apache-airflow"}, "not-the-secret", "HS512")
    response = site.get(PAGE, forged, headers={"Accept": "text/html"})
    assert response.status_code == 403
    assert "10064" not in response.text


def test_expired_token_is_refused(site: Site, reporting_db: Path) -> None:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    expired = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=VIEWER, role="viewer"),
                                              expiration_time_in_seconds=-int(timedelta(minutes=5).total_seconds()))
    response = site.get(PAGE, expired)
    assert response.status_code == 401
    assert response.json() == {"detail": "Token Expired"}


def test_user_without_a_role_is_forbidden(site: Site, reporting_db: Path) -> None:
    token = site.login(NOBODY, NOBODY_PASSWORD)
    response = site.get(PAGE, token)
    assert response.status_code == 403
    assert "10064" not in response.text


def test_bearer_token_is_accepted(site: Site, token: str) -> None:
    site.client.cookies.clear()
    response = site.client.get(PAGE, headers={"Authorization": f"Bearer {token}"}, params={"state": "sent"})
    assert response.status_code == 200
    assert invoice_numbers(response.text) == ["10064"]


# ---- registration ----------------------------------------------------------------------------
def test_plugin_is_registered_through_the_entry_point() -> None:
    from airflow import plugins_manager

    from inexchange.ui.plugin import InExchangeDispatchPlugin

    plugins = {plugin.name: plugin for plugin in plugins_manager._get_plugins()[0]}
    assert isinstance(plugins["inexchange_dispatch"], InExchangeDispatchPlugin)
    apps, _middlewares = plugins_manager.get_fastapi_plugins()
    ours = [app for app in apps if app["url_prefix"] == "/inexchange"]
    assert len(ours) == 1 and isinstance(ours[0]["app"], FastAPI)
    views, _react = plugins_manager._get_ui_plugins()
    assert {"name": "InExchange dispatch", "href": "/inexchange/", "url_route": "inexchange-dispatch",
            "destination": "nav", "nav_top_level": True} in views


def test_report_rows_fixture_matches_the_schema(reporting_db: Path) -> None:
    """The fixture's rows carry every column of the report table (guards the tests above)."""
    from sqlalchemy import create_engine, inspect

    engine = create_engine(f"sqlite:///{reporting_db}")
    try:
        columns = {column["name"] for column in inspect(engine).get_columns("inexchange_report")}
    finally:
        engine.dispose()
    assert set(REPORT_ROWS[0]) | {"delivery_type"} == columns
