"""The provider's shape: the layer contracts of pyproject.toml hold (import-linter), no module imports
another that imports it back (function-level and TYPE_CHECKING imports included), every module imports on
its own, and the domain's Airflow imports are the Task SDK's, never an operator's."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plugins" / "inexchange"
#: the domain library: what the operators, the sensor and the trigger call into
DOMAIN = (
    "pipeline",
    "preflight",
    "submission",
    "delivery",
    "tracking",
    "ubl",
    "peppol",
    "invoice_checks",
    "validation",
    "ledger",
    "attention",
    "erp",
    "db",
    "api",
    "replies",
    "states",
    "sql",
    "units",
    "vat",
    "identifiers",
    "values",
    "times",
    "exceptions",
)
#: the Airflow modules the domain may import: the Task SDK's public parts
AIRFLOW_FOR_THE_DOMAIN = ("airflow.sdk", "airflow.sdk.exceptions", "airflow.sdk.log")


def modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_layer_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def cycles(graph: grimp.ImportGraph, names: list[str]) -> list[list[str]]:
    """The import cycles among ``names`` (each found once, from its first module in DFS order)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for nxt in sorted(graph.find_modules_directly_imported_by(name)):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt) :] + [nxt])
            elif nxt in names and state.get(nxt) is None:
                visit(nxt)
        path.pop()
        state[name] = 2

    for name in names:
        if state.get(name) is None:
            visit(name)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("inexchange", exclude_type_checking_imports=False)
    assert cycles(graph, sorted(graph.modules)) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert cycles(graph, ["p.a", "p.b", "p.c"]) == [["p.a", "p.b", "p.c", "p.a"]]


def test_every_module_imports_on_its_own() -> None:
    # one interpreter; before each module every inexchange module already loaded is dropped, so each
    # import starts from nothing of the provider, as `python -c "import inexchange.<module>"` does
    code = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m == 'inexchange' or m.startswith('inexchange.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc(limit=3))\n"
        "print('IMPORTED', len(sys.argv) - 1 - len(failed), 'FAILED', repr(failed))\n"
    )
    names = modules()
    assert len(names) > 30
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    # Airflow may log warnings to stdout on import; the verdict is the last line
    assert result.stdout.splitlines()[-1] == f"IMPORTED {len(names)} FAILED []", result.stdout[-3000:]


def test_the_domain_imports_of_airflow_only_the_task_sdk() -> None:
    found = {}
    for name in DOMAIN:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        airflow = {module for module in imported if module == "airflow" or module.startswith("airflow.")}
        if airflow - set(AIRFLOW_FOR_THE_DOMAIN):
            found[name] = sorted(airflow - set(AIRFLOW_FOR_THE_DOMAIN))
    assert found == {}
