"""The scale-out stack: docker-compose.yml valid for docker-compose 1.29, consistent with the Dockerfile, .env.example
and pyproject.toml, and free of secrets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

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


def run_config(docker_compose: str, env_file: Path) -> subprocess.CompletedProcess[str]:
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
            "-q",
        ],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_is_valid_with_env_example(docker_compose: str) -> None:
    result = run_config(docker_compose, ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_secret(docker_compose: str, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(
        "".join(f"{key}={value}\n" for key, value in env_example().items() if key != "AIRFLOW_JWT_SECRET"),
        encoding="utf-8",
    )
    result = run_config(docker_compose, env_file)
    assert result.returncode != 0
    assert "set AIRFLOW_JWT_SECRET in .env" in result.stderr


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


def test_env_example_holds_placeholders_only() -> None:
    real_looking = {key: value for key, value in env_example().items() if is_secret(key) and "change-me" not in value}
    assert real_looking == {}


def test_the_triggerer_and_the_workers_share_the_inbox_and_the_wave_archive() -> None:
    """The triggerer sees a delivery; the worker that runs the wave reads it and moves it into data/waves/."""
    found = services()
    for name in ("airflow-triggerer", "airflow-worker"):
        env = environment(found[name])
        mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in found[name]["volumes"]}
        assert mounts.get(env["SURVEY_INBOX_DIR"]) == "survey-inbox", (name, mounts)
        assert mounts.get("/opt/survey/data/waves") == "survey-waves", (name, mounts)
    assert found["airflow-triggerer"]["command"] == ["airflow", "triggerer"]
