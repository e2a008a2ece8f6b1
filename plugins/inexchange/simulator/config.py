"""Runtime configuration of the InExchange simulator."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The kinds of injected faults, in the order they are reported by ``/_sim/stats``.
FAULT_KINDS: tuple[str, ...] = ("5xx", "429", "drop", "lost", "timeout", "html", "garbled", "huge")

#: The fault kinds enabled unless chosen otherwise; ``timeout`` and the hostile replies (``html``,
#: ``garbled``, ``huge``) must be asked for.
DEFAULT_FAULTS: tuple[str, ...] = ("5xx", "429", "drop", "lost")

#: Settings that ``POST /_sim/config`` may change while the simulator runs.
RUNTIME_SETTINGS: tuple[str, ...] = (
    "fault_rate",
    "faults",
    "latency_ms",
    "timeout_ms",
    "status_step_ms",
    "stop_rate",
    "error_rate",
    "token_ttl_s",
)


def parse_faults(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Turn ``"5xx,429"`` or ``["5xx", "429"]`` into a tuple of known fault kinds.

    An empty string, an empty list or ``None`` enables no fault. Unknown kinds raise ``ValueError``.
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    kinds: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"fault kinds must be strings, got {item!r}")
        kind = item.strip().lower()
        if not kind:
            continue
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {item!r}; known: {', '.join(FAULT_KINDS)}")
        if kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


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


@dataclass
class SimulatorConfig:
    """Everything that shapes the simulator's behaviour.

    ``seed`` makes the party registry, the document outcomes, the latency jitter and the fault
    sequence repeatable. Rates are probabilities between 0 and 1; durations are milliseconds except
    ``token_ttl_s``. ``timeout_ms`` is how long a ``timeout`` fault keeps a request waiting before
    processing it.
    """

    seed: int = 42
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = DEFAULT_FAULTS
    timeout_ms: float = 3000.0
    status_step_ms: float = 1000.0
    stop_rate: float = 0.05
    error_rate: float = 0.03
    api_key: str = "sim-api-key"
    token_ttl_s: float = 3600.0
    data_dir: Path = field(default_factory=lambda: Path("."))

    def __post_init__(self) -> None:
        """Validate every field so that a bad command line fails at start-up."""
        self.faults = parse_faults(self.faults)
        self.fault_rate = _rate("fault_rate", self.fault_rate)
        self.stop_rate = _rate("stop_rate", self.stop_rate)
        self.error_rate = _rate("error_rate", self.error_rate)
        self.latency_ms = _non_negative("latency_ms", self.latency_ms)
        self.timeout_ms = _non_negative("timeout_ms", self.timeout_ms)
        self.status_step_ms = _non_negative("status_step_ms", self.status_step_ms)
        self.token_ttl_s = _non_negative("token_ttl_s", self.token_ttl_s)
        self.data_dir = Path(self.data_dir)

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
        view["seed"] = self.seed
        return view
