"""The "InExchange dispatch" page in a real browser, served by a real ``airflow api-server``.

What runs:

* the demo ERP (``inexchange_devkit.erpgen``, as in the end-to-end test) in a SQLite file, dispatched for
  one day by a real ``dag.test()`` run against the InExchange simulator, so the ledger, its history
  and the report table (in the same file, which the ``inexchange_reporting`` connection names too)
  hold what a real run writes, rejected invoices included;
* ``airflow api-server`` as a subprocess (``inexchange_devkit.services``) on the test
  session's SQLite metadata database, with the simple auth manager and one user ``admin`` whose
  password comes from a passwords file (``SIMPLE_AUTH_MANAGER_ALL_ADMINS`` is not set, so the
  login is real);
* headless Chromium (Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``) driven by
  Selenium: it opens the page inside the Airflow UI, is sent to Airflow's login page, signs in,
  sees the default "needs a person" view (compared with ``needs_attention.sql`` on the ledger),
  chooses "all states", filters by state ``rejected``, compares the listed invoice numbers with the
  database, opens one invoice's history, and saves screenshots.

Without Chromium the tests skip with the reason; with ``INEXCHANGE_REQUIRE_BROWSER=1`` (set by
``.ci/run``) they fail instead. Screenshots go to ``tests/artifacts/browser/`` (or
``$INEXCHANGE_ARTIFACTS_DIR/browser``); the path is printed. Run alone (about 40 s)::

    .venv/bin/python -m pytest tests/browser -v -s

The api-server's output is in ``<pytest basetemp>/dispatch-page0/home/component-logs/api-server.log``;
a failure shows its tail.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pendulum
import pytest

from inexchange_devkit.services import AirflowStack, Database, airflow_env, erp_env, free_port
from sqlalchemy import create_engine, text

from inexchange.attention import needs_attention
from dispatch_testing.support import SELLER, generated_erp

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.system, pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(240)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRE_BROWSER = os.environ.get("INEXCHANGE_REQUIRE_BROWSER") == "1"
ARTIFACTS = Path(os.environ.get("INEXCHANGE_ARTIFACTS_DIR") or ROOT / "tests" / "artifacts") / "browser"
USERNAME, PASSWORD = "admin", "admin"
START, RUN_DAY = date(2026, 11, 16), date(2026, 11, 17)
#: the Airflow UI route of the plugin's external view, and the page itself
UI_ROUTE = "/plugin/inexchange-dispatch"
PAGE = "/inexchange/"
WAIT_S = 30.0


# ---- Chromium --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser_binaries() -> None:
    """Skip (or fail, when INEXCHANGE_REQUIRE_BROWSER=1) without Chromium, chromedriver or Selenium."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package")
    if not missing:
        return
    message = (f"headless browser test needs {', '.join(missing)} "
               "(apt-get install -y chromium chromium-driver; selenium is in requirements.txt)")
    if REQUIRE_BROWSER:
        pytest.fail(message + " (INEXCHANGE_REQUIRE_BROWSER=1 makes it mandatory)")
    pytest.skip(message)


@pytest.fixture
def driver(browser_binaries: None) -> Iterator[WebDriver]:
    """Headless Chromium through chromedriver, quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,1000", "--lang=en-US"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    browser.set_page_load_timeout(WAIT_S)
    try:
        yield browser
    finally:
        browser.quit()


# ---- the demo data ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def erp_file(browser_binaries: None, airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo ERP in a SQLite file, after a real ``dag.test()`` run of one day against the simulator."""
    from inexchange_devkit.simulator.testing import run_simulator

    path = tmp_path_factory.mktemp("dispatch-erp") / "erp.db"
    generated_erp(path, seed=11, customers=40, invoices=90, start_date=START, days=3, drafts=9)
    with run_simulator(seed=5, status_step_ms=300, stop_rate=0.1, error_rate=0.05, api_key="browser-key") as sim, \
            pytest.MonkeyPatch.context() as patch:
        for name, value in erp_env(Database.sqlite(path)).items():  # the ERP's file holds the ledger too
            patch.setenv(name, value)
        patch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
            "conn_type": "inexchange", "host": sim.base_url, "password": sim.api_key,
            "extra": {"erp_id": "browser-erp"},
        }))
        patch.setenv("AIRFLOW_VAR_INEXCHANGE_SELLER", json.dumps(SELLER))
        patch.setenv("AIRFLOW_VAR_INEXCHANGE_POLL_INTERVAL", "0.5")
        run = _dispatch_dag().test(
            logical_date=pendulum.datetime(RUN_DAY.year, RUN_DAY.month, RUN_DAY.day, 6, tz="Europe/Stockholm").add(days=1),
            run_conf={"fail_on_action_needed": False},
        )
    assert run.state == "success", f"the demo run ended {run.state}"
    return path


def _dispatch_dag() -> Any:
    """The dispatch DAG, loaded from its file like the DAG processor does."""
    spec = importlib.util.spec_from_file_location("inexchange_dispatch_browser", ROOT / "dags" / "inexchange_dispatch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.inexchange_dispatch()


def _rows(path: Path, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


# ---- the api-server --------------------------------------------------------------------------
@dataclass
class ApiServer:
    """The running api-server and where its logs are."""

    url: str
    stack: AirflowStack


@pytest.fixture(scope="module")
def api_server(erp_file: Path, airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """``airflow api-server`` with the simple auth manager, one admin user and the demo ERP connection."""
    home = tmp_path_factory.mktemp("dispatch-page") / "home"
    home.mkdir()
    port = free_port()
    env = airflow_env(
        airflow_home=home,
        sql_alchemy_conn=f"sqlite:///{airflow_db / 'airflow.db'}",
        api_port=port,
        login=(USERNAME, PASSWORD),  # a real login, not everyone as admin
        extra=erp_env(Database.sqlite(erp_file)),
    )
    stack = AirflowStack(env, home / "component-logs")
    url = f"http://127.0.0.1:{port}"
    try:
        stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
        stack.wait_for("the api-server to refuse the page without a login",
                       lambda: _status(url + PAGE) == 401, timeout=120)
        yield ApiServer(url, stack)
    finally:
        stack.stop_all()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.HTTPError:
        return None


# ---- the tests -------------------------------------------------------------------------------
def test_page_is_refused_without_a_login(api_server: ApiServer) -> None:
    with httpx.Client(base_url=api_server.url, timeout=10.0) as client:
        refused = client.get(PAGE, params={"state": "rejected"})
        assert refused.status_code == 401 and refused.json() == {"detail": "Not authenticated"}
        assert client.get("/inexchange/invoices/1").status_code == 401
        forged = client.get(PAGE, headers={"Authorization": "Bearer not.a.token"})
        assert forged.status_code == 403
        browser_like = client.get(PAGE, headers={"Accept": "text/html"}, follow_redirects=False)
        assert browser_like.status_code == 303
        assert browser_like.headers["location"].startswith("/auth/login?next=")


def test_rejected_invoices_after_login(api_server: ApiServer, erp_file: Path, driver: WebDriver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_S)
    expected = _rows(erp_file, "SELECT invoice_number, message FROM inexchange_report WHERE state = :state "
                               "ORDER BY invoice_number", state="rejected")
    assert len(expected) >= 3, "the demo day should hold rejected invoices"
    every = sorted(row["invoice_number"] for row in _rows(erp_file, "SELECT invoice_number FROM inexchange_report"))
    needing = sorted(row["invoice_number"] for row in _needs_attention(erp_file))
    assert set(needing) < set(every) and {row["invoice_number"] for row in expected} <= set(needing)
    try:
        # the page inside the Airflow UI: not logged in, so Airflow sends the browser to its login page
        driver.get(api_server.url + UI_ROUTE)
        wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(USERNAME)
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[type=submit]"))).click()
        wait.until(ec.url_contains(UI_ROUTE))
        _enter_page(wait)

        # opened without a query string: only the invoices that need a person
        wait.until(ec.presence_of_element_located((By.ID, "report")))
        assert driver.execute_script("return window.location.search") == ""
        assert driver.find_element(By.ID, "active-state").text == "invoices that need a person"
        state = Select(driver.find_element(By.ID, "state"))
        assert state.first_selected_option.get_attribute("value") == "attention"
        assert _listed(driver) == needing
        assert driver.find_element(By.ID, "summary").text.startswith(f"{len(needing)} invoice row")
        print(f"\nscreenshot of the default view: {_screenshot(driver, 'dispatch_page_needs_a_person.png')}")
        _enter_page(wait)

        # "all states" lists the others too
        Select(wait.until(ec.presence_of_element_located((By.ID, "state")))).select_by_value("all")
        driver.find_element(By.ID, "apply").click()
        wait.until(lambda d: "state=all" in d.execute_script("return window.location.search"))
        wait.until(ec.presence_of_element_located((By.ID, "report")))
        assert driver.find_element(By.ID, "active-state").text == "all states"
        assert _listed(driver) == every
        marked = sorted(row.find_element(By.CSS_SELECTOR, "td.invoice-number").text
                        for row in driver.find_elements(By.CSS_SELECTOR, "#report tr.needs-person"))
        assert marked == needing

        Select(wait.until(ec.presence_of_element_located((By.ID, "state")))).select_by_value("rejected")
        driver.find_element(By.ID, "apply").click()
        wait.until(lambda d: "state=rejected" in d.execute_script("return window.location.search"))
        wait.until(ec.presence_of_element_located((By.ID, "report")))

        states = {cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#report .state")}
        assert _listed(driver) == [row["invoice_number"] for row in expected]
        assert states == {"rejected"}
        summary = driver.find_element(By.ID, "summary").text
        assert summary.startswith(f"{len(expected)} invoice row")
        screenshot = _screenshot(driver, "dispatch_page_rejected.png")
        print(f"\nscreenshot of the filtered page: {screenshot}")
        _enter_page(wait)

        # one invoice's history, opened from the list
        first = expected[0]
        driver.find_element(By.LINK_TEXT, first["invoice_number"]).click()
        history = wait.until(ec.presence_of_element_located((By.ID, "history")))
        to_states = [cell.text for cell in history.find_elements(By.CSS_SELECTOR, "tbody .state")]
        recorded = _rows(erp_file, "SELECT h.to_state FROM inexchange_dispatch_history h "
                                   "JOIN inexchange_report r ON r.invoice_id = h.invoice_id "
                                   "WHERE r.invoice_number = :number ORDER BY h.changed_at, h.history_id",
                         number=first["invoice_number"])
        assert to_states == [row["to_state"] for row in recorded]
        assert to_states[0] == "pending" and to_states[-1] == "rejected"
        assert first["message"] in driver.find_element(By.ID, "invoice-report").text
        print(f"history page: {_screenshot(driver, 'dispatch_page_history.png')}")
    except Exception:
        failure = _screenshot(driver, "dispatch_page_failure.png")
        print(f"\nscreenshot at the failure: {failure}\n{driver.current_url}\n"
              f"{api_server.stack.diagnostics(lines=60)}")
        raise


def _needs_attention(path: Path) -> list[dict[str, Any]]:
    """``needs_attention.sql`` on the ledger in ``path``."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        return needs_attention(engine)
    finally:
        engine.dispose()


def _listed(driver: WebDriver) -> list[str]:
    """The invoice numbers in the page's report table, sorted."""
    from selenium.webdriver.common.by import By

    return sorted(cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#report td.invoice-number"))


def _enter_page(wait: Any) -> None:
    """Switch into the iframe in which the Airflow UI shows the plugin's page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait.until(ec.frame_to_be_available_and_switch_to_it((By.CSS_SELECTOR, f"iframe[src*='{PAGE}']")))


def _screenshot(driver: WebDriver, name: str) -> Path:
    """Save the whole browser window (the Airflow UI around the page) as an artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.switch_to.default_content()
    driver.save_screenshot(str(path))
    return path
