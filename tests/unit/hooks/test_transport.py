"""Tests of AiohttpTransport over loopback sockets: replies, and how each failure is classified."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import httpx
import pytest
from dispatch_testing.unit_fixtures import connection_json
from inexchange.exceptions import InExchangeTransportError
from inexchange.hooks.inexchange import InExchangeHook
from inexchange.hooks.transport import AiohttpTransport, httpx_error, proxy_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

#: what a test server does with one connection, after the request head and body have been read
Behaviour = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


@asynccontextmanager
async def server(behaviour: Behaviour) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback TCP server answering each request with ``behaviour``; yields its URL and the requests."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                requests.append(request)
                await behaviour(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/api/", requests
    finally:
        listener.close()


def client(base_url: str, read_timeout: float = 5.0) -> httpx.AsyncClient:
    transport = AiohttpTransport(max_connections=4, verify=httpx.create_ssl_context())
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=httpx.Timeout(read_timeout, connect=2.0))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def reply_gzip_json(request: bytes, writer: asyncio.StreamWriter) -> None:
    body = gzip.compress(json.dumps({"echo": request.split(b"\r\n\r\n", 1)[1].decode()}).encode())
    writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                 b"Location: urn:inexchangedocument:abc\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()


async def hang_up(request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.close()
    raise ConnectionError("hung up")


async def never_answer(request: bytes, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def answer_garbage(request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"this is not HTTP\r\n\r\n")
    await writer.drain()
    writer.close()
    raise ConnectionError("done")


async def test_a_reply_keeps_its_status_headers_and_decoded_body() -> None:
    async with server(reply_gzip_json) as (url, requests):
        async with client(url) as http:
            first = await http.post("documents", content=b"<Invoice/>", headers={"ClientToken": "t"})
            second = await http.post("documents", json={"a": "å"})

    assert first.status_code == 201 and first.reason_phrase == "Created"
    assert first.headers["Location"] == "urn:inexchangedocument:abc"
    assert first.json() == {"echo": "<Invoice/>"}
    assert json.loads(second.json()["echo"]) == {"a": "å"}
    head = requests[0].lower()
    assert head.startswith(b"post /v1/api/documents http/1.1\r\n") and b"\r\nclienttoken: t\r\n" in head
    assert b"content-type" not in head  # as httpx's own engine: no type where the caller set none


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with client(f"http://127.0.0.1:{free_port()}/") as http:
        with pytest.raises(httpx.ConnectError) as raised:
            await http.post("documents/outbound", json={})
    assert isinstance(raised.value.__cause__, aiohttp.ClientConnectorError)


@pytest.mark.parametrize(("behaviour", "expected"), [
    (hang_up, httpx.RemoteProtocolError),
    (never_answer, httpx.ReadTimeout),
    (answer_garbage, httpx.RemoteProtocolError),
])
async def test_failures_after_the_request_left_are_not_connect_errors(
    behaviour: Behaviour, expected: type[httpx.TransportError]
) -> None:
    async with server(behaviour) as (url, requests):
        async with client(url, read_timeout=0.3) as http:
            with pytest.raises(httpx.TransportError) as raised:
                await http.post("documents/outbound", json={"erpDocumentId": "invoice-1"})

    assert type(raised.value) is expected
    assert not isinstance(raised.value, (httpx.ConnectError, httpx.ConnectTimeout))
    assert len(requests) == 1  # the request did reach the server


def test_every_aiohttp_failure_maps_to_an_httpx_transport_error() -> None:
    assert isinstance(httpx_error(aiohttp.ConnectionTimeoutError()), httpx.ConnectTimeout)
    assert isinstance(httpx_error(aiohttp.SocketTimeoutError()), httpx.ReadTimeout)
    assert isinstance(httpx_error(aiohttp.ServerDisconnectedError()), httpx.RemoteProtocolError)
    assert isinstance(httpx_error(aiohttp.ClientPayloadError()), httpx.ReadError)
    assert isinstance(httpx_error(aiohttp.ClientOSError()), httpx.ReadError)
    assert isinstance(httpx_error(aiohttp.ClientError()), httpx.TransportError)
    assert httpx_error(ValueError()) is None


async def test_a_send_whose_connection_drops_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the request left, a dropped connection may hide a processed send: the hook must not resend."""

    async def tokens_then_hang_up(request: bytes, writer: asyncio.StreamWriter) -> None:
        if b"clientTokens/create" in request.split(b"\r\n", 1)[0]:
            body = b'{"token": "a-token"}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        else:
            await hang_up(request, writer)

    async with server(tokens_then_hang_up) as (url, requests):
        monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", connection_json(host=url))
        hook = InExchangeHook(max_attempts=5)
        with pytest.raises(InExchangeTransportError):
            await hook.asend_outbound({"erpDocumentId": "invoice-1"})
        await hook.aclose()

    sends = [r for r in requests if r.startswith(b"POST /v1/api/documents/outbound ")]
    assert len(sends) == 1


async def test_requests_go_through_the_environments_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    async with server(reply_gzip_json) as (proxy_url, requests):
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "bypassed.invalid")
        proxy_for.cache_clear()
        try:
            async with client("http://inexchange.invalid/v1/api/") as http:
                reply = await http.post("documents", content=b"<Invoice/>")
            assert proxy_for("http", "bypassed.invalid") is None
        finally:
            proxy_for.cache_clear()

    assert reply.json() == {"echo": "<Invoice/>"}
    assert requests[0].startswith(b"POST http://inexchange.invalid/v1/api/documents HTTP/1.1\r\n")


def test_the_sync_client_goes_through_the_environments_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync client reads the proxy once for the API's host, as the async ones do (it no longer trusts httpx's env)."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen: list[bytes] = []

    def proxy() -> None:
        conn, _ = listener.accept()
        with conn:
            seen.append(conn.recv(65536))
            body = b'{"token": "via-proxy"}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", connection_json(host="http://inexchange.invalid/v1/api/"))
    proxy_for.cache_clear()
    try:
        hook = InExchangeHook(max_attempts=1)
        hook.authenticate()
        token = hook._token
        hook.client.close()
    finally:
        proxy_for.cache_clear()
        listener.close()
        thread.join(5)

    assert token == "via-proxy"
    assert seen[0].startswith(b"POST http://inexchange.invalid/v1/api/clientTokens/create HTTP/1.1\r\n")


async def answer_as_inexchange(request: bytes, writer: asyncio.StreamWriter) -> None:
    """A token for ``clientTokens/create``, a document URN for an upload, a document's address for a send."""
    target = request.split(b"\r\n", 1)[0].split(b" ")[1]
    guid = b"0b6e4d39-8f0a-4a6e-9c35-5d3f2b8e7a10"
    if target.endswith(b"clientTokens/create"):
        head, body = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", b'{"token": "a-token"}'
    elif target.endswith(b"/documents"):
        head, body = b"HTTP/1.1 201 Created\r\nLocation: urn:inexchangedocument:" + guid + b"\r\n", b""
    else:
        head, body = b"HTTP/1.1 201 Created\r\nLocation: https://api.example/v1/api/documents/outbound/" + guid + b"\r\n", b""
    writer.write(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()


def _head_and_body(request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """The request line, the headers by lower-case name (but Host, whose port differs) and the body."""
    head, body = request.split(b"\r\n\r\n", 1)
    line, *fields = head.decode().split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (field.split(":", 1) for field in fields)}
    headers.pop("host")
    return line.encode(), headers, body


async def test_the_hooks_posts_go_on_the_wire_as_httpxs_client_sends_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook hands its POSTs to aiohttp without the httpx client's request layer: the same request leaves.

    The reference is the same calls through an httpx client on httpx's own engine, which encodes the
    URL, the headers and the JSON body itself.
    """
    document = "<Invoice>Åkessons El &amp; Tele</Invoice>".encode()
    send = {"erpDocumentId": "Faktura 10001 Åkesson", "recipientInformation": {"gln": None}, "amount": 1.5}

    async def calls(hook: InExchangeHook) -> tuple[str, str]:
        try:
            return await hook.aupload_document(document), await hook.asend_outbound(send)
        finally:
            await hook.aclose()

    async with server(answer_as_inexchange) as (url, requests):
        monkeypatch.setenv("AIRFLOW_CONN_INEXCHANGE_DEFAULT", connection_json(host=url))
        lean = await calls(InExchangeHook())
        sent_lean = list(requests)
        requests.clear()
        monkeypatch.setattr(
            InExchangeHook, "_async_transport",
            lambda hook, max_connections: httpx.AsyncHTTPTransport(retries=0),
        )
        through_client = await calls(InExchangeHook())

    assert lean == through_client == (
        "urn:inexchangedocument:0b6e4d39-8f0a-4a6e-9c35-5d3f2b8e7a10", "0b6e4d39-8f0a-4a6e-9c35-5d3f2b8e7a10"
    )
    posts = [r for r in sent_lean if b"clientTokens/revoke" not in r.split(b"\r\n", 1)[0]]
    assert [r.split(b"\r\n", 1)[0] for r in posts] == [
        b"POST /v1/api/clientTokens/create HTTP/1.1",
        b"POST /v1/api/documents HTTP/1.1",
        b"POST /v1/api/documents/outbound HTTP/1.1",
    ]
    assert [_head_and_body(r) for r in sent_lean] == [_head_and_body(r) for r in requests]
    _, upload_headers, upload_body = _head_and_body(posts[1])
    assert upload_body == document and upload_headers["content-type"] == "application/xml"
    assert upload_headers["clienttoken"] == "a-token" and upload_headers["accept"] == "application/json"
    _, send_headers, send_body = _head_and_body(posts[2])
    assert json.loads(send_body) == send and send_headers["content-type"] == "application/json"
