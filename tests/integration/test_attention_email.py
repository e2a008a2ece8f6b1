"""The e-mail about invoices that need a person, through a real SMTP server on loopback.

A whole ``dag.test()`` run against the simulator (the fixtures of ``test_dispatch_e2e``), with the
Variable ``inexchange_notify`` and an ``smtp`` connection (login and password) to an aiosmtpd server
that requires them: the report task's callbacks send one message, whether the report fails on the
invoices (``fail_on_action_needed``) or not, and nothing when no invoice needs a person.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from html import escape
from typing import Any

import pendulum
import pytest

from test_dispatch_e2e import RUN_DAY, Erp, _day, _rows, dispatch_dag, erp, simulator  # noqa: F401

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    # the server is on loopback: a login without TLS is what is tested, not a risk
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

SMTP_LOGIN, SMTP_PASSWORD = "airflow", "smtp-secret-0815"
PAGE_URL = "https://airflow.example.se"
NOTIFY = {"email": {"to": ["ekonomi@example.se"], "cc": ["chef@example.se"], "from": "airflow@example.se",
                    "smtp_conn_id": "smtp_default"}, "page_url": PAGE_URL}
LINK = f"{PAGE_URL}/inexchange/?date_from={RUN_DAY.isoformat()}&date_to={RUN_DAY.isoformat()}"


@dataclass
class Mailbox:
    """What the SMTP server received: one ``(sender, recipients, message)`` per mail."""

    received: list[tuple[str, list[str], Message]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.original_content)))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            SMTP_LOGIN.encode(), SMTP_PASSWORD.encode())
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mailbox(dispatch_dag: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    """An SMTP server on loopback that requires the login, the ``smtp_default`` connection to it and the Variable."""
    from aiosmtpd.controller import Controller

    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port, "login": SMTP_LOGIN, "password": SMTP_PASSWORD,
        "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10, "retry_limit": 0}}))
    monkeypatch.setenv("AIRFLOW_VAR_INEXCHANGE_NOTIFY", json.dumps(NOTIFY))
    try:
        yield box
    finally:
        controller.stop()


def _run(dag: Any, **conf: Any) -> Any:
    """Run the interval of :data:`RUN_DAY`, every param given (a reused DAG object keeps an earlier call's conf)."""
    run_after = pendulum.datetime(RUN_DAY.year, RUN_DAY.month, RUN_DAY.day, 6, tz="Europe/Stockholm").add(days=1)
    conf = {"fail_on_action_needed": True, "batch_size": 7, "dry_run": False, "retry_rejected": True,
            "invoice_numbers": [], "delivery_timeout_minutes": 360, "deferrable": True, **conf}
    return dag.test(logical_date=run_after, run_conf=conf)


def _logged(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    """Every log line and all output of the run."""
    output = capfd.readouterr()
    return "\n".join(record.getMessage() for record in caplog.records) + output.out + output.err


def _html(mail: Message) -> str:
    """The HTML of a mail (its one text part)."""
    [part] = [part for part in mail.walk() if not part.is_multipart()]
    assert part.get_content_type() == "text/html"
    return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
@pytest.mark.parametrize("fail_on_action_needed", [True, False])
def test_the_people_who_must_act_get_one_email(
        fail_on_action_needed: bool, dispatch_dag: Any, erp: Erp, simulator: Any, mailbox: Mailbox,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level("INFO"):
        dag_run = _run(dispatch_dag, fail_on_action_needed=fail_on_action_needed)

    report_task = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "report")
    assert report_task.state == ("failed" if fail_on_action_needed else "success")
    assert dag_run.state == ("failed" if fail_on_action_needed else "success")
    reported = _rows(erp.engine, "SELECT invoice_number, customer_number, customer_name, state, inexchange_status, "
                                 "message FROM inexchange_report")
    needing = [r for r in reported
               if r["state"] in ("rejected", "stopped", "in_doubt") or (r["state"] == "failed" and r["inexchange_status"])]
    assert len(needing) >= 2, reported

    assert len(mailbox.received) == 1, [m["Subject"] for _, _, m in mailbox.received]
    sender, recipients, mail = mailbox.received[0]
    assert mailbox.logins, "the hook should have logged in"
    assert (sender, recipients) == ("airflow@example.se", ["ekonomi@example.se", "chef@example.se"])
    assert str(make_header(decode_header(mail["Subject"]))) == \
        f"InExchange: {len(needing)} invoices dated {RUN_DAY.isoformat()} need a person"
    html = _html(mail)
    for row in needing:
        customer = escape(f"{row['customer_number']} {row['customer_name']}")
        assert f"<tr><td>{escape(row['invoice_number'])}</td><td>{customer}</td>" in html, (row, html)
        assert f">{escape(row['message'])}</td></tr>" in html, (row, html)  # the whole message
    assert f'<a href="{escape(LINK)}">Report page</a>' in html
    logged = _logged(caplog, capfd)
    assert SMTP_PASSWORD not in html + logged
    assert f"InExchange e-mail about {len(needing)} invoices that need a person sent to ekonomi@example.se, " \
           "chef@example.se through the connection smtp_default" in logged


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
def test_a_run_where_nobody_needs_to_act_sends_nothing(
        dispatch_dag: Any, erp: Erp, simulator: Any, mailbox: Mailbox, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    """A manual run of good invoices that InExchange delivers: the report lists none, no e-mail."""
    simulator.configure(stop_rate=0.0, error_rate=0.0)
    invoices = _rows(erp.engine, """
        SELECT i.invoice_number, i.invoice_date, c.customer_number
          FROM customer_invoice i JOIN customer c ON c.customer_id = i.customer_id
         WHERE i.status = 'posted' AND i.invoice_type = 'debit' AND c.billing_method = 'InExchange utskrift (API)'""")
    good = sorted(str(r["invoice_number"]) for r in invoices
                  if _day(r["invoice_date"]) == RUN_DAY and str(r["customer_number"]) in erp.summary.good_customers
                  and str(r["invoice_number"]) not in erp.summary.defective_invoice_numbers)[:3]
    assert len(good) == 3, invoices

    with caplog.at_level("INFO"):
        dag_run = _run(dispatch_dag, invoice_numbers=good)

    assert dag_run.state == "success"
    states = {str(r["invoice_number"]): r["state"] for r in _rows(erp.engine, "SELECT * FROM inexchange_report")}
    assert states == {number: "sent" for number in good}
    assert mailbox.received == []
    assert "InExchange e-mail not sent: no invoice of this run needs a person" in _logged(caplog, capfd)


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
def test_smtp_down_leaves_the_reports_outcome(
        dispatch_dag: Any, erp: Erp, simulator: Any, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """The e-mail cannot go out: one error line, and the report fails on the invoices as it would without it."""
    connection = json.loads(os.environ["AIRFLOW_CONN_SMTP_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({**connection, "port": _free_port()}))

    with caplog.at_level("INFO"):
        dag_run = _run(dispatch_dag)

    report_task = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "report")
    assert (report_task.state, report_task.try_number) == ("failed", 1)
    assert mailbox.received == []
    logged = _logged(caplog, capfd)
    errors = [r.getMessage() for r in caplog.records if r.name == "inexchange.notifications" and r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert "NOT sent to 2 recipient(s) through the connection smtp_default: ConnectionRefusedError" in logged
    assert "invoices need a person in the ERP or InExchange" in logged  # the report's own error
    assert SMTP_PASSWORD not in logged


@pytest.mark.parametrize("erp", ["sqlite"], indirect=True)
def test_a_report_that_could_not_list_the_invoices_sends_nothing(
        dispatch_dag: Any, erp: Erp, simulator: Any, mailbox: Mailbox, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    """The report's database is out of reach (here: its connection is not defined): the report fails, and
    the e-mail is not sent, with a line saying why."""
    report_task = dispatch_dag.get_task("report")
    report_task.reporting_conn_id, report_task.retries = "inexchange_unreachable", 0

    with caplog.at_level("INFO"):
        dag_run = _run(dispatch_dag)

    assert next(ti for ti in dag_run.get_task_instances() if ti.task_id == "report").state == "failed"
    assert mailbox.received == []
    assert "InExchange e-mail not sent: the report task did not list the invoices that need a person" in \
        _logged(caplog, capfd)
