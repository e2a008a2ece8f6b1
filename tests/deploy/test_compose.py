"""The docker compose deployment: docker-compose.yaml, docker/Dockerfile and .env.example.

Most checks read the files with Python (PyYAML) and need no docker. ``test_compose_config`` runs
``docker compose config`` (the v2 plugin) or else ``docker-compose config`` (v1) on a copy of the
files with ``.env.example`` as ``.env``; neither needs a Docker daemon for that. Without either CLI
it is skipped with the reason, or fails when INEXCHANGE_REQUIRE_COMPOSE=1 (as in CI).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
REQUIRE_COMPOSE = os.environ.get("INEXCHANGE_REQUIRE_COMPOSE") == "1"

#: the Airflow components (share x-airflow-common) and the rest of the stack
AIRFLOW_COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                      "airflow-triggerer")
REQUIRED_SERVICES = {"postgres", "redis", "airflow-init", *AIRFLOW_COMPONENTS}
#: one-shot services: they exit when done, so they have no health check
ONE_SHOT = {"airflow-init", "erp-demo"}
#: the simulator's key in the example: not a secret, the local simulator accepts only it
SIMULATOR_KEY = "demo-api-key"
SIMULATOR_HOST = "inexchange-simulator"
PLACEHOLDER = "change-me"


@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE_FILE.open(encoding="utf-8") as file:
        return yaml.safe_load(file)


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE.read_text(encoding="utf-8"))


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a compose .env file (comments and blank lines skipped; outer quotes removed)."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f".env.example line {number}: {line!r}"
        assert key not in values, f".env.example defines {key} twice"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def dag_connection_ids() -> set[str]:
    """The connection ids the DAG file names (its ``*_CONN_ID`` constants)."""
    tree = ast.parse((ROOT / "dags" / "inexchange_dispatch.py").read_text(encoding="utf-8"))
    ids = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.endswith("_CONN_ID"):
                    ids.add(node.value.value)
    return ids


def required_variables() -> set[str]:
    """Airflow Variables the provider reads without a default (``Variable.get(name)`` with no ``default``);
    the name is a string, or a module constant of the same file or of the provider module it is imported from."""
    import ast

    def constants_of(tree: ast.Module) -> dict[str, object]:
        return {target.id: node.value.value for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant)}

    package = ROOT / "plugins"
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in (package / "inexchange").rglob("*.py")}
    by_module = {".".join(path.relative_to(package).with_suffix("").parts): constants_of(tree)
                 for path, tree in trees.items()}
    names = set()
    for path, tree in trees.items():
        constants = dict(constants_of(tree))
        for node in tree.body:  # from inexchange.x import NAME: the constant of module x
            if isinstance(node, ast.ImportFrom) and node.module in by_module:
                for alias in node.names:
                    if alias.name in by_module[node.module]:
                        constants[alias.asname or alias.name] = by_module[node.module][alias.name]
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "get"
                    and isinstance(call.func.value, ast.Name) and call.func.value.id == "Variable"):
                continue
            if len(call.args) > 1 or any(keyword.arg == "default" for keyword in call.keywords):
                continue  # optional: read with a default
            name = call.args[0]
            value = name.value if isinstance(name, ast.Constant) else constants.get(getattr(name, "id", ""))
            assert isinstance(value, str), f"{path.name}:{call.lineno}: Variable.get of a name this test cannot read"
            names.add(value)
    return names


# --- docker-compose.yaml ------------------------------------------------------------------------


def test_compose_file_has_the_celery_stack(compose: dict) -> None:
    services = compose["services"]
    assert REQUIRED_SERVICES <= set(services), REQUIRED_SERVICES - set(services)
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    # optional profiles: the simulator (and the demo ERP) for a local trial, flower
    assert services["inexchange-simulator"]["profiles"] == ["simulator"]
    assert services["erp-demo"]["profiles"] == ["simulator"]
    assert services["flower"]["profiles"] == ["flower"]


def test_every_long_running_service_has_a_healthcheck(compose: dict) -> None:
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} runs once"
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_executor_is_celery_with_redis_and_postgres(compose: dict) -> None:
    env = compose["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
    # the workers reach the api-server's execution API by its service name
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    # the SQL files are package data of the installed wheel; the DAG asks for deferral itself
    assert "INEXCHANGE_SQL_DIR" not in env
    assert "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE" not in env


def test_the_folders_are_mounted_as_in_the_reference_compose_file(compose: dict) -> None:
    common = compose["x-airflow-common"]
    assert common["volumes"] == [f"${{AIRFLOW_PROJ_DIR:-.}}/{folder}:/opt/airflow/{folder}"
                                 for folder in ("dags", "logs", "config", "plugins")]
    env = common["environment"]
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith("/opt/airflow/config/")
    # nothing else of the repository reaches the containers: no include/, no named Airflow volumes
    assert set(compose["volumes"]) == {"postgres-db-volume"}
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "include" not in re.sub(r"#.*", "", text)
    # and the folders the mounts read exist in the repository
    assert (ROOT / "dags" / "inexchange_dispatch.py").is_file() and (ROOT / "plugins").is_dir()


def test_airflow_runs_the_provider_image_and_the_simulator_the_devkit_image(compose: dict) -> None:
    common = compose["x-airflow-common"]
    assert common["build"] == {"context": ".", "dockerfile": "docker/Dockerfile", "target": "airflow"}
    for name in ("inexchange-simulator", "erp-demo"):
        service = compose["services"][name]
        assert service["build"] == {"context": ".", "dockerfile": "docker/Dockerfile", "target": "devkit"}, name
        assert service["image"] != common["image"], f"{name} must not tag its image as the Airflow image"
        module = "inexchange_devkit.erpgen" if name == "erp-demo" else "inexchange_devkit.simulator"
        assert service["entrypoint"] == ["python", "-m", module], name
    stages = dockerfile_stages()
    assert {"airflow", "devkit"} <= set(stages)


def test_components_share_the_common_settings(compose: dict) -> None:
    common = compose["x-airflow-common"]
    for name in (*AIRFLOW_COMPONENTS, "airflow-init", "flower"):
        service = compose["services"][name]
        for key, value in common["environment"].items():
            assert service["environment"].get(key) == value, f"{name}: {key} differs from x-airflow-common"
        assert service["env_file"] == common["env_file"] == [".env"], name
        assert service["image"] == common["image"], name
        assert service["build"] == common["build"], name
        assert set(common["volumes"]) <= set(service["volumes"]), name
        depends = service["depends_on"]
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert depends["airflow-init"]["condition"] == "service_completed_successfully", name


def test_the_shared_secrets_come_from_env_not_from_the_compose_file(compose: dict, env_example: dict) -> None:
    # a secret set in the compose file would be the same in every installation
    env = compose["x-airflow-common"]["environment"]
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        assert key not in env
        assert key in env_example
    assert "${POSTGRES_PASSWORD}" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_workers_can_be_scaled(compose: dict) -> None:
    worker = compose["services"]["airflow-worker"]
    # a fixed container name or host port would make --scale airflow-worker=N fail
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["environment"]["DUMB_INIT_SETSID"] == "0"


def test_init_migrates_and_creates_the_pool_and_the_login(compose: dict) -> None:
    init = compose["services"]["airflow-init"]
    script = "\n".join(init["command"])
    assert "airflow db migrate" in script
    pool = re.search(r"airflow pools set (\S+) \S+", script)
    assert pool
    assert "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script
    env = compose["x-airflow-common"]["environment"]
    # the DAG takes the pool init creates only where [inexchange] api_pool names it
    assert env["AIRFLOW__INEXCHANGE__API_POOL"] == pool.group(1) == "inexchange_api"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith("/opt/airflow/config/")


def test_every_interpolated_variable_is_defaulted_or_in_env_example(compose: dict, env_example: dict) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    # ${NAME}, ${NAME:-default}, ${NAME:?error}; $${...} is for the container's shell
    for match in re.finditer(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?", text):
        name, operator = match.group(1), match.group(2)
        if operator in (":-", "-"):
            continue
        assert name in env_example, f"docker-compose.yaml uses ${{{name}}} without a default; add it to .env.example"


def test_simulator_profile_matches_the_example_connection(compose: dict, env_example: dict) -> None:
    simulator = compose["services"]["inexchange-simulator"]
    args = " ".join(simulator["command"])
    port = re.search(r"--port=(\d+)", args).group(1)
    conn = json.loads(env_example["AIRFLOW_CONN_INEXCHANGE_DEFAULT"])
    assert conn["host"] == f"http://{SIMULATOR_HOST}:{port}/v1/api/"
    assert "--api-key=${INEXCHANGE_SIMULATOR_API_KEY" in args
    assert conn["password"] == env_example["INEXCHANGE_SIMULATOR_API_KEY"] == SIMULATOR_KEY
    # the demo ERP goes into the database the example erp_default points at
    erp = compose["services"]["erp-demo"]
    url = next(a for a in erp["command"] if a.startswith("--url="))
    assert urlsplit(url.removeprefix("--url=")).path == urlsplit(env_example["AIRFLOW_CONN_ERP_DEFAULT"]).path


def test_the_preflight_reads_the_pool_as_a_viewer(compose: dict, env_example: dict) -> None:
    env = compose["x-airflow-common"]["environment"]
    raw = env["AIRFLOW_CONN_AIRFLOW_API"]
    password = re.fullmatch(r'.*"password": "(\$\{([A-Z_]+):\?[^}]*\})".*', raw)
    assert password, raw
    conn = json.loads(raw.replace(password.group(1), "x"))
    # the api-server service, on the port it listens on inside the network
    assert conn["conn_type"] == "http"
    service = urlsplit(conn["host"])
    assert service.hostname in compose["services"] and service.hostname == "airflow-apiserver"
    assert service.port == 8080
    # a user of the simple auth manager with the viewer role, whose password airflow-init writes
    users = dict(entry.rsplit(":", 1) for entry in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
    assert users[conn["login"]] == "viewer"
    name = password.group(2)
    assert name in env_example and _is_placeholder(env_example[name])
    script = "\n".join(compose["services"]["airflow-init"]["command"])
    assert f'"{conn["login"]}": os.environ["{name}"]' in script


# --- .env.example ---------------------------------------------------------------------------


def test_env_example_defines_what_the_dag_needs(env_example: dict, compose: dict) -> None:
    conn_ids = dag_connection_ids()
    assert conn_ids == {"erp_default", "inexchange_default", "inexchange_reporting", "airflow_api"}
    common = compose["x-airflow-common"]["environment"]
    for conn_id in conn_ids:
        key = f"AIRFLOW_CONN_{conn_id.upper()}"
        assert key in env_example or key in common, conn_id
    variables = required_variables()
    assert "inexchange_seller" in variables
    for name in variables:
        assert f"AIRFLOW_VAR_{name.upper()}" in env_example, name

    inexchange = json.loads(env_example["AIRFLOW_CONN_INEXCHANGE_DEFAULT"])
    assert inexchange["conn_type"] == "inexchange"
    assert inexchange["host"].endswith("/v1/api/") and inexchange["password"] and inexchange["extra"]["erp_id"]
    for key in ("AIRFLOW_CONN_ERP_DEFAULT", "AIRFLOW_CONN_INEXCHANGE_REPORTING"):
        uri = urlsplit(env_example[key])
        assert uri.scheme in ("postgres", "postgresql") and uri.hostname and uri.path.strip("/"), key

    from inexchange.ubl import Seller

    Seller.from_config(json.loads(env_example["AIRFLOW_VAR_INEXCHANGE_SELLER"]))  # raises on a problem


def _is_placeholder(value: str) -> bool:
    return value == "" or PLACEHOLDER in value


def test_env_example_holds_no_real_secret(env_example: dict) -> None:
    secret_name = re.compile(r"PASSWORD|SECRET|FERNET|API_KEY|TOKEN", re.IGNORECASE)
    for key, value in env_example.items():
        if secret_name.search(key) and key != "INEXCHANGE_SIMULATOR_API_KEY":
            assert _is_placeholder(value), f"{key} must be a {PLACEHOLDER} placeholder in .env.example"
    assert env_example["INEXCHANGE_SIMULATOR_API_KEY"] == SIMULATOR_KEY

    for key, value in env_example.items():
        if not key.startswith("AIRFLOW_CONN_"):
            continue
        if value.startswith("{"):
            conn = json.loads(value)
            password, host = conn.get("password") or "", conn.get("host") or ""
        else:
            uri = urlsplit(value)
            password, host = uri.password or "", uri.hostname or ""
        if password and not _is_placeholder(password):
            # only the local simulator's fixed key may stand in the example
            assert password == SIMULATOR_KEY and SIMULATOR_HOST in host, f"{key} holds a real-looking secret"

    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    tokens = re.findall(r"[A-Za-z0-9+/_=-]{24,}", text)
    for token in tokens:
        looks_random = re.search(r"\d", token) and re.search(r"[A-Z]", token) and re.search(r"[a-z]", token)
        assert PLACEHOLDER in token or not looks_random, f"random-looking value in .env.example: {token[:6]}..."
    assert not re.search(r"[A-Za-z0-9_-]{43}=", text), "a Fernet key in .env.example"
    assert "BEGIN" not in text or "PRIVATE KEY" not in text


def test_env_is_ignored_by_git_and_docker() -> None:
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in (line.strip() for line in gitignore)
    dockerignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in (line.strip() for line in dockerignore)


# --- docker/Dockerfile --------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, list[str]]:
    """The Dockerfile's stages in order: name (or index) -> its instruction lines, comments dropped,
    continuation lines joined, ``ARG``s of the global scope substituted in ``FROM``."""
    lines: list[str] = []
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1].rstrip() + " " + line
        else:
            lines.append(line)
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", "\n".join(lines), re.MULTILINE))
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith("FROM "):
            line = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], line)
            match = re.fullmatch(r"FROM (\S+)(?: AS (\S+))?", line, re.IGNORECASE)
            assert match, line
            current = stages.setdefault(match.group(2) or str(len(stages)), [line])
        elif current is not None:
            current.append(line)
    return stages


def stage_closure(stages: dict[str, list[str]], target: str) -> list[str]:
    """The stages building ``target`` needs: its FROM chain and the stages it copies from."""
    needed: list[str] = []
    todo = [target]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.append(name)
        base = stages[name][0].split()[1]
        todo.extend([base] if base in stages else [])
        todo.extend(m for line in stages[name] for m in re.findall(r"--from=(\S+)", line))
    return needed


def test_dockerfile_builds_the_wheel_and_installs_it_under_the_lock() -> None:
    stages = dockerfile_stages()
    for name, lines in stages.items():
        base = lines[0].split()[1]
        assert base in stages or base == "apache/airflow:3.3.2-python3.11", (name, base)
    # the default target is the last stage: the Airflow image, which compose asks for by name
    target = list(stages)[-1]
    assert target == "airflow"

    # a builder stage makes the provider's wheel with pip wheel --no-deps from the files a wheel needs
    builder = next(name for name, lines in stages.items()
                   if any(re.search(r"pip wheel .*--no-deps", line) for line in lines)
                   and any("plugins/inexchange" in line for line in lines if line.startswith("COPY ")))
    copied = {source for line in stages[builder] if line.startswith("COPY ")
              for source in line.split()[1:-1] if not source.startswith("--")}
    assert copied == {"pyproject.toml", "README.md", "plugins/inexchange"}, copied

    closure = stage_closure(stages, target)
    assert builder in closure
    lines = [line for name in closure if name != builder for line in stages[name]]
    joined = "\n".join(lines)
    # the lock first (a layer of its own), then the wheel under the lock's pins
    pip_lock = next(i for i, line in enumerate(lines) if re.search(r"pip install .*-r \S*requirements\.txt", line))
    pip_wheel = next(i for i, line in enumerate(lines)
                     if re.search(r"pip install .*-c \S*requirements\.txt "
                                  r"\S*airflow_provider_inexchange-\*\.whl", line))
    assert pip_lock < pip_wheel
    assert "--constraint" not in lines[pip_lock]
    users = [i for i, line in enumerate(lines) if line.startswith("USER ")]
    assert users and users[-1] < pip_lock and lines[users[-1]] == "USER airflow", "pip runs as the airflow user"
    assert re.search(r"^COPY .*requirements\.txt", joined, re.MULTILINE)
    assert re.search(r"^COPY --from=" + re.escape(builder) + r"\b", joined, re.MULTILINE)
    # nothing else of the repository: no DAG, no include/, no SQL directory setting, no development kit
    for line in lines:
        assert not re.search(r"^COPY .*\b(dags|include|devkit)/?\s", line), line
    assert "INEXCHANGE_SQL_DIR" not in DOCKERFILE.read_text(encoding="utf-8")
    assert "devkit" not in joined and "simulator" not in joined and "erpgen" not in joined


def test_dockerfile_devkit_target_adds_the_development_kit() -> None:
    stages = dockerfile_stages()
    devkit = stages["devkit"]
    base = devkit[0].split()[1]
    assert base in stage_closure(stages, "airflow"), "the devkit image shares the Airflow image's layers"
    joined = "\n".join(line for name in stage_closure(stages, "devkit") for line in stages[name])
    assert re.search(r"pip wheel .*--no-deps .*devkit", joined)
    assert re.search(r"^COPY .*devkit/inexchange_devkit ", joined, re.MULTILINE)
    assert re.search(r"pip install .*-c \S*requirements\.txt \S*inexchange_devkit-\*\.whl", joined)


def test_the_image_holds_what_the_dockerfile_copies() -> None:
    # every path the Dockerfile copies from the build context exists and is not excluded by .dockerignore
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") not in ignored and source.split("/")[0] not in ignored, source


# --- docker compose config ----------------------------------------------------------------------


def _compose_command() -> tuple[list[str] | None, str]:
    """The compose CLI of this machine (v2 plugin first), or None and why there is none."""
    reasons = []
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return ["docker", "compose"], ""
        reasons.append("`docker compose` is not available (no compose plugin)")
    else:
        reasons.append("no `docker` CLI")
    if shutil.which("docker-compose"):
        probe = subprocess.run(["docker-compose", "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return ["docker-compose"], ""
        reasons.append(f"`docker-compose version` failed: {probe.stderr.strip()[:200]}")
    else:
        reasons.append("no `docker-compose` (v1) either (Debian: apt-get install docker-compose)")
    return None, "; ".join(reasons)


@pytest.mark.compose
def test_compose_config(tmp_path: Path) -> None:
    command, reason = _compose_command()
    if command is None:
        if REQUIRE_COMPOSE:
            pytest.fail(reason + " (INEXCHANGE_REQUIRE_COMPOSE=1 makes this test mandatory)")
        pytest.skip(reason)

    # a copy, with the example as .env: the checkout's own .env (real secrets) is never read
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(COMPOSE_FILE, project / "docker-compose.yaml")
    shutil.copytree(ROOT / "docker", project / "docker")
    shutil.copy(ENV_EXAMPLE, project / ".env")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}

    def config(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, "--project-directory", str(project), "-f",
                               str(project / "docker-compose.yaml"), *extra, "config"],
                              capture_output=True, text=True, timeout=120, env=env, cwd=project)

    plain = config()
    assert plain.returncode == 0, plain.stderr
    trial = config("--profile", "simulator", "--profile", "flower")
    assert trial.returncode == 0, trial.stderr
    resolved = yaml.safe_load(trial.stdout)
    services = resolved["services"]
    assert REQUIRED_SERVICES | {"inexchange-simulator", "erp-demo", "flower"} <= set(services)

    # the Airflow components run the default image, the simulator profile the devkit target; the
    # folders are mounted from the project directory (v2 prints volumes in long syntax, v1 as text)
    assert services["airflow-worker"]["build"]["target"] == "airflow"
    assert services["inexchange-simulator"]["build"]["target"] == services["erp-demo"]["build"]["target"] == "devkit"
    mounts = [(v["source"], v["target"]) if isinstance(v, dict) else tuple(v.split(":")[:2])
              for v in services["airflow-worker"]["volumes"]]
    assert mounts == [(str(project / folder), f"/opt/airflow/{folder}")
                      for folder in ("dags", "logs", "config", "plugins")], mounts

    # compose read the connections and Variables from .env as the DAG needs them
    worker_env = services["airflow-worker"]["environment"]
    assert worker_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert json.loads(worker_env["AIRFLOW_CONN_INEXCHANGE_DEFAULT"])["conn_type"] == "inexchange"
    seller = json.loads(worker_env["AIRFLOW_VAR_INEXCHANGE_SELLER"])
    assert seller["city"] == "Göteborg" and seller["postal_code"] == "411 04"
    assert worker_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://airflow:change-me-postgres-password@postgres:5432/airflow")
    for name in AIRFLOW_COMPONENTS:
        assert services[name]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] == \
            worker_env["AIRFLOW__API_AUTH__JWT_SECRET"], name

    # without a POSTGRES_PASSWORD compose refuses to start, naming .env
    (project / ".env").write_text(
        "\n".join(line for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
                  if not line.startswith("POSTGRES_PASSWORD=")) + "\n", encoding="utf-8")
    missing = config()
    assert missing.returncode != 0
    assert "POSTGRES_PASSWORD" in missing.stderr
