"""Reply variants: the fields the client uses keep their documented shape, the others vary as documented.

One set of 200 documents and 80 lookups is made once for the module (in the documented shape, the
baseline), then read back in each variant: page by page, one by one and by erpDocumentId.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from inexchange_devkit.simulator.testing import SimulatorHandle
from dispatch_testing.sim_client import DEFAULTS, Client, micros, notation

pytestmark = pytest.mark.integration

DOCUMENT_KEYS = {"id", "documentType", "erpDocumentId", "created", "currentStatus", "statusHistory",
                 "sendDocumentAs", "recipientInformation", "error"}
STATUS_KEYS = {"status", "time"}
ERROR_KEYS = {"status", "message", "moreInfoUri"}
PARTY_KEYS = {"companyId", "name", "orgNo", "vatNo", "gln", "peppolParticipantIdentifiers",
              "receiveElectronicInvoiceCapability"}
LOOKUP_KEYS = {"parties", "potentialMatches", "exactHit"}
PAGE_KEYS = {"documents", "totalCount"}
SPARSE_DOCUMENT_FIELDS = ("documentType", "statusHistory", "created", "sendDocumentAs", "recipientInformation")
SPARSE_PARTY_FIELDS = ("name", "orgNo", "vatNo", "gln", "peppolParticipantIdentifiers")
DOCUMENTS = 200
PAGE = 20


def kind(value: Any) -> str:
    """Name the JSON type of a value (``bool`` apart from ``int``)."""
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}[type(value)]


def kind_of(obj: dict[str, Any], name: str) -> str:
    """Name the JSON type of ``obj[name]``, or ``missing``."""
    return kind(obj[name]) if name in obj else "missing"


@dataclass
class Corpus:
    """The module's documents and lookups, as the documented variant answered them."""

    client: Client
    documents: dict[str, dict[str, Any]]
    lookups: list[tuple[dict[str, Any], dict[str, Any]]]


@dataclass
class Seen:
    """What one variant's replies looked like: every observation as ``"where:what"``."""

    marks: set[str] = field(default_factory=set)
    extra_kinds: set[str] = field(default_factory=set)

    def extras(self, where: str, obj: dict[str, Any], documented: set[str]) -> None:
        """Note the extra keys of ``obj`` and the JSON types of their values."""
        added = set(obj) - documented
        if added:
            self.marks.add(f"{where}:extra")
        for name in added:
            value = obj[name]
            self.extra_kinds.add(kind(value))
            if isinstance(value, list) and any(isinstance(item, list) for item in value):
                self.extra_kinds.add("nested list")


@pytest.fixture(scope="module")
def corpus(sim: SimulatorHandle) -> Iterator[Corpus]:
    """Send 200 documents (some stopped or failed, some of undocumented types or statuses) and look up 80 parties."""
    sim.reset()
    sim.configure(**{**DEFAULTS, "reply_variant": "documented", "stop_rate": 0.1, "error_rate": 0.1,
                     "unknown_type_rate": 0.1, "unknown_status_rate": 0.1})
    sim.register_parties([
        {"orgNo": "5569990001", "name": "Variant Alpha AB"},
        {"orgNo": "5569990002", "name": "Variant Beta AB", "gln": "7300009990002"},
        {"vatNo": "SE556999000301", "name": "Variant Gamma AB",
         "receiveElectronicInvoiceCapability": "NotReceivingElectronicInvoices"},
    ])
    client = Client(sim, erp_id="erp-variants")
    kinds = ("Electronic", "Pdf", "Paper", None)
    for n in range(DOCUMENTS):
        client.send(f"VARIANT-{n}", kind=kinds[n % 4], root="CreditNote" if n % 7 == 0 else "Invoice")
    documents = {d["id"]: d for d in client.list(take=1000, includeErrorInfo=True)["documents"]}
    assert len(documents) == DOCUMENTS
    queries: list[dict[str, Any]] = [{"orgNo": f"556000{n:04d}"} for n in range(60)]
    queries += [{"orgNo": f"556000-{n:04d}"} for n in range(60, 70)]
    queries += [{"gln": "7300009012345"}, {"gln": "7300009990002"}, {"vatNo": "SE556999000301"}, {"gln": "12"}]
    queries += [{"name": "variant"}, {"name": "variant x"}, {"name": "nobody"}, {"orgNo": "5569990001"}]
    queries += [{"name": "Variant"}, {"name": "beta"}]
    lookups = [(query, client.lookup(**query)) for query in queries]
    try:
        yield Corpus(client, documents, lookups)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def clean(sim: SimulatorHandle, corpus: Corpus, started_variant: str) -> None:
    """Keep the module's documents; restore the settings before every test."""
    sim.configure(**DEFAULTS, reply_variant=started_variant)


def check_document(seen: Seen, document: dict[str, Any], baseline: dict[str, dict[str, Any]]) -> None:
    """Check the used fields of a document against the baseline; note how the unused ones look."""
    assert isinstance(document, dict)
    assert isinstance(document["id"], str)
    expected = baseline[document["id"]]
    assert isinstance(document["erpDocumentId"], str) and document["erpDocumentId"] == expected["erpDocumentId"]
    status = document["currentStatus"]
    assert isinstance(status, dict)
    assert isinstance(status["status"], str) and status["status"] == expected["currentStatus"]["status"]
    assert isinstance(status["time"], str)
    assert micros(status["time"]) == micros(expected["currentStatus"]["time"])
    assert notation(status["time"]) == notation(expected["currentStatus"]["time"])
    seen.extras("currentStatus", status, STATUS_KEYS)
    if expected["error"] is not None:
        error = document["error"]
        assert isinstance(error, dict)
        assert isinstance(error["status"], str) and error["status"] == expected["error"]["status"]
        assert isinstance(error["message"], str) and error["message"] == expected["error"]["message"]
        seen.extras("error", error, ERROR_KEYS)
    else:
        seen.marks.add(f"error:{kind_of(document, 'error')}")
    for name in SPARSE_DOCUMENT_FIELDS:
        seen.marks.add(f"{name}:{kind_of(document, name)}")
    history = document.get("statusHistory")
    if isinstance(history, list):
        assert [item["status"] for item in history] == [item["status"] for item in expected["statusHistory"]]
        for item in history:
            seen.extras("statusHistory", item, STATUS_KEYS)
    recipient = document.get("recipientInformation")
    if isinstance(recipient, dict):
        seen.marks.add(f"recipient.orgNo:{kind_of(recipient, 'orgNo')}")
    if isinstance(document.get("created"), int):
        # epoch milliseconds of the same instant
        assert document["created"] == micros(expected["created"]) // 1000
    if isinstance(document.get("documentType"), str):
        assert document["documentType"] == expected["documentType"]
    seen.extras("document", document, DOCUMENT_KEYS)


def check_lookup(seen: Seen, answer: dict[str, Any], expected: dict[str, Any]) -> None:
    """Check the used fields of a lookup against the baseline; note how the unused ones look."""
    assert isinstance(answer, dict)
    assert type(answer["exactHit"]) is bool and answer["exactHit"] == expected["exactHit"]
    parties = answer["parties"]
    if expected["parties"] is None:
        assert parties is None
    else:
        assert isinstance(parties, list) and len(parties) == len(expected["parties"])
        for party, documented in zip(parties, expected["parties"]):
            assert isinstance(party["companyId"], str) and party["companyId"] == documented["companyId"]
            capability = party["receiveElectronicInvoiceCapability"]
            assert isinstance(capability, str) and capability == documented["receiveElectronicInvoiceCapability"]
            for name in SPARSE_PARTY_FIELDS:
                seen.marks.add(f"party.{name}:{kind_of(party, name)}")
            identifiers = party.get("peppolParticipantIdentifiers")
            if isinstance(identifiers, list):
                seen.marks.update(f"party.peppolId:{kind(item)}" for item in identifiers)
            seen.extras("party", party, PARTY_KEYS)
    matches = kind_of(answer, "potentialMatches")
    seen.marks.add(f"potentialMatches:{matches}")
    if matches == "int":
        assert answer["potentialMatches"] == expected["potentialMatches"]
    seen.extras("lookup", answer, LOOKUP_KEYS)


def observe(sim: SimulatorHandle, corpus: Corpus, variant: str) -> Seen:
    """Read every document and lookup of the corpus back in ``variant``, checking the used fields."""
    sim.configure(reply_variant=variant)
    client, seen = corpus.client, Seen()
    listed = []
    for skip in range(0, DOCUMENTS, PAGE):
        page = client.list(take=PAGE, skip=skip, includeErrorInfo=True)
        assert isinstance(page["documents"], list) and type(page["totalCount"]) is int
        assert page["totalCount"] == DOCUMENTS
        seen.extras("page", page, PAGE_KEYS)
        for document in page["documents"]:
            check_document(seen, document, corpus.documents)
        listed += [document["id"] for document in page["documents"]]
    assert sorted(listed) == sorted(corpus.documents)
    for document_id in list(corpus.documents)[::20]:
        check_document(seen, client.document(document_id), corpus.documents)
        found = client.by_erp_id(corpus.documents[document_id]["erpDocumentId"])
        assert found.status_code == 200
        check_document(seen, found.json(), corpus.documents)
    missing = client.by_erp_id("VARIANT-NEVER-SENT")
    assert missing.status_code == 404 and missing.json() == {"message": "No invoice found"}
    for query, expected in corpus.lookups:
        check_lookup(seen, client.lookup(**query), expected)
    for _ in range(3):
        token = httpx.post(f"{sim.base_url}clientTokens/create", headers={"APIKey": sim.api_key},
                           json={"erpId": "erp-variants-token"}).json()
        assert isinstance(token["token"], str) and token["token"]
        seen.extras("token", token, {"token"})
    return seen


#: What the documented variant shows of every unused field.
DOCUMENTED = {
    "documentType:str", "created:str", "statusHistory:list", "sendDocumentAs:str", "sendDocumentAs:null",
    "recipientInformation:dict", "error:null", "recipient.orgNo:str", "potentialMatches:int",
    "party.name:str", "party.orgNo:str", "party.orgNo:null", "party.vatNo:str", "party.vatNo:null",
    "party.gln:str", "party.gln:null", "party.peppolParticipantIdentifiers:list", "party.peppolId:str",
}
#: What a variant must show (each at least once), on top of documented values.
REQUIRED = {
    "sparse": {f"{name}:{how}" for name in (*SPARSE_DOCUMENT_FIELDS, "error", "potentialMatches")
               for how in ("null", "missing")}
    | {f"party.{name}:{how}" for name in SPARSE_PARTY_FIELDS for how in ("null", "missing")},
    "loose": {"potentialMatches:bool", "party.peppolId:dict", "documentType:int", "statusHistory:extra",
              "party.orgNo:int", "recipient.orgNo:int", "created:int"},
    "extra": {f"{where}:extra" for where in ("page", "document", "currentStatus", "statusHistory", "error",
                                             "party", "lookup", "token")},
}
#: What a variant may show besides the documented values.
ALLOWED = {
    "documented": set(),
    "sparse": REQUIRED["sparse"],
    "loose": REQUIRED["loose"],
    "extra": REQUIRED["extra"],
    "mixed": REQUIRED["sparse"] | REQUIRED["loose"] | REQUIRED["extra"],
}


def test_documented_variant_answers_exactly_the_baseline(sim: SimulatorHandle, corpus: Corpus) -> None:
    seen = observe(sim, corpus, "documented")
    assert seen.marks == DOCUMENTED
    sim.configure(reply_variant="documented")
    assert {d["id"]: d for d in corpus.client.list(take=1000, includeErrorInfo=True)["documents"]} == corpus.documents
    assert [corpus.client.lookup(**query) for query, _ in corpus.lookups] == [answer for _, answer in corpus.lookups]
    # potentialMatches counts the parties a search by name matched
    by_name = {query["name"]: answer for query, answer in corpus.lookups if "name" in query}
    assert {name: answer["potentialMatches"] for name, answer in by_name.items()} == {
        "variant": 3, "variant x": 0, "nobody": 0, "Variant": 3, "beta": 1}
    assert by_name["nobody"]["parties"] is None


@pytest.mark.parametrize("variant", ["sparse", "loose", "extra"])
def test_each_variant_keeps_the_used_fields_and_varies_the_others(
    sim: SimulatorHandle, corpus: Corpus, variant: str
) -> None:
    seen = observe(sim, corpus, variant)
    assert REQUIRED[variant] <= seen.marks, sorted(REQUIRED[variant] - seen.marks)
    assert seen.marks <= DOCUMENTED | ALLOWED[variant], sorted(seen.marks - DOCUMENTED - ALLOWED[variant])
    if variant == "extra":
        assert {"str", "int", "float", "bool", "null", "dict", "list", "nested list"} <= seen.extra_kinds


def test_mixed_draws_a_variant_for_each_reply(sim: SimulatorHandle, corpus: Corpus) -> None:
    before = sim.stats(per_document=False)["reply_variants"]
    seen = observe(sim, corpus, "mixed")
    drawn = sim.stats(per_document=False)["reply_variants"]
    counts = {name: drawn.get(name, 0) - before.get(name, 0) for name in ("documented", "sparse", "loose", "extra")}
    # 10 pages, 10 documents, 10 by erpDocumentId (a miss is not shaped), the lookups and 3 tokens
    assert sum(counts.values()) == 10 + 10 + 10 + len(corpus.lookups) + 3
    assert all(count >= 15 for count in counts.values()), counts
    assert seen.marks <= DOCUMENTED | ALLOWED["mixed"]
    for variant in ("sparse", "loose", "extra"):
        assert seen.marks & REQUIRED[variant], variant

