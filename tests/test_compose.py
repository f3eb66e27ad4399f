"""The scale-out stack: docker-compose.yml valid for docker-compose 1.29, consistent with the Dockerfile, .env.example
and pyproject.toml, and free of secrets; its invariants checked without an engine: every secret comes from .env and
is checked by the service that receives it (survey_warehouse.secrets), none is on a command line, Airflow logs in
through the FAB auth manager, the worker has time for a warm shutdown, the wave files come from the checkout, and
the UIs are published on the host's loopback only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from survey_warehouse import secrets

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
MAKE_SECRETS = ROOT / "scripts" / "make_secrets.py"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"

INIT_SERVICE = "airflow-init"
SERVICES = {
    "postgres",
    "redis",
    INIT_SERVICE,
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "superset",
}
SECRET_WORDS = ("PASSWORD", "SECRET", "KEY")
# ${VAR}, ${VAR:?message}, ${VAR:-default}. $${VAR} is not one: Compose turns it into ${VAR} for the container's shell.
SUBSTITUTION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
REQUIRED_SUBSTITUTION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}")
RUNTIME_REFERENCE = re.compile(r"\$\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
URL_PASSWORD = re.compile(r"://[^/:@\s]+:(\$\{[^}]*\}|[^@\s]+)@")


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, dict]:
    return load_compose()["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def env_example() -> dict[str, str]:
    pairs = [
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return {key.strip(): value.strip() for key, value in pairs}


def is_secret(name: str) -> bool:
    return any(word in name.upper() for word in SECRET_WORDS)


@pytest.fixture(scope="module")
def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        reason = "docker-compose is not installed (Debian: apt-get install -y docker-compose, which is 1.29)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def run_config(docker_compose: str, env_file: Path, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    # A clean environment: variables exported in the caller's shell would override the env file.
    return subprocess.run(
        [
            docker_compose,
            "-f",
            str(COMPOSE),
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env_file),
            "config",
            *(["-q"] if quiet else []),
        ],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def parse_env(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def make_secrets(tmp_path: Path) -> Path:
    """The .env `make secrets` writes."""
    output = tmp_path / ".env"
    result = subprocess.run(
        ["python3", str(MAKE_SECRETS), "--output", str(output)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return output


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()), encoding="utf-8")
    return path


def rendered(docker_compose: str, env_file: Path) -> dict[str, dict]:
    """The services as docker-compose would start them with this env file."""
    result = run_config(docker_compose, env_file, quiet=False)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def checked_as(name: str, service: dict) -> str | None:
    """Which secrets check a service runs at start (survey_warehouse.secrets.SERVICES), None for the images of
    PostgreSQL and Redis."""
    if name.startswith("airflow-"):
        return environment(service).get("SURVEY_SERVICE", "airflow")
    return "superset" if name == "superset" else None


def test_compose_refuses_env_example_as_it_is(docker_compose: str) -> None:
    """Its secrets are empty: docker-compose stops at the first, saying how to make them all."""
    result = run_config(docker_compose, ENV_EXAMPLE)
    assert result.returncode != 0
    assert re.search(r"([A-Z_]+) is empty - run make secrets", result.stderr), result.stderr
    assert re.search(r"([A-Z_]+) is empty", result.stderr).group(1) in {s.name for s in secrets.SECRETS}  # type: ignore[union-attr]


def test_compose_file_is_valid_with_the_env_make_secrets_writes(docker_compose: str, tmp_path: Path) -> None:
    result = run_config(docker_compose, make_secrets(tmp_path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("secret", [s.name for s in secrets.SECRETS])
def test_compose_refuses_to_start_without_a_secret(docker_compose: str, tmp_path: Path, secret: str) -> None:
    values = parse_env(make_secrets(tmp_path).read_text(encoding="utf-8"))
    result = run_config(docker_compose, write_env(tmp_path / "env", values | {secret: ""}))
    assert result.returncode != 0
    assert f"{secret} is empty - run make secrets" in result.stderr


@pytest.mark.parametrize("secret", [s.name for s in secrets.SECRETS])
def test_a_placeholder_compose_lets_through_is_refused_by_every_service_that_gets_it(
    docker_compose: str, tmp_path: Path, secret: str
) -> None:
    """Compose sees only emptiness; a `change-me` value passes it, and the services' own check must stop it. Every
    service that receives the secret refuses to start, airflow-init among them when it receives it (every other
    Airflow service and Superset wait for the init)."""
    values = parse_env(make_secrets(tmp_path).read_text(encoding="utf-8"))
    placeholder = f"change-me-{secret.lower().replace('_', '-')}"
    services = rendered(docker_compose, write_env(tmp_path / "env", values | {secret: placeholder}))
    receiving = {
        name: service
        for name, service in services.items()
        if any(placeholder in value for value in environment(service).values())
    }
    assert receiving, f"no service receives {secret}"
    for name, service in receiving.items():
        check = checked_as(name, service)
        if check is None:  # postgres: its password is the superuser's, which airflow-init sets and checks
            assert "airflow-init" in receiving, name
            continue
        with pytest.raises(secrets.SecretsError, match=secret):
            secrets.check(check, environment(service))


def test_every_secret_a_container_receives_is_checked_there(docker_compose: str, tmp_path: Path) -> None:
    """For each service, each variable carrying a secret is one the secret is checked in, and the service's check
    includes that secret: nothing secret reaches a container unchecked."""
    env_file = make_secrets(tmp_path)
    values = parse_env(env_file.read_text(encoding="utf-8"))
    unchecked = []
    for name, service in rendered(docker_compose, env_file).items():
        check = checked_as(name, service)
        if check is None:
            continue
        wanted = secrets.SERVICES[check]
        for variable, value in environment(service).items():
            for secret in secrets.SECRETS:
                if values[secret.name] not in value:
                    continue
                sources = (secret.name, *secret.also_in, *secret.in_urls)
                if variable not in sources or secret.name not in (*wanted.required, *wanted.where_given):
                    unchecked.append(f"{name}: {variable} carries {secret.name}")
    assert unchecked == []


def test_a_good_env_passes_every_services_check(docker_compose: str, tmp_path: Path) -> None:
    for name, service in rendered(docker_compose, make_secrets(tmp_path)).items():
        check = checked_as(name, service)
        if check is not None:
            secrets.check(check, environment(service))


def test_airflow_image_tag_matches_the_pinned_airflow() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = [
        str(spec.version)
        for dep in project["dependencies"]
        for req in [Requirement(dep)]
        if req.name == "apache-airflow"
        for spec in req.specifier
        if spec.operator == "=="
    ]
    assert len(pins) == 1, "pyproject.toml must pin apache-airflow with =="
    tags = re.findall(
        r"^FROM\s+(?:--platform=\S+\s+)?apache/airflow:(\S+)",
        DOCKERFILE.read_text(encoding="utf-8"),
        flags=re.MULTILINE | re.IGNORECASE,
    )
    assert len(tags) == 1, f"expected one apache/airflow base image, found {tags}"
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-python(\d+\.\d+)", tags[0])
    assert match, f"the Airflow tag {tags[0]!r} must name the version and the Python, e.g. 3.3.2-python3.11"
    assert match.group(1) == pins[0]
    assert SpecifierSet(project["requires-python"]).contains(match.group(2))


def test_build_targets_are_stages_of_the_dockerfile() -> None:
    stages = set(
        re.findall(
            r"^FROM\s+\S+(?:\s+\S+)*?\s+AS\s+(\S+)\s*$",
            DOCKERFILE.read_text(encoding="utf-8"),
            flags=re.MULTILINE | re.IGNORECASE,
        )
    )
    targets = {
        name: service["build"]["target"]
        for name, service in services().items()
        if isinstance(service.get("build"), dict) and "target" in service["build"]
    }
    assert targets, "no service builds from the Dockerfile"
    assert {name: target for name, target in targets.items() if target not in stages} == {}


def test_every_long_running_service_has_a_healthcheck() -> None:
    found = services()
    assert found.keys() >= SERVICES
    missing = [
        name
        for name, service in found.items()
        if name != INIT_SERVICE and not (service.get("healthcheck") or {}).get("test")
    ]
    assert missing == []


def test_airflow_services_wait_for_healthy_backends_and_init() -> None:
    airflow = {
        name: service for name, service in services().items() if name.startswith("airflow-") and name != INIT_SERVICE
    }
    assert airflow
    for name, service in airflow.items():
        conditions = {dep: spec["condition"] for dep, spec in service["depends_on"].items()}
        assert conditions.get("postgres") == "service_healthy", name
        assert conditions.get("redis") == "service_healthy", name
        assert conditions.get(INIT_SERVICE) == "service_completed_successfully", name


def test_airflow_runs_the_celery_executor_with_redis() -> None:
    airflow = {name: environment(service) for name, service in services().items() if name.startswith("airflow-")}
    assert airflow
    for name, env in airflow.items():
        assert env.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor", name
        assert env.get("AIRFLOW__CELERY__BROKER_URL", "").startswith("redis://redis:6379/"), name


def test_no_literal_secrets_in_the_compose_file() -> None:
    literal = {
        f"{name}.{key}": value
        for name, service in services().items()
        for key, value in environment(service).items()
        if is_secret(key) and not REQUIRED_SUBSTITUTION.fullmatch(value)
    }
    assert literal == {}, "secrets must be ${VAR:?...} substitutions from .env"
    text = COMPOSE.read_text(encoding="utf-8")
    passwords = URL_PASSWORD.findall(text)
    assert passwords, "expected the connection URLs to carry their passwords from .env"
    literal_in_urls = [
        password
        for password in passwords
        if not (REQUIRED_SUBSTITUTION.fullmatch(password) or RUNTIME_REFERENCE.fullmatch(password))
    ]
    assert literal_in_urls == []


def test_env_example_defines_exactly_the_substituted_variables() -> None:
    used = set(SUBSTITUTION.findall(COMPOSE.read_text(encoding="utf-8")))
    defined = set(env_example())
    assert sorted(used - defined) == [], "used in docker-compose.yml but missing from .env.example"
    assert sorted(defined - used) == [], "in .env.example but unused by docker-compose.yml"


def test_env_example_leaves_every_secret_empty() -> None:
    """So that docker-compose refuses it as it is, instead of starting with values everyone can read here."""
    example = env_example()
    assert {key: value for key, value in example.items() if is_secret(key) and value} == {}
    assert {key for key in example if is_secret(key)} == {secret.name for secret in secrets.SECRETS}, (
        "every secret of .env.example must be known to the secrets check, and every one it knows must be there"
    )


def mounts(service: dict) -> dict[str, str]:
    """Container path -> source (a named volume, or a host path for a bind mount) of a service's short-form volumes."""
    return {volume.split(":")[1]: volume.split(":")[0] for volume in service.get("volumes") or []}


def test_the_triggerer_and_the_workers_share_the_inbox_and_the_wave_archive() -> None:
    """The triggerer sees a delivery; the worker that runs the wave reads it and moves it into data/waves/."""
    found = services()
    for name in ("airflow-triggerer", "airflow-worker"):
        env = environment(found[name])
        assert mounts(found[name]).get(env["SURVEY_INBOX_DIR"]) == "survey-inbox", name
        assert mounts(found[name]).get("/opt/survey/data/waves") == "./data/waves", name
    assert found["airflow-triggerer"]["command"] == ["airflow", "triggerer"]


PROJECT_FILES = (
    "/opt/survey/data",
    "/opt/survey/config",
    "/opt/survey/dbt_project",
    "/opt/survey/dags",
    "/opt/survey/expectations",
    "/opt/survey/scripts",
    "/opt/survey/docker",
    "/opt/survey/src",
)


def test_no_named_volume_hides_the_repositorys_files() -> None:
    """A named volume is filled from the image once and then hides every later image's files: the wave files are
    the checkout's own (a bind mount); specs, codebook, DAGs and code come from the image; only generated state and
    the inbox are volumes."""
    named = set(load_compose()["volumes"])
    hiding = {
        f"{name}: {target}"
        for name, service in services().items()
        for target, source in mounts(service).items()
        if source in named
        and any(target == p or target.startswith(f"{p}/") or p.startswith(f"{target}/") for p in PROJECT_FILES)
    }
    assert hiding == set()
    assert (ROOT / "data" / "waves").is_dir()
    for name, service in services().items():
        if name.startswith("airflow-") and name != INIT_SERVICE:
            assert mounts(service)["/opt/survey/data/waves"] == "./data/waves", name
            assert mounts(service)["/opt/survey/inbox"] == "survey-inbox", name
    assert "survey-inbox" in named


def test_the_airflow_containers_run_as_the_checkouts_owner_with_group_0() -> None:
    """They write the delivered files into the checkout's data/waves/."""
    for name, service in services().items():
        if name.startswith("airflow-"):
            assert re.fullmatch(r"\$\{AIRFLOW_UID:\?[^}]+\}:0", service["user"]), name
    assert "AIRFLOW_UID" in env_example()


def test_published_ports_are_on_the_hosts_loopback_only() -> None:
    published = {name: service.get("ports") or [] for name, service in services().items()}
    assert published["airflow-apiserver"] and published["superset"]
    assert {
        name: ports for name, ports in published.items() if any(not str(p).startswith("127.0.0.1:") for p in ports)
    } == {}


def test_airflow_logs_in_through_the_fab_auth_manager() -> None:
    """Not the development SimpleAuthManager (a generated admin password in the log): users and roles of the FAB
    auth manager, the admin made by the init from .env."""
    airflow = {name: environment(service) for name, service in services().items() if name.startswith("airflow-")}
    assert {name: env.get("AIRFLOW__CORE__AUTH_MANAGER") for name, env in airflow.items()} == dict.fromkeys(
        airflow, FAB_AUTH_MANAGER
    )
    assert re.search(r'"apache-airflow-providers-fab==[0-9.]+"', DOCKERFILE.read_text(encoding="utf-8"))
    init_script = (ROOT / "docker" / "airflow-init.sh").read_text(encoding="utf-8")
    assert "docker/airflow_users.py" in init_script
    assert init_script.index("airflow db migrate") < init_script.index("docker/airflow_users.py")
    init_env = environment(services()[INIT_SERVICE])
    assert REQUIRED_SUBSTITUTION.fullmatch(init_env["AIRFLOW_ADMIN_PASSWORD"])


def duration_seconds(value: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a compose duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


# The longest task measured (docs/performance.md): a 100,000-row workbook's raw load, 16 s.
LONGEST_TASK_SECONDS = 16


def test_the_worker_has_time_to_finish_its_tasks_when_stopped() -> None:
    """Compose kills a container 10 s after asking it to stop, unless stop_grace_period says otherwise: Celery's
    warm shutdown must outlast the longest task, many times over."""
    worker = services()["airflow-worker"]
    assert duration_seconds(str(worker["stop_grace_period"])) >= 10 * LONGEST_TASK_SECONDS
    assert environment(worker)["DUMB_INIT_SETSID"] == "0"


def references(value: object) -> set[str]:
    """The variables a command line refers to: ${VAR} and $VAR as compose substitutes them, $$VAR as the shell."""
    text = " ".join(value) if isinstance(value, list) else str(value or "")
    return set(re.findall(r"\$\$?\{?([A-Za-z_][A-Za-z0-9_]*)", text))


def test_no_secret_is_on_a_command_line() -> None:
    """Commands and healthchecks show in `ps` and `docker inspect`: secrets reach the processes only through their
    environment (the init's scripts read them there)."""
    on_command_lines = {
        f"{name}.{field}: {variable}"
        for name, service in services().items()
        for field in ("command", "entrypoint")
        for variable in references(service.get(field))
        if is_secret(variable)
    } | {
        f"{name}.healthcheck: {variable}"
        for name, service in services().items()
        for variable in references((service.get("healthcheck") or {}).get("test"))
        if is_secret(variable)
    }
    assert on_command_lines == set()
    for script in sorted((ROOT / "docker").glob("*.sh")):
        assert {v for v in references(script.read_text(encoding="utf-8")) if is_secret(v)} == set(), script.name


def test_every_service_waits_for_the_init_which_checks_first() -> None:
    """airflow-init checks its secrets before anything (the image's entrypoint), and no other Airflow service nor
    Superset starts unless it completed."""
    for name, service in services().items():
        if name in ("postgres", "redis", INIT_SERVICE):
            continue
        assert service["depends_on"][INIT_SERVICE]["condition"] == "service_completed_successfully", name
    assert environment(services()[INIT_SERVICE])["SURVEY_SERVICE"] == INIT_SERVICE
    assert INIT_SERVICE in secrets.SERVICES
    assert re.search(
        r'^ENTRYPOINT \["/usr/bin/dumb-init", "--", "bash", "/opt/survey/docker/entrypoint.sh"\]$',
        DOCKERFILE.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    entrypoint = ENTRYPOINT.read_text(encoding="utf-8")
    check = entrypoint.index('python -m survey_warehouse.secrets check "${SURVEY_SERVICE:-airflow}"')
    assert check < entrypoint.index('exec /entrypoint "$@"')
    assert "set -euo pipefail" in entrypoint[:check]


def test_only_the_init_reaches_postgresql_through_its_socket() -> None:
    """The socket is trusted: who mounts it is the superuser."""
    sharing = {name for name, service in services().items() if "postgres-socket" in mounts(service).values()}
    assert sharing == {"postgres", INIT_SERVICE}
    init_env = environment(services()[INIT_SERVICE])
    assert mounts(services()[INIT_SERVICE])[init_env["PGHOST"]] == "postgres-socket"
    assert "PGPASSWORD" not in init_env


@pytest.mark.parametrize(("setting", "behind"), [(None, False), ("true", True), ("false", False)])
def test_superset_behind_a_tls_proxy_trusts_its_headers_and_secures_its_cookie(
    tmp_path: Path, setting: str | None, behind: bool
) -> None:
    """docs/scale-out.md's override for a TLS proxy in front of the loopback-only port (SUPERSET_BEHIND_PROXY)."""
    code = (
        "import runpy; c = runpy.run_path('bi/superset_config.py'); "
        "print(c['ENABLE_PROXY_FIX'], c['SESSION_COOKIE_SECURE'], c['TALISMAN_CONFIG']['session_cookie_secure'])"
    )
    env = {"PATH": os.environ["PATH"], "SURVEY_VAR_DIR": str(tmp_path), "SURVEY_ENV": "development"}
    if setting is not None:
        env["SUPERSET_BEHIND_PROXY"] = setting
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(behind)] * 3


def test_every_service_that_checks_secrets_runs_in_production_whatever_env_says() -> None:
    """No line of .env turns the secrets check off: SURVEY_ENV is fixed to production in every service that runs
    survey code (the Airflow containers and Superset), not read from .env."""
    checked = {name for name in SERVICES if name.startswith("airflow") or name == "superset"}
    for name, service in services().items():
        if name in checked:
            assert environment(service).get("SURVEY_ENV") == "production", name
    assert not re.search(r"^\s*SURVEY_ENV\s*=", ENV_EXAMPLE.read_text(encoding="utf-8"), flags=re.MULTILINE)
