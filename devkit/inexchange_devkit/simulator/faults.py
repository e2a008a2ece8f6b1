"""Latency, fault injection and holds for the ``/v1/api`` routes of the simulator.

Every API request first waits ``latency_ms`` (with ±20 % jitter). A request that a hold applies to
(see :mod:`inexchange_devkit.simulator.holds`) then waits for the release, before or after it is processed,
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
``fuzz``
    one hostile reply drawn from the shapes below (those enabled by ``fuzz_shapes``, all by
    default, and fitting the route), with the store's seeded random generator. The draw also
    decides, evenly, whether the request is processed first (a send is then counted and stored,
    and the client cannot know it went through) or not at all; a 429 is never processed, since
    it promises the client that nothing happened. A request that no enabled shape fits is not
    faulted. Each fault is counted per shape in ``/_sim/stats`` (``fuzz_shapes``), with the
    number processed (``fuzz_processed``), the last 100 draws (``fuzz_recent``: method, path,
    shape, processed) and the ``drip`` replies in progress (``dripping``). Not enabled by default.

The ``fuzz`` shapes. "The success status" is 201 for ``POST documents`` and ``POST
documents/outbound`` and 200 elsewhere; "the expected body" is the real answer's JSON when the
request was processed and answered a JSON object, otherwise a made-up one of the right shape for
the route (a one-document page, a document with a foreign ``erpDocumentId``, a token, an empty
party look-up, ``{"message": ...}``). No shape carries a ``Location`` header except
``location_garbage``.

``html_page``
    the success status with a ``text/html`` sign-in page.
``html_error_200``
    a 200 with a ``text/html`` "500 Internal Server Error" page.
``xml``
    the success status with an ``application/xml`` error document.
``octet_stream``
    the success status with 64 to 4,096 random bytes as ``application/octet-stream``.
``invalid_utf8``
    the success status, declared ``application/json; charset=utf-8``, with bytes that are not
    UTF-8 inside the expected body.
``truncated_json``
    the success status, ``application/json``, with the first half of the expected body.
``json_list``
    valid JSON of the wrong shape: the expected body inside a list.
``documents_string``
    (``documents/outbound/list`` only) the expected page with ``documents`` a string.
``status_number``
    (the list and the document routes) every document's ``currentStatus`` a number.
``total_negative``
    (``documents/outbound/list`` only) the expected page with ``totalCount`` -1.
``total_text``
    (``documents/outbound/list`` only) the expected page with ``totalCount`` text
    (``"1 documents"``).
``nulls``
    nulls where objects belong: every document of a page ``null``, a document's
    ``currentStatus``, ``statusHistory`` items and ``recipientInformation`` ``null``, the token
    ``null``, party ``null``; a bare ``null`` elsewhere.
``missing_fields``
    a page without ``documents``, a document without ``id``, ``currentStatus`` and
    ``statusHistory``; ``{}`` elsewhere.
``nested_json``
    the success status, ``application/json``, with 100,000 nested lists (``[[[...]]]``, valid
    JSON that makes Python's ``json`` raise ``RecursionError``).
``drip``
    the success status, ``application/json``, announcing the expected body and sending it one
    byte every 0.5 s: a client with only a per-read timeout waits as long as the server goes on.
    The server stops after ``drip_max_s`` (60 s by default) by breaking the connection, when it is
    itself stopped, and as soon as the client hangs up.
``no_content``
    a 204 without a body where JSON (or a ``Location``) is expected.
``location_garbage``
    (``POST documents`` and ``POST documents/outbound`` only) the success status, no body, and a
    ``Location`` that names nothing: empty, a bare prefix, not a GUID, a path, 2,048 characters.
``location_missing``
    (``POST documents`` and ``POST documents/outbound`` only) the success status, no body, no
    ``Location``.
``retry_after``
    a 429 or a 503 JSON error whose ``Retry-After`` is bogus: negative, huge, an HTTP date in the
    past or in the year 9999, text, a fraction, empty or a list.

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
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inexchange_devkit.simulator.store import Store
from inexchange_devkit.simulator.times import utc_iso

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


# fuzz -------------------------------------------------------------------------------------------

FUZZ_PROCESSED_SHARE = 0.5
DRIP_INTERVAL_S = 0.5
NESTING = 100_000

#: The routes each shape fits, by route kind (see :func:`route_kind`); unlisted shapes fit every route.
FUZZ_ROUTES: dict[str, frozenset[str]] = {
    "documents_string": frozenset({"list"}),
    "total_negative": frozenset({"list"}),
    "total_text": frozenset({"list"}),
    "status_number": frozenset({"list", "document"}),
    "location_garbage": frozenset({"upload", "send"}),
    "location_missing": frozenset({"upload", "send"}),
}

LOCATION_GARBAGE: tuple[str, ...] = (
    "",
    "urn:inexchangedocument:",
    "urn:inexchangedocument:not-a-guid",
    "urn:inexchangedocument:../../etc/passwd",
    "/v1/api/documents/outbound/",
    "http://",
    "documents/outbound/?id=%00",
    "x" * 2048,
)
RETRY_AFTER_BOGUS: tuple[str, ...] = (
    "-1",
    "-3600",
    "99999999999",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "soon",
    "1.5",
    "",
    "1, 2",
)
HTML_SIGN_IN_PAGE = (b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form method=\"post\">"
                     b"<input name=\"username\"><input name=\"password\" type=\"password\"></form></body></html>")
HTML_ERROR_200_PAGE = (b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
                       b"<body><h1>Internal Server Error</h1><p>Please try again later.</p></body></html>")
XML_ERROR = (b'<?xml version="1.0" encoding="utf-8"?>'
             b"<Error><Message>An error has occurred.</Message></Error>")
_JSON = (b"content-type", b"application/json; charset=utf-8")


def route_kind(path: str) -> str:
    """Name the kind of answer an API path gives: list, document, token, parties, upload, send, revoke, other.

    :param path: the path below ``/v1/api/``.
    """
    path = path.strip("/").lower()
    kinds = {
        "clienttokens/create": "token",
        "clienttokens/revoke": "revoke",
        "buyerparties/lookup": "parties",
        "documents": "upload",
        "documents/outbound": "send",
        "documents/outbound/list": "list",
    }
    if path in kinds:
        return kinds[path]
    if path.startswith(("documents/outbound/", "invoices/outbound/byerpid/")):
        return "document"
    return "other"


def fitting_shapes(shapes: Iterable[str], kind: str) -> list[str]:
    """Return the shapes among ``shapes`` that fit a route of ``kind``.

    :param shapes: enabled shapes.
    :param kind: a route kind from :func:`route_kind`.
    """
    return [shape for shape in shapes if kind in FUZZ_ROUTES.get(shape, (kind,))]


@dataclass
class FuzzReply:
    """A hostile reply: status, headers and body, sent whole or dripped."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    drip: bool = False


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _sample_document(rng: random.Random, now: int) -> dict[str, Any]:
    time = utc_iso(now)
    return {
        "id": _guid(rng),
        "documentType": "Invoice",
        "erpDocumentId": f"fuzz-{rng.getrandbits(32):08x}",
        "created": time,
        "currentStatus": {"status": "Pending", "time": time},
        "statusHistory": [{"status": "PendingInPlatform", "time": time}, {"status": "Pending", "time": time}],
        "sendDocumentAs": "Electronic",
        "recipientInformation": {"orgNo": "556677-8899", "name": "Fuzz AB", "countryCode": "SE"},
    }


def _made_up(kind: str, rng: random.Random, now: int) -> dict[str, Any]:
    if kind == "list":
        return {"documents": [_sample_document(rng, now)], "totalCount": 1}
    if kind == "document":
        return _sample_document(rng, now)
    if kind == "token":
        return {"token": f"fuzz-{rng.getrandbits(128):032x}"}
    if kind == "parties":
        return {"parties": None, "potentialMatches": 0, "exactHit": False}
    return {"message": "The request has been accepted."}


def _wrong_shape(shape: str, kind: str, expected: dict[str, Any], rng: random.Random, now: int) -> Any:
    """Return valid JSON of the wrong shape for ``shape``, made from the expected body."""
    documents = [item for item in expected.get("documents") or [] if isinstance(item, dict)]
    total = expected.get("totalCount", len(documents))
    if shape == "json_list":
        return [expected]
    if shape == "documents_string":
        return {**expected, "documents": "see the portal"}
    if shape == "status_number":
        if kind == "list":
            documents = documents or [_sample_document(rng, now)]
            return {**expected, "documents": [{**item, "currentStatus": 3} for item in documents],
                    "totalCount": max(total if isinstance(total, int) else 0, len(documents))}
        return {**expected, "currentStatus": 3}
    if shape == "total_negative":
        return {**expected, "totalCount": -1}
    if shape == "total_text":
        return {**expected, "totalCount": f"{total} documents"}
    if shape == "nulls":
        if kind == "list":
            return {"documents": [None] * max(1, len(documents)), "totalCount": total}
        if kind == "document":
            history = expected.get("statusHistory")
            nulls = [None] * len(history) if isinstance(history, list) and history else [None]
            return {**expected, "currentStatus": None, "statusHistory": nulls, "recipientInformation": None}
        if kind == "token":
            return {"token": None}
        if kind == "parties":
            return {"parties": [None], "potentialMatches": 0, "exactHit": True}
        return None
    # missing_fields
    if kind == "list":
        return {"totalCount": total}
    if kind == "document":
        return {key: value for key, value in expected.items() if key not in ("id", "currentStatus", "statusHistory")}
    return {}


def fuzz_reply(shape: str, kind: str, rng: random.Random, now: int, real: bytes | None) -> FuzzReply:
    """Build the hostile reply of ``shape`` for a route of ``kind``.

    :param shape: one of :data:`~inexchange_devkit.simulator.config.FUZZ_SHAPES`.
    :param kind: the route kind, from :func:`route_kind`.
    :param rng: the store's seeded generator, for every choice within the shape.
    :param now: epoch microseconds, for made-up documents.
    :param real: the JSON body of the real 2xx answer when the request was processed, else ``None``.
    """
    success = 201 if kind in ("upload", "send") else 200
    expected: dict[str, Any] | None = None
    if real:
        try:
            parsed = json.loads(real)
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        expected = parsed if isinstance(parsed, dict) else None
    if expected is None:
        expected = _made_up(kind, rng, now)
    expected_bytes = json.dumps(expected).encode("utf-8")
    if shape == "html_page":
        return FuzzReply(success, [(b"content-type", b"text/html; charset=utf-8")], HTML_SIGN_IN_PAGE)
    if shape == "html_error_200":
        return FuzzReply(200, [(b"content-type", b"text/html; charset=utf-8")], HTML_ERROR_200_PAGE)
    if shape == "xml":
        return FuzzReply(success, [(b"content-type", b"application/xml; charset=utf-8")], XML_ERROR)
    if shape == "octet_stream":
        return FuzzReply(success, [(b"content-type", b"application/octet-stream")],
                         rng.randbytes(rng.randint(64, 4096)))
    if shape == "invalid_utf8":
        body = expected_bytes.replace(b'"', b'"\xff\xfe\xc3\x28', 1)
        return FuzzReply(success, [_JSON], body if body != expected_bytes else b'{"message": "\xff\xfe\xc3\x28"}')
    if shape == "truncated_json":
        return FuzzReply(success, [_JSON], expected_bytes[: max(1, len(expected_bytes) // 2)])
    if shape == "nested_json":
        return FuzzReply(success, [_JSON], b"[" * NESTING + b"]" * NESTING)
    if shape == "drip":
        return FuzzReply(success, [_JSON], expected_bytes, drip=True)
    if shape == "no_content":
        return FuzzReply(204, [])
    if shape == "location_garbage":
        return FuzzReply(success, [(b"location", rng.choice(LOCATION_GARBAGE).encode("ascii"))])
    if shape == "location_missing":
        return FuzzReply(success, [])
    if shape == "retry_after":
        raise ValueError("retry_after replies are built by retry_after_reply")
    return FuzzReply(success, [_JSON], json.dumps(_wrong_shape(shape, kind, expected, rng, now)).encode("utf-8"))


def retry_after_reply(status: int, rng: random.Random) -> FuzzReply:
    """Build a 429 or 503 JSON error with a bogus ``Retry-After``.

    :param status: 429 or 503.
    :param rng: the store's seeded generator.
    """
    message = "Too many requests." if status == 429 else "The service is temporarily unavailable."
    headers = [_JSON, (b"retry-after", rng.choice(RETRY_AFTER_BOGUS).encode("ascii"))]
    return FuzzReply(status, headers, json.dumps({"message": message}).encode("utf-8"))


async def _send_reply(send: Send, reply: FuzzReply) -> None:
    headers = list(reply.headers)
    if reply.status != 204:
        headers.append((b"content-length", str(len(reply.body)).encode("ascii")))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if reply.status == 204 else reply.body})


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone away (reading and dropping any request body first)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _drip(send: Send, receive: Receive, reply: FuzzReply, limit_s: float, stopping: asyncio.Event) -> None:
    """Send ``reply`` a byte every :data:`DRIP_INTERVAL_S`.

    The connection breaks after ``limit_s`` or once ``stopping`` is set; the reply ends quietly
    when the client hangs up.
    """
    headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode("ascii"))]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    # time.monotonic, not the loop's clock: uvloop's is cached per loop iteration, and a deadline read
    # from it can be a hair behind the wait that just ended, which would send a burst of bytes
    deadline = time.monotonic() + limit_s
    gone = asyncio.ensure_future(_disconnected(receive))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        for index in range(len(reply.body)):
            await send({"type": "http.response.body", "body": reply.body[index : index + 1], "more_body": True})
            if index == len(reply.body) - 1:
                break
            remaining = deadline - time.monotonic()
            await asyncio.wait({gone, stop}, timeout=max(0.0, min(DRIP_INTERVAL_S, remaining)),
                               return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                return
            if stop.done() or remaining <= DRIP_INTERVAL_S:  # the last wait ran out the time
                raise ConnectionDropped("fault injection: drip reply ended")
        await send({"type": "http.response.body", "body": b""})
    finally:
        gone.cancel()
        stop.cancel()


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
        shapes = fitting_shapes(store.config.fuzz_shapes, route_kind(path)) if kind == "fuzz" else []
        if kind is None or (kind == "fuzz" and not shapes):
            await self.app(scope, receive, send)
            return
        if kind == "fuzz":
            await self._fuzz(scope, receive, send, method, path, shapes)
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

    async def _fuzz(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str, shapes: list[str]
    ) -> None:
        """Answer with a hostile reply drawn from ``shapes``, after processing the request or without."""
        store = self.store
        rng = store.rng
        shape = rng.choice(shapes)
        status = rng.choice((429, 503)) if shape == "retry_after" else None
        processed = status != 429 and rng.random() < FUZZ_PROCESSED_SHARE
        store.record_fuzz(method, path, shape, processed)
        real: bytes | None = None
        if processed:
            response: list[Message] = []

            async def keep(message: Message) -> None:
                response.append(message)

            await self.app(scope, receive, keep)
            if response and response[0]["type"] == "http.response.start" and response[0]["status"] < 300:
                real = b"".join(message.get("body", b"") for message in response[1:])
        if status is not None:
            reply = retry_after_reply(status, rng)
        else:
            reply = fuzz_reply(shape, route_kind(path), rng, store.clock.now(), real)
        if reply.drip:
            store.dripping += 1
            try:
                await _drip(send, receive, reply, store.config.drip_max_s, store.stopping)
            finally:
                store.dripping -= 1
        else:
            await _send_reply(send, reply)

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
