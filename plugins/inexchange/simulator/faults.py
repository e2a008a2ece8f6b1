"""Latency, fault injection and holds for the ``/v1/api`` routes of the simulator.

Every API request first waits ``latency_ms`` (with ±20 % jitter). A request that a hold applies to
(see :mod:`inexchange.simulator.holds`) then waits for the release, before or after it is processed,
and is never faulted. Any other request meets, with probability ``fault_rate``, one of the enabled
fault kinds instead of (or after, or before) the normal handling:

``5xx``
    a 500 or 503 JSON error; the request is not processed.
``429``
    a 429 JSON error with ``Retry-After: 1``; the request is not processed.
``drop``
    the connection breaks before the request is processed.
``lost``
    the request is processed (a send is counted, a document stored) and then the connection breaks,
    so the client cannot tell whether its request took effect.
``timeout``
    the request waits ``timeout_ms`` and is then processed and answered normally, the way a slow
    server still does the work after its client has given up waiting. Not enabled by default.
``html``
    a 502 with an HTML error page (``text/html``), as a gateway in front of the API answers; the
    request is not processed. Not enabled by default.
``garbled``
    the request is processed, and the answer is a 200 whose body is JSON cut off in the middle,
    sent as ``text/plain``, without the ``Location`` header. Not enabled by default.
``huge``
    the request is not processed, and the answer is a 200 announcing a 64 MiB body, streamed
    (a client that reads it all holds 64 MiB). Not enabled by default.

A broken connection is made by starting a response that announces a body and closing the
connection without sending it: the client receives a status line and headers, then an incomplete
message, which HTTP clients report as a protocol error (``httpx.RemoteProtocolError``) instead of a
response. A request that waits (a ``timeout`` fault or a hold) has its body read before the wait,
so it is processed in full even when its client is gone by then; the answer to a client that is
gone is dropped silently. The ``/_sim`` routes are never delayed, held nor faulted.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inexchange.simulator.store import Store

API_PREFIX = "/v1/api/"


class ConnectionDropped(Exception):
    """Raised on purpose to make the server close a connection in the middle of a response."""


class DroppedConnectionLogFilter(logging.Filter):
    """Keep deliberately dropped connections out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Reject records whose exception is a :class:`ConnectionDropped`."""
        exc_info = record.exc_info
        return not (exc_info and exc_info[0] is not None and issubclass(exc_info[0], ConnectionDropped))


async def _json(send: Send, status: int, body: dict[str, str], extra_headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode("utf-8")
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(payload)).encode("ascii")),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _break_connection(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 502,
            "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", b"64")],
        }
    )
    raise ConnectionDropped("fault injection: connection dropped")


HTML_ERROR_PAGE = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                   b"<body><h1>502 Bad Gateway</h1><p>The upstream server did not answer.</p></body></html>")
HUGE_BODY_BYTES = 64 * 1024 * 1024
_CHUNK = b" " * (1024 * 1024)


async def _html_error(send: Send) -> None:
    headers = [(b"content-type", b"text/html; charset=utf-8"),
               (b"content-length", str(len(HTML_ERROR_PAGE)).encode("ascii"))]
    await send({"type": "http.response.start", "status": 502, "headers": headers})
    await send({"type": "http.response.body", "body": HTML_ERROR_PAGE})


async def _garbled(send: Send) -> None:
    body = b'{"documents": [{"id": "3f2c'
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode("ascii"))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _huge(send: Send) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(HUGE_BODY_BYTES).encode("ascii"))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for _ in range(HUGE_BODY_BYTES // len(_CHUNK)):
        await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _discard(message: Message) -> None:
    """Swallow the real response of a request whose answer gets lost."""


async def _buffered(receive: Receive) -> Receive:
    """Read the request body now and return a ``receive`` that replays it, then reads on.

    The server reports a client that has gone away as ``http.disconnect`` even when the whole body
    had arrived before; reading it ahead of a wait keeps the request processable.
    """
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


class FaultInjectionMiddleware:
    """ASGI middleware that delays, holds and breaks ``/v1/api`` requests as configured in the store."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        """Wrap ``app``; settings and the seeded random generator come from ``store``."""
        self.app = app
        self.store = store

    def _draw_fault(self) -> str | None:
        config = self.store.config
        if not config.faults or config.fault_rate <= 0.0:
            return None
        if self.store.rng.random() >= config.fault_rate:
            return None
        return self.store.rng.choice(config.faults)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, possibly after a delay, or inject a fault."""
        if scope["type"] != "http" or not scope["path"].lower().startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        store = self.store
        store.requests += 1
        if store.config.latency_ms > 0:
            await asyncio.sleep(store.config.latency_ms / 1000.0 * store.rng.uniform(0.8, 1.2))
        method, path = scope["method"], scope["path"][len(API_PREFIX) :]
        if store.holds.holds(method, path):
            await self._hold(scope, await _buffered(receive), send, method, path)
            return
        kind = self._draw_fault()
        if kind is None:
            await self.app(scope, receive, send)
            return
        store.faults[kind] += 1
        if kind == "5xx":
            status = store.rng.choice((500, 503))
            message = "An error has occurred." if status == 500 else "The service is temporarily unavailable."
            await _json(send, status, {"message": message}, [])
        elif kind == "429":
            await _json(send, 429, {"message": "Too many requests."}, [(b"retry-after", b"1")])
        elif kind == "drop":
            await _break_connection(send)
        elif kind == "timeout":
            receive = await _buffered(receive)
            await asyncio.sleep(store.config.timeout_ms / 1000.0)
            await self.app(scope, receive, send)
        elif kind == "html":
            await _html_error(send)
        elif kind == "garbled":
            await self.app(scope, receive, _discard)
            await _garbled(send)
        elif kind == "huge":
            await _huge(send)
        else:
            await self.app(scope, receive, _discard)
            await _break_connection(send)

    async def _hold(self, scope: Scope, receive: Receive, send: Send, method: str, path: str) -> None:
        """Process a request that a hold applies to, waiting for the release before or after."""
        holds = self.store.holds
        before = holds.gate(method, path, "before")
        if before is not None:
            await holds.wait(before)
            if before.dropped:
                await _break_connection(send)
        after = holds.gate(method, path, "after")
        if after is None:
            await self.app(scope, receive, send)
            return
        response: list[Message] = []

        async def keep(message: Message) -> None:
            response.append(message)

        await self.app(scope, receive, keep)
        await holds.wait(after)
        if after.dropped:
            await _break_connection(send)
        for message in response:
            await send(message)
