"""The reply fixtures of the contract tests and the stub's connection values.

Part of the test helpers' package: ``from dispatch_testing.reply_fixtures import ...``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: the reply files, beside the contract tests
HERE = Path(__file__).resolve().parents[1] / "contract"
API_BASE = "https://api.contract.test/v1/api/"
API_KEY = "contract-api-key"
ERP_ID = "erp-contract"


def load(name: str) -> Any:
    """The raw JSON of the reply fixture ``name`` (its file name without ``.json``), freshly parsed."""
    return json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))


def fixture_names() -> list[str]:
    """Every reply fixture in the folder, by name."""
    return sorted(path.name[: -len(".json")] for path in HERE.glob("*.json"))
