"""A local simulator of the InExchange REST API v1, for tests, demos and benchmarks.

It serves the same paths, headers and JSON as the real API (``/v1/api/...``) and adds ``/_sim/...``
routes to inspect and steer it. It shares no code with the client side of this package, so that it
can disagree with it, and production code never imports it.

Its replies have the documented shapes (``potentialMatches`` a count, ``parties`` null when none is
found, ``byerpid`` a POST, attachments as URIs; a few documents of undocumented types or passing
through undocumented statuses; times in the notations a .NET service writes). The switch
``reply_variant`` (``--reply-variant``, ``POST /_sim/config``, default from the environment variable
``INEXCHANGE_SIM_VARIANT``) varies the fields a client does not use: ``documented``, ``sparse``,
``loose``, ``extra`` or ``mixed`` (see :mod:`inexchange_devkit.simulator.variants` and
:mod:`inexchange_devkit.simulator.times`).

Run it with ``python -m inexchange_devkit.simulator``; from tests, use
:func:`inexchange_devkit.simulator.testing.run_simulator`.
"""

from __future__ import annotations
