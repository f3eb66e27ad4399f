"""The one secrets check (survey_warehouse.secrets) and everything that runs it: in production every secret is
refused when missing, empty, a placeholder, a development default, too short or (Fernet) not a key, whatever the
case of SURVEY_ENV; the Airflow entrypoint, Superset's configuration and launcher, and the pseudonym key all refuse
to start with one. `make secrets` writes a .env the check accepts, and never overwrites one."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet

from survey_warehouse import secrets
from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.secrets import FERNET, KEY, PASSWORD, SECRETS, SERVICES, SecretsError, check
from survey_warehouse.settings import DEV_PSEUDONYM_KEY, pseudonym_key

ROOT = Path(__file__).resolve().parents[1]
PYTHON_BIN = Path(sys.executable).parent


def parse_env(text: str) -> dict[str, str]:
    """NAME=value lines, as docker-compose reads an env file (comments and blank lines skipped)."""
    pairs = [line.split("=", 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return {name.strip(): value.strip() for name, value in pairs}


def valid(kind: str) -> str:
    return secrets.generate(kind)


def valid_env(service: str, survey_env: str = "production") -> dict[str, str]:
    """The .env names of every secret the service needs, each with a good value."""
    wanted = SERVICES[service]
    names = (*wanted.required, *wanted.where_given)
    return {"SURVEY_ENV": survey_env} | {name: valid(secrets.BY_NAME[name].kind) for name in names}


@pytest.mark.parametrize("survey_env", ["production", "Production", "PRODUCTION", " production\n"])
def test_production_in_any_case_refuses_a_placeholder(survey_env: str) -> None:
    env = valid_env("airflow-init", survey_env) | {"AIRFLOW_JWT_SECRET": "change-me-airflow-jwt-secret"}
    with pytest.raises(SecretsError, match="AIRFLOW_JWT_SECRET is a placeholder"):
        check("airflow-init", env)


@pytest.mark.parametrize("survey_env", ["prod", "staging", "productoin"])
def test_an_unknown_survey_env_is_refused_rather_than_taken_for_development(survey_env: str) -> None:
    with pytest.raises(SecretsError, match="SURVEY_ENV must be production or development"):
        check("airflow", {"SURVEY_ENV": survey_env})


@pytest.mark.parametrize("survey_env", [None, "", "development", "Development"])
def test_development_runs_with_anything(survey_env: str | None) -> None:
    env = {} if survey_env is None else {"SURVEY_ENV": survey_env}
    check("airflow-init", env | {"AIRFLOW_FERNET_KEY": "change-me"})


@pytest.mark.parametrize("secret", SECRETS, ids=lambda s: s.name)
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("change-me-and-make-it-long-enough-for-any-check-xx", "is a placeholder"),
        ("CHANGE_ME_TO_A_COMPLEX_RANDOM_SECRET_AND_SOME_MORE_CHARS", "is a placeholder"),
        ("Change Me, please: this is long enough for every kind", "is a placeholder"),
    ],
)
def test_every_secret_refuses_empty_and_placeholder_values(secret: secrets.Secret, value: str, why: str) -> None:
    service = next(name for name, s in SERVICES.items() if secret.name in s.required)
    env = valid_env(service) | {secret.name: value}
    with pytest.raises(SecretsError) as refused:
        check(service, env)
    assert f"{secret.name} {why}" in str(refused.value)
    assert "make secrets" in str(refused.value)
    assert "make one with: python3 -c" in str(refused.value)


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("SURVEY_PSEUDONYM_KEY", secrets.DEV_PSEUDONYM_KEY),
        ("SUPERSET_SECRET_KEY", secrets.DEV_SUPERSET_SECRET_KEY),
        ("SUPERSET_ADMIN_PASSWORD", secrets.DEV_ADMIN_PASSWORD),
    ],
)
def test_the_development_defaults_are_refused(name: str, default: str) -> None:
    service = next(s for s, wanted in SERVICES.items() if name in wanted.required)
    with pytest.raises(SecretsError, match=f"{name} is a placeholder or a development default"):
        check(service, valid_env(service) | {name: default})


@pytest.mark.parametrize("secret", SECRETS, ids=lambda s: s.name)
def test_every_secret_that_is_not_given_is_named(secret: secrets.Secret) -> None:
    service = next(name for name, s in SERVICES.items() if secret.name in s.required)
    env = {k: v for k, v in valid_env(service).items() if k != secret.name}
    with pytest.raises(SecretsError, match=f"{secret.name} is not set"):
        check(service, env)


@pytest.mark.parametrize(("kind", "shortest"), [(KEY, 32), (PASSWORD, 16)])
def test_a_secret_shorter_than_its_kind_allows_is_refused(kind: str, shortest: int) -> None:
    secret = next(s for s in SECRETS if s.kind == kind)
    service = next(name for name, s in SERVICES.items() if secret.name in s.required)
    varied = secrets.generate(KEY) + secrets.generate(KEY)
    with pytest.raises(SecretsError, match=f"{secret.name} is too short \\({shortest - 1} characters"):
        check(service, valid_env(service) | {secret.name: varied[: shortest - 1]})
    check(service, valid_env(service) | {secret.name: varied[:shortest]})


def _fernet_accepts(value: str) -> bool:
    """What Airflow does with [core] fernet_key: a MultiFernet of every comma-separated key."""
    try:
        MultiFernet([Fernet(key.strip().encode()) for key in value.split(",")])
    except (ValueError, TypeError):
        return False
    return True


# fixed bytes, not random ones: the test ids must be the same in every test process (pytest-xdist compares them)
_BYTES = bytes(range(7, 7 + 33))
GOOD_FERNET = base64.urlsafe_b64encode(_BYTES[:32]).decode()
FERNET_SAMPLES = [
    GOOD_FERNET,
    f"{base64.urlsafe_b64encode(_BYTES[1:33]).decode()},{GOOD_FERNET}",
    "change-me-airflow-fernet-key",
    GOOD_FERNET[:-2],
    base64.urlsafe_b64encode(_BYTES[:31]).decode(),
    base64.urlsafe_b64encode(_BYTES[:33]).decode(),
    base64.b64encode(bytes(range(200, 232))).decode().replace("-", "+").replace("_", "/") + "+/",
    "a" * 44,
    f"{GOOD_FERNET},not-a-key",
    "x" * 43 + "=",
    f" {GOOD_FERNET}",
    f"{GOOD_FERNET}\u00e9",
]


def _random_bytes(value: str) -> bool:
    """Every comma-separated key of 16 different bytes or more (random 32 bytes have some 28)."""
    return all(len(set(base64.urlsafe_b64decode(key.strip().encode()))) >= 16 for key in value.split(","))


@pytest.mark.parametrize("value", FERNET_SAMPLES)
def test_the_fernet_key_is_refused_exactly_when_fernet_refuses_it_or_it_is_no_random_key(value: str) -> None:
    env = valid_env("airflow") | {"AIRFLOW_FERNET_KEY": value}
    if _fernet_accepts(value) and not secrets.is_placeholder(value) and _random_bytes(value):
        check("airflow", env)
    else:
        with pytest.raises(
            SecretsError, match=r"AIRFLOW_FERNET_KEY (is not a Fernet key|is a placeholder|is a Fernet key of \d+ diff)"
        ):
            check("airflow", env)


def _constant_fernet(byte: int) -> str:
    return base64.urlsafe_b64encode(bytes([byte]) * 32).decode()


@pytest.mark.parametrize("secret", SECRETS, ids=lambda s: s.name)
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("please-change-me-to-a-random-value-xx", "is a placeholder"),
        ("REPLACE_ME_WITH_A_LONG_RANDOM_STRING_0123", "is a placeholder"),
        ("my-Secret-Key-2026-for-the-warehouse-x", "is a placeholder"),
        ("MyPassword-for-the-Warehouse-2026!", "is a placeholder"),
        (secrets.DEV_SUPERSET_SECRET_KEY.capitalize(), "is a placeholder or a development default"),
        (secrets.DEV_SUPERSET_SECRET_KEY + " ", "is a placeholder or a development default"),
        (secrets.DEV_PSEUDONYM_KEY.upper() + "-2", "is a placeholder or a development default"),
        ("a" * 40, "has too few different characters"),
        ("abcdabcdabcdabcdabcdabcdabcdabcd", "has too few different characters"),
        ("1234567890123456789012345678901234", "is only digits"),
        ("k7Qz2mXp9Lw4k7Qz2mXp9Lw4k7Qz2mXp9Lw4", "is one piece repeated"),
    ],
)
def test_every_secret_refuses_a_guessable_value_of_the_right_length(
    secret: secrets.Secret, value: str, why: str
) -> None:
    service = next(name for name, s in SERVICES.items() if secret.name in s.required)
    if secret.kind == FERNET:
        value = _constant_fernet(0) if "few" in why else value
        why = "is a Fernet key of 1 different bytes" if "few" in why else why
    elif secret.in_url_unescaped:
        value = value.replace(" ", "-").replace("!", "~")
    if secret.kind == FERNET and why != "is a Fernet key of 1 different bytes":
        why = "(is not a Fernet key|is a placeholder)"
    with pytest.raises(SecretsError, match=f"{secret.name} {why}"):
        check(service, valid_env(service) | {secret.name: value})


def test_one_value_for_two_secrets_is_refused_for_the_second() -> None:
    env = valid_env("airflow-init")
    env["WAREHOUSE_DB_PASSWORD"] = env["AIRFLOW_DB_PASSWORD"]
    with pytest.raises(SecretsError) as refused:
        check("airflow-init", env)
    assert "WAREHOUSE_DB_PASSWORD is the value of AIRFLOW_DB_PASSWORD: each secret is its own" in str(refused.value)
    assert env["AIRFLOW_DB_PASSWORD"] not in str(refused.value)
    env["WAREHOUSE_DB_PASSWORD"] = valid(PASSWORD)
    check("airflow-init", env)


def test_a_random_value_of_every_kind_is_never_taken_for_a_guessable_one() -> None:
    """The check refuses no value `make secrets` or the commands it suggests write (2,000 of each kind)."""
    for kind in (KEY, PASSWORD, FERNET):
        secret = next(s for s in SECRETS if s.kind == kind)
        refused = [v for v in (secrets.generate(kind) for _ in range(2000)) if secrets.problem(secret, v)]
        assert not refused, refused[:3]


def test_a_generated_secret_of_every_kind_passes_and_differs_each_time() -> None:
    for kind in (KEY, PASSWORD, FERNET):
        values = {secrets.generate(kind) for _ in range(5)}
        assert len(values) == 5
    assert all(_fernet_accepts(secrets.generate(FERNET)) for _ in range(5))
    for service in SERVICES:
        check(service, valid_env(service))


def _airflow_container_env(**dotenv: str) -> dict[str, str]:
    """An Airflow container's variables as docker-compose.yml makes them from .env."""
    return {
        "SURVEY_ENV": "production",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow:{dotenv['AIRFLOW_DB_PASSWORD']}@postgres/airflow",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://airflow:{dotenv['AIRFLOW_DB_PASSWORD']}@postgres/airflow",
        "AIRFLOW__API_AUTH__JWT_SECRET": dotenv["AIRFLOW_JWT_SECRET"],
        "AIRFLOW__API__SECRET_KEY": dotenv["AIRFLOW_API_SECRET_KEY"],
        "AIRFLOW__CORE__FERNET_KEY": dotenv["AIRFLOW_FERNET_KEY"],
        "AIRFLOW_CONN_SURVEY_WAREHOUSE": f"postgresql://wh:{dotenv['WAREHOUSE_DB_PASSWORD']}@postgres:5432/wh",
        "SURVEY_PSEUDONYM_KEY": dotenv["SURVEY_PSEUDONYM_KEY"],
    }


def test_a_secret_is_checked_where_the_service_reads_it_in_urls_and_airflow_variables() -> None:
    dotenv = {name: valid(secrets.BY_NAME[name].kind) for name in SERVICES["airflow"].required}
    check("airflow", _airflow_container_env(**dotenv))
    placeholder = _airflow_container_env(**(dotenv | {"AIRFLOW_DB_PASSWORD": "change-me-airflow-db"}))
    with pytest.raises(SecretsError) as refused:
        check("airflow", placeholder)
    assert "AIRFLOW_DB_PASSWORD (the password in AIRFLOW__DATABASE__SQL_ALCHEMY_CONN) is a placeholder" in str(
        refused.value
    )
    assert "AIRFLOW_DB_PASSWORD (the password in AIRFLOW__CELERY__RESULT_BACKEND) is a placeholder" in str(
        refused.value
    )
    bad_fernet = _airflow_container_env(**(dotenv | {"AIRFLOW_FERNET_KEY": "x" * 44}))
    with pytest.raises(SecretsError, match=r"AIRFLOW_FERNET_KEY \(AIRFLOW__CORE__FERNET_KEY\) is not a Fernet key"):
        check("airflow", bad_fernet)


def test_a_url_password_that_would_break_its_url_is_refused() -> None:
    env = valid_env("airflow-init") | {"WAREHOUSE_DB_PASSWORD": "p@ss/w:rd#and-long-enough"}
    with pytest.raises(SecretsError, match="WAREHOUSE_DB_PASSWORD has characters a connection URL cannot hold"):
        check("airflow-init", env)


def test_superset_checks_url_passwords_only_where_given() -> None:
    """Outside docker-compose the marts may be a DuckDB file and the metadata SQLite: nothing to check there."""
    env = {"SURVEY_ENV": "production", "SUPERSET_SECRET_KEY": valid(KEY), "SUPERSET_ADMIN_PASSWORD": valid(PASSWORD)}
    check("superset", env)
    check("superset", env | {"SURVEY_MARTS_URI": "postgresql://survey_reader@db:5432/wh"})
    with pytest.raises(SecretsError, match=r"SURVEY_READER_PASSWORD \(the password in SURVEY_MARTS_URI\) is a"):
        check("superset", env | {"SURVEY_MARTS_URI": "postgresql://survey_reader:change-me-reader@db:5432/wh"})


def test_no_message_shows_a_secret() -> None:
    env = valid_env("airflow-init")
    short = "short-Key-9xQ"
    env |= {"SURVEY_PSEUDONYM_KEY": short, "AIRFLOW_FERNET_KEY": "NotAFernetKeyButLongEnoughToBeAKeyOtherwise"}
    with pytest.raises(SecretsError) as refused:
        check("airflow-init", env)
    message = str(refused.value)
    assert "SURVEY_PSEUDONYM_KEY is too short" in message
    assert short not in message
    assert "NotAFernetKey" not in message


@pytest.mark.parametrize("survey_env", ["production", "Production"])
@pytest.mark.parametrize("value", [None, "", "change-me-survey-pseudonym-key", DEV_PSEUDONYM_KEY, "short-key"])
def test_the_pseudonym_key_is_refused_in_production(
    monkeypatch: pytest.MonkeyPatch, survey_env: str, value: str | None
) -> None:
    monkeypatch.setenv("SURVEY_ENV", survey_env)
    if value is None:
        monkeypatch.delenv("SURVEY_PSEUDONYM_KEY", raising=False)
    else:
        monkeypatch.setenv("SURVEY_PSEUDONYM_KEY", value)
    with pytest.raises(SurveyWarehouseError, match="SURVEY_PSEUDONYM_KEY"):
        pseudonym_key()


def test_the_pseudonym_key_in_production_and_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    key = valid(KEY)
    monkeypatch.setenv("SURVEY_ENV", "PRODUCTION")
    monkeypatch.setenv("SURVEY_PSEUDONYM_KEY", key)
    assert pseudonym_key() == key
    monkeypatch.setenv("SURVEY_ENV", "development")
    monkeypatch.setenv("SURVEY_PSEUDONYM_KEY", "")
    assert pseudonym_key() == DEV_PSEUDONYM_KEY


# --- the services that run the check ------------------------------------------------------------------------------


def _run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    path = f"{PYTHON_BIN}{os.pathsep}{os.environ['PATH']}"
    # this checkout's package, however the environment's is installed
    base = {"PATH": path, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(args, env=base | env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_airflow_entrypoint_stops_before_airflow_with_a_placeholder(tmp_path: Path) -> None:
    dotenv = {name: valid(secrets.BY_NAME[name].kind) for name in SERVICES["airflow"].required}
    env = _airflow_container_env(**(dotenv | {"SURVEY_PSEUDONYM_KEY": "change-me-survey-pseudonym-key"}))
    result = _run(["bash", str(ROOT / "docker" / "entrypoint.sh"), "airflow", "scheduler"], env)
    assert result.returncode == 1
    assert "SURVEY_PSEUDONYM_KEY is a placeholder" in result.stderr
    assert "/entrypoint" not in result.stderr
    accepted = _run(
        ["bash", str(ROOT / "docker" / "entrypoint.sh"), "airflow", "scheduler"], _airflow_container_env(**dotenv)
    )
    assert "/entrypoint" in accepted.stderr  # checked, then handed to the image's entrypoint (absent here)


def test_the_init_entrypoint_also_checks_the_roles_passwords() -> None:
    dotenv = valid_env("airflow-init")
    env = _airflow_container_env(**dotenv) | {
        "SURVEY_SERVICE": "airflow-init",
        "POSTGRES_PASSWORD": dotenv["POSTGRES_PASSWORD"],
        "SURVEY_READER_PASSWORD": dotenv["SURVEY_READER_PASSWORD"],
        "SUPERSET_DB_PASSWORD": "short",
        "WAREHOUSE_DB_PASSWORD": dotenv["WAREHOUSE_DB_PASSWORD"],
    }
    result = _run(["bash", str(ROOT / "docker" / "entrypoint.sh"), "bash", "-c", "true"], env)
    assert result.returncode == 1
    assert "SUPERSET_DB_PASSWORD is too short" in result.stderr
    assert "AIRFLOW_ADMIN_PASSWORD is not set" in result.stderr


def test_superset_config_refuses_a_placeholder_in_production(tmp_path: Path) -> None:
    code = "import runpy; runpy.run_path('bi/superset_config.py')"
    env = {
        "SURVEY_VAR_DIR": str(tmp_path),
        "SURVEY_ENV": "Production",
        "SUPERSET_SECRET_KEY": "change-me-superset-secret-key",
        "SUPERSET_ADMIN_PASSWORD": valid(PASSWORD),
    }
    refused = _run([sys.executable, "-c", code], env)
    assert refused.returncode == 1
    assert "SUPERSET_SECRET_KEY is a placeholder" in refused.stderr
    accepted = _run([sys.executable, "-c", code], env | {"SUPERSET_SECRET_KEY": valid(KEY)})
    assert accepted.returncode == 0, accepted.stderr


def test_run_superset_stops_first_with_a_development_admin_password(tmp_path: Path) -> None:
    env = {
        "SURVEY_VAR_DIR": str(tmp_path),
        "SURVEY_ENV": "PRODUCTION",
        "SUPERSET_SECRET_KEY": valid(KEY),
        "SUPERSET_ADMIN_PASSWORD": "admin",
    }
    result = _run([sys.executable, str(ROOT / "bi" / "run_superset.py")], env)
    assert result.returncode == 1
    assert "SUPERSET_ADMIN_PASSWORD is a placeholder or a development default" in result.stderr
    assert not (tmp_path / "superset").exists(), "nothing may start before the check"


# --- make secrets -------------------------------------------------------------------------------------------------


def _make_secrets(output: Path) -> subprocess.CompletedProcess[str]:
    # a bare Python, no project environment: the deployment host's
    return _run(["python3", str(ROOT / "scripts" / "make_secrets.py"), "--output", str(output)], {}, cwd=output.parent)


def test_make_secrets_writes_a_env_every_service_accepts(tmp_path: Path) -> None:
    output = tmp_path / ".env"
    result = _make_secrets(output)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    dotenv = parse_env(output.read_text(encoding="utf-8"))
    assert {secret.name for secret in SECRETS} <= {name for name, value in dotenv.items() if value}
    assert dotenv["AIRFLOW_UID"] == str(os.getuid() or 50000)
    for service in SERVICES:
        check(service, dotenv)
    for secret in SECRETS:
        assert dotenv[secret.name] not in result.stdout + result.stderr
    again = tmp_path / "again" / ".env"
    again.parent.mkdir()
    assert _make_secrets(again).returncode == 0
    other = parse_env(again.read_text(encoding="utf-8"))
    assert [name for name in (s.name for s in SECRETS) if other[name] == dotenv[name]] == []


def test_make_secrets_never_overwrites_a_env(tmp_path: Path) -> None:
    output = tmp_path / ".env"
    output.write_text("SURVEY_PSEUDONYM_KEY=the-key-every-pseudonym-was-made-with\n", encoding="utf-8")
    result = _make_secrets(output)
    assert result.returncode == 1
    assert "exists" in result.stderr
    assert output.read_text(encoding="utf-8") == "SURVEY_PSEUDONYM_KEY=the-key-every-pseudonym-was-made-with\n"
