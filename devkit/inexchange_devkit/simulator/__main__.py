"""Command line of the InExchange simulator: ``python -m inexchange_devkit.simulator --help``.

Once the server listens it prints exactly one line, ``SIMULATOR_URL=http://HOST:PORT/v1/api/``, to
standard output (and writes the URL to ``--url-file`` when given). SIGTERM or SIGINT stop it; requests
held by ``/_sim/hold`` are released then and ``fuzz`` replies still dripping end, so that they do not
keep the server from stopping.

``--reply-variant`` chooses the shapes of the fields a client does not use (see
:mod:`inexchange_devkit.simulator.variants`): ``documented`` (the default), ``sparse``, ``loose``, ``extra`` or
``mixed``. Its default is read from the environment variable ``INEXCHANGE_SIM_VARIANT`` when set, so
that ``INEXCHANGE_SIM_VARIANT=sparse make test`` runs the whole test suite against that variant.

``--peppol-rules FOLDER`` checks every uploaded document against the Peppol BIS 3 rules in FOLDER
(see :mod:`inexchange_devkit.simulator.peppol`); without saxonche, or with a folder that lacks the
stylesheets or whose stylesheets do not compile, the simulator fails at start (exit code 2) naming
the problem.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

import uvicorn

from inexchange_devkit.simulator.app import create_app
from inexchange_devkit.simulator.config import (
    DEFAULT_FAULTS,
    FAULT_KINDS,
    FUZZ_SHAPES,
    REPLY_VARIANTS,
    VARIANT_ENV,
    SimulatorConfig,
    default_reply_variant,
    parse_faults,
    parse_fuzz_shapes,
)
from inexchange_devkit.simulator.faults import DroppedConnectionLogFilter
from inexchange_devkit.simulator.peppol import PeppolRulesError


def _fault_kinds(text: str) -> tuple[str, ...]:
    try:
        return parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _fuzz_shapes(text: str) -> tuple[str, ...]:
    try:
        return parse_fuzz_shapes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


VARIANTS_HELP = f"""\
reply variants (--reply-variant; its default is ${VARIANT_ENV} when set, else documented):
  documented  the documented shapes: potentialMatches an integer count, parties null when none found,
              documentType a string; times in each document's notation (Z, +00:00, Europe/Stockholm
              offset or none meaning UTC; 3, 6 or 7 fractional digits; always the same instant)
  sparse      fields the client does not use null or missing (potentialMatches; a party's name, orgNo,
              vatNo, gln, peppolParticipantIdentifiers; a document's documentType, statusHistory,
              created, sendDocumentAs, recipientInformation, and error when it has none)
  loose       those fields in another plausible type: potentialMatches a bool, peppolParticipant-
              Identifiers objects, documentType an integer, statusHistory items with extra keys,
              orgNo a number, created epoch milliseconds
  extra       extra fields of every JSON type in replies, parties, documents, statuses and errors
  mixed       one of the four above, drawn for each reply
The fields the client uses (token, parties, exactHit, companyId, receiveElectronicInvoiceCapability,
a party's hasInvoiceChecks and invoiceChecks, and its name when it checks the buyer's name, documents,
totalCount, id, erpDocumentId, currentStatus.status/time, error.status/message, the Location headers,
the byerpid 404 message) keep their documented shape in every variant.
"""


def _reply_variant(text: str) -> str:
    if text.strip().lower() not in REPLY_VARIANTS:
        raise argparse.ArgumentTypeError(f"unknown reply variant {text!r}; known: {', '.join(REPLY_VARIANTS)}")
    return text.strip().lower()


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the simulator's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m inexchange_devkit.simulator",
        description="Serve a local simulation of the InExchange REST API v1.",
        epilog=VARIANTS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default)")
    parser.add_argument("--seed", type=int, default=42, help="seed of every random decision (default 42)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of every API request, ±20%% jitter")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability that an API request faults")
    parser.add_argument(
        "--faults",
        type=_fault_kinds,
        default=DEFAULT_FAULTS,
        help=(
            f"comma-separated fault kinds to inject, of {','.join(FAULT_KINDS)}"
            f" (default {','.join(DEFAULT_FAULTS)})"
        ),
    )
    parser.add_argument(
        "--timeout-ms", type=float, default=3000.0, help="wait of a request under a timeout fault (default 3000)"
    )
    parser.add_argument(
        "--status-step-ms", type=float, default=1000.0, help="time between two statuses of a document"
    )
    parser.add_argument("--stop-rate", type=float, default=0.05, help="share of documents that end Stopped")
    parser.add_argument("--error-rate", type=float, default=0.03, help="share of documents that end Error")
    parser.add_argument(
        "--slow-rate", type=float, default=0.0, help="share of documents whose status step is --slow-factor times longer"
    )
    parser.add_argument("--slow-factor", type=float, default=10.0, help="how many times slower a slow document is")
    parser.add_argument(
        "--stuck-rate", type=float, default=0.0, help="share of documents that stay Pending --stuck-ms longer"
    )
    parser.add_argument(
        "--stuck-ms", type=float, default=60_000.0, help="how much longer a stuck document stays Pending (default 60000)"
    )
    parser.add_argument(
        "--fuzz-shapes",
        type=_fuzz_shapes,
        default=FUZZ_SHAPES,
        help=f"comma-separated hostile replies a fuzz fault draws from, of {','.join(FUZZ_SHAPES)} (default all)",
    )
    parser.add_argument(
        "--drip-max-s", type=float, default=60.0, help="longest time a fuzz drip reply lasts (default 60)"
    )
    parser.add_argument(
        "--reply-variant",
        type=_reply_variant,
        default=None,
        help=(
            f"shapes of the fields the client does not use, of {','.join(REPLY_VARIANTS)}"
            f" (default ${VARIANT_ENV} when set, else documented; see below)"
        ),
    )
    parser.add_argument(
        "--unknown-type-rate",
        type=float,
        default=0.05,
        help="share of documents showing an undocumented documentType, e.g. EInvoice (default 0.05)",
    )
    parser.add_argument(
        "--unknown-status-rate",
        type=float,
        default=0.05,
        help="share of documents passing through an undocumented, never final status before their final one"
        " (default 0.05)",
    )
    parser.add_argument(
        "--invoice-check-rate",
        type=float,
        default=0.0,
        help="share of the derived receiving parties that demand references on every invoice (invoice checks,"
        " drawn per GLN or org number); a document sent to one without the reference ends Stopped (default 0)",
    )
    parser.add_argument("--api-key", default="sim-api-key", help="the APIKey that may create client tokens")
    parser.add_argument("--token-ttl-s", type=float, default=3600.0, help="lifetime of a client token")
    parser.add_argument("--data-dir", type=Path, help="where uploaded files go (default: a temporary folder)")
    parser.add_argument(
        "--upload-files",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write every uploaded file under --data-dir (default); --no-upload-files keeps only its type and number",
    )
    parser.add_argument(
        "--peppol-rules",
        type=Path,
        metavar="FOLDER",
        help="check every uploaded document against the Peppol BIS 3 rules in FOLDER (CEN-EN16931-UBL.xsl and"
        " PEPPOL-EN16931-UBL.xsl, needs saxonche): a sent document that breaks a fatal rule ends Error, with"
        " the rules in error.message (default: no check)",
    )
    parser.add_argument("--url-file", type=Path, help="also write the base URL into this file")
    return parser


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _write_url_file(path: Path, url: str) -> None:
    """Write the URL so that a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(url + "\n", encoding="utf-8")
    partial.replace(path)


async def serve(
    server: uvicorn.Server, sock: socket.socket, url_file: Path | None, on_exit: Callable[[], object] | None = None
) -> None:
    """Serve on ``sock`` until uvicorn receives SIGTERM or SIGINT; announce the URL once listening.

    ``on_exit`` is called once the server has been asked to stop, before it waits for the requests
    in progress to end.
    """
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.01)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/v1/api/"
    if url_file is not None:
        _write_url_file(url_file, url)
    print(f"SIMULATOR_URL={url}", flush=True)
    while not server.should_exit and not serving.done():
        await asyncio.wait({serving}, timeout=0.05)
    if on_exit is not None:
        on_exit()
    await serving


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    """End the process with status 0 on SIGTERM or SIGINT.

    While serving, uvicorn handles these signals itself (graceful shutdown) and re-raises them once
    it has stopped; this handler turns that, or a signal before uvicorn starts, into a clean exit.
    """
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the simulator; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="inexchange-sim-") as scratch:
        try:
            config = SimulatorConfig(
                seed=args.seed,
                latency_ms=args.latency_ms,
                fault_rate=args.fault_rate,
                faults=args.faults,
                timeout_ms=args.timeout_ms,
                status_step_ms=args.status_step_ms,
                stop_rate=args.stop_rate,
                error_rate=args.error_rate,
                slow_rate=args.slow_rate,
                slow_factor=args.slow_factor,
                stuck_rate=args.stuck_rate,
                stuck_ms=args.stuck_ms,
                fuzz_shapes=args.fuzz_shapes,
                drip_max_s=args.drip_max_s,
                api_key=args.api_key,
                token_ttl_s=args.token_ttl_s,
                data_dir=args.data_dir or Path(scratch),
                upload_files=args.upload_files,
                reply_variant=args.reply_variant or default_reply_variant(),
                unknown_type_rate=args.unknown_type_rate,
                unknown_status_rate=args.unknown_status_rate,
                invoice_check_rate=args.invoice_check_rate,
                peppol_rules=args.peppol_rules,
            )
        except ValueError as exc:
            parser.error(str(exc))
        try:
            sock = _listening_socket(args.host, args.port)
        except OSError as exc:
            print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        try:
            app = create_app(config)  # compiles the Peppol rules, when given, before listening
        except PeppolRulesError as exc:
            sock.close()
            parser.error(str(exc))
        server_config = uvicorn.Config(app, loop="auto", log_level="warning", access_log=False, lifespan="off")
        logging.getLogger("uvicorn.error").addFilter(DroppedConnectionLogFilter())
        for handled in (signal.SIGTERM, signal.SIGINT):
            signal.signal(handled, _exit_quietly)
        # uvicorn's loop factory picks uvloop when it is installed, as ``uvicorn.run`` does.
        with asyncio.Runner(loop_factory=server_config.get_loop_factory()) as runner:
            runner.run(serve(uvicorn.Server(server_config), sock, args.url_file, app.state.store.stop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
