"""The stack's secrets and the one check every service runs before it starts.

In production (SURVEY_ENV=production, in any case) a secret is refused when it is

- not set or empty,
- a placeholder: a placeholder word anywhere in it (`change-me`, `replace-me`, `placeholder`, `password`, `secret`,
  `example`, `dummy`, in any case and spelling: `CHANGE_ME_...`, `please-change-me` too) or one of the development
  defaults below (in any case, spaces and punctuation aside),
- too short: keys under 32 characters, passwords under 16,
- guessable: fewer than 10 different characters, only digits, or one piece repeated (`abcabcabc...`),
- for the Fernet key, not a Fernet key (32 bytes, URL-safe base64; several keys separated by commas when rotating),
  or a key of fewer than 16 different bytes (32 zero bytes is a valid key to Fernet, and no secret),
- the value of another secret: each secret is its own,
- for a password that goes into a connection URL, a character other than letters, digits and - . _ ~ (it would
  break the URL).

The message names the variable of `.env`, never its value, and says how to make one (`make secrets` writes a `.env`
with fresh random values for all of them). In development nothing is refused: a checkout runs with the defaults.

Every service runs the check at start: the Airflow containers in their entrypoint (docker/entrypoint.sh:
`python -m survey_warehouse.secrets check airflow`, `airflow-init` first, and nothing else starts unless it
succeeds), Superset in its configuration (bi/superset_config.py) and its launcher (bi/run_superset.py), and the
package whenever it reads the pseudonym key (settings.pseudonym_key).

Only the standard library: Superset's environment and image have no survey_warehouse package and load this file by
its path, and `make secrets` runs it with any Python 3.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# The development defaults: what a checkout runs with when nothing is set. Production refuses each of them.
DEV_PSEUDONYM_KEY = "development-only-pseudonym-key"
DEV_SUPERSET_SECRET_KEY = "survey-warehouse-superset-development-key-not-for-production"  # noqa: S105
DEV_ADMIN_PASSWORD = "admin"  # noqa: S105
DEVELOPMENT_DEFAULTS = frozenset({DEV_PSEUDONYM_KEY, DEV_SUPERSET_SECRET_KEY, DEV_ADMIN_PASSWORD})

KEY, PASSWORD, FERNET = "key", "password", "fernet"
MIN_LENGTH = {KEY: 32, PASSWORD: 16}
FERNET_KEY_BYTES = 32
# a random value of the lengths above has some 20 different characters (a Fernet key some 28 different bytes)
MIN_DISTINCT_CHARACTERS = 10
MIN_DISTINCT_FERNET_BYTES = 16
# words no random value holds, written into values meant to be replaced (compared without case, spaces or punctuation)
PLACEHOLDER_WORDS = ("changeme", "replaceme", "placeholder", "password", "secret", "example", "dummy")
# a password inside postgresql://user:<password>@host/... is not escaped there
URL_SAFE = re.compile(r"[A-Za-z0-9._~-]*")
MAKE_SECRETS = "run `make secrets` to write a .env with fresh random values for every secret"
HOW_TO_MAKE = {
    KEY: "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
    PASSWORD: "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'",
    FERNET: "python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'",
}


class SecretsError(RuntimeError):
    """A secret production refuses, or a SURVEY_ENV that is neither development nor production."""


@dataclass(frozen=True)
class Secret:
    """A secret of `.env` (`name`), and the variables a service reads it from: the variable itself, others that
    hold the same value (`also_in`), and connection URLs that carry it as their password (`in_urls`)."""

    name: str
    kind: str
    also_in: tuple[str, ...] = ()
    in_urls: tuple[str, ...] = ()
    in_url_unescaped: bool = False

    def found(self, env: Mapping[str, str]) -> list[tuple[str, str]]:
        """(where, value) for every variable of `env` this secret is in; a URL without a password gives ''."""
        values = [(variable, env[variable]) for variable in (self.name, *self.also_in) if variable in env]
        for variable in self.in_urls:
            if variable in env:
                values.append((f"the password in {variable}", _url_password(env[variable])))
        return values


def _url_password(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        return ""
    return unquote(password or "")


SECRETS: tuple[Secret, ...] = (
    Secret("POSTGRES_PASSWORD", PASSWORD),
    Secret(
        "AIRFLOW_DB_PASSWORD",
        PASSWORD,
        in_urls=("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"),
        in_url_unescaped=True,
    ),
    Secret("AIRFLOW_JWT_SECRET", KEY, also_in=("AIRFLOW__API_AUTH__JWT_SECRET",)),
    Secret("AIRFLOW_API_SECRET_KEY", KEY, also_in=("AIRFLOW__API__SECRET_KEY",)),
    Secret("AIRFLOW_FERNET_KEY", FERNET, also_in=("AIRFLOW__CORE__FERNET_KEY",)),
    Secret("AIRFLOW_ADMIN_PASSWORD", PASSWORD),
    Secret("WAREHOUSE_DB_PASSWORD", PASSWORD, in_urls=("AIRFLOW_CONN_SURVEY_WAREHOUSE",), in_url_unescaped=True),
    Secret("SURVEY_READER_PASSWORD", PASSWORD, in_urls=("SURVEY_MARTS_URI",), in_url_unescaped=True),
    Secret("SURVEY_PSEUDONYM_KEY", KEY),
    Secret("SUPERSET_SECRET_KEY", KEY),
    Secret("SUPERSET_DB_PASSWORD", PASSWORD, in_urls=("SUPERSET__SQLALCHEMY_DATABASE_URI",), in_url_unescaped=True),
    Secret("SUPERSET_ADMIN_PASSWORD", PASSWORD),
)
BY_NAME = {secret.name: secret for secret in SECRETS}


@dataclass(frozen=True)
class Service:
    """What a service checks: the secrets it cannot run without, and those it checks only where they are given
    (a connection URL outside docker-compose may rightly have no password: SQLite, peer or trust authentication)."""

    required: tuple[str, ...]
    where_given: tuple[str, ...] = ()


_AIRFLOW = (
    "AIRFLOW_DB_PASSWORD",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_FERNET_KEY",
    "WAREHOUSE_DB_PASSWORD",
    "SURVEY_PSEUDONYM_KEY",
)
SERVICES: dict[str, Service] = {
    # every long-running Airflow container of docker-compose.yml
    "airflow": Service(_AIRFLOW),
    # docker-compose's airflow-init: also the passwords it gives the database roles and the Airflow admin
    "airflow-init": Service(
        (
            *_AIRFLOW,
            "POSTGRES_PASSWORD",
            "SURVEY_READER_PASSWORD",
            "SUPERSET_DB_PASSWORD",
            "AIRFLOW_ADMIN_PASSWORD",
        )
    ),
    # Superset, in docker-compose or started by bi/run_superset.py
    "superset": Service(
        ("SUPERSET_SECRET_KEY", "SUPERSET_ADMIN_PASSWORD"),
        where_given=("SUPERSET_DB_PASSWORD", "SURVEY_READER_PASSWORD"),
    ),
    # the package itself, wherever it reads the pseudonym key
    "pseudonyms": Service(("SURVEY_PSEUDONYM_KEY",)),
}


def is_production(env: Mapping[str, str] | None = None) -> bool:
    """SURVEY_ENV, in any case: `production`, or `development` (also when unset or empty). Anything else is refused
    rather than taken for development: a misspelt `production` must not run with the development defaults."""
    env = os.environ if env is None else env
    value = (env.get("SURVEY_ENV") or "development").strip().lower()
    if value in ("production", "development"):
        return value == "production"
    raise SecretsError(f"SURVEY_ENV must be production or development, not {value!r}")


def _letters(value: str) -> str:
    """A value's letters and digits only, without case: how placeholders and defaults are compared."""
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKC", value).casefold())


def is_placeholder(value: str) -> bool:
    """A value nobody should run with: a placeholder word anywhere in it (`change-me...` in any spelling), or a
    development default (in any case, spaces and punctuation aside; the long ones also inside a longer value)."""
    letters = _letters(value)
    if any(word in letters for word in PLACEHOLDER_WORDS):
        return True
    return any(
        letters == _letters(default) or (len(default) >= MIN_LENGTH[PASSWORD] and _letters(default) in letters)
        for default in DEVELOPMENT_DEFAULTS
    )


def guessable(value: str) -> str | None:
    """Why a value of the right length is still no secret: too few different characters, only digits, or one piece
    repeated; else None."""
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return f"has too few different characters ({len(set(value))}; at least {MIN_DISTINCT_CHARACTERS})"
    if value.isdigit():
        return "is only digits"
    if re.fullmatch(r"(.+?)\1+", value, flags=re.DOTALL):
        return "is one piece repeated"
    return None


def is_fernet_key(value: str) -> bool:
    """Whether Airflow can make its Fernet from `value`: every comma-separated key decodes, as cryptography's Fernet
    decodes it (URL-safe base64, other characters skipped), to 32 bytes."""
    for key in value.split(","):
        try:
            raw = base64.urlsafe_b64decode(key.encode("utf-8"))
        except (binascii.Error, ValueError):
            return False
        if len(raw) != FERNET_KEY_BYTES:
            return False
    return True


def problem(secret: Secret, value: str) -> str | None:
    """What is wrong with `value` for `secret`, or None."""
    if not value.strip():
        return "is empty"
    if is_placeholder(value):
        return "is a placeholder or a development default"
    if secret.kind == FERNET:
        return _fernet_problem(value)
    if len(value) < MIN_LENGTH[secret.kind]:
        return f"is too short ({len(value)} characters; a {secret.kind} needs at least {MIN_LENGTH[secret.kind]})"
    if secret.in_url_unescaped and not URL_SAFE.fullmatch(value):
        return "has characters a connection URL cannot hold unescaped (use letters, digits and - . _ ~)"
    return guessable(value)


def _fernet_problem(value: str) -> str | None:
    """What is wrong with a Fernet key (several when rotating), or None."""
    if not is_fernet_key(value):
        return "is not a Fernet key (32 bytes, URL-safe base64)"
    fewest = min(len(set(base64.urlsafe_b64decode(key.encode("utf-8")))) for key in value.split(","))
    if fewest < MIN_DISTINCT_FERNET_BYTES:
        return f"is a Fernet key of {fewest} different bytes, not a random one (at least {MIN_DISTINCT_FERNET_BYTES})"
    return None


def problems(names: Iterable[str], env: Mapping[str, str], required: bool = True) -> list[str]:
    """One line per refused secret of `names`: the variable, what is wrong, how to make one; a value given to two
    secrets is refused for the second."""
    found = []
    holders: dict[str, set[str]] = {}
    for name in names:
        secret = BY_NAME[name]
        values = secret.found(env)
        if not values and required:
            found.append(f"{name} is not set; make one with: {HOW_TO_MAKE[secret.kind]}")
        for where, value in values:
            if not value and not required:
                continue  # not given here: a URL without a password (SQLite, peer or trust authentication)
            wrong = problem(secret, value)
            if wrong:
                shown = name if where == name else f"{name} ({where})"
                found.append(f"{shown} {wrong}; make one with: {HOW_TO_MAKE[secret.kind]}")
            elif value:
                holders.setdefault(value, set()).add(name)
    for names_of_value in holders.values():
        if len(names_of_value) > 1:
            first, *others = sorted(names_of_value)
            found += [
                f"{other} is the value of {first}: each secret is its own; make one with: "
                f"{HOW_TO_MAKE[BY_NAME[other].kind]}"
                for other in others
            ]
    return found


def check(service: str, env: Mapping[str, str] | None = None) -> None:
    """Refuse to start `service` in production with any secret that is missing, a placeholder, too short or (Fernet)
    not a key: raises SecretsError naming each. In development it does nothing."""
    env = os.environ if env is None else env
    if not is_production(env):
        return
    wanted = SERVICES[service]
    found = problems(wanted.required, env) + problems(wanted.where_given, env, required=False)
    if found:
        raise SecretsError(
            f"SURVEY_ENV=production refuses to start {service} with these secrets:\n"
            + "".join(f"  - {line}\n" for line in found)
            + f"Set them in .env, or {MAKE_SECRETS} (it refuses to overwrite an existing .env)."
        )


def secret_value(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    """A secret's value: in production it must pass the check; in development an unset or empty one is `default`."""
    env = os.environ if env is None else env
    if is_production(env):
        found = problems([name], env)
        if found:
            raise SecretsError(f"SURVEY_ENV=production: {found[0]}; or {MAKE_SECRETS}")
        return env[name]
    return env.get(name) or default


def generate(kind: str) -> str:
    """A fresh random value of the kind, one the check accepts (URL-safe characters only)."""
    if kind == FERNET:
        return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
    # what secrets.token_urlsafe does (this module's own name hides the standard one when run as a file)
    return base64.urlsafe_b64encode(os.urandom(32 if kind == KEY else 24)).rstrip(b"=").decode("ascii")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m survey_warehouse.secrets", description="Check the secrets a service starts with."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="refuse (exit 1) what production must not run with")
    checking.add_argument("service", choices=sorted(SERVICES))
    args = parser.parse_args(argv)
    try:
        check(args.service)
    except SecretsError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
