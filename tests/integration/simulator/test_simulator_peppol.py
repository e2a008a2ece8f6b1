"""The simulator's Peppol rules (``--peppol-rules``): a document that breaks a fatal rule is accepted,
sent, and ends ``Error`` with the rules in ``error.message``; a valid one passes to its normal
statuses; warnings stop nothing; a rules folder the simulator cannot use stops it at start.

The module's simulator runs stand-in rules (``dispatch_testing.peppol_rules.stand_in_rules``) that
stop the documents numbered ``BAD-1`` and warn about every document; one test runs the official rules
(release 3.0.19) over a golden document of the builder and a broken copy of it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from dispatch_testing.peppol_rules import official_rules_folder, stand_in_rules
from inexchange_devkit.simulator.config import SimulatorConfig
from inexchange_devkit.simulator.testing import SimulatorHandle, run_simulator
from dispatch_testing.sim_client import Client, send_body, ubl, uid, wait_for

pytestmark = pytest.mark.integration

BAD = "BAD-1"
RULE_TEXT = f"[TEST-R001]-Testregeln stoppar dokument {BAD}"
GOLDEN = Path(__file__).resolve().parents[2] / "unit" / "golden"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stand_in_rules(tmp_path_factory.mktemp("rules"), fatal_for=BAD)


@pytest.fixture(scope="module")
def sim(rules: Path) -> Iterator[SimulatorHandle]:
    """The module's simulator (the conftest's fixtures reset it before each test), with stand-in rules."""
    with run_simulator(seed=42, peppol_rules=rules) as handle:
        yield handle


def statuses(document: dict[str, Any]) -> list[str]:
    return [entry["status"] for entry in document["statusHistory"]]


@pytest.mark.usefixtures("documented")
def test_a_valid_document_passes_to_its_normal_statuses(sim: SimulatorHandle, client: Client, rules: Path) -> None:
    sim.configure(status_step_ms=150)
    document_id = client.send(uid(), number="GOOD-1")  # the stand-in rules warn about it: warnings stop nothing

    final = wait_for(lambda: (d := client.document(document_id))["currentStatus"]["status"] == "Delivered" and d)
    assert statuses(final) == ["PendingInPlatform", "Pending", "Delivered"]
    assert final["error"] is None
    stats = sim.stats()
    assert stats["peppol"]["folder"] == str(rules.resolve())
    assert (stats["peppol"]["checked"], stats["peppol"]["failed"], stats["peppol"]["errors"]) == (1, 0, 0)
    assert stats["peppol_errors"] == []
    assert sim.configure()["peppol_rules"] == str(rules.resolve())


@pytest.mark.usefixtures("documented")
def test_a_broken_document_is_accepted_then_ends_error_with_the_rules(sim: SimulatorHandle, client: Client) -> None:
    sim.configure(status_step_ms=150)
    erp_id = uid()
    upload = client.http.post("documents", content=ubl(BAD), headers={"Content-Type": "application/xml"})
    assert upload.status_code == 201  # accepted: the rules fail the processing, not the upload
    sent = client.http.post("documents/outbound", json=send_body(upload.headers["Location"], erp_id))
    assert sent.status_code == 201  # and the send
    document_id = sent.headers["Location"].rsplit("/", 1)[1]

    first = client.document(document_id)
    assert first["currentStatus"]["status"] == "PendingInPlatform" and first["error"] is None
    final = wait_for(lambda: (d := client.document(document_id))["currentStatus"]["status"] == "Error" and d)
    assert statuses(final) == ["PendingInPlatform", "Pending", "Error"]  # never Delivered
    error = final["error"]
    assert error["status"] == "ValidationFailed" and error["moreInfoUri"] is None
    assert error["message"] == f"The document breaks the Peppol BIS Billing 3.0 rules: TEST-R001: {RULE_TEXT}"
    assert "TEST-W001" not in error["message"]  # warnings are not named

    # the listing and the look-up by ERP id show the same error
    listed = client.list(includeErrorInfo=True)["documents"]
    assert [(d["id"], d["error"]) for d in listed] == [(document_id, error)]
    assert client.by_erp_id(erp_id).json()["error"] == error
    stats = sim.stats()
    assert stats["sends"] == {erp_id: 1}
    assert stats["statuses"] == {"Error": 1}
    assert stats["peppol_errors"] == [erp_id]
    assert (stats["peppol"]["checked"], stats["peppol"]["failed"], stats["peppol"]["errors"]) == (1, 1, 1)


def test_the_rules_come_before_the_seeded_outcomes_and_the_duplicate_check(
        sim: SimulatorHandle, client: Client) -> None:
    sim.configure(stop_rate=1.0)  # every valid document ends Stopped
    broken = client.document(client.send(uid(), number=BAD))
    valid = client.document(client.send(uid(), number="GOOD-2"))
    assert (broken["currentStatus"]["status"], broken["error"]["status"]) == ("Error", "ValidationFailed")
    assert valid["currentStatus"]["status"] == "Stopped"

    sim.configure(stop_rate=0.0)
    again = client.document(client.send(uid(), number=BAD))  # still broken: Error again, not a duplicate
    assert (again["currentStatus"]["status"], again["error"]["status"]) == ("Error", "ValidationFailed")


def test_a_document_that_is_not_xml_ends_error(sim: SimulatorHandle, client: Client) -> None:
    for content in (b"%PDF-1.7 not a UBL document", b"<Invoice><cbc:ID>1</Invoice>", "ä".encode("latin-1")):
        uri = client.upload(content)
        response = client.http.post("documents/outbound", json=send_body(uri, uid()))
        assert response.status_code == 201
        document = client.document(response.headers["Location"].rsplit("/", 1)[1])
        assert document["currentStatus"]["status"] == "Error"
        assert document["error"]["status"] == "ValidationFailed"
        assert document["error"]["message"].startswith("The document could not be read: "), document["error"]


def test_many_documents_at_once_each_get_their_own_verdict(sim: SimulatorHandle, client: Client) -> None:
    numbers = [BAD if n % 5 == 0 else f"N-{n}" for n in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda number: (number, client.send(uid(), number=number)), numbers))
    outcomes = {number: client.document(document_id)["currentStatus"]["status"] for number, document_id in ids}
    assert {s for n, s in outcomes.items() if n == BAD} == {"Error"}
    assert {s for n, s in outcomes.items() if n != BAD} == {"Delivered"}
    stats = sim.stats()
    assert len(stats["peppol_errors"]) == sum(1 for n in numbers if n == BAD)
    assert stats["peppol"]["checked"] == len(numbers)


def test_reset_starts_the_counts_again(sim: SimulatorHandle, client: Client) -> None:
    client.send(uid(), number=BAD)
    sim.reset()
    stats = sim.stats()
    assert (stats["peppol"]["checked"], stats["peppol"]["errors"], stats["peppol_errors"]) == (0, 0, [])
    assert stats["peppol"]["cpu_ms_per_document"] is None


def test_without_the_option_nothing_is_checked() -> None:
    with run_simulator(status_step_ms=0, stop_rate=0.0, error_rate=0.0) as plain:
        api = Client(plain)
        try:
            document = api.document(api.send(uid(), number=BAD))
        finally:
            api.close()
        stats = plain.stats()
        settings = plain.configure()
    assert (document["currentStatus"]["status"], document["error"]) == ("Delivered", None)
    assert stats["peppol"] is None and stats["peppol_errors"] == []
    assert settings["peppol_rules"] is None


# The official rules --------------------------------------------------------------------------------


def _broken(document: bytes) -> bytes:
    """The document without BuyerReference (PEPPOL-EN16931-R003) and with a PayableAmount that is not
    the sum (BR-CO-16)."""
    root = etree.fromstring(document)
    reference = root.find(f"{{{CBC}}}BuyerReference")
    assert reference is not None
    root.remove(reference)
    next(root.iter(f"{{{CBC}}}PayableAmount")).text = "1.00"
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_the_official_rules_pass_a_golden_document_and_stop_a_broken_copy(capsys: pytest.CaptureFixture[str]) -> None:
    folder = official_rules_folder()
    golden = sorted(GOLDEN.glob("*.xml"))
    assert golden, GOLDEN

    def sent(sim: SimulatorHandle, erp_id: str, content: bytes) -> dict[str, Any]:
        api = Client(sim, erp_id=erp_id)  # one sender each: golden documents share invoice numbers
        try:
            uri = api.upload(content)
            response = api.http.post("documents/outbound", json=send_body(uri, uid()))
            assert response.status_code == 201, response.text
            return api.document(response.headers["Location"].rsplit("/", 1)[1])
        finally:
            api.close()

    with run_simulator(status_step_ms=0, stop_rate=0.0, error_rate=0.0, peppol_rules=folder) as official:
        passed = {path.name: sent(official, path.stem, path.read_bytes()) for path in golden}
        broken = sent(official, "broken", _broken((GOLDEN / "debit.xml").read_bytes()))
        stats = official.stats()

    assert {name: (d["currentStatus"]["status"], d["error"]) for name, d in passed.items()} == dict.fromkeys(
        passed, ("Delivered", None))
    assert broken["currentStatus"]["status"] == "Error"
    message = broken["error"]["message"]
    assert message.startswith("The document breaks the Peppol BIS Billing 3.0 rules: "), message
    assert "BR-CO-16: " in message and "PEPPOL-EN16931-R003: " in message, message
    with capsys.disabled():
        print(f"\nofficial Peppol rules in the simulator: {stats['peppol']['cpu_ms_per_document']} ms CPU per "
              f"document over {stats['peppol']['checked']} documents")


# Start-up ------------------------------------------------------------------------------------------


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inexchange_devkit.simulator", "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def test_a_folder_that_is_not_there_fails_at_start(tmp_path: Path) -> None:
    result = _start("--peppol-rules", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "SIMULATOR_URL" not in result.stdout
    assert f"--peppol-rules: {tmp_path / 'nowhere'} is not a folder" in result.stderr, result.stderr


def test_a_folder_without_the_stylesheets_fails_at_start(tmp_path: Path, rules: Path) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "CEN-EN16931-UBL.xsl").write_bytes((rules / "CEN-EN16931-UBL.xsl").read_bytes())
    result = _start("--peppol-rules", str(folder))
    assert result.returncode == 2
    assert f"the folder {folder} lacks PEPPOL-EN16931-UBL.xsl" in result.stderr, result.stderr
    with pytest.raises(ValueError, match=r"lacks PEPPOL-EN16931-UBL\.xsl"):
        SimulatorConfig(peppol_rules=folder)


def test_a_stylesheet_that_does_not_compile_fails_at_start(tmp_path: Path, rules: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "CEN-EN16931-UBL.xsl").write_bytes((rules / "CEN-EN16931-UBL.xsl").read_bytes())
    (folder / "PEPPOL-EN16931-UBL.xsl").write_text("<xsl:stylesheet this is not XSLT", encoding="utf-8")
    result = _start("--peppol-rules", str(folder))
    assert result.returncode == 2 and "SIMULATOR_URL" not in result.stdout
    assert f"--peppol-rules: {folder / 'PEPPOL-EN16931-UBL.xsl'} does not compile" in result.stderr, result.stderr
    with pytest.raises(RuntimeError, match=r"exited with code 2 before listening"), run_simulator(peppol_rules=folder):
        pass


def test_without_saxonche_the_option_fails_at_start(tmp_path: Path, rules: Path) -> None:
    shadow = tmp_path / "no-saxon"
    shadow.mkdir()
    (shadow / "saxonche.py").write_text("raise ImportError(\"No module named 'saxonche'\")\n", encoding="utf-8")
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")]))}
    result = _start("--peppol-rules", str(rules), env=env)
    assert result.returncode == 2
    assert "--peppol-rules needs Saxon-HE for Python: install saxonche" in result.stderr, result.stderr
    assert _start("--help", env=env).returncode == 0  # without the option saxonche is not needed
