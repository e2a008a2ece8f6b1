"""Fuzzing the hook's two clients on real sockets: hostile replies written byte for byte by a raw server.

The stubbed fuzz tests (``tests/unit/hooks/test_fuzz_replies.py``) hand the hook ready-made httpx
responses; here the same hostile replies go over a loopback socket, framed well or badly (a
``Content-Length`` that lies or is not a number, chunks cut off or malformed, a body that ends with
the connection), after a ``100 Continue`` or not, under odd status lines and header lines, so that
httpx's own engine (sync) and aiohttp (async) parse them. Properties as there: a well-typed result
carried by the reply (and none from a reply whose framing is broken), or an InExchangeError; sends
repeated only after 429 or 401; at most ``max_attempts`` attempts; no secret in any error text; each
call over within its attempts' deadlines.

``INEXCHANGE_FUZZ_EXAMPLES`` sets the examples per property (default 40 here).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch_testing.hostile import API_KEY, ENDPOINTS, TOKEN, Endpoint, Reply, Script, chained_texts, header_text, replies
from inexchange.exceptions import InExchangeError
from inexchange.hooks.inexchange import InExchangeHook
from dispatch_testing.raw_server import RawServer, Request, raw_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MAX_ATTEMPTS = 2
TIMEOUT = 0.5  # read timeout and deadline are small: every reply is written at once, then the connection closes
DEADLINE = 1.0
#: one TLS context for the examples' hooks: loading the CA bundle is most of a new hook's cost (all is plain HTTP)
TLS = ssl.create_default_context()
WIRE = settings(
    max_examples=int(os.environ.get("INEXCHANGE_FUZZ_EXAMPLES", "40")),
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: framings a client must read (the body it gets is the reply's, or its first half for "long")
GOOD_FRAMINGS = ("length", "chunked", "close", "long")
#: framings after which no result may come from the reply
BROKEN_FRAMINGS = ("short", "bad-length", "bad-chunked", "chunked-cut")
BROKEN_STATUS_LINES = ("HTTP/1.1 2000 OK", "HTTP/1.1 20 OK", "ICY 200 OK", "HTTP/2 200 OK", "HTTP/1.1 OK 200", "",
                       "\x00\x01\x02", "HTTP/1.1 -200 OK")
#: header lines that are odd but name nothing the hook reads (sent after a ``Server`` line)
ODD_LINES = (b"X-Odd: \xff\xfe\x80", b"X-Long: " + b"a" * 10_000, b"NoColonHere", b"\tfolded onto Server", b"X-Empty:",
             b": empty-name", b"X-Nul: a\x00b")


@dataclass(frozen=True)
class Wire:
    """A reply as bytes on the wire: the logical reply, its framing, status line and odd lines."""

    reply: Reply
    framing: str
    status_line: str  # "normal", "bare" (no reason), "http10", or one of BROKEN_STATUS_LINES
    reason: bytes
    interim: bool  # a "100 Continue" first
    odd: tuple[bytes, ...]
    chunk: int

    def delivered(self) -> Reply | None:
        """The reply as a client that reads it correctly gets it, or None when none may be read from it.

        A 1xx, 204 or 304 has no body whatever its framing headers say (RFC 9110), so its framing
        cannot be broken.
        """
        if self.status_line not in ("normal", "bare", "http10"):
            return None
        if self.reply.status in (204, 304) or self.reply.status < 200:
            return replace(self.reply, body=b"")
        if self.framing in BROKEN_FRAMINGS:
            return None
        body = self.reply.body
        if self.framing == "long":
            body = body[: len(body) // 2]
        return replace(self.reply, body=body)

    def encode(self) -> bytes:
        status = self.reply.status
        if self.status_line == "normal":
            line = f"HTTP/1.1 {status} ".encode() + self.reason
        elif self.status_line == "bare":
            line = f"HTTP/1.1 {status}".encode()
        elif self.status_line == "http10":
            line = f"HTTP/1.0 {status} OK".encode()
        else:
            line = self.status_line.encode("latin-1")
        lines = [line, b"Server: raw", *self.odd]
        lines += [name.encode() + b": " + value for name, value in self.reply.headers]
        lines.append(b"Connection: close")
        body = self.reply.body
        if self.framing == "length":
            lines.append(f"Content-Length: {len(body)}".encode())
        elif self.framing == "long":
            lines.append(f"Content-Length: {len(body) // 2}".encode())
        elif self.framing == "short":
            lines.append(f"Content-Length: {len(body) + 10}".encode())
        elif self.framing == "bad-length":
            lines.append(b"Content-Length: " + (b"abc", b"-1", b"1, 2", b"0x10")[self.chunk % 4])
        elif self.framing in ("chunked", "bad-chunked", "chunked-cut"):
            lines.append(b"Transfer-Encoding: chunked")
            pieces = [body[i:i + self.chunk] for i in range(0, len(body), self.chunk)]
            body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
            if self.framing == "chunked":
                body += b"0\r\n\r\n"
            elif self.framing == "bad-chunked":
                body = b"zz\r\n" + body + b"0\r\n\r\n"
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        return (b"HTTP/1.1 100 Continue\r\n\r\n" if self.interim else b"") + head + body


@st.composite
def wires(draw: st.DrawFn) -> Wire:
    framing = draw(st.sampled_from(GOOD_FRAMINGS + GOOD_FRAMINGS + BROKEN_FRAMINGS))
    return Wire(
        reply=draw(replies()),
        framing=framing,
        status_line=draw(st.sampled_from(("normal",) * 6 + ("bare", "http10") + BROKEN_STATUS_LINES)),
        reason=draw(header_text).encode("latin-1"),
        interim=draw(st.integers(0, 5)) == 0,
        odd=tuple(draw(st.lists(st.sampled_from(ODD_LINES), max_size=2))) if draw(st.integers(0, 3)) == 0 else (),
        chunk=draw(st.integers(1, 64)),
    )


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    with raw_server(token=TOKEN) as running:
        yield running


@pytest.fixture
def connection(server: RawServer, monkeypatch: pytest.MonkeyPatch) -> RawServer:
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", json.dumps({
        "conn_type": "inexchange", "host": server.base_url, "password": API_KEY, "extra": {"erp_id": "wire"}}))
    return server


def serving(wire: Wire, script: Script) -> Any:
    """A raw-server handler that writes ``wire`` for every request and closes the connection."""

    def handle(request: Request, conn: socket.socket) -> bool:
        script.next(request)
        conn.sendall(wire.encode())
        conn.shutdown(socket.SHUT_WR)
        return False

    return handle


def call(endpoint: Endpoint, mode: str) -> tuple[Any, InExchangeError | None, float]:
    """Call ``endpoint`` on a new hook; return its result or error and how long it took."""
    hook = InExchangeHook(max_attempts=MAX_ATTEMPTS, timeout=TIMEOUT, connect_timeout=TIMEOUT, deadline=DEADLINE,
                          backoff=0.001, max_backoff=0.01)
    hook.__dict__["_ssl_context"] = TLS  # the cached property, filled in advance
    started = time.monotonic()
    try:
        if mode == "sync":
            try:
                return endpoint.call(hook), None, time.monotonic() - started
            finally:
                hook.close()

        async def run() -> Any:
            try:
                return await endpoint.acall(hook)
            finally:
                await hook.aclose()

        return asyncio.run(run()), None, time.monotonic() - started
    except InExchangeError as exc:  # anything else fails the example
        return None, exc, time.monotonic() - started


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
@WIRE
@given(wire=wires())
def test_an_endpoint_survives_hostile_bytes(connection: RawServer, endpoint: Endpoint, mode: str, wire: Wire) -> None:
    delivered = wire.delivered()
    script = Script([delivered if delivered is not None else wire.reply])
    connection.handler = serving(wire, script)

    result, error, took = call(endpoint, mode)

    requests = len(script.received)
    assert requests >= 1
    assert took < MAX_ATTEMPTS * (DEADLINE + 0.5) + 3, f"{took:.1f} s"
    if error is not None:
        texts = chained_texts(error)
        assert API_KEY not in texts and TOKEN not in texts, texts
    else:
        assert delivered is not None, f"a result from a reply framed {wire.framing!r}, status line {wire.status_line!r}"
        endpoint.check(result, delivered, script)
    status = delivered.status if delivered is not None else None
    renewals = 1 if status == 401 else 0
    if not endpoint.idempotent:
        assert requests <= (MAX_ATTEMPTS if status == 429 else 1 + renewals), f"{requests} sends after {status}"
    elif not endpoint.pages:
        assert requests <= MAX_ATTEMPTS + renewals
