"""Latency and fault injection for the ``/v1/api`` routes of the simulator.

Every API request first waits ``latency_ms`` (with ±20 % jitter), then, with probability
``fault_rate``, one of the enabled fault kinds happens instead of (or after) the normal handling:

``5xx``
    a 500 or 503 JSON error; the request is not processed.
``429``
    a 429 JSON error with ``Retry-After: 1``; the request is not processed.
``drop``
    the connection breaks before the request is processed.
``lost``
    the request is processed (a send is counted, a document stored) and then the connection breaks,
    so the client cannot tell whether its request took effect.

A broken connection is made by starting a response that announces a body and closing the
connection without sending it: the client receives a status line and headers, then an incomplete
message, which HTTP clients report as a protocol error (``httpx.RemoteProtocolError``) instead of a
response. The ``/_sim`` routes are never delayed nor faulted.
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


async def _discard(message: Message) -> None:
    """Swallow the real response of a request whose answer gets lost."""


class FaultInjectionMiddleware:
    """ASGI middleware that delays and breaks ``/v1/api`` requests as configured in the store."""

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
        else:
            await self.app(scope, receive, _discard)
            await _break_connection(send)
