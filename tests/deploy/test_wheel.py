"""The provider as a distribution: what it declares, what its wheel holds, and the wheel deployed.

``test_the_declared_dependencies_are_what_the_code_imports`` (fast, no build): every ``import`` of the
package's modules (top level and inside functions; not those under ``if TYPE_CHECKING:``, which never
run), less the standard library and ``inexchange`` itself, mapped to the distribution that ships the
imported module (``importlib.metadata``), must be exactly the distributions ``pyproject.toml``
declares. A distribution imported only inside ``try: ... except ImportError:`` is optional: it belongs
in an extra, not in ``dependencies``. Airflow's own modules come from ``apache-airflow-core`` and
``apache-airflow-task-sdk``; the distribution declared for them is ``apache-airflow``, which pins both
to one release.

The ``integration`` tests build the wheel with ``pip wheel --no-deps`` from the files the Docker
builder stage copies (``pyproject.toml``, ``README.md``, ``plugins/inexchange``), check what it holds
(the SQL files and the UI templates; no development kit) and its ``Requires-Dist``, install it with
pip into a clean virtual environment (``python -m venv``, no system site packages) under the
constraints file :data:`CONSTRAINTS`, and there import every module of the wheel, list Airflow's
plugins and providers, and run a day of invoices end to end with ``airflow dags test`` against the
simulator, in a fresh ``AIRFLOW_HOME`` whose plugins folder is empty: everything comes from the
installed wheel. They need the package index (PyPI) for the build backend and the packages; without
it they are skipped with the reason, or fail when ``INEXCHANGE_REQUIRE_WHEEL=1`` (as in CI).
"""

from __future__ import annotations

import ast
import email
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dispatch_testing.deployment import (
    LOCK,
    Deployment,
    check_listings,
    import_all,
    import_failures,
    make_venv,
    run_a_day,
    wheel_modules,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plugins" / "inexchange"
#: the constraints the wheel is installed under. The lock pins the same Airflow as Airflow's published
#: constraints file (https://raw.githubusercontent.com/apache/airflow/constraints-3.3.2/constraints-3.11.txt,
#: which a team passes instead; not reachable from this machine) and is what the project is tested with.
CONSTRAINTS = os.environ.get("INEXCHANGE_WHEEL_CONSTRAINTS") or str(LOCK)
#: what the Docker builder stage copies to build the wheel (docker/Dockerfile), relative to the root
WHEEL_SOURCES = ("pyproject.toml", "README.md", "plugins/inexchange")
#: the SQL provider of the test's ERP and reporting connections (SQLite files): the package imports no
#: database provider (a connection's own hook builds the engine), so a deployment installs the one its
#: connections need beside the wheel
DATABASE_PROVIDERS = ("apache-airflow-providers-sqlite",)
#: Airflow's own modules are shipped by these distributions; the one declared for them is apache-airflow
AIRFLOW_ITSELF = {"apache-airflow-core": "apache-airflow", "apache-airflow-task-sdk": "apache-airflow"}
REQUIRE_WHEEL = os.environ.get("INEXCHANGE_REQUIRE_WHEEL") == "1"
#: how long the deployment tests may take together (the clean venv is most of it; pip's cache helps)
pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]


# --- what the code imports ----------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _catches_import_error(node: ast.Try) -> bool:
    names: list[ast.expr] = []
    for handler in node.handlers:
        if handler.type is not None:
            names.extend(handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type])
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def module_imports(source: str) -> list[tuple[str, int, bool]]:
    """``(module, line, optional)`` of every absolute import in ``source`` that runs, at any depth.

    Imports under ``if TYPE_CHECKING:`` are left out (they never run); ``optional`` is true for an
    import inside a ``try`` that catches ImportError (the code works without the module).
    """
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, optional)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, optional) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno, optional))
        if isinstance(node, ast.Try):
            body_optional = optional or _catches_import_error(node)
            for child in node.body:
                visit(child, body_optional)
            for child in (*node.handlers, *node.orelse, *node.finalbody):
                visit(child, optional)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, optional)

    visit(ast.parse(source), False)
    return found


@lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@lru_cache(maxsize=None)
def _module_files(top: str) -> dict[str, str]:
    """Module name -> distribution, from the installed files of every distribution of package ``top``."""
    owners: dict[str, str] = {}
    for name in _packages_distributions().get(top, []):
        for file in metadata.distribution(name).files or []:
            parts = file.parts
            if parts and parts[0] == top and file.suffix == ".py":
                module = ".".join(parts)[:-3].removesuffix(".__init__")
                owners.setdefault(module, canonicalize_name(name))
    return owners


def distribution_of(module: str) -> str:
    """The distribution (canonical name) an import of ``module`` loads it from, in this environment."""
    top = module.split(".")[0]
    names = _packages_distributions().get(top)
    assert names, f"no installed distribution provides the module {module!r} (is the lock installed?)"
    if len(set(names)) > 1:  # a namespace several distributions share (airflow): the one with the module
        owners = _module_files(top)
        name = module
        while name not in owners and "." in name:
            name = name.rsplit(".", 1)[0]
        assert name in owners, f"no installed distribution ships the module {module!r} (of {sorted(set(names))})"
        dist = owners[name]
    else:
        dist = canonicalize_name(names[0])
    return AIRFLOW_ITSELF.get(dist, dist)


def imported_distributions(package: Path = PACKAGE) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The distributions the package's modules import: ``(required, optional)``, each mapped to where.

    A distribution imported anywhere without a fallback is required, even if also imported optionally.
    """
    required: dict[str, list[str]] = defaultdict(list)
    optional: dict[str, list[str]] = defaultdict(list)
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package.parent).as_posix()
        for module, line, is_optional in module_imports(path.read_text(encoding="utf-8")):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "inexchange":
                continue
            (optional if is_optional else required)[distribution_of(module)].append(f"{where}:{line} {module}")
    for name in required:
        optional.pop(name, None)
    return dict(required), dict(optional)


# --- what the distribution declares -------------------------------------------------------------


def requirements_of(requires_dist: Iterable[str]) -> tuple[dict[str, Requirement], dict[str, dict[str, Requirement]]]:
    """``Requires-Dist`` lines as ``(dependencies, {extra: dependencies})``, by canonical name."""
    base: dict[str, Requirement] = {}
    extras: dict[str, dict[str, Requirement]] = defaultdict(dict)
    for line in requires_dist:
        requirement = Requirement(line)
        marker = str(requirement.marker or "")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        target = extras[canonicalize_name(extra.group(1))] if extra else base
        target[canonicalize_name(requirement.name)] = requirement
    return base, dict(extras)


def pyproject_requires_dist() -> list[str]:
    """The ``Requires-Dist`` lines ``pyproject.toml`` makes (static [project] tables, no dynamic ones)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dynamic = set(project.get("dynamic", []))
    assert not dynamic & {"dependencies", "optional-dependencies"}, "the dependencies must be static"
    lines = list(project.get("dependencies", []))
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.extend(f'{r}; extra == "{extra}"' for r in requirements)
    return lines


def wheel_requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name)).get_all("Requires-Dist") or []


def dependency_problems(requires_dist: Iterable[str]) -> list[str]:
    """What ``requires_dist`` declares wrongly against what the code imports, one line each; none when right."""
    required, optional = imported_distributions()
    base, extras = requirements_of(requires_dist)
    in_extras = {name: extra for extra, requirements in extras.items() for name in requirements}
    problems = []
    for name in sorted(set(required) - set(base)):
        problems.append(f"missing dependency {name}: imported at {', '.join(required[name][:3])}")
    for name in sorted(set(optional) - set(base) - set(in_extras)):
        problems.append(f"missing optional dependency {name} (add an extra): imported at "
                        f"{', '.join(optional[name][:3])}")
    for name in sorted(set(base) - set(required)):
        why = " (imported only inside try/except ImportError: move it to an extra)" if name in optional else ""
        problems.append(f"surplus dependency {name}: the package does not import it{why}")
    for name in sorted(set(in_extras) - set(optional)):
        why = " (imported without a fallback: make it a dependency)" if name in required else \
            ": the package does not import it"
        problems.append(f"surplus optional dependency {name} (extra {in_extras[name]}){why}")
    return problems


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[canonicalize_name(name.strip())] = version.strip()
    return pins


def bound_problems(requires_dist: Iterable[str]) -> list[str]:
    """Requirements without a lower bound, or that the lock's pinned release does not satisfy."""
    base, extras = requirements_of(requires_dist)
    pins = _lock_pins()
    problems = []
    for name, requirement in [*base.items(), *((n, r) for e in extras.values() for n, r in e.items())]:
        if not any(spec.operator in (">=", "~=", "==") for spec in requirement.specifier):
            problems.append(f"{requirement}: no lower bound")
        if name not in pins:
            problems.append(f"{requirement}: not pinned in {LOCK.name}")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement}: the lock pins {name}=={pins[name]}")
    return problems


def test_the_declared_dependencies_are_what_the_code_imports() -> None:
    declared = pyproject_requires_dist()
    problems = dependency_problems(declared)
    assert not problems, "pyproject.toml [project] dependencies:\n" + "\n".join(problems)
    problems = bound_problems(declared)
    assert not problems, "pyproject.toml [project] dependencies:\n" + "\n".join(problems)


def test_the_comparison_names_what_is_missing_and_what_is_surplus() -> None:
    declared = [line for line in pyproject_requires_dist() if Requirement(line).name != "limits"]
    declared += ["apache-airflow-providers-http>=6.3", 'tabulate>=0.10; extra == "report"']
    problems = "\n".join(dependency_problems(declared))
    assert "missing dependency limits: imported at inexchange/hooks/" in problems, problems
    assert "surplus dependency apache-airflow-providers-http: the package does not import it" in problems
    assert "surplus optional dependency tabulate (extra report) (imported without a fallback" in problems
    moved = [line for line in pyproject_requires_dist() if "extra ==" not in line] + ["uvloop>=0.23"]
    assert "surplus dependency uvloop: the package does not import it (imported only inside try/except" \
        in "\n".join(dependency_problems(moved))


def test_imports_under_type_checking_do_not_count_and_try_import_error_is_optional() -> None:
    source = ("from typing import TYPE_CHECKING\nimport httpx\nif TYPE_CHECKING:\n    import numpy\n"
              "def f():\n    try:\n        import uvloop\n    except ImportError:\n        return None\n"
              "    from airflow.sdk import BaseHook\n")
    assert module_imports(source) == [("typing", 1, False), ("httpx", 2, False), ("uvloop", 7, True),
                                      ("airflow.sdk", 10, False)]
    assert distribution_of("airflow.sdk") == distribution_of("airflow.plugins_manager") == "apache-airflow"
    assert distribution_of("stdnum.se") == "python-stdnum"


# --- the wheel ----------------------------------------------------------------------------------


def _index_error() -> str | None:
    """Why the package index cannot be reached, or None when it can."""
    url = (os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/").rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(url, timeout=20):
            return None
    except OSError as exc:
        return f"the package index {url} is not reachable ({exc})"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The provider's wheel, built like the Docker builder stage does: ``pip wheel --no-deps``."""
    error = _index_error()
    if error:
        if REQUIRE_WHEEL:
            pytest.fail(error + " (INEXCHANGE_REQUIRE_WHEEL=1 makes the wheel tests mandatory)")
        pytest.skip(error + "; the build backend and the packages come from it")
    source = tmp_path_factory.mktemp("wheel-source")
    for name in WHEEL_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(source),
                            "-w", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list(out.glob("airflow_provider_inexchange-*.whl"))
    assert len(wheels) == 1, list(out.iterdir())
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtual environment with the wheel (and a database provider) installed under CONSTRAINTS."""
    return make_venv(tmp_path_factory.mktemp("wheel-venv") / "venv", str(wheel), *DATABASE_PROVIDERS,
                     "-c", CONSTRAINTS)


@pytest.fixture
def installed(wheel_python: Path, tmp_path: Path) -> Deployment:
    """A fresh AIRFLOW_HOME with an empty plugins folder: the provider comes only from the wheel."""
    (tmp_path / "plugins").mkdir()
    return Deployment(python=wheel_python, home=tmp_path / "airflow", plugins_folder=tmp_path / "plugins")


@pytest.mark.integration
def test_the_wheel_holds_the_provider_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    dist_info = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"
    assert {name.split("/")[0] for name in names} == {"inexchange", dist_info}, sorted(names)

    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.glob("sql_files/*.sql"), *PACKAGE.glob("ui/templates/*.html")]:
        assert path.relative_to(PACKAGE.parent).as_posix() in names, f"{path} is not in the wheel"
    assert len([n for n in names if n.startswith("inexchange/sql_files/") and n.endswith(".sql")]) >= 20
    assert {n for n in names if n.startswith("inexchange/ui/templates/")} >= {
        "inexchange/ui/templates/base.html", "inexchange/ui/templates/report.html"}
    development = [n for n in names if re.search(r"(^|/)(inexchange_devkit|simulator|erpgen)(/|\.py|$)", n)
                   or "__pycache__" in n or n.endswith(".pyc")]
    assert not development, development

    assert "[apache_airflow_provider]" in entry_points
    assert "inexchange.get_provider_info:get_provider_info" in entry_points
    assert "[airflow.plugins]" in entry_points and "inexchange.ui.plugin:InExchangeDispatchPlugin" in entry_points

    requires_dist = wheel_requires_dist(wheel)
    problems = dependency_problems(requires_dist)
    assert not problems, f"{wheel.name} Requires-Dist:\n" + "\n".join(problems)
    assert requirements_of(requires_dist) == requirements_of(pyproject_requires_dist())


@pytest.mark.integration
def test_the_installed_wheel_imports_and_registers(installed: Deployment, wheel: Path) -> None:
    where = installed.python_run("import importlib.util, sys\n"
                                 "sys.path.remove(sys.argv[0]) if sys.argv[0] in sys.path else None\n"
                                 "print(importlib.util.find_spec('inexchange').origin)\n"
                                 "print(importlib.util.find_spec('inexchange_devkit'))")
    assert where.returncode == 0, where.stderr[-3000:]
    origin, devkit = where.stdout.split()
    venv = installed.python.parent.parent
    assert Path(origin).is_relative_to(venv) and "site-packages" in origin, origin
    assert devkit == "None"

    with zipfile.ZipFile(wheel) as archive:
        record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        modules = wheel_modules(line.split(",")[0] for line in archive.read(record).decode().splitlines())
    assert "inexchange.ui.plugin" in modules and "inexchange.hooks.inexchange" in modules, modules
    imported = import_all(installed, modules)
    output = imported.stdout + imported.stderr
    assert imported.returncode == 0, output[-5000:]
    assert not import_failures(output), output[-5000:]

    # airflow plugins lists inexchange_dispatch; airflow providers list / hooks list the distribution
    # airflow-provider-inexchange with its connection type inexchange; no import failure anywhere
    check_listings(installed, installed=True)


@pytest.mark.integration
def test_a_day_runs_with_the_installed_wheel(installed: Deployment, tmp_path: Path) -> None:
    run_a_day(installed, tmp_path, erp_id="wheel", conn_type="inexchange")
    # every task instance of the run succeeded (dags test records them in the metadata database)
    with sqlite3.connect(installed.home / "airflow.db") as conn:
        states = conn.execute("SELECT task_id, map_index, state FROM task_instance "
                              "WHERE dag_id = 'inexchange_dispatch'").fetchall()
    # every stage succeeded, and so the watcher was skipped
    assert {state for task, _, state in states if task != "watcher"} == {"success"}, states
    assert [state for task, _, state in states if task == "watcher"] == ["skipped"], states


@pytest.mark.integration
def test_the_mounted_plugins_folder_adds_nothing_to_the_installed_wheel(wheel_python: Path, tmp_path: Path) -> None:
    """The compose layout: the wheel in the image and the repository's ``plugins/`` mounted as the
    plugins folder. The installed distribution registers the page; the folder's entry module names
    nothing, so Airflow reports no second registration."""
    both = Deployment(python=wheel_python, home=tmp_path / "airflow", plugins_folder=ROOT / "plugins")
    check_listings(both, installed=True)
    source = both.python_run("import airflow, inexchange; print(inexchange.__file__)")
    assert source.returncode == 0, source.stderr[-3000:]
    assert "site-packages" in source.stdout, source.stdout
