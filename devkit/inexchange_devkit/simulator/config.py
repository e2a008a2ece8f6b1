"""Runtime configuration of the InExchange simulator.

The default reply variant is read from the environment variable ``INEXCHANGE_SIM_VARIANT`` when it
is set (and not empty), so that ``INEXCHANGE_SIM_VARIANT=sparse make test`` runs every simulator the
tests start, whichever way they start it, with that variant. An unknown value fails at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The kinds of injected faults, in the order they are reported by ``/_sim/stats``.
FAULT_KINDS: tuple[str, ...] = ("5xx", "429", "drop", "lost", "timeout", "html", "garbled", "huge", "fuzz")

#: The fault kinds enabled unless chosen otherwise; ``timeout`` and the hostile replies (``html``,
#: ``garbled``, ``huge``, ``fuzz``) must be asked for.
DEFAULT_FAULTS: tuple[str, ...] = ("5xx", "429", "drop", "lost")

#: The hostile replies a ``fuzz`` fault draws from (described in :mod:`inexchange_devkit.simulator.faults`),
#: in the order they are reported by ``/_sim/stats``. All are enabled unless chosen otherwise.
FUZZ_SHAPES: tuple[str, ...] = (
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

#: The reply variants (described in :mod:`inexchange_devkit.simulator.variants`): ``documented`` answers the
#: documented shapes; ``sparse``, ``loose`` and ``extra`` vary the fields the client does not use
#: (null or missing, another type, extra fields); ``mixed`` picks one of the four for each reply.
REPLY_VARIANTS: tuple[str, ...] = ("documented", "sparse", "loose", "extra", "mixed")

#: The environment variable that sets the default reply variant.
VARIANT_ENV = "INEXCHANGE_SIM_VARIANT"


def default_reply_variant() -> str:
    """Return the reply variant named by ``INEXCHANGE_SIM_VARIANT``, else ``documented``."""
    return os.environ.get(VARIANT_ENV, "").strip().lower() or "documented"


#: Settings that ``POST /_sim/config`` may change while the simulator runs.
RUNTIME_SETTINGS: tuple[str, ...] = (
    "fault_rate",
    "faults",
    "latency_ms",
    "timeout_ms",
    "status_step_ms",
    "stop_rate",
    "error_rate",
    "slow_rate",
    "slow_factor",
    "stuck_rate",
    "stuck_ms",
    "fuzz_shapes",
    "drip_max_s",
    "token_ttl_s",
    "reply_variant",
    "unknown_type_rate",
    "unknown_status_rate",
    "invoice_check_rate",
)


def _parse_names(value: str | Iterable[str] | None, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{what}s must be strings, got {item!r}")
        name = item.strip().lower()
        if not name:
            continue
        if name not in known:
            raise ValueError(f"unknown {what} {item!r}; known: {', '.join(known)}")
        if name not in names:
            names.append(name)
    return tuple(names)


def parse_faults(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Turn ``"5xx,429"`` or ``["5xx", "429"]`` into a tuple of known fault kinds.

    An empty string, an empty list or ``None`` enables no fault. Unknown kinds raise ``ValueError``.

    :param value: the kinds, comma-separated or as a list.
    """
    return _parse_names(value, FAULT_KINDS, "fault kind")


def parse_fuzz_shapes(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Turn ``"drip,xml"`` or ``["drip", "xml"]`` into a tuple of known ``fuzz`` shapes.

    An empty string, an empty list or ``None`` enables no shape (a ``fuzz`` fault then never
    happens). Unknown shapes raise ``ValueError``.

    :param value: the shapes, comma-separated or as a list.
    """
    return _parse_names(value, FUZZ_SHAPES, "fuzz shape")


def parse_reply_variant(value: Any) -> str:
    """Return a known reply variant (matched without regard to case); raise ``ValueError`` otherwise.

    :param value: the variant's name.
    """
    name = value.strip().lower() if isinstance(value, str) else value
    if name not in REPLY_VARIANTS:
        raise ValueError(f"unknown reply_variant {value!r}; known: {', '.join(REPLY_VARIANTS)}")
    return str(name)


def _rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number between 0 and 1")
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {rate}")
    return rate


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number")
    number = float(value)
    if number < 0:
        raise ValueError(f"{name} must not be negative, got {number}")
    return number


def _factor(name: str, value: Any) -> float:
    number = _non_negative(name, value)
    if number < 1:
        raise ValueError(f"{name} must be at least 1, got {number}")
    return number


@dataclass
class SimulatorConfig:
    """Everything that shapes the simulator's behaviour.

    ``seed`` makes the party registry, the document outcomes, the latency jitter and the fault
    sequence repeatable. Rates are probabilities between 0 and 1; durations are milliseconds except
    ``token_ttl_s`` and ``drip_max_s``. ``timeout_ms`` is how long a ``timeout`` fault keeps a request
    waiting before processing it.

    A share ``slow_rate`` of the documents takes ``slow_factor`` times ``status_step_ms`` between
    two statuses; a share ``stuck_rate`` stays ``Pending`` for ``stuck_ms`` more before it reaches
    its final status. Both are drawn per ``erpDocumentId`` from the seed when a document is sent.

    ``fuzz_shapes`` are the hostile replies a ``fuzz`` fault draws from; ``drip_max_s`` bounds how
    long a ``drip`` reply lasts. ``upload_files`` writes every uploaded file under
    ``data_dir/documents``; without it only a file's type, invoice number and size are kept (for runs
    with very many uploads). It cannot be changed at run time.

    ``reply_variant`` shapes the replies (see :data:`REPLY_VARIANTS`); its default comes from
    ``INEXCHANGE_SIM_VARIANT``. A share ``unknown_type_rate`` of the documents shows a
    ``documentType`` outside the documented ones, and a share ``unknown_status_rate`` passes through a
    status outside the documented ones (never final) between ``Pending`` and its final status; both
    are drawn per ``erpDocumentId`` from the seed when a document is sent.

    ``invoice_check_rate`` is the share of the derived parties that receive e-invoices and demand
    references on every invoice (invoice checks, drawn per GLN or org number from the seed; see
    :mod:`inexchange_devkit.simulator.registry`): 0 by default, so only parties registered with
    ``invoiceChecks`` have checks. A document sent to such a party without the reference ends ``Stopped``.

    ``peppol_rules`` names the folder of the Peppol BIS 3 validation artefacts (``CEN-EN16931-UBL.xsl``
    and ``PEPPOL-EN16931-UBL.xsl``): every uploaded document is then checked against them, and a sent
    document that breaks a fatal rule ends in ``Error`` (see :mod:`inexchange_devkit.simulator.peppol`).
    ``None`` (the default) checks nothing. It needs ``saxonche`` and cannot be changed at run time.
    """

    seed: int = 42
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = DEFAULT_FAULTS
    timeout_ms: float = 3000.0
    status_step_ms: float = 1000.0
    stop_rate: float = 0.05
    error_rate: float = 0.03
    slow_rate: float = 0.0
    slow_factor: float = 10.0
    stuck_rate: float = 0.0
    stuck_ms: float = 60_000.0
    fuzz_shapes: tuple[str, ...] = FUZZ_SHAPES
    drip_max_s: float = 60.0
    api_key: str = "sim-api-key"
    token_ttl_s: float = 3600.0
    data_dir: Path = field(default_factory=lambda: Path("."))
    upload_files: bool = True
    reply_variant: str = field(default_factory=default_reply_variant)
    unknown_type_rate: float = 0.05
    unknown_status_rate: float = 0.05
    invoice_check_rate: float = 0.0
    peppol_rules: Path | None = None

    def __post_init__(self) -> None:
        """Validate every field so that a bad command line fails at start-up."""
        self.faults = parse_faults(self.faults)
        self.fuzz_shapes = parse_fuzz_shapes(self.fuzz_shapes)
        self.fault_rate = _rate("fault_rate", self.fault_rate)
        self.stop_rate = _rate("stop_rate", self.stop_rate)
        self.error_rate = _rate("error_rate", self.error_rate)
        self.slow_rate = _rate("slow_rate", self.slow_rate)
        self.stuck_rate = _rate("stuck_rate", self.stuck_rate)
        self.slow_factor = _factor("slow_factor", self.slow_factor)
        self.stuck_ms = _non_negative("stuck_ms", self.stuck_ms)
        self.drip_max_s = _non_negative("drip_max_s", self.drip_max_s)
        self.latency_ms = _non_negative("latency_ms", self.latency_ms)
        self.timeout_ms = _non_negative("timeout_ms", self.timeout_ms)
        self.status_step_ms = _non_negative("status_step_ms", self.status_step_ms)
        self.token_ttl_s = _non_negative("token_ttl_s", self.token_ttl_s)
        self.reply_variant = parse_reply_variant(self.reply_variant)
        self.unknown_type_rate = _rate("unknown_type_rate", self.unknown_type_rate)
        self.unknown_status_rate = _rate("unknown_status_rate", self.unknown_status_rate)
        self.invoice_check_rate = _rate("invoice_check_rate", self.invoice_check_rate)
        self.data_dir = Path(self.data_dir)
        if not isinstance(self.upload_files, bool):
            raise ValueError("upload_files must be true or false")
        if self.peppol_rules is not None:
            from inexchange_devkit.simulator.peppol import check_folder

            self.peppol_rules = check_folder(Path(self.peppol_rules))

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply runtime changes atomically: either all of them are valid and applied, or none.

        Raises ``ValueError`` for an unknown setting or an invalid value.
        """
        unknown = sorted(set(changes) - set(RUNTIME_SETTINGS))
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        candidate = SimulatorConfig(**{**asdict(self), **changes})
        for name in RUNTIME_SETTINGS:
            setattr(self, name, getattr(candidate, name))

    def runtime_view(self) -> dict[str, Any]:
        """Return the settings that can be changed at runtime, as JSON-ready values."""
        view = {name: getattr(self, name) for name in RUNTIME_SETTINGS}
        view["faults"] = list(self.faults)
        view["fuzz_shapes"] = list(self.fuzz_shapes)
        view["seed"] = self.seed
        view["upload_files"] = self.upload_files
        view["peppol_rules"] = None if self.peppol_rules is None else str(self.peppol_rules)
        return view
