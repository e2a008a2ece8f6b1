"""What the simulator's contract tests share: a thin client, request bodies, the default settings."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from inexchange_devkit.simulator.testing import SimulatorHandle

#: Every hostile reply of a ``fuzz`` fault, as the simulator's documentation names them.
FUZZ_SHAPES = (
    "html_page",
    "html_error_200",
    "xml",
    "octet_stream",
    "invalid_utf8",
    "truncated_json",
    "json_list",
    "documents_string",
    "status_number",
    "total_negative",
    "total_text",
    "nulls",
    "missing_fields",
    "nested_json",
    "drip",
    "no_content",
    "location_garbage",
    "location_missing",
    "retry_after",
)

#: The settings every test starts from: no faults, no latency, every document final at once, no
#: undocumented document types or statuses. The reply variant is the one the simulator started with
#: (``INEXCHANGE_SIM_VARIANT``, else ``documented``): see ``conftest.clean``.
DEFAULTS: dict[str, Any] = {
    "fault_rate": 0.0,
    "faults": ["5xx", "429", "drop", "lost"],
    "latency_ms": 0,
    "timeout_ms": 3000,
    "status_step_ms": 0,
    "stop_rate": 0.0,
    "error_rate": 0.0,
    "slow_rate": 0.0,
    "slow_factor": 10,
    "stuck_rate": 0.0,
    "stuck_ms": 60_000,
    "fuzz_shapes": list(FUZZ_SHAPES),
    "drip_max_s": 60,
    "token_ttl_s": 3600,
    "unknown_type_rate": 0.0,
    "unknown_status_rate": 0.0,
}


def ubl(number: str, root: str = "Invoice") -> bytes:
    """Return a minimal UBL document carrying ``number`` as its ``cbc:ID``."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<{root} xmlns="urn:oasis:names:specification:ubl:schema:xsd:{root}-2"'
        f' xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
        f"<cbc:ID>{number}</cbc:ID></{root}>"
    ).encode()


class Client:
    """A thin InExchange client bound to one client token."""

    def __init__(self, sim: SimulatorHandle, erp_id: str = "erp-1") -> None:
        """Create a token for ``erp_id`` and keep an HTTP client that sends it."""
        self.sim = sim
        self.http = httpx.Client(base_url=sim.base_url, timeout=10.0)
        response = self.http.post("clientTokens/create", headers={"APIKey": sim.api_key}, json={"erpId": erp_id})
        assert response.status_code == 200, response.text
        self.token = response.json()["token"]
        self.http.headers["ClientToken"] = self.token

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()

    def upload(self, content: bytes) -> str:
        """Upload a file and return its document URI."""
        response = self.http.post("documents", content=content, headers={"Content-Type": "application/xml"})
        assert response.status_code == 201, response.text
        return response.headers["Location"]

    def send(
        self, erp_document_id: str, *, number: str | None = None, root: str = "Invoice", kind: str | None = "Electronic"
    ) -> str:
        """Upload a UBL file and send it; return the outbound document id."""
        uri = self.upload(ubl(number or erp_document_id, root))
        response = self.http.post("documents/outbound", json=send_body(uri, erp_document_id, kind))
        assert response.status_code == 201, response.text
        return response.headers["Location"].rsplit("/", 1)[1]

    def document(self, document_id: str) -> dict[str, Any]:
        """Return one outbound document."""
        response = self.http.get(f"documents/outbound/{document_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def list(self, **body: Any) -> dict[str, Any]:
        """Return one page of ``documents/outbound/list``."""
        response = self.http.post("documents/outbound/list", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def by_erp_id(self, erp_document_id: str, body: Any = None) -> httpx.Response:
        """``POST invoices/outbound/byerpid/{erpId}`` with the body public clients send."""
        path = f"invoices/outbound/byerpid/{erp_document_id.replace('/', '%2F')}"
        return self.http.post(path, json={"includeFileInfo": False} if body is None else body)

    def lookup(self, **body: Any) -> dict[str, Any]:
        """Return the answer of ``buyerparties/lookup``."""
        response = self.http.post("buyerparties/lookup", json={"PartyId": "seller-1", **body})
        assert response.status_code == 200, response.text
        return response.json()


def send_body(uri: str, erp_document_id: Any, kind: str | None = "Electronic") -> dict[str, Any]:
    """Return a valid ``documents/outbound`` body for the delivery type ``kind``."""
    return {
        "sendDocumentAs": {
            "type": kind,
            "electronic": {"recipientId": "0007:5566778899"},
            "pdf": {"recipientEmail": "ap@buyer.example"},
            "paper": {},
        },
        "recipientInformation": {"orgNo": "556677-8899", "name": "Buyer AB", "recipientNo": "C-1", "countryCode": "SE"},
        "document": {"documentFormat": "bis3", "erpDocumentId": erp_document_id, "documentUri": uri, "language": "sv"},
    }


def wait_for(probe: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.02)
    pytest.fail("condition not met in time")


def uid() -> str:
    """Return a unique erpDocumentId."""
    return f"INV-{uuid.uuid4().hex[:12]}"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_STOCKHOLM = ZoneInfo("Europe/Stockholm")

#: The notations of the simulator's times: date, time, 3, 6 or 7 fractional digits, then ``Z``,
#: ``+00:00``, Stockholm's ``+01:00``/``+02:00`` or nothing (UTC). Nothing else is accepted.
API_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<clock>\d{2}:\d{2}:\d{2})\.(?P<fraction>\d{3}|\d{6}|\d{7})"
    r"(?P<offset>Z|\+00:00|\+01:00|\+02:00)?"
)


def notation(text: str) -> tuple[str, int]:
    """Return the offset notation (``Z``, ``+00:00``, ``Stockholm`` or ``none``) and digits of an API time."""
    match = API_TIME.fullmatch(text)
    assert match, f"not an API time: {text!r}"
    offset = match["offset"] or "none"
    return ("Stockholm" if offset in ("+01:00", "+02:00") else offset), len(match["fraction"])


def ticks(text: str) -> int:
    """Return an API time as epoch ticks of 100 ns, parsed strictly (see :data:`API_TIME`).

    A time without offset is UTC; one with ``+01:00``/``+02:00`` must carry Stockholm's offset at
    that instant.
    """
    match = API_TIME.fullmatch(text)
    assert match, f"not an API time: {text!r}"
    wall = datetime.strptime(f"{match['date']}T{match['clock']}", "%Y-%m-%dT%H:%M:%S")
    offset_text = match["offset"] or "Z"
    hours = 0 if offset_text in ("Z", "+00:00") else int(offset_text[1:3])
    moment = wall.replace(tzinfo=timezone.utc) - timedelta(hours=hours)
    if hours:
        local = moment.astimezone(_STOCKHOLM)
        assert local.utcoffset() == timedelta(hours=hours), f"{text!r} does not carry Stockholm's offset"
        assert local.replace(tzinfo=None) == wall
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds * 10_000_000 + int(match["fraction"].ljust(7, "0"))


def micros(text: str) -> int:
    """Return an API time as epoch microseconds (strictly parsed; it must be a whole microsecond)."""
    value = ticks(text)
    assert value % 10 == 0, f"{text!r} is not a whole microsecond"
    return value // 10


def iso(value: int) -> str:
    """Return epoch microseconds as an API timestamp (UTC, microseconds, ``Z``)."""
    return (_EPOCH + timedelta(microseconds=value)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order_key(document: dict[str, Any]) -> tuple[int, str]:
    """Return the listing order of a document: current status time (as an instant), then id."""
    return micros(document["currentStatus"]["time"]), document["id"]


def status_times(document: dict[str, Any]) -> dict[str, int]:
    """Return each status of a document's history with its time in epoch microseconds."""
    return {entry["status"]: micros(entry["time"]) for entry in document["statusHistory"]}
