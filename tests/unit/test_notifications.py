"""The e-mail about invoices that need a person: the Variable, the message, and when nothing is sent.

The send itself goes through the smtp provider's hook; here its SMTP client is a stub (the real
server is in tests/integration/test_attention_email.py).
"""

from __future__ import annotations

import html
import json
import logging
import socket
from email import message_from_string
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pendulum
import pytest

from inexchange import notifications
from inexchange.notifications import (
    VARIABLE,
    XCOM_KEY,
    ActionList,
    ActionNeededNotifier,
    EmailSettings,
    Message,
    NotifyConfigError,
    NotifySettings,
    compose,
    parse_settings,
    read_action_list,
    report_link,
)

LONG_MESSAGE = ("Kund 1031 Vårgårda kommun: VAT-nummer saknas; " + "ord " * 400).strip()
ACTION: ActionList = {
    "run": "invoices dated 2026-11-17",
    "first_day": "2026-11-17",
    "last_day": "2026-11-17",
    "interval_start": "2026-11-17T05:00:00.000000Z",
    "count": 3,
    "invoices": [
        {"invoice_number": "10065", "customer_number": "1014", "customer_name": "Mälardalens Data AB",
         "state": "stopped", "inexchange_status": "Stopped",
         "message": "AwaitingRecipientApproval: The recipient must approve the supplier"},
        {"invoice_number": "10073", "customer_number": "1031", "customer_name": "Vårgårda kommun",
         "state": "rejected", "inexchange_status": None, "message": LONG_MESSAGE},
    ],
    "without_id": ["Faktura 10099 (kund 1040 Ny Kund AB): invoice_id saknas; ge fakturan ett id i ERP"],
}
SETTINGS = {"email": {"to": ["ekonomi@example.se"], "cc": ["chef@example.se"], "from": "airflow@example.se",
                      "smtp_conn_id": "smtp_default"}, "page_url": "https://airflow.example.se/"}


# ---- the Variable ------------------------------------------------------------------------------


def test_the_documented_variable_is_read() -> None:
    settings = parse_settings(json.dumps(SETTINGS))

    assert settings == NotifySettings(
        EmailSettings(to=("ekonomi@example.se",), cc=("chef@example.se",), sender="airflow@example.se",
                      smtp_conn_id="smtp_default"),
        page_url="https://airflow.example.se")


def test_only_the_recipients_are_required() -> None:
    settings = parse_settings({"email": {"to": "ekonomi@example.se"}})

    assert settings == NotifySettings(EmailSettings(to=("ekonomi@example.se",)))
    assert settings.email.smtp_conn_id == "smtp_default" and settings.email.sender is None


@pytest.mark.parametrize(("value", "names"), [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "its value must be a JSON object, not a list"),
    ({"emial": {"to": ["a@example.se"]}}, "unknown key emial"),
    ({"page_url": "https://airflow.example.se"}, "key email is missing"),
    ({"email": ["a@example.se"]}, "key email must be a JSON object"),
    ({"email": {}}, "key email.to is missing"),
    ({"email": {"to": []}}, "key email.to is empty"),
    ({"email": {"to": ["a@example.se", "ekonomi@"]}}, "key email.to[1] is not an e-mail address"),
    ({"email": {"to": 7}}, "key email.to must be a list of e-mail addresses, not a number"),
    ({"email": {"to": ["a@example.se"], "cc": ["x"]}}, "key email.cc[0] is not an e-mail address"),
    ({"email": {"to": ["a@example.se"], "from": "airflow"}}, "key email.from is not an e-mail address"),
    ({"email": {"to": ["a@example.se"], "bcc": []}}, "unknown key email.bcc"),
    ({"email": {"to": ["a@example.se"], "smtp_conn_id": ""}}, "key email.smtp_conn_id must be a connection id"),
    ({"email": {"to": ["a@example.se"], "subject": "{count} {customer}"}}, "unknown placeholder {customer}"),
    ({"email": {"to": ["a@example.se"], "subject": "{count.__class__}"}}, "unknown placeholder {count.__class__}"),
    ({"email": {"to": ["a@example.se"], "subject": "brace { alone"}}, "key email.subject cannot be used"),
    ({"email": {"to": ["a@example.se"], "subject": "{run:d}"}}, "key email.subject cannot be used"),
    ({"email": {"to": ["a@example.se"]}, "page_url": "airflow.example.se"}, "key page_url is not an http(s) URL"),
    ({"email": {"to": ["a@example.se"]}, "page_url": "https://admin:pw@airflow.example.se"},
     "key page_url must not hold a user or password"),
    ({"email": {"to": ["a@example.se"]}, "page_url": "admin:pw@airflow.example.se"},
     "key page_url must not hold a user or password"),
    ({"email": {"to": ["a@example.se"]}, "page_url": "https://airflow.example.se/?x=1"},
     "key page_url must be a base URL without ? or #"),
])
def test_a_bad_value_is_one_line_naming_the_key(value: Any, names: str) -> None:
    with pytest.raises(NotifyConfigError) as raised:
        parse_settings(value)

    message = str(raised.value)
    assert message.startswith(f"Variable {VARIABLE}") and names in message, message
    assert "\n" not in message
    assert "pw@" not in message


# ---- the message -------------------------------------------------------------------------------


def test_the_message_lists_every_invoice_with_its_whole_message_and_the_page() -> None:
    link = report_link("https://airflow.example.se", ACTION)
    message = compose(ACTION, link=link, run_id="scheduled__2026-11-18T05:00:00+00:00")

    assert link == "https://airflow.example.se/inexchange/?date_from=2026-11-17&date_to=2026-11-17"
    assert message.subject == "InExchange: 3 invoices dated 2026-11-17 need a person"
    text = message.text
    assert "Invoice 10065, customer 1014 Mälardalens Data AB\n  State: stopped (InExchange: Stopped)\n" in text
    assert "  Message: AwaitingRecipientApproval: The recipient must approve the supplier\n" in text
    assert "Invoice 10073, customer 1031 Vårgårda kommun\n  State: rejected\n" in text
    assert f"  Message: {LONG_MESSAGE}\n" in text  # whole, never cut
    assert "ERP rows not taken into the ledger (no usable invoice_id), never sent:\n  Faktura 10099" in text
    assert "Run: scheduled__2026-11-18T05:00:00+00:00" in text
    assert text.rstrip().endswith(f"Report page: {link}")
    assert "more" not in text
    assert LONG_MESSAGE in message.html and f'<a href="{html.escape(link)}">' in message.html


def test_the_link_follows_the_report_page_of_the_plugin() -> None:
    from inexchange.ui.plugin import URL_PREFIX

    assert notifications.REPORT_PAGE_PREFIX == URL_PREFIX
    assert report_link(None, ACTION) == f"{URL_PREFIX}/?date_from=2026-11-17&date_to=2026-11-17"
    assert report_link("https://example.se/airflow/", ACTION).startswith(f"https://example.se/airflow{URL_PREFIX}/?")


def test_without_a_base_url_the_text_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    settings = parse_settings({"email": {"to": ["a@example.se"]}})
    assert notifications.ui_base_url(settings) is None
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.internal:8080/")
    assert notifications.ui_base_url(settings) == "http://airflow.internal:8080"
    assert notifications.ui_base_url(parse_settings(SETTINGS)) == "https://airflow.example.se"

    message = compose(ACTION, link=report_link(None, ACTION), full_link=False)
    assert "Report page: /inexchange/?date_from=2026-11-17&date_to=2026-11-17 (set page_url in the Variable" in message.text


def test_one_invoice_and_a_subject_of_the_variable() -> None:
    one: ActionList = {**ACTION, "count": 1, "invoices": ACTION["invoices"][:1], "without_id": []}

    assert compose(one, link="/x").subject == "InExchange: 1 invoice dated 2026-11-17 needs a person"
    assert compose(one, link="/x", subject="[Ekonomi] {count} att åtgärda, {first_day}").subject == \
        "[Ekonomi] 1 att åtgärda, 2026-11-17"


def test_more_than_listed_points_at_the_page() -> None:
    message = compose({**ACTION, "count": 250}, link="/x")

    assert "... and 247 more: see the report page." in message.text
    assert message.subject == "InExchange: 250 invoices dated 2026-11-17 need a person"


def test_untrusted_text_is_escaped_in_html_and_stripped_of_control_characters() -> None:
    hostile: ActionList = {**ACTION, "count": 1, "without_id": [], "invoices": [{
        "invoice_number": "10080\r\nBcc: evil@example.com", "customer_number": "1050",
        "customer_name": "<script>alert(1)</script> & Co\x1b[31m", "state": "rejected", "inexchange_status": None,
        "message": "{{ conn.smtp_default.password }} <b>fet</b>\x00"}]}

    message = compose(hostile, link="/x")

    assert "<script>" not in message.html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in message.html
    assert "&lt;b&gt;fet&lt;/b&gt;" in message.html
    assert "\x1b" not in message.text + message.html and "\x00" not in message.text + message.html
    assert "Invoice 10080 Bcc: evil@example.com, customer 1050" in message.text  # one line: no header
    assert "{{ conn.smtp_default.password }}" in message.text  # shown as it is, never rendered
    assert "\n" not in message.subject


def test_the_xcom_is_read_tolerantly() -> None:
    assert read_action_list(None) is None
    assert read_action_list({"invoices": []}) is None
    action = read_action_list({"count": 2, "invoices": [{"invoice_number": 10073, "state": "rejected"}, "junk"]})
    assert action is not None and action["count"] == 2
    assert action["invoices"] == [{"invoice_number": "10073", "customer_number": None, "customer_name": None,
                                   "state": "rejected", "inexchange_status": None, "message": None}]
    assert action["without_id"] == []


# ---- the notifier ------------------------------------------------------------------------------


class FakeTi:
    """The callback's task instance: its task id and the report's XCom."""

    def __init__(self, value: Any, task_id: str = "report") -> None:
        self.task_id = task_id
        self.value = value
        self.pulls: list[tuple[str, str]] = []

    def xcom_pull(self, *, task_ids: str, key: str) -> Any:
        self.pulls.append((task_ids, key))
        return self.value


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[EmailSettings, Message]]:
    """What the notifier sends, instead of sending it."""
    messages: list[tuple[EmailSettings, Message]] = []
    monkeypatch.setattr(notifications, "send_email", lambda settings, message: messages.append((settings, message)))
    return messages


def _context(ti: FakeTi) -> dict[str, Any]:
    return {"ti": ti, "run_id": "scheduled__2026-11-18T05:00:00+00:00"}


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "inexchange.notifications"]


def test_without_the_variable_nothing_is_sent_and_one_info_line_says_how(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sent: list[Any]) -> None:
    monkeypatch.delenv("AIRFLOW_VAR_INEXCHANGE_NOTIFY", raising=False)
    ti = FakeTi(ACTION)

    with caplog.at_level(logging.INFO, logger="inexchange"):
        ActionNeededNotifier()(_context(ti))

    assert sent == [] and ti.pulls == []
    records = _lines(caplog)
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert "set the Variable inexchange_notify" in records[0].getMessage()


def test_the_notifier_sends_one_message_from_the_reports_xcom(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sent: list[Any]) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_NOTIFY", json.dumps(SETTINGS))
    ti = FakeTi(ACTION)

    with caplog.at_level(logging.INFO, logger="inexchange"):
        ActionNeededNotifier()(_context(ti))

    assert ti.pulls == [("report", XCOM_KEY)]
    assert len(sent) == 1
    settings, message = sent[0]
    assert settings.to == ("ekonomi@example.se",) and settings.cc == ("chef@example.se",)
    assert message.subject == "InExchange: 3 invoices dated 2026-11-17 need a person"
    assert "https://airflow.example.se/inexchange/?date_from=2026-11-17&date_to=2026-11-17" in message.text
    assert any("sent to ekonomi@example.se, chef@example.se" in r.getMessage() for r in _lines(caplog))


@pytest.mark.parametrize(("xcom", "task_id", "said"), [
    (None, "report", "did not list the invoices"),  # the report failed before it could (a database outage)
    ({**ACTION, "count": 0, "invoices": [], "without_id": []}, "report", "no invoice of this run needs a person"),
    (ACTION, "extract", "is sent by the task report only"),
])
def test_nothing_is_sent_without_invoices_to_list(
        xcom: Any, task_id: str, said: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        sent: list[Any]) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_NOTIFY", json.dumps(SETTINGS))

    with caplog.at_level(logging.INFO, logger="inexchange"):
        ActionNeededNotifier()(_context(FakeTi(xcom, task_id=task_id)))

    assert sent == []
    assert [r.getMessage() for r in _lines(caplog) if said in r.getMessage()]


def test_an_unreadable_xcom_is_one_error_line(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sent: list[Any]) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_NOTIFY", json.dumps(SETTINGS))

    class BrokenTi(FakeTi):
        def xcom_pull(self, *, task_ids: str, key: str) -> Any:
            raise RuntimeError("the API server is not reachable")

    with caplog.at_level(logging.INFO, logger="inexchange"):
        ActionNeededNotifier()(_context(BrokenTi(ACTION)))

    assert sent == []
    [record] = _lines(caplog)
    assert record.levelno == logging.ERROR and "RuntimeError: the API server is not reachable" in record.getMessage()


def test_a_bad_variable_is_one_error_line_without_a_trace(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sent: list[Any]) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_NOTIFY", json.dumps({"email": {"to": ["ekonomi@"]}}))

    with caplog.at_level(logging.INFO, logger="inexchange"):
        ActionNeededNotifier()(_context(FakeTi(ACTION)))

    assert sent == []
    records = _lines(caplog)
    assert len(records) == 1 and records[0].levelno == logging.ERROR and records[0].exc_info is None
    assert "Variable inexchange_notify: key email.to[0] is not an e-mail address" in records[0].getMessage()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_smtp_down_is_one_error_line_naming_no_secret(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_NOTIFY", json.dumps(SETTINGS))
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": _closed_port(), "login": "airflow",
        "password": "smtp-pass-4711", "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 5}}))

    with caplog.at_level(logging.DEBUG):
        ActionNeededNotifier()(_context(FakeTi(ACTION)))  # raises nothing

    errors = [r for r in _lines(caplog) if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in _lines(caplog)]
    line = errors[0].getMessage()
    assert "NOT sent to 2 recipient(s) through the connection smtp_default" in line
    assert "ConnectionRefusedError" in line and "outcome stands" in line
    everything = "\n".join(r.getMessage() for r in caplog.records) + "".join(capfd.readouterr())
    assert "smtp-pass-4711" not in everything


class StubSmtp:
    """``smtplib.SMTP`` as the hook uses it, keeping what it is given."""

    sent: list[tuple[str, list[str], str]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def login(self, user: str, password: str) -> None:
        pass

    def sendmail(self, from_addr: str, to_addrs: list[str], msg: str) -> None:
        StubSmtp.sent.append((from_addr, to_addrs, msg))

    def close(self) -> None:
        pass


def test_the_hook_sends_the_html(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.providers.smtp.hooks.smtp as smtp_module

    monkeypatch.setattr(smtp_module.smtplib, "SMTP", StubSmtp)
    monkeypatch.setattr(StubSmtp, "sent", [])
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_TEST", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": 2525,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "noreply@example.se"}}))
    settings = EmailSettings(to=("ekonomi@example.se",), cc=("chef@example.se",), smtp_conn_id="smtp_test")
    message = compose({**ACTION, "run": "invoices dated 2026-11-17 (Vårgårda)"}, link="https://a.se/inexchange/")

    notifications.send_email(settings, message)

    [(sender, recipients, raw)] = StubSmtp.sent
    assert sender == "noreply@example.se" and recipients == ["ekonomi@example.se", "chef@example.se"]
    mail = message_from_string(raw)
    assert str(make_header(decode_header(mail["Subject"]))) == message.subject
    [html] = [part for part in mail.walk() if not part.is_multipart()]
    assert html.get_content_type() == "text/html"
    assert html.get_payload(decode=True).decode("utf-8") == message.html


# ---- what the report task pushes ---------------------------------------------------------------


def test_the_report_pushes_the_list_before_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException
    from sqlalchemy import create_engine

    from dispatch_testing.unit_fixtures import sqlite_connection_json
    from inexchange.operators.stages import DispatchReportOperator
    from inexchange.states import LedgerState
    from inexchange.ledger import Ledger
    from inexchange.operators.scope import run_scope

    path = tmp_path / "ledger.db"
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_REPORTING", sqlite_connection_json(path))

    class PushingTi(FakeTi):
        def __init__(self) -> None:
            super().__init__(None, task_id="report")
            self.pushed: dict[str, Any] = {}

        def xcom_pull(self, *, task_ids: str, key: str) -> Any:
            return ["Faktura 10099 (kund 1040 Ny Kund AB): invoice_id saknas"] if key == "without_id" else None

        def xcom_push(self, *, key: str, value: Any) -> None:
            self.pushed[key] = value

    ti = PushingTi()
    context = {"data_interval_start": pendulum.datetime(2026, 11, 17, 5, tz="UTC"),
               "data_interval_end": pendulum.datetime(2026, 11, 18, 5, tz="UTC"),
               "run_id": "scheduled__2026-11-18T05:00:00+00:00", "ti": ti}
    ledger = Ledger(create_engine(f"sqlite:///{path}"), run_scope(context))
    ledger.ensure_schema()
    ledger.register([
        {"invoice_id": i, "invoice_number": f"{10070 + i}", "invoice_type": "Debet", "customer_id": 500 + i,
         "customer_number": f"{1030 + i}", "customer_name": f"Kund {i} AB", "invoice_date": "2026-11-17",
         "currency": "SEK", "total_amount": 100.0}
        for i in (1, 2)
    ])
    ledger.transition(1, [LedgerState.PENDING], LedgerState.REJECTED, source="validate", message=LONG_MESSAGE)

    with pytest.raises(AirflowFailException):
        DispatchReportOperator(task_id="report", reporting_conn_id="inexchange_reporting",
                               fail_on_action_needed=True).execute(context)

    pushed = ti.pushed[XCOM_KEY]
    assert json.loads(json.dumps(pushed)) == pushed
    assert {key: pushed[key] for key in ("run", "first_day", "last_day", "interval_start", "count")} == {
        "run": "invoices dated 2026-11-17", "first_day": "2026-11-17", "last_day": "2026-11-17",
        "interval_start": "2026-11-17T05:00:00.000000Z", "count": 2}
    assert pushed["invoices"] == [{"invoice_number": "10071", "customer_number": "1031", "customer_name": "Kund 1 AB",
                                   "state": "rejected", "inexchange_status": None, "message": LONG_MESSAGE}]
    assert pushed["without_id"] == ["Faktura 10099 (kund 1040 Ny Kund AB): invoice_id saknas"]
    assert read_action_list(pushed) == pushed
