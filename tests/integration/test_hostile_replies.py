"""The hook against hostile replies from real servers over loopback, sync and async.

From the simulator: an HTML error page from a gateway, a success reply cut off in the middle and
sent as text (after the request was processed), and a reply announcing 64 MiB, for every endpoint
and for client-token creation. Each call fails cleanly with an InExchange error naming what was
wrong, after its retries when it is idempotent, without them when it is a send (which is then found
by its ERP id when InExchange processed it, so it is never sent twice), within seconds and without
holding the huge body in memory. With the simulator's ``fuzz`` fault (each request answered by one
of its hostile shapes, drawn with its seed) every call fails cleanly the same way.

From a raw socket server, what a server framework will not produce: replies that drip a byte at a
time (the attempt's deadline ends them), a compressed reply that expands to 64 MiB, a corrupt one,
a redirect httpx cannot parse, informational replies with nothing after them, a broken status line,
a body without length that never stops, JSON deeper than the parser goes, HTML labelled JSON and
JSON labelled HTML, and a gateway's 404 page where InExchange's "not found" belongs.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from inexchange.api import OutboundPage
from inexchange.exceptions import InExchangeApiError, InExchangeError, InExchangeTransportError
from inexchange.hooks.inexchange import InExchangeHook
from dispatch_testing.raw_server import RawServer, Request, drip, json_reply, raw_server, reply

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ATTEMPTS = 2
Call = Callable[[InExchangeHook], Any]
ACall = Callable[[InExchangeHook], Awaitable[Any]]

#: endpoint -> (sync call, async call, whether it answers in Location rather than in JSON)
IDEMPOTENT: dict[str, tuple[Call, ACall, bool]] = {
    "lookup_buyer": (lambda h: h.lookup_buyer(party_id="K1", org_no="5560000001"),
                     lambda h: h.alookup_buyer(party_id="K1", org_no="5560000001"), False),
    "upload_document": (lambda h: h.upload_document(b"<Invoice/>"), lambda h: h.aupload_document(b"<Invoice/>"), True),
    "get_outbound": (lambda h: h.get_outbound("d-unknown"), lambda h: h.aget_outbound("d-unknown"), False),
    "find_by_erp_id": (lambda h: h.find_by_erp_id("invoice-unknown"), lambda h: h.afind_by_erp_id("invoice-unknown"),
                       False),
    "list_outbound": (lambda h: h.list_outbound(), lambda h: h.alist_outbound(), False),
    "all_outbound": (lambda h: h.all_outbound(), lambda h: h.aall_outbound(), False),
}


def expected_text(kind: str, in_location: bool) -> str:
    """What the error says for each kind of hostile reply."""
    if kind == "garbled":
        return "no Location header" if in_location else "not JSON"
    return {"html": "Bad Gateway", "huge": "refused"}[kind]


def described(error: BaseException) -> str:
    return f"{error} ({error.__cause__})"  # a transport error keeps httpx's detail as its cause


def nothing() -> None:
    pass


def perform(hook: InExchangeHook, mode: str, sync: Call, asynchronous: ACall, *,
            before: Callable[[], None] = nothing, after: Callable[[], None] = nothing,
            ) -> tuple[Any, InExchangeError | None, float]:
    """One call between ``before`` and ``after``; return its result or error and how long it took.

    In async mode the hook's async clients are closed in the same event loop, after ``after``.
    """
    outcome: tuple[Any, InExchangeError | None]
    if mode == "sync":
        before()
        started = time.monotonic()
        try:
            outcome = sync(hook), None
        except InExchangeError as exc:
            outcome = None, exc
        took = time.monotonic() - started
        after()
        return (*outcome, took)

    async def run() -> tuple[Any, InExchangeError | None, float]:
        before()
        started = time.monotonic()
        try:
            outcome = await asynchronous(hook), None
        except InExchangeError as exc:
            outcome = None, exc
        took = time.monotonic() - started
        after()
        await hook.aclose()
        return (*outcome, took)

    return asyncio.run(run())


class Memory:
    """The peak of Python memory allocated inside the block (tracemalloc)."""

    peak = 0

    def __enter__(self) -> Memory:
        tracemalloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        _, self.peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()


# ---- the simulator's hostile replies ----------------------------------------------------------------
@pytest.fixture(scope="module")
def simulator() -> Iterator[Any]:
    from inexchange_devkit.simulator.testing import run_simulator

    with run_simulator(seed=4) as sim:
        yield sim


def sim_connection(simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": simulator.base_url, "password": simulator.api_key,
        "extra": {"erp_id": "hostile"}}))


@pytest.fixture
def hook(simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[InExchangeHook]:
    simulator.configure(fault_rate=0.0)
    sim_connection(simulator, monkeypatch)
    hook = InExchangeHook(max_attempts=ATTEMPTS, backoff=0.01, max_backoff=0.05)
    yield hook
    simulator.configure(fault_rate=0.0)
    hook.close()


def faulted(simulator: Any, kind: str) -> dict[str, Callable[[], None]]:
    """``before`` and ``after`` of :func:`perform`: every request meets ``kind`` in between."""
    return {"before": lambda: simulator.configure(fault_rate=1.0, faults=[kind]),
            "after": lambda: simulator.configure(fault_rate=0.0)}


def faults_met(simulator: Any, kind: str) -> int:
    return int(simulator.stats()["faults"][kind])


KINDS = ["html", "garbled", "huge"]
MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("endpoint", list(IDEMPOTENT))
def test_a_hostile_reply_fails_an_idempotent_call_cleanly_after_its_retries(
        endpoint: str, kind: str, mode: str, hook: InExchangeHook, simulator: Any) -> None:
    sync, asynchronous, in_location = IDEMPOTENT[endpoint]
    hook.list_outbound()  # the client token, without faults
    before = faults_met(simulator, kind)

    with Memory() as memory:
        _, error, took = perform(hook, mode, sync, asynchronous, **faulted(simulator, kind))
    met = faults_met(simulator, kind) - before

    assert error is not None
    assert expected_text(kind, in_location) in described(error), described(error)
    assert met == ATTEMPTS  # retried, then given up
    assert took < 10, f"{kind} took {took:.1f} s"
    assert memory.peak < 32 * 1024 * 1024, f"{kind}: {memory.peak / 2**20:.0f} MiB held"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_token_reply_is_retried_like_any_idempotent_call(kind: str, mode: str, hook: InExchangeHook,
                                                                   simulator: Any) -> None:
    before = faults_met(simulator, kind)

    _, error, took = perform(hook, mode, lambda h: h.list_outbound(), lambda h: h.alist_outbound(),
                             **faulted(simulator, kind))
    met = faults_met(simulator, kind) - before

    assert error is not None and "clientTokens/create" in str(error), described(error)
    assert expected_text(kind, False) in described(error), described(error)
    assert met == ATTEMPTS  # every creation faulted, the list never sent
    assert took < 10
    assert hook._token is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_send_met_by_a_hostile_reply_is_made_once_and_found_by_its_erp_id(
        kind: str, mode: str, hook: InExchangeHook, simulator: Any) -> None:
    erp_id = f"invoice-{kind}-{mode}-{uuid.uuid4().hex[:8]}"
    uri = hook.upload_document(b"<Invoice/>")
    body = {"sendDocumentAs": {"type": None}, "recipientInformation": {"orgNo": "5560000001", "countryCode": "SE"},
            "document": {"documentFormat": "bis3", "erpDocumentId": erp_id, "documentUri": uri}}
    before = faults_met(simulator, kind)

    _, error, _ = perform(hook, mode, lambda h: h.send_outbound(body), lambda h: h.asend_outbound(body),
                          **faulted(simulator, kind))
    met = faults_met(simulator, kind) - before

    assert error is not None and expected_text(kind, True) in described(error), error
    assert not (isinstance(error, InExchangeApiError) and error.permanent)  # reconciled, not rejected
    assert met == 1  # never sent again by the hook
    sends = simulator.stats()["sends"].get(erp_id, 0)
    found = hook.find_by_erp_id(erp_id)
    assert sends == (1 if kind == "garbled" else 0)  # a garbled reply came after the send was processed
    assert (found is not None) == (sends == 1)


# ---- the simulator's fuzz fault: every hostile shape, drawn per request --------------------------------
FUZZ_ROUNDS = 4  # calls of each kind per mode; each request draws one of the shapes that fit its route


def chained_texts(error: BaseException) -> str:
    texts, pending, seen = [], [error], set()
    while pending:
        exc = pending.pop()
        if id(exc) not in seen:
            seen.add(id(exc))
            texts += [str(exc), repr(exc)]
            pending += [e for e in (exc.__cause__, exc.__context__) if e is not None]
    return "\n".join(texts)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("mode", MODES)
def test_every_call_fails_cleanly_on_the_simulators_fuzzed_replies(mode: str, simulator: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With every request answered by a ``fuzz`` shape (HTML, XML, bytes, invalid UTF-8, cut, wrongly
    shaped or 100,000-deep JSON, a body dripped a byte every 0.5 s, 204, garbage or no Location, bogus
    Retry-After), no call returns a result; idempotent calls make their attempts, a send is made once
    (and found by its ERP id when the simulator processed it), each call ends within its deadlines."""
    sim_connection(simulator, monkeypatch)
    simulator.configure(fault_rate=0.0, drip_max_s=30.0)

    def new_hook() -> InExchangeHook:
        return InExchangeHook(max_attempts=ATTEMPTS, timeout=READ_TIMEOUT, deadline=DEADLINE, backoff=0.01,
                              max_backoff=0.05)

    def token_sync(_: InExchangeHook) -> Any:  # a hook without a token: its creation meets the faults
        fresh = new_hook()
        try:
            return fresh.list_outbound()
        finally:
            fresh.close()

    async def token_async(_: InExchangeHook) -> Any:
        fresh = new_hook()
        try:
            return await fresh.alist_outbound()
        finally:
            await fresh.aclose()

    hook = new_hook()
    uri = hook.upload_document(b"<Invoice/>")  # for the sends, and the client token
    shapes_before = simulator.stats()["fuzz_shapes"]
    run = uuid.uuid4().hex[:8]
    calls: list[tuple[str, Call, ACall]] = [(name, sync, asynchronous) for name, (sync, asynchronous, _)
                                            in IDEMPOTENT.items()]
    calls.append(("token creation", token_sync, token_async))
    sends: list[str] = []
    for round_ in range(FUZZ_ROUNDS):
        erp_id = f"invoice-fuzz-{mode}-{run}-{round_}"
        body = {"sendDocumentAs": {"type": None}, "recipientInformation": {"orgNo": "5560000001"},
                "document": {"documentFormat": "bis3", "erpDocumentId": erp_id, "documentUri": uri}}
        sends.append(erp_id)
        calls.append((f"send {erp_id}", lambda h, b=body: h.send_outbound(b), lambda h, b=body: h.asend_outbound(b)))
    calls = [call for call in calls for _ in range(FUZZ_ROUNDS if not call[0].startswith("send") else 1)]

    async def each_async() -> list[tuple[str, Any, InExchangeError | None, float, int]]:
        return [await one_async(call) for call in calls]

    async def one_async(call: tuple[str, Call, ACall]) -> tuple[str, Any, InExchangeError | None, float, int]:
        before = faults_met(simulator, "fuzz")
        simulator.configure(fault_rate=1.0, faults=["fuzz"])
        started = time.monotonic()
        try:
            result, error = await call[2](hook), None
        except InExchangeError as exc:
            result, error = None, exc
        took = time.monotonic() - started
        simulator.configure(fault_rate=0.0)
        return call[0], result, error, took, faults_met(simulator, "fuzz") - before

    def one_sync(call: tuple[str, Call, ACall]) -> tuple[str, Any, InExchangeError | None, float, int]:
        before = faults_met(simulator, "fuzz")
        simulator.configure(fault_rate=1.0, faults=["fuzz"])
        started = time.monotonic()
        try:
            result, error = call[1](hook), None
        except InExchangeError as exc:
            result, error = None, exc
        took = time.monotonic() - started
        simulator.configure(fault_rate=0.0)
        return call[0], result, error, took, faults_met(simulator, "fuzz") - before

    async def in_loop() -> list[tuple[str, Any, InExchangeError | None, float, int]]:
        try:
            return await each_async()
        finally:
            simulator.configure(fault_rate=0.0)
            await hook.aclose()

    try:
        outcomes = [one_sync(call) for call in calls] if mode == "sync" else asyncio.run(in_loop())
    finally:
        simulator.configure(fault_rate=0.0)
    secrets = [simulator.api_key, *(token["token"] for token in simulator.tokens())]
    stats = simulator.stats()
    hook.close()

    drawn = {shape for shape, count in stats["fuzz_shapes"].items() if count > shapes_before[shape]}
    assert len(drawn) >= 10, drawn  # the seeded draws reach most shapes
    for name, result, error, took, met in outcomes:
        assert error is not None, f"{name}: a result from a fuzzed reply: {result!r}"
        assert took < ATTEMPTS * (DEADLINE + 0.5) + 1, f"{name} took {took:.1f} s"
        texts = chained_texts(error)
        assert not any(secret in texts for secret in secrets), texts
        if name.startswith("send"):
            assert 1 <= met <= ATTEMPTS, f"{name}: {met} faulted requests"  # more only after a 429
            assert not (isinstance(error, InExchangeApiError) and error.permanent)
        else:
            assert met == ATTEMPTS, f"{name}: {met} faulted requests ({described(error)})"
    for erp_id in sends:
        made = stats["sends"].get(erp_id, 0)
        assert made <= 1
        assert (hook.find_by_erp_id(erp_id) is not None) == (made == 1)  # reconciliation finds what was made
    hook.close()


# ---- replies that drip: the attempt's deadline -------------------------------------------------------
DRIP_EVERY = 0.25  # below the read timeout: only the deadline can end these
READ_TIMEOUT = 1.0
DEADLINE = 1.5
MARGIN = 1.5


def dripping(where: str) -> Callable[[Request, socket.socket], bool]:
    """A handler that sends a reply's headers, or its body, or its chunks, a byte at a time."""

    def handle(request: Request, conn: socket.socket) -> bool:
        if where == "headers":
            drip(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Slow: " + b"a" * 1000, DRIP_EVERY)
        elif where == "body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            drip(conn, b" " * 1000, DRIP_EVERY)
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(1000):
                conn.sendall(b"1\r\n \r\n")
                time.sleep(DRIP_EVERY)
        return False

    return handle


@pytest.fixture
def raw(monkeypatch: pytest.MonkeyPatch) -> Iterator[RawServer]:
    with raw_server() as server:
        monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
            "conn_type": "inexchange", "host": server.base_url, "password": "raw-api-key", "extra": {"erp_id": "raw"}}))
        yield server


def raw_hook(**kwargs: Any) -> InExchangeHook:
    return InExchangeHook(**{"max_attempts": ATTEMPTS, "timeout": READ_TIMEOUT, "deadline": DEADLINE,
                             "backoff": 0.01, "max_backoff": 0.05, **kwargs})


SEND_BODY = {"document": {"documentFormat": "bis3", "erpDocumentId": "invoice-1", "documentUri": "urn:inexchangedocument:a"}}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["headers", "body", "chunks"])
def test_a_reply_that_never_ends_is_cut_at_the_deadline_and_retried_when_idempotent(
        where: str, mode: str, raw: RawServer) -> None:
    raw.handler = dripping(where)
    hook = raw_hook()

    _, error, took = perform(hook, mode, lambda h: h.list_outbound(), lambda h: h.alist_outbound())
    hook.close()

    assert isinstance(error, InExchangeTransportError), error
    assert "ReadTimeout" in str(error) and "deadline" in str(error.__cause__)
    assert raw.count("documents/outbound/list") == ATTEMPTS
    assert ATTEMPTS * DEADLINE - 0.2 <= took <= ATTEMPTS * DEADLINE + MARGIN, f"{took:.1f} s"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_send_whose_reply_never_ends_is_not_repeated(where: str, mode: str, raw: RawServer) -> None:
    raw.handler = dripping(where)
    hook = raw_hook()

    _, error, took = perform(hook, mode, lambda h: h.send_outbound(SEND_BODY), lambda h: h.asend_outbound(SEND_BODY))
    hook.close()

    assert isinstance(error, InExchangeTransportError), error  # "maybe sent": the caller reconciles
    assert raw.count("documents/outbound") == 1
    assert took <= DEADLINE + MARGIN, f"{took:.1f} s"


@pytest.mark.parametrize("mode", MODES)
def test_a_slow_reply_that_ends_within_the_deadline_is_read(mode: str, raw: RawServer) -> None:
    body = json.dumps({"documents": [], "totalCount": 0}).encode()

    def slowly(request: Request, conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        drip(conn, body, 0.02)
        return True

    raw.handler = slowly
    hook = raw_hook(deadline=3.0)

    page, error, took = perform(hook, mode, lambda h: h.list_outbound(), lambda h: h.alist_outbound())
    hook.close()

    assert error is None and page == OutboundPage(documents=(), total_count=0)
    assert took >= len(body) * 0.02 * 0.9


# ---- raw hostile shapes ----------------------------------------------------------------------------
HUGE = 64 * 1024 * 1024
GZIP_BOMB = gzip.compress(b" " * HUGE)  # about 64 kB on the wire
DEEP = b"[" * 200_000 + b"]" * 200_000
PAGE = json.dumps({"documents": [{"id": "d1", "currentStatus": {"status": "Sent", "time": "2026-11-25T08:00:00Z"}}],
                   "totalCount": 1}).encode()


def written(data: bytes) -> Callable[[Request, socket.socket], bool]:
    def handle(request: Request, conn: socket.socket) -> bool:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        return False

    return handle


def endless(request: Request, conn: socket.socket) -> bool:
    """A 200 without a length whose body goes on until the client hangs up."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    chunk = b" " * 65536
    for _ in range(2 * HUGE // len(chunk)):
        conn.sendall(chunk)
    return False


#: name -> (handler, endpoint, what the error says, or says in each mode; None: the call succeeds)
SHAPES: dict[str, tuple[Callable[[Request, socket.socket], bool], str, str | dict[str, str] | None]] = {
    "gzip-bomb": (written(reply(200, GZIP_BOMB, (("Content-Encoding", "gzip"),))), "list", "refused"),
    "corrupt-gzip": (written(reply(200, b"\x1f\x8bnot really", (("Content-Encoding", "gzip"),))), "list",
                     "not valid gzip"),
    "unasked-coding": (written(reply(200, PAGE, (("Content-Encoding", "br"),))), "list", "not asked for"),
    # httpx's client refuses the Location before the status is read; the async POSTs skip that layer
    "redirect-to-urn": (written(reply(301, b"", (("Location", "urn:inexchangedocument:x"),))), "send",
                        {"sync": "InvalidURL", "async": "a redirect (check the API base URL)"}),
    "redirect-to-login": (written(reply(302, b"", (("Location", "https://login.example/"),))), "send", "a redirect"),
    "continue-then-nothing": (written(b"HTTP/1.1 100 Continue\r\n\r\n"), "list", "RemoteProtocolError"),
    "switching-protocols": (written(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    b"Connection: Upgrade\r\n\r\nnot http"), "list", ""),
    "broken-status-line": (written(b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\n{}"), "list", "RemoteProtocolError"),
    "endless-body": (endless, "list", "refused"),
    "too-deep": (written(reply(200, DEEP, (("Content-Type", "application/json"),))), "list", "not JSON"),
    "html-labelled-json": (written(reply(200, b"<html><body>Sign in</body></html>",
                                         (("Content-Type", "application/json"),))), "list", "not JSON"),
    "json-labelled-html": (written(reply(200, PAGE, (("Content-Type", "text/html"),))), "list", None),
    "gateway-404-page": (written(reply(404, b"<html><h1>404 Not Found</h1></html>", (("Content-Type", "text/html"),))),
                         "find", "not InExchange's"),
    "inexchange-404": (written(json_reply(404, {"message": "No invoice found"})), "find", None),
}
CALLS: dict[str, tuple[Call, ACall, str]] = {
    "list": (lambda h: h.list_outbound(), lambda h: h.alist_outbound(), "documents/outbound/list"),
    "send": (lambda h: h.send_outbound(SEND_BODY), lambda h: h.asend_outbound(SEND_BODY), "documents/outbound"),
    "find": (lambda h: h.find_by_erp_id("invoice-1"), lambda h: h.afind_by_erp_id("invoice-1"),
             "invoices/outbound/byerpid/invoice-1"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_raw_hostile_reply_fails_cleanly_or_is_read(shape: str, mode: str, raw: RawServer) -> None:
    handler, call, expected = SHAPES[shape]
    if isinstance(expected, dict):
        expected = expected[mode]
    sync, asynchronous, path = CALLS[call]
    raw.handler = handler
    hook = raw_hook(deadline=10.0)

    with Memory() as memory:
        result, error, took = perform(hook, mode, sync, asynchronous)
    hook.close()

    if expected is None:
        assert error is None, described(error) if error else None
        assert result is None if call == "find" else [d.id for d in result.documents] == ["d1"]
    else:
        assert error is not None, f"read {result!r}"
        assert expected in described(error), described(error)
        attempts = raw.count(path)
        assert attempts == (1 if call == "send" or (call == "find" and shape == "gateway-404-page") else ATTEMPTS)
    assert took < 10, f"{shape} took {took:.1f} s"
    assert memory.peak < 32 * 1024 * 1024, f"{shape}: {memory.peak / 2**20:.0f} MiB held"
