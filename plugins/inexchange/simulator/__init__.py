"""A local simulator of the InExchange REST API v1, for tests, demos and benchmarks.

It serves the same paths, headers and JSON as the real API (``/v1/api/...``) and adds ``/_sim/...``
routes to inspect and steer it. It shares no code with the client side of this package, so that it
can disagree with it, and production code never imports it.

Run it with ``python -m inexchange.simulator``; from tests, use
:func:`inexchange.simulator.testing.run_simulator`.
"""

from __future__ import annotations
