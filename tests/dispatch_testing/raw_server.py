"""A tiny HTTP/1.1 server on a loopback socket that answers with whatever bytes a test gives it.

It reads each request (head and ``Content-Length`` body), counts it per path, and lets a handler
write the answer byte for byte: well-formed or not, at once or a byte at a time. Client tokens are
answered by the server itself unless the handler takes them. Used by the hostile-reply tests to
produce on real sockets what a well-behaved server framework cannot (a body that drips, a broken
status line, a lying ``Content-Length``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

TOKEN = "raw-server-token-5d1e"


@dataclass(frozen=True)
class Request:
    """A request as the server read it."""

    method: str
    path: str  # below /v1/api/, e.g. "documents/outbound"
    headers: dict[str, str]
    body: bytes


#: writes the answer to a request on the socket; returns whether the connection may serve another request
Handler = Callable[[Request, socket.socket], bool]


def reply(status: int, body: bytes = b"", headers: tuple[tuple[str, str], ...] = (), reason: str = "OK") -> bytes:
    """A well-formed reply with a ``Content-Length``."""
    head = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def json_reply(status: int, value: object, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    return reply(status, json.dumps(value).encode(), (("Content-Type", "application/json"), *headers))


def drip(conn: socket.socket, data: bytes, every: float) -> None:
    """Send ``data`` a byte at a time, ``every`` seconds apart (until the client hangs up)."""
    for byte in data:
        conn.sendall(bytes([byte]))
        time.sleep(every)


@dataclass
class RawServer:
    """The running server: its base URL and how many requests each path got."""

    base_url: str
    counts: Counter[str] = field(default_factory=Counter)
    requests: list[Request] = field(default_factory=list)
    handler: Handler | None = None

    def count(self, path: str) -> int:
        return self.counts[path]


def _read_request(conn: socket.socket, pending: bytearray) -> Request | None:
    while b"\r\n\r\n" not in pending:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = bytearray(rest)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    pending[:] = body[length:]
    path = target.split("?", 1)[0].split("/v1/api/", 1)[-1]
    return Request(method, path, headers, bytes(body[:length]))


def _answer_tokens(request: Request, conn: socket.socket, token: str) -> bool:
    if request.path == "clientTokens/create":
        conn.sendall(json_reply(200, {"token": token}))
        return True
    if request.path == "clientTokens/revoke":
        conn.sendall(reply(204))
        return True
    return False


@contextmanager
def raw_server(handler: Handler | None = None, *, tokens: bool = True, token: str = TOKEN) -> Iterator[RawServer]:
    """Serve on 127.0.0.1 until the block ends; ``handler`` answers every request (it can be set later).

    :param handler: writes each answer; may be replaced through the yielded server's ``handler``.
    :param tokens: answer ``clientTokens/create`` and ``revoke`` well, before the handler sees them.
    :param token: the client token ``clientTokens/create`` answers with.
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    server = RawServer(f"http://127.0.0.1:{listener.getsockname()[1]}/v1/api/", handler=handler)
    stopping = threading.Event()
    connections: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        pending = bytearray()
        try:
            while not stopping.is_set():
                request = _read_request(conn, pending)
                if request is None:
                    return
                server.counts[request.path] += 1
                server.requests.append(request)
                if tokens and _answer_tokens(request, conn, token):
                    continue
                assert server.handler is not None, f"no handler for {request.path}"
                if not server.handler(request, conn):
                    return
        except OSError:  # the client hung up
            return
        finally:
            conn.close()

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server
    finally:
        stopping.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        listener.close()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
