"""Reading InExchange's HTTP replies into the types of :mod:`inexchange.api`, or into the error they carry.

A reply counts as InExchange's answer only when it is one: a success is a 2xx status (not 206)
whose body, for the calls that return data, is a JSON object of the documented shape
(:class:`~inexchange.api.ReplyShapeError`), and whose ``Location`` header, for upload and send, has
the documented form (``urn:inexchangedocument:{guid}``, ``.../documents/outbound/{guid}``). The
``Content-Type`` is not consulted: JSON is asked for (``Accept``), the body is parsed as JSON (UTF-8,
as RFC 8259 requires; ``NaN`` and ``Infinity`` are not JSON) whatever type it is labelled with, so an
HTML page fails as "not JSON" even under ``application/json``, and a JSON object of the right shape
is read even under ``text/plain`` (gateways relabel bodies; the shape, not the label, shows the reply
is InExchange's). Any other reply is an :class:`~inexchange.exceptions.InExchangeApiError` carrying
its status.

Text taken from a reply into an error is one line of at most :data:`MAX_TEXT` characters, with the
secrets of the call (API key, client token) cut out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from inexchange.api import ReplyShapeError
from inexchange.exceptions import InExchangeApiError

_T = TypeVar("_T")

#: the longest text taken from a reply into an error (InExchange's message, one modelState reason)
MAX_TEXT = 500
#: the most modelState fields, and reasons per field, kept in an error
_MAX_FIELDS = 20
_MAX_REASONS = 5
#: the longest client token accepted (InExchange's are tens of characters)
_MAX_TOKEN = 4096


class Unauthorized(Exception):
    """A 401 on a call made with a client token: the token is renewed once and the call repeated."""


def checked(
    response: httpx.Response,
    path: str,
    *,
    token_call: bool,
    answers: frozenset[int] = frozenset(),
    secrets: tuple[str, ...] = (),
) -> httpx.Response:
    """Return a successful response (or one whose status is in ``answers``), or raise the error it carries.

    Success is a 2xx other than 206 (a part of a reply, never asked for). A 1xx or 3xx (the clients
    follow no redirect) is no answer either: an error with that status, retried like a reply that
    cannot be read when the call is idempotent. A 401 on a call made with a client token raises
    :class:`Unauthorized`. The error of a 4xx or 5xx carries InExchange's ``message`` and
    ``modelState`` and the ``Retry-After`` it asks for.

    :param response: the reply.
    :param path: the API path of the call, for the error.
    :param token_call: whether the call was made with a client token (not the API key).
    :param answers: error statuses that are an answer of the call (404 of a look-up by ERP id).
    :param secrets: texts to cut out of anything taken from the reply.
    """
    status = response.status_code
    if (200 <= status < 300 and status != 206) or status in answers:
        return response
    if status == 401 and token_call:
        raise Unauthorized()
    if status < 400:
        kind = "a redirect (check the API base URL)" if 300 <= status < 400 else "not a complete reply"
        raise InExchangeApiError(status, f"unexpected status: {kind}", path=path)
    body = parsed_json(response.content)
    body = body if isinstance(body, dict) else {}
    message = next(
        (m for m in (body.get("message"), body.get("Message")) if isinstance(m, str) and m.strip()),
        response.reason_phrase or "error",
    )
    raise InExchangeApiError(
        status,
        clean(message, secrets) or "error",
        model_state=model_state(body.get("modelState") or body.get("ModelState"), secrets),
        path=path,
        retry_after=retry_after(response.headers.get("Retry-After")),
    )


#: what :func:`parsed_json` returns for a body that is not JSON
NOT_JSON: Any = object()


def parsed_json(content: bytes) -> Any:
    """The JSON value of a body, or :data:`NOT_JSON` when the body is no JSON text.

    Strict RFC 8259 whatever the ``Content-Type`` says: UTF-8 (UTF-16 and UTF-32 are recognised
    too), no ``NaN`` or ``Infinity``; nesting deeper than Python's parser goes (RecursionError) and
    integers longer than Python converts are "not JSON" as well.
    """
    try:
        return json.loads(content, parse_constant=_not_a_json_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and too long integers are ValueErrors
        return NOT_JSON


def _not_a_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_object(response: httpx.Response, path: str) -> dict[str, Any]:
    """The reply's body as a JSON object, or an API error saying why it is not one."""
    body = parsed_json(response.content)
    if body is NOT_JSON:
        raise InExchangeApiError(response.status_code, "reply is not JSON", path=path)
    if not isinstance(body, dict):
        raise InExchangeApiError(response.status_code, "reply is not a JSON object", path=path)
    return body


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean(text: str, secrets: tuple[str, ...]) -> str:
    """Text from a reply made fit for an error: secrets removed, one line, at most :data:`MAX_TEXT` characters."""
    return _CONTROL.sub(" ", redacted(text, secrets)).strip()[:MAX_TEXT]


def redacted(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def model_state(value: Any, secrets: tuple[str, ...]) -> dict[str, list[str]] | None:
    """InExchange's ``modelState`` (field -> reasons) as far as it has that shape: strings only, bounded."""
    if not isinstance(value, dict):
        return None
    state: dict[str, list[str]] = {}
    for field, given in value.items():
        reasons = [given] if isinstance(given, str) else given
        if not isinstance(reasons, list):
            continue
        kept = [clean(r, secrets) for r in reasons if isinstance(r, str)][:_MAX_REASONS]
        if kept:
            state[clean(field, secrets)] = kept
        if len(state) == _MAX_FIELDS:
            break
    return state or None


_SECONDS = re.compile(r"\d{1,9}(\.\d{1,9})?", re.ASCII)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or None when it says nothing usable."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def reading(path: str, parse: Callable[[dict[str, Any]], _T]) -> Callable[[httpx.Response], _T]:
    """A reader that parses the reply's JSON object with ``parse`` (a ``from_json`` of :mod:`inexchange.api`).

    Any reply it cannot parse is an API error naming the field, never quoting the reply.
    """

    def read(response: httpx.Response) -> _T:
        body = json_object(response, path)
        try:
            return parse(body)
        except ReplyShapeError as exc:  # its text names the field, never a value from the reply
            problem = str(exc)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            problem = type(exc).__name__
        # raised outside the handler, so that nothing quoting the reply is chained to it
        raise InExchangeApiError(response.status_code, f"reply of an unexpected shape: {problem}", path=path)

    return read


#: what a ``Location`` header or an id in it may contain: visible ASCII, no spaces
_VISIBLE = re.compile(r"[\x21-\x7e]+")
#: InExchange names documents by GUID, in the upload's URN and in the send's Location
_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: the document id in a send's ``Location``: ``.../documents/outbound/{guid}`` (a trailing slash allowed)
_SENT_PATH = re.compile(rf"(?:^|/)documents/outbound/({_GUID})/?$", re.IGNORECASE)
#: the ``Location`` of an upload: ``urn:inexchangedocument:{guid}``
_DOCUMENT_URN = re.compile(rf"urn:inexchangedocument:{_GUID}", re.IGNORECASE)


def _location(response: httpx.Response, path: str) -> str:
    """The reply's ``Location`` header, which upload and send answer with, or an API error."""
    location = response.headers.get("Location", "").strip()
    if not location.rstrip("/"):
        raise InExchangeApiError(response.status_code, "no Location header in the reply", path=path)
    if not _VISIBLE.fullmatch(location) or len(location) > 2048:
        raise InExchangeApiError(response.status_code, "a Location header that is not a URI", path=path)
    return location


def document_uri(response: httpx.Response) -> str:
    """The ``urn:inexchangedocument:{guid}`` an upload (``POST documents``) answers with in ``Location``."""
    location = _location(response, "documents")
    if not _DOCUMENT_URN.fullmatch(location):
        raise InExchangeApiError(
            response.status_code, "Location is not a urn:inexchangedocument:{guid}", path="documents"
        )
    return location


def sent_document_id(response: httpx.Response) -> str:
    """The document id a send answers with: the GUID of ``.../documents/outbound/{guid}`` in ``Location``."""
    location = _location(response, "documents/outbound")
    try:
        found = _SENT_PATH.search(urlsplit(location).path)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        found = None
    if found is None:
        raise InExchangeApiError(
            response.status_code, "Location does not name a documents/outbound/{guid}", path="documents/outbound"
        )
    return found.group(1)


def client_token(response: httpx.Response) -> str:
    """The client token of a ``clientTokens/create`` reply; it must be fit for a header (visible ASCII)."""
    token = json_object(response, "clientTokens/create").get("token")
    if not isinstance(token, str) or not token:
        raise InExchangeApiError(response.status_code, "no token in the reply", path="clientTokens/create")
    if len(token) > _MAX_TOKEN or not _VISIBLE.fullmatch(token):
        raise InExchangeApiError(response.status_code, "a token that is not a header value", path="clientTokens/create")
    return token


def not_found_or(read: Callable[[httpx.Response], _T], path: str) -> Callable[[httpx.Response], _T | None]:
    """A reader for a look-up whose 404 means "none": None for a 404 that is InExchange's own (an empty
    body or a JSON object), ``read`` for any other reply.

    A 404 page of something in between (HTML, text) proves nothing and fails the call, since "none"
    lets the caller act as if the thing never existed.
    """

    def found(response: httpx.Response) -> _T | None:
        if response.status_code != 404:
            return read(response)
        if response.content.strip() and not isinstance(parsed_json(response.content), dict):
            raise InExchangeApiError(404, "a 404 reply that is not InExchange's (not a JSON object)", path=path)
        return None

    return found
