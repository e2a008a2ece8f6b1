"""Holds: park ``/v1/api`` requests at an exact point until a test releases them.

A hold is installed for a method, a path below ``/v1/api/`` (matched exactly, without regard to case)
and a phase. A request held ``before`` waits before it is processed; a request held ``after`` is
processed first and waits before its answer is sent. Releasing ends every wait and removes every
hold, so that a test can, for instance, kill a client while the simulator holds its request and then
let the simulator finish as a real server would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HOLD_PHASES: tuple[str, ...] = ("before", "after")
_HOLD_FIELDS = ("path", "method", "phase")


def hold_key(method: str, path: str, phase: str) -> str:
    """Return the name of a hold as ``/_sim/stats`` shows it, e.g. ``"POST documents/outbound before"``."""
    return f"{method} {path} {phase}"


@dataclass
class Gate:
    """One installed hold: the requests waiting on it go on when its event is set."""

    key: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0
    dropped: bool = False


class Holds:
    """The installed holds, keyed by method, lower-case path and phase."""

    def __init__(self) -> None:
        """Start without holds."""
        self._gates: dict[tuple[str, str, str], Gate] = {}

    def add(self, body: Mapping[str, Any]) -> str:
        """Install the hold described by ``{"path", "method", "phase"}`` and return its key.

        ``method`` defaults to ``POST`` and ``phase`` to ``before``; installing a hold that exists
        already changes nothing. Raises ``ValueError`` for a missing path, an unknown phase, a bad
        method or an unknown field.
        """
        unknown = sorted(set(body) - set(_HOLD_FIELDS))
        if unknown:
            raise ValueError(f"unknown hold fields: {', '.join(unknown)}; known: {', '.join(_HOLD_FIELDS)}")
        path = body.get("path")
        if not isinstance(path, str) or not path.strip().strip("/"):
            raise ValueError("path is required: the API path after /v1/api/, e.g. 'documents/outbound'")
        method = body.get("method", "POST")
        if not isinstance(method, str) or not method.isalpha():
            raise ValueError(f"method must be an HTTP method such as POST, got {method!r}")
        phase = body.get("phase", "before")
        if phase not in HOLD_PHASES:
            raise ValueError(f"phase must be one of {', '.join(HOLD_PHASES)}, got {phase!r}")
        name = (method.upper(), path.strip().strip("/").lower(), phase)
        gate = self._gates.setdefault(name, Gate(hold_key(*name)))
        return gate.key

    def gate(self, method: str, path: str, phase: str) -> Gate | None:
        """Return the hold that a request with this method and API path meets in ``phase``, if any."""
        return self._gates.get((method.upper(), path.lower(), phase))

    def holds(self, method: str, path: str) -> bool:
        """Tell whether any hold, in either phase, applies to a request with this method and API path."""
        return any(self.gate(method, path, phase) is not None for phase in HOLD_PHASES)

    async def wait(self, gate: Gate) -> None:
        """Wait until ``gate`` is released, counting the request as held meanwhile."""
        gate.waiting += 1
        try:
            await gate.event.wait()
        finally:
            gate.waiting -= 1

    def release(self, *, drop: bool = False) -> int:
        """Let every held request go on, remove every hold and return how many requests were held.

        With ``drop`` the held requests end with a broken connection instead: one held ``before``
        is never processed, one held ``after`` (already processed) never gets its answer.
        """
        released = sum(gate.waiting for gate in self._gates.values())
        for gate in self._gates.values():
            gate.dropped = drop
            gate.event.set()
        self._gates.clear()
        return released

    def keys(self) -> list[str]:
        """Return the keys of the installed holds, sorted."""
        return sorted(gate.key for gate in self._gates.values())

    def waiting(self) -> dict[str, int]:
        """Return the number of requests waiting, per key of a hold that has any."""
        return {gate.key: gate.waiting for gate in self._gates.values() if gate.waiting}
