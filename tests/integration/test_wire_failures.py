"""Failures of the wire that no retry mends: they end loud and at once, or in a state a person sees.

- A wrong API key, and a reply whose used fields the client cannot read, turn the submit task red in
  one try (``AirflowFailException``, which Airflow never retries) with one message naming the cause;
  nothing is sent and every invoice keeps its attempts.
- A send whose look-up by ERP id keeps answering neither the invoice nor InExchange's clear 404
  ends ``in_doubt`` after ``max_doubt_lookups`` look-ups, with a message saying what to check in
  InExchange's portal; it is never sent again automatically, and the report lists it.

The servers are real ones on loopback: the simulator, or a raw HTTP server answering what a test
gives it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk.exceptions import AirflowFailException
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from dispatch_testing.raw_server import Request, json_reply, raw_server, reply
from dispatch_testing.peppol_rules import official_rules_folder_or_none
from dispatch_testing.support import SELLER, sqlite_conn_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DAY = date(2026, 11, 17)
DOCUMENT_URN = "urn:inexchangedocument:0f4c2a9e-1d7b-4e55-9b1a-3c6d8e2f7a44"


@dataclass
class Day:
    """A generated ERP whose day is extracted and validated: its invoices wait ``ready``."""

    engine: Engine
    context: dict[str, Any]
    ready: int = 0

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(
                "SELECT invoice_number, state, attempts, message, erp_document_id, doubt_lookups "
                "FROM inexchange_dispatch WHERE state <> 'rejected' ORDER BY invoice_id"))]


@pytest.fixture
def day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Day]:
    from inexchange_devkit.erpgen import generate

    path = tmp_path / "erp.db"
    engine = create_engine(f"sqlite:///{path}")
    generate(engine, seed=5, customers=15, invoices=48, start_date=DAY, days=1, drafts=1)
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", sqlite_conn_env(path))
    start = pendulum.datetime(DAY.year, DAY.month, DAY.day, 6, tz="Europe/Stockholm")
    yield Day(engine, {"run_id": "wire", "data_interval_start": start, "data_interval_end": start.add(days=1)})
    engine.dispose()


def prepare(day: Day, monkeypatch: pytest.MonkeyPatch, base_url: str, api_key: str) -> None:
    """Point ``inexchange_default`` at ``base_url``; extract and validate the day."""
    from inexchange import pipeline
    from inexchange.operators.scope import run_scope

    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": base_url, "password": api_key, "extra": {"erp_id": "w"}}))
    pipeline.extract(run_scope(day.context), erp_conn_id="erp_default", reporting_conn_id="erp_default")
    day.ready = pipeline.validate(run_scope(day.context), erp_conn_id="erp_default", reporting_conn_id="erp_default")["ready"]
    assert day.ready >= 5


def operator(**overrides: Any) -> Any:
    from inexchange.operators.submit import SubmitInvoicesOperator

    arguments: dict[str, Any] = {"task_id": "submit", "erp_conn_id": "erp_default", "reporting_conn_id": "erp_default",
                                 "seller": SELLER, "settle_time": timedelta(seconds=0.2), "concurrency": 4}
    return SubmitInvoicesOperator(**{**arguments, **overrides})


def assert_held_back(day: Day, message: str) -> None:
    """Every invoice is as validation left it: ready, no attempt spent."""
    rows = day.rows()
    assert len(rows) == day.ready
    assert {(r["state"], r["attempts"]) for r in rows} == {("ready", 0)}, rows
    assert all(r["message"] is None or message in r["message"] for r in rows)


def test_a_wrong_api_key_fails_the_task_in_one_try_and_sends_nothing(
        day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange_devkit.simulator.testing import run_simulator

    with run_simulator(peppol_rules=official_rules_folder_or_none()) as sim:
        prepare(day, monkeypatch, sim.base_url, "not-the-key")
        with pytest.raises(AirflowFailException) as raised:
            operator().execute(day.context)
        stats = sim.stats()

    text_ = str(raised.value)
    assert "HTTP 401 from InExchange clientTokens/create" in text_
    assert "API key (password) and the ERP id (extra erp_id) of connection 'inexchange_default'" in text_
    assert f"{day.ready} invoices held back" in text_
    assert "not-the-key" not in text_
    assert stats["sends"] == {} and stats["documents_uploaded"] == 0
    assert_held_back(day, "")


def _lookup_of_another_shape(request: Request, conn: socket.socket) -> bool:
    """A server whose lookup answers 200 with ``exactHit`` as text: a field the pipeline decides on."""
    if request.path == "buyerparties/lookup":
        conn.sendall(json_reply(200, {"parties": [], "potentialMatches": 0, "exactHit": "no"}))
    elif request.path == "documents":
        conn.sendall(reply(201, headers=(("Location", DOCUMENT_URN),)))
    else:
        conn.sendall(json_reply(500, {"message": "unexpected in this test"}))
    return True


def test_a_reply_the_reader_cannot_use_fails_the_task_in_one_try_and_sends_nothing(
        day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    with raw_server(_lookup_of_another_shape) as server:
        prepare(day, monkeypatch, server.base_url, "key")
        with pytest.raises(AirflowFailException) as raised:
            operator(concurrency=1).execute(day.context)

    text_ = str(raised.value)
    assert "every send failed for the same cause" in text_
    assert "buyerparties/lookup: reply of an unexpected shape: exactHit is not a boolean" in text_
    assert f"{day.ready} invoices held back" in text_
    assert server.count("documents/outbound") == 0
    # it stopped at once: five invoices' look-ups (each with the hook's five attempts), not every invoice's
    assert server.count("buyerparties/lookup") == 5 * 5 < 5 * day.ready
    assert_held_back(day, "exactHit is not a boolean")


def _token_refused(request: Request, conn: socket.socket) -> bool:
    """Client tokens are created, but every call made with one answers 401 (a token InExchange will not take)."""
    conn.sendall(json_reply(401, {"message": "Authorization has been denied for this request."}))
    return True


def test_a_token_refused_after_renewal_fails_the_task_in_one_try(day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    with raw_server(_token_refused) as server:
        prepare(day, monkeypatch, server.base_url, "key")
        with pytest.raises(AirflowFailException, match="client token refused after renewal") as raised:
            operator(concurrency=1).execute(day.context)

    assert f"{day.ready} invoices held back" in str(raised.value)
    assert server.count("documents/outbound") == 0 and server.count("documents") == 0
    assert server.count("clientTokens/create") >= 2  # renewed once per refused call
    assert_held_back(day, "client token refused after renewal")


def _refusing(refused: set[str] | None) -> Any:
    """A server that refuses the upload of the listed invoices (all when None) with one and the same 400."""
    sent = iter(range(10**6))

    def handler(request: Request, conn: socket.socket) -> bool:
        if request.path == "buyerparties/lookup":
            conn.sendall(json_reply(200, {"parties": None, "potentialMatches": 0, "exactHit": False}))
        elif request.path == "documents":
            number = request.body.split(b"<cbc:ID>", 1)[1].split(b"<", 1)[0].decode()
            if refused is None or number in refused:
                conn.sendall(json_reply(400, {"message": "The request is invalid.",
                                              "modelState": {"file": ["The document is not accepted."]}}))
            else:
                conn.sendall(reply(201, headers=(("Location", DOCUMENT_URN),)))
        elif request.path == "documents/outbound":
            guid = f"00000000-0000-4000-8000-{next(sent):012d}"
            conn.sendall(reply(201, headers=(("Location", f"https://api.test/v1/api/documents/outbound/{guid}"),)))
        else:
            conn.sendall(json_reply(500, {"message": "unexpected in this test"}))
        return True

    return handler


def test_the_same_refusal_of_some_invoices_among_sent_ones_stays_theirs(
        day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4xx that only some invoices meet is theirs: they are rejected, the others sent, the task ends well."""
    with raw_server() as server:
        prepare(day, monkeypatch, server.base_url, "key")
        refused = {r["invoice_number"] for r in day.rows()[:3]}
        server.handler = _refusing(refused)
        counts = operator().execute(day.context)

    states = {r["invoice_number"]: (r["state"], r["message"]) for r in day.rows()}
    assert counts["rejected"] == 3 and counts["sent"] == day.ready - 3
    for number, (state, message) in states.items():
        if number in refused:
            assert state == "rejected" and "InExchange avvisade fakturan: HTTP 400" in message
            assert "The document is not accepted." in message
        else:
            assert state == "waiting"


def test_the_same_refusal_of_every_invoice_is_the_tasks(day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    with raw_server(_refusing(None)) as server:
        prepare(day, monkeypatch, server.base_url, "key")
        with pytest.raises(AirflowFailException, match="HTTP 400 from InExchange documents: The request is invalid"):
            operator().execute(day.context)

    assert server.count("documents/outbound") == 0
    assert_held_back(day, "HTTP 400")


def _send_in_doubt(request: Request, conn: socket.socket) -> bool:
    """Lookups find nobody, uploads work, a send's reply never comes, and look-ups by ERP id answer an HTML 404."""
    if request.path == "buyerparties/lookup":
        conn.sendall(json_reply(200, {"parties": None, "potentialMatches": 0, "exactHit": False}))
    elif request.path == "documents":
        conn.sendall(reply(201, headers=(("Location", DOCUMENT_URN),)))
    elif request.path == "documents/outbound":
        return False  # the connection closes: the send may or may not have been taken
    elif request.path.startswith("invoices/outbound/byerpid/"):
        conn.sendall(reply(404, b"<html><body>Not Found</body></html>", (("Content-Type", "text/html"),)))
    else:
        conn.sendall(json_reply(500, {"message": "unexpected in this test"}))
    return True


def test_a_doubt_that_never_settles_ends_in_doubt_for_a_person_and_is_never_resent(
        day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange import pipeline
    from inexchange.operators.scope import run_scope

    with raw_server(_send_in_doubt) as server:
        prepare(day, monkeypatch, server.base_url, "key")
        counts = operator(max_doubt_lookups=3, settle_rounds=3).execute(day.context)
        sends = server.count("documents/outbound")
        again = operator(max_doubt_lookups=3).execute(day.context)  # the next try: nothing left to do
        sends_after = server.count("documents/outbound")
        summary = pipeline.report(run_scope(day.context), reporting_conn_id="erp_default",
                                  fail_on_action_needed=False)

    rows = day.rows()
    assert {r["state"] for r in rows} == {"in_doubt"}, rows
    assert counts["unresolved"] == len(rows) == day.ready and counts["in doubt"] == 0
    assert sends == day.ready and sends_after == sends  # each sent once, never again
    assert again["sent"] == 0 and again["unresolved"] == 0
    for row in rows:
        message = row["message"]
        assert f"Faktura {row['invoice_number']}" in message
        assert f"Sök på ERP-id {row['erp_document_id']}" in message and "InExchanges portal" in message
        assert "misslyckades 3 gånger" in message and "aldrig igen automatiskt" in message
    assert summary["states"]["in_doubt"] == len(rows)
    assert {r["invoice_number"] for r in rows} <= set(summary["action_needed"])


def test_an_invoice_in_doubt_found_later_is_recorded_by_the_next_runs_recheck(
        day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange import pipeline
    from inexchange.operators.scope import run_scope

    found: dict[str, Any] = {}

    def later(request: Request, conn: socket.socket) -> bool:
        if request.path.startswith("invoices/outbound/byerpid/") and found:
            erp_id = request.path.rsplit("/", 1)[1]
            conn.sendall(json_reply(200, {"id": f"doc-{erp_id}", "erpDocumentId": erp_id, "documentType": "Invoice",
                                          "currentStatus": {"status": "Delivered", "time": "2026-11-17T09:00:00Z"}}))
            return True
        return _send_in_doubt(request, conn)

    with raw_server(later) as server:
        prepare(day, monkeypatch, server.base_url, "key")
        operator(max_doubt_lookups=1, settle_rounds=0).execute(day.context)
        assert {r["state"] for r in day.rows()} == {"in_doubt"}
        found["now"] = True
        next_run = {**day.context, "run_id": "wire-next"}
        result = pipeline.recheck_waiting(run_scope(next_run), reporting_conn_id="erp_default",
                                          inexchange_conn_id="inexchange_default")
        lookups = [r for r in server.requests if r.path.startswith("invoices/outbound/byerpid/")]

    assert {r["state"] for r in day.rows()} == {"sent"}
    assert "in_doubt" not in result or result["in_doubt"] == 0
    assert server.count("documents/outbound") == day.ready  # nothing sent again
    assert all(json.loads(r.body) == {"includeFileInfo": False} and r.method == "POST" for r in lookups)


def test_a_person_sends_an_invoice_in_doubt_again_by_listing_it(day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    from inexchange import pipeline
    from inexchange.operators.scope import run_scope

    with raw_server(_send_in_doubt) as server:
        prepare(day, monkeypatch, server.base_url, "key")
        operator(max_doubt_lookups=1, settle_rounds=0).execute(day.context)
        number = day.rows()[0]["invoice_number"]
        manual = {**day.context, "run_id": "manual-resend", "params": {"invoice_numbers": number}}
        counts = pipeline.extract(run_scope(manual), erp_conn_id="erp_default", reporting_conn_id="erp_default")

    assert counts["rechecked"] == 1
    states = {r["invoice_number"]: r["state"] for r in day.rows()}
    assert states.pop(number) == "pending" and set(states.values()) == {"in_doubt"}
