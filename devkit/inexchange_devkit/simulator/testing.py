"""Start the simulator in a subprocess for tests and benchmarks.

>>> with run_simulator(seed=7, status_step_ms=50) as sim:  # doctest: +SKIP
...     httpx.post(sim.base_url + "clientTokens/create", headers={"APIKey": sim.api_key}, json={"erpId": "a"})
...     sim.stats()["sends"]
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import httpx

URL_PREFIX = "SIMULATOR_URL="
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_PLUGINS_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SimulatorHandle:
    """A running simulator: its URLs, its API key and helpers for the ``/_sim`` routes."""

    base_url: str
    root_url: str
    api_key: str
    data_dir: Path
    process: subprocess.Popen[str]
    #: One connection pool for the ``/_sim`` helpers (a new ``httpx.Client`` costs ~20 ms); closed
    #: when :func:`run_simulator` ends.
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0), repr=False, compare=False)

    def _sim(self, method: str, path: str, json: Any = None) -> Any:
        response = self.http.request(method, f"{self.root_url}_sim/{path}", json=json)
        response.raise_for_status()
        return response.json()

    def stats(self, *, per_document: bool = True) -> dict[str, Any]:
        """Return ``GET /_sim/stats``: sends per erpDocumentId, duplicates, counters, holds.

        Among the counters: ``unknown_types`` and ``unknown_statuses`` (documents sent with an
        undocumented type or status), ``replies`` (replies shaped by the reply variant) and
        ``reply_variants`` (how many of them each variant shaped; ``mixed`` draws one per reply).
        With Peppol rules, ``peppol`` holds the check's figures (uploads ``checked``, ``failed``,
        ``cpu_ms``, ``cpu_ms_per_document``, ``errors``) and ``peppol_errors`` the erpDocumentIds of
        the sends that ended ``Error`` by the rules; without them ``peppol`` is ``None``.

        ``holds`` lists the installed holds and ``held`` maps each hold that requests wait on to
        their number, e.g. ``{"POST documents/outbound before": 1}``. Without ``per_document`` the
        answer leaves out ``sends`` and ``statuses``, which grow with the number of documents.
        """
        return dict(self._sim("GET", "stats" if per_document else "stats?documents=false"))

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change runtime settings and return the settings now in force.

        Accepted (see ``python -m inexchange_devkit.simulator --help``): ``fault_rate``, ``faults``,
        ``latency_ms``, ``timeout_ms``, ``status_step_ms``, ``stop_rate``, ``error_rate``,
        ``slow_rate``, ``slow_factor``, ``stuck_rate``, ``stuck_ms``, ``fuzz_shapes``,
        ``drip_max_s``, ``token_ttl_s``, ``reply_variant``, ``unknown_type_rate``,
        ``unknown_status_rate`` and ``invoice_check_rate``.
        """
        return dict(self._sim("POST", "config", json=settings))

    def tokens(self) -> list[dict[str, Any]]:
        """Return ``GET /_sim/tokens``: every client token issued, oldest first.

        Each is ``{"token", "erpId", "expiresAt", "revoked", "expired"}``; the API key is
        :attr:`api_key` (also in the route's answer as ``apiKey``).
        """
        return list(self._sim("GET", "tokens")["tokens"])

    def reset(self) -> None:
        """Forget documents, counters and registered parties, release holds (client tokens stay valid)."""
        self._sim("POST", "reset")

    def hold(self, path: str, phase: str = "before", method: str = "POST") -> str:
        """Hold the requests to ``path`` (below ``/v1/api/``, e.g. ``documents/outbound``) until :meth:`release`.

        A request held ``before`` waits before it is processed; one held ``after`` is processed, then
        waits before it is answered. Returns the key of the hold in ``stats()["held"]``, e.g.
        ``"POST documents/outbound before"``.
        """
        return str(self._sim("POST", "hold", json={"path": path, "phase": phase, "method": method})["hold"])

    def release(self, *, drop: bool = False) -> int:
        """Let every held request go on, remove every hold and return how many requests were held.

        With ``drop`` the held requests end with a broken connection instead (a request held
        ``before`` is then never processed).
        """
        return int(self._sim("DELETE", "hold?drop=true" if drop else "hold")["released"])

    def wait_held(self, key: str, count: int = 1, timeout: float = 10.0) -> int:
        """Wait until at least ``count`` requests are held under ``key`` and return their number.

        Raises ``TimeoutError`` when that does not happen within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            held = self.stats(per_document=False)["held"]
            waiting = int(held.get(key, 0))
            if waiting >= count:
                return waiting
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{waiting} request(s) held under {key!r} after {timeout:g} s, expected at least {count};"
                    f" held now: {held or 'none'}"
                )
            time.sleep(0.02)

    def register_parties(self, parties: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Register buyer parties that lookups return before the seed-derived registry.

        A party may carry ``invoiceChecks`` (``buyerReferenceNo``, ``buyerReferenceName``, ``buyerOrderNo``,
        ``buyerName``: booleans) and ``hasInvoiceChecks`` (by default whether any check is on): a document
        sent to it that lacks a demanded reference ends ``Stopped``.
        """
        return list(self._sim("POST", "parties", json=list(parties))["parties"])


def _pump_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Forward the subprocess's output lines to a queue; ``None`` marks the end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def _wait_for_url(process: subprocess.Popen[str], lines: queue.Queue[str | None], timeout: float) -> str:
    try:
        while True:
            line = lines.get(timeout=timeout)
            if line is None:
                break
            if line.startswith(URL_PREFIX):
                return line[len(URL_PREFIX) :].strip()
    except queue.Empty:
        raise TimeoutError(f"the simulator did not report its URL within {timeout:.0f} s") from None
    process.wait(timeout=STOP_TIMEOUT_S)
    raise RuntimeError(f"the simulator exited with code {process.returncode} before listening")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def simulator_command(
    *,
    seed: int,
    latency_ms: float,
    fault_rate: float,
    faults: Iterable[str] | None,
    status_step_ms: float,
    stop_rate: float,
    error_rate: float,
    api_key: str,
    data_dir: Path,
    timeout_ms: float = 3000.0,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Return the command line that starts the simulator on a free loopback port."""
    command = [
        sys.executable,
        "-m",
        "inexchange_devkit.simulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--seed",
        str(seed),
        "--latency-ms",
        str(latency_ms),
        "--fault-rate",
        str(fault_rate),
        "--timeout-ms",
        str(timeout_ms),
        "--status-step-ms",
        str(status_step_ms),
        "--stop-rate",
        str(stop_rate),
        "--error-rate",
        str(error_rate),
        "--api-key",
        api_key,
        "--data-dir",
        str(data_dir),
    ]
    if faults is not None:
        command += ["--faults", ",".join(faults)]
    return [*command, *extra_args]


@contextmanager
def run_simulator(
    *,
    seed: int = 42,
    latency_ms: float = 0,
    fault_rate: float = 0.0,
    faults: Iterable[str] | None = None,
    timeout_ms: float = 3000,
    status_step_ms: float = 200,
    stop_rate: float = 0.05,
    error_rate: float = 0.03,
    api_key: str = "sim-api-key",
    data_dir: str | Path | None = None,
    reply_variant: str | None = None,
    peppol_rules: str | Path | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[SimulatorHandle]:
    """Run ``python -m inexchange_devkit.simulator`` on a free loopback port for the ``with`` block.

    ``faults=None`` enables the default fault kinds, all but ``timeout`` and the hostile replies
    (``html``, ``garbled``, ``huge``, ``fuzz``); they only happen when ``fault_rate`` > 0. A
    ``timeout`` fault waits ``timeout_ms`` before processing. The process inherits the environment,
    so ``INEXCHANGE_SIM_VARIANT`` sets its reply variant unless ``reply_variant`` (or
    ``--reply-variant`` in ``extra_args``) names one. Without a
    ``data_dir`` the uploads go to a temporary folder removed afterwards. With ``peppol_rules`` (a
    folder of the Peppol BIS 3 validation artefacts, ``--peppol-rules``) every uploaded document is
    checked against those rules and a sent one that breaks a fatal rule ends ``Error``; a folder the
    simulator cannot use makes it exit at start (``RuntimeError`` here, the reason on standard
    error). The process is stopped
    (terminated, killed after a timeout) when the block ends, also on error. Its standard error is
    inherited, so a crash shows in the test output.
    """
    owns_directory = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="inexchange-sim-")) if data_dir is None else Path(data_dir)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PLUGINS_DIR), env.get("PYTHONPATH")]))
    command = simulator_command(
        seed=seed,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        faults=faults,
        timeout_ms=timeout_ms,
        status_step_ms=status_step_ms,
        stop_rate=stop_rate,
        error_rate=error_rate,
        api_key=api_key,
        data_dir=directory,
        extra_args=[
            *(["--reply-variant", reply_variant] if reply_variant else []),
            *(["--peppol-rules", str(peppol_rules)] if peppol_rules is not None else []),
            *extra_args,
        ],
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = cast(IO[str], process.stdout)
        threading.Thread(target=_pump_lines, args=(stdout, lines), daemon=True).start()
        base_url = _wait_for_url(process, lines, START_TIMEOUT_S)
        root_url = base_url[: -len("v1/api/")]
        handle = SimulatorHandle(base_url, root_url, api_key, directory, process)
        try:
            yield handle
        finally:
            handle.http.close()
    finally:
        _stop(process)
        if owns_directory:
            shutil.rmtree(directory, ignore_errors=True)
