"""The ASGI application of the InExchange simulator: API routes under ``/v1/api/`` and ``/_sim`` ops.

The API follows InExchange REST API v1: header ``APIKey`` for client tokens, header ``ClientToken``
for everything else, JSON bodies whose property names match case-insensitively (as ASP.NET model
binding does), 400 answers carrying ``modelState`` and 401 answers carrying the ASP.NET message.
Route paths match case-insensitively too.

The JSON replies are built in their documented shape and then shaped by the reply variant in force
(``reply_variant``, see :mod:`inexchange_devkit.simulator.variants`); times are written in each document's
own notation (see :mod:`inexchange_devkit.simulator.times`), and request times are read in any of them.
``invoices/outbound/byerpid/{erpId}`` answers ``POST`` only, with an optional JSON body
``{"includeFileInfo": false}``; ``document.attachments`` of a send lists the URIs of earlier uploads.
With Peppol rules (``peppol_rules``) a send waits for its upload's check, and a document that breaks
a fatal rule is accepted and then ends ``Error`` (see :mod:`inexchange_devkit.simulator.peppol`). A
document sent to a party whose invoice checks it fails is accepted and then ends ``Stopped`` (see
:mod:`inexchange_devkit.simulator.registry`).
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inexchange_devkit.simulator.config import SimulatorConfig
from inexchange_devkit.simulator.faults import FaultInjectionMiddleware
from inexchange_devkit.simulator.store import UNKNOWN_DOCUMENT_TYPES, Store, Token, parse_iso, utc_iso

INVALID_REQUEST = "The request is invalid."
UNAUTHORIZED = "Authorization has been denied for this request."
DELIVERY_TYPES = {"electronic": "Electronic", "pdf": "Pdf", "paper": "Paper"}
DOCUMENT_TYPES = ("invoice", "creditnote", *(name.casefold() for name in UNKNOWN_DOCUMENT_TYPES))
RECIPIENT_FIELDS = ("gln", "orgNo", "vatNo", "name", "recipientNo", "countryCode")
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
MAX_TAKE = 1000
DEFAULT_TAKE = 100

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

Handler = Callable[[Request], Awaitable[Response]]
AuthenticatedHandler = Callable[[Request, Token], Awaitable[Response]]


class BadRequest(Exception):
    """A request that fails validation; carries the ``modelState`` of the 400 answer."""

    def __init__(self, model_state: dict[str, list[str]]) -> None:
        """Keep the field errors for the response."""
        super().__init__(model_state)
        self.model_state = model_state


class _Route(Route):
    """A route whose path matches case-insensitively, like the ASP.NET routes of InExchange."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *, methods: list[str]) -> None:
        """Compile the route's path pattern without regard to case."""
        super().__init__(path, endpoint, methods=methods)
        self.path_regex = re.compile(self.path_regex.pattern, re.IGNORECASE)


def _json(body: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, headers=dict(headers or {}))


def _message(status_code: int, message: str) -> JSONResponse:
    return _json({"message": message}, status_code)


def _invalid(model_state: dict[str, list[str]]) -> JSONResponse:
    return _json({"message": INVALID_REQUEST, "modelState": model_state}, 400)


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """Return ``obj[name]`` matching the property name case-insensitively, else ``None``."""
    if name in obj:
        return obj[name]
    folded = name.casefold()
    for key, value in obj.items():
        if key.casefold() == folded:
            return value
    return None


def _text(value: Any) -> str:
    """Return a stripped string for a scalar JSON value, ``""`` for null or a structure."""
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    return str(value).strip()


async def _json_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """Parse the request body as a JSON object; an empty body is ``{}`` when ``optional``."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise BadRequest({"request": ["A request body is required."]})
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest({"request": [f"The request body is not valid JSON: {exc}"]}) from exc
    if not isinstance(body, dict):
        raise BadRequest({"request": ["The request body must be a JSON object."]})
    return body


def _recipient_id(body: Mapping[str, Any]) -> str:
    """``sendDocumentAs.electronic.recipientId`` of a send request, ``""`` when it has none."""
    send_as = _field(body, "sendDocumentAs")
    electronic = _field(send_as, "electronic") if isinstance(send_as, dict) else None
    return _text(_field(electronic, "recipientId")) if isinstance(electronic, dict) else ""


def _optional_time(body: Mapping[str, Any], name: str, errors: dict[str, list[str]]) -> int | None:
    value = _field(body, name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        errors[name] = ["Must be an ISO 8601 date and time."]
        return None
    try:
        return parse_iso(value)
    except ValueError:
        errors[name] = [f"'{value}' is not an ISO 8601 date and time."]
        return None


def _optional_int(
    body: Mapping[str, Any], name: str, default: int, low: int, high: int, errors: dict[str, list[str]]
) -> int:
    value = _field(body, name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors[name] = [f"Must be an integer between {low} and {high}."]
        return default
    return value


class SimulatorApi:
    """Request handlers over one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        """Serve the state held by ``store``."""
        self.store = store

    # Plumbing -----------------------------------------------------------------------------

    def _api_key_ok(self, request: Request) -> bool:
        given = request.headers.get("APIKey", "")
        return hmac.compare_digest(given.encode("utf-8"), self.store.config.api_key.encode("utf-8"))

    def authenticated(self, handler: AuthenticatedHandler) -> Handler:
        """Wrap a handler so that it runs only with a live ``ClientToken`` and receives that token."""

        async def endpoint(request: Request) -> Response:
            token = self.store.live_token(request.headers.get("ClientToken"))
            if token is None:
                return _message(401, UNAUTHORIZED)
            try:
                return await handler(request, token)
            except BadRequest as exc:
                return _invalid(exc.model_state)

        return endpoint

    # Client tokens ------------------------------------------------------------------------

    async def create_token(self, request: Request) -> Response:
        """``POST clientTokens/create``: issue a client token for an ``erpId`` (header ``APIKey``)."""
        if not self._api_key_ok(request):
            return _message(401, UNAUTHORIZED)
        try:
            body = await _json_object(request)
        except BadRequest as exc:
            return _invalid(exc.model_state)
        errors: dict[str, list[str]] = {}
        erp_id = _text(_field(body, "erpId"))
        if not erp_id:
            errors["erpId"] = ["The ErpId field is required."]
        valid_to = _optional_time(body, "validTo", errors)
        if valid_to is not None and valid_to <= self.store.clock.now():
            errors["validTo"] = ["Must be in the future."]
        if errors:
            return _invalid(errors)
        token = self.store.create_token(erp_id, valid_to)
        return _json(self.store.shaper().token({"token": token.value}))

    async def revoke_token(self, request: Request) -> Response:
        """``POST clientTokens/revoke``: end a token (header ``APIKey``, or ``ClientToken`` of the same erpId)."""
        by_api_key = self._api_key_ok(request)
        caller = self.store.live_token(request.headers.get("ClientToken"))
        if not by_api_key and caller is None:
            return _message(401, UNAUTHORIZED)
        try:
            body = await _json_object(request)
        except BadRequest as exc:
            return _invalid(exc.model_state)
        value = _text(_field(body, "clientToken"))
        if not value:
            return _invalid({"clientToken": ["The ClientToken field is required."]})
        target = self.store.tokens.get(value)
        if target is not None:
            if not by_api_key and caller is not None and caller.erp_id != target.erp_id:
                return _message(401, UNAUTHORIZED)
            target.revoked = True
        return Response(status_code=204)

    # Buyer parties ------------------------------------------------------------------------

    async def lookup(self, request: Request, token: Token) -> Response:
        """``POST buyerparties/lookup``: find a buyer by GLN, org number, VAT number or name.

        Answers ``{"parties": [...] or null, "potentialMatches": <count>, "exactHit": <bool>}``.
        """
        body = await _json_object(request)
        if not _text(_field(body, "PartyId")):
            raise BadRequest({"PartyId": ["The PartyId field is required."]})
        self.store.lookups += 1
        result = self.store.registry.lookup(
            org_no=_text(_field(body, "orgNo")),
            vat_no=_text(_field(body, "vatNo")),
            gln=_text(_field(body, "gln")),
            name=_text(_field(body, "name")),
        )
        return _json(self.store.shaper().lookup(copy.deepcopy(result)))

    # Documents ----------------------------------------------------------------------------

    async def upload(self, request: Request, token: Token) -> Response:
        """``POST documents``: store a raw (or multipart ``file``) upload; answer its URI in ``Location``."""
        content_type = request.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/form-data"):
            form = await request.form()
            files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
            content = await files[0].read() if files else b""
        else:
            content = await request.body()
        if not content:
            raise BadRequest({"file": ["No file content"]})
        upload = self.store.upload(content)
        if upload.path is not None:
            # off the event loop: creating a file can take a millisecond on some file systems
            await asyncio.to_thread(upload.path.write_bytes, content)
        return Response(status_code=201, headers={"Location": upload.uri})

    def _validate_send_as(self, body: Mapping[str, Any], errors: dict[str, list[str]]) -> tuple[str | None, str | None]:
        """Return the delivery type and the PDF e-mail address of a send request."""
        send_as = _field(body, "sendDocumentAs")
        if send_as is None:
            return None, None
        if not isinstance(send_as, dict):
            errors["sendDocumentAs"] = ["Must be an object."]
            return None, None
        raw_type = _field(send_as, "type")
        if raw_type is None or raw_type == "":
            return None, None
        delivery = DELIVERY_TYPES.get(raw_type.casefold()) if isinstance(raw_type, str) else None
        if delivery is None:
            errors["sendDocumentAs.type"] = [f"'{raw_type}' is not one of Electronic, Pdf, Paper or null."]
            return None, None
        if delivery == "Electronic":
            electronic = _field(send_as, "electronic")
            recipient_id = _text(_field(electronic, "recipientId")) if isinstance(electronic, dict) else ""
            if not recipient_id:
                errors["sendDocumentAs.electronic.recipientId"] = ["A recipientId is required for electronic delivery."]
        if delivery == "Pdf":
            pdf = _field(send_as, "pdf")
            email = _text(_field(pdf, "recipientEmail")) if isinstance(pdf, dict) else ""
            if not _EMAIL.match(email):
                errors["sendDocumentAs.pdf.recipientEmail"] = ["A valid recipientEmail is required for PDF delivery."]
            return delivery, email
        return delivery, None

    def _validate_attachments(self, document: Mapping[str, Any], errors: dict[str, list[str]]) -> None:
        """Check ``document.attachments``: null, or a list of the URIs of earlier uploads of at most 5 MB."""
        attachments = _field(document, "attachments")
        if attachments is None:
            return
        if not isinstance(attachments, list):
            errors["document.attachments"] = ["Must be a list of document URIs."]
            return
        for index, attachment in enumerate(attachments):
            name = f"document.attachments[{index}]"
            if not isinstance(attachment, str):
                errors[name] = ["Must be a string: the urn:inexchangedocument:{guid} of an uploaded file."]
                continue
            uri = attachment.strip()
            upload = self.store.upload_by_uri(uri) if uri else None
            if upload is None:
                errors[name] = [f"No uploaded document with uri '{uri}'."]
            elif upload.size > MAX_ATTACHMENT_BYTES:
                errors[name] = ["An attachment may be at most 5 MB."]

    async def send(self, request: Request, token: Token) -> Response:
        """``POST documents/outbound``: send an uploaded document; answer its id in ``Location``."""
        body = await _json_object(request)
        errors: dict[str, list[str]] = {}
        delivery, pdf_email = self._validate_send_as(body, errors)
        recipient = _field(body, "recipientInformation")
        if recipient is not None and not isinstance(recipient, dict):
            errors["recipientInformation"] = ["Must be an object."]
            recipient = None
        document = _field(body, "document")
        upload = None
        erp_document_id = ""
        if not isinstance(document, dict):
            errors["document"] = ["The Document field is required."]
        else:
            if not _text(_field(document, "documentFormat")):
                errors["document.documentFormat"] = ["The DocumentFormat field is required."]
            raw_erp_id = _field(document, "erpDocumentId")
            erp_document_id = raw_erp_id.strip() if isinstance(raw_erp_id, str) else ""
            if not erp_document_id:
                errors["document.erpDocumentId"] = ["The ErpDocumentId field is required and must be a string."]
            uri = _text(_field(document, "documentUri"))
            upload = self.store.upload_by_uri(uri) if uri else None
            if not uri:
                errors["document.documentUri"] = ["The DocumentUri field is required."]
            elif upload is None:
                errors["document.documentUri"] = [f"No uploaded document with uri '{uri}'."]
            self._validate_attachments(document, errors)
        if errors or upload is None:
            raise BadRequest(errors)
        verdict = upload.verdict
        if verdict is not None and not verdict.done():
            # the upload's Peppol check (started when it arrived) decides the outcome: wait for it
            # off the event loop; other requests go on meanwhile
            await asyncio.wrap_future(verdict)
        outbound = self.store.send(
            owner=token.erp_id,
            upload=upload,
            erp_document_id=erp_document_id,
            send_as=delivery,
            pdf_email=pdf_email,
            recipient_information={name: _field(recipient or {}, name) for name in RECIPIENT_FIELDS},
            recipient_id=_recipient_id(body) if delivery == "Electronic" else "",
        )
        location = f"{request.base_url}v1/api/documents/outbound/{outbound.id}"
        return Response(status_code=201, headers={"Location": location})

    async def get_document(self, request: Request, token: Token) -> Response:
        """``GET documents/outbound/{id}``: one outbound document with its status."""
        document_id = request.path_params["document_id"]
        document = self.store.document(token.erp_id, document_id)
        if document is None:
            return _message(404, f"No document found with id '{document_id}'.")
        return _json(self.store.shaper().document(document.to_json(self.store.clock.now())))

    async def list_documents(self, request: Request, token: Token) -> Response:
        """``POST documents/outbound/list``: filter and page outbound documents.

        ``documentType`` filters on the type a document shows (its documented value), so a document
        showing an undocumented type is listed under that type only. The pages of one pass are cut
        from one snapshot of the query (see :meth:`Store.list_documents`).
        """
        body = await _json_object(request, optional=True)
        errors: dict[str, list[str]] = {}
        take = _optional_int(body, "take", DEFAULT_TAKE, 1, MAX_TAKE, errors)
        skip = _optional_int(body, "skip", 0, 0, 2**31 - 1, errors)
        created_from = _optional_time(body, "createdFrom", errors)
        created_to = _optional_time(body, "createdTo", errors)
        updated_after = _optional_time(body, "updatedAfter", errors)
        document_type = _text(_field(body, "documentType")) or None
        if document_type is not None and document_type.casefold() not in DOCUMENT_TYPES:
            known = ", ".join(("Invoice", "CreditNote", *UNKNOWN_DOCUMENT_TYPES))
            errors["documentType"] = [f"'{document_type}' is not one of {known}."]
        status = _text(_field(body, "status")) or None
        ignore = _field(body, "ignoreStatuses") or []
        if not isinstance(ignore, list) or not all(isinstance(item, str) for item in ignore):
            errors["ignoreStatuses"] = ["Must be a list of status names."]
            ignore = []
        include_error = _field(body, "includeErrorInfo")
        if include_error is not None and not isinstance(include_error, bool):
            errors["includeErrorInfo"] = ["Must be true or false."]
        if errors:
            raise BadRequest(errors)
        listing = self.store.list_documents(
            token.erp_id,
            created_from=created_from,
            created_to=created_to,
            updated_after=updated_after,
            document_type=document_type,
            status=status,
            ignore_statuses=ignore,
            skip=skip,
            take=take,
        )
        # as the listing saw them: a page cut from a pass's snapshot shows the snapshot's statuses
        shown = listing.as_of
        documents = [document.to_json(shown, include_error=bool(include_error)) for document in listing.documents]
        return _json(self.store.shaper().page({"documents": documents, "totalCount": listing.total}))

    async def by_erp_id(self, request: Request, token: Token) -> Response:
        """``POST invoices/outbound/byerpid/{erpId}``: the latest document sent with that erpDocumentId.

        The body is optional; when present it is a JSON object whose ``includeFileInfo``, if given,
        is a boolean (public clients send ``{"includeFileInfo": false}``). Found: the document as a
        listing shows it. Not found: 404 ``{"message": "No invoice found"}``.
        """
        body = await _json_object(request, optional=True)
        include_file_info = _field(body, "includeFileInfo")
        if include_file_info is not None and not isinstance(include_file_info, bool):
            raise BadRequest({"includeFileInfo": ["Must be true or false."]})
        document = self.store.latest_for_erp_id(token.erp_id, request.path_params["erp_id"])
        if document is None:
            return _message(404, "No invoice found")
        return _json(self.store.shaper().document(document.to_json(self.store.clock.now())))

    # Simulator operations -----------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """``GET /_sim/health``: liveness probe."""
        return _json({"status": "ok", "time": utc_iso(self.store.clock.now())})

    async def stats(self, request: Request) -> Response:
        """``GET /_sim/stats``: sends per erpDocumentId, duplicates, request/fault counters and holds.

        With ``?documents=false`` the answer leaves out ``sends`` and ``statuses``, whose cost grows
        with the number of documents: for callers that poll often (waiting for a hold, for instance).
        """
        per_document = request.query_params.get("documents", "").lower() not in ("0", "false", "no")
        return _json(self.store.stats(per_document=per_document))

    async def tokens(self, request: Request) -> Response:
        """``GET /_sim/tokens``: every client token issued (value, erpId, revoked, expired) and the API key.

        A test can search log files for each of them: none may ever be written to a log.
        """
        return _json({"tokens": self.store.issued_tokens(), "apiKey": self.store.config.api_key})

    async def config(self, request: Request) -> Response:
        """``GET``/``POST /_sim/config``: read or change the runtime settings."""
        if request.method == "POST":
            try:
                self.store.config.update(await _json_object(request))
            except BadRequest as exc:
                return _invalid(exc.model_state)
            except (TypeError, ValueError) as exc:
                return _message(400, str(exc))
        return _json(self.store.config.runtime_view())

    async def reset(self, request: Request) -> Response:
        """``POST /_sim/reset``: forget documents, counters and registered parties; release holds."""
        self.store.reset()
        return _json({"status": "reset"})

    async def hold(self, request: Request) -> Response:
        """``POST /_sim/hold``: install a hold; ``DELETE /_sim/hold``: release held requests, remove holds.

        The ``POST`` body is ``{"path": "documents/outbound", "method": "POST", "phase": "before"}``
        (``method`` and ``phase`` optional, ``phase`` ``before`` or ``after``); the answer names the hold
        as ``/_sim/stats`` does. The ``DELETE`` answer tells how many requests were waiting; with
        ``?drop=true`` they end with a broken connection instead of going on (see ``Holds.release``).
        """
        holds = self.store.holds
        if request.method == "DELETE":
            drop = request.query_params.get("drop", "").lower() in ("1", "true", "yes")
            return _json({"released": holds.release(drop=drop)})
        try:
            key = holds.add(await _json_object(request))
        except BadRequest as exc:
            return _invalid(exc.model_state)
        except ValueError as exc:
            return _message(400, str(exc))
        return _json({"hold": key, "holds": holds.keys()})

    async def register_parties(self, request: Request) -> Response:
        """``POST /_sim/parties``: register parties (a list, or ``{"parties": [...]}``) for lookups."""
        try:
            raw = json.loads(await request.body() or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _message(400, f"The request body is not valid JSON: {exc}")
        parties = raw.get("parties") if isinstance(raw, dict) else raw
        if not isinstance(parties, list) or not all(isinstance(item, dict) for item in parties):
            return _message(400, "Expected a list of party objects.")
        try:
            registered = [self.store.registry.register(party) for party in parties]
        except ValueError as exc:
            return _message(400, str(exc))
        return _json({"parties": registered})

    # Routing ------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """Return every route of the simulator."""
        api = "/v1/api"
        auth = self.authenticated
        return [
            _Route(f"{api}/clientTokens/create", self.create_token, methods=["POST"]),
            _Route(f"{api}/clientTokens/revoke", self.revoke_token, methods=["POST"]),
            _Route(f"{api}/buyerparties/lookup", auth(self.lookup), methods=["POST"]),
            _Route(f"{api}/documents", auth(self.upload), methods=["POST"]),
            _Route(f"{api}/documents/outbound", auth(self.send), methods=["POST"]),
            _Route(f"{api}/documents/outbound/list", auth(self.list_documents), methods=["POST"]),
            _Route(f"{api}/documents/outbound/{{document_id}}", auth(self.get_document), methods=["GET"]),
            _Route(f"{api}/invoices/outbound/byerpid/{{erp_id:path}}", auth(self.by_erp_id), methods=["POST"]),
            _Route("/_sim/health", self.health, methods=["GET"]),
            _Route("/_sim/stats", self.stats, methods=["GET"]),
            _Route("/_sim/tokens", self.tokens, methods=["GET"]),
            _Route("/_sim/config", self.config, methods=["GET", "POST"]),
            _Route("/_sim/reset", self.reset, methods=["POST"]),
            _Route("/_sim/hold", self.hold, methods=["POST", "DELETE"]),
            _Route("/_sim/parties", self.register_parties, methods=["POST"]),
        ]


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Answer routing errors (404, 405) in the API's JSON shape."""
    messages = {404: "No HTTP resource was found that matches the request URI."}
    message = messages.get(exc.status_code, exc.detail)
    return JSONResponse({"message": message}, status_code=exc.status_code, headers=exc.headers)


def create_app(config: SimulatorConfig) -> Starlette:
    """Build the simulator's ASGI application for ``config``.

    The application keeps its state in memory (uploaded files also go to ``config.data_dir``); the
    :class:`~inexchange_devkit.simulator.store.Store` is reachable as ``app.state.store``.
    """
    store = Store(config)
    api = SimulatorApi(store)
    app = Starlette(
        routes=api.routes(),
        middleware=[Middleware(FaultInjectionMiddleware, store=store)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.store = store
    return app
