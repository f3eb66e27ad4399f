"""Start Apache Superset on the marts, with the dashboard kept as code in bi/dashboards/.

    .tools/bin/uv sync --frozen --project bi          # once: Superset's own environment in bi/.venv
    bi/.venv/bin/python bi/run_superset.py            # the published DuckDB file; open the URL it prints
    SURVEY_MARTS_URI=postgresql://survey_reader@<host>:5432/<database> bi/.venv/bin/python bi/run_superset.py

Steps: `superset db upgrade` (metadata in SQLite under <SURVEY_VAR_DIR>/superset/, or where
SUPERSET__SQLALCHEMY_DATABASE_URI says), `superset init` (roles and permissions; on SQLite both are skipped once
they have run for this Superset version), the admin user (created, or its
password reset to SUPERSET_ADMIN_PASSWORD), the dashboard bundle (bi/build_bundle.py, with the database set for the
marts' engine: the published DuckDB file or the PostgreSQL warehouse) imported with overwrite, then the web server
(gunicorn, one worker) until Ctrl-C or SIGTERM, which stop it cleanly. docker-compose's superset service runs this
same script against the PostgreSQL marts.

| Variable                 | Default                                   | Meaning                                          |
| ------------------------ | ----------------------------------------- | ------------------------------------------------ |
| SURVEY_VAR_DIR           | <repo>/var                                | Superset's state: <SURVEY_VAR_DIR>/superset/     |
| SURVEY_MARTS_URI         | (none: the published DuckDB file)         | the PostgreSQL marts: postgresql://survey_reader[:<password>]@<host>:<port>/<database> |
| SURVEY_PUBLISHED_PATH    | <SURVEY_VAR_DIR>/published/survey_marts.duckdb | the DuckDB marts the dashboard reads (read-only) |
| SUPERSET_PORT            | 8088                                      | the port                                         |
| SUPERSET_HOST            | 127.0.0.1                                 | the address to listen on                         |
| SUPERSET_ADMIN_USER      | admin                                     | the admin user's name                            |
| SUPERSET_ADMIN_EMAIL     | admin@localhost                           | the admin user's e-mail address (when created)   |
| SUPERSET_ADMIN_PASSWORD  | admin (development only)                  | the admin user's password                        |
| SUPERSET_SECRET_KEY      | a development key (superset_config.py)    | Flask's secret key                               |
| SURVEY_ENV               | development                               | `production` (any case) runs the secrets check   |

In production the script stops before anything else, naming each variable and how to make one, when a secret is
missing, a placeholder (`change-me...`), a development default or too short: SUPERSET_SECRET_KEY,
SUPERSET_ADMIN_PASSWORD, and the passwords in SUPERSET__SQLALCHEMY_DATABASE_URI and SURVEY_MARTS_URI when they have
one (the project's one secrets check, src/survey_warehouse/secrets.py, which superset_config.py runs too).

A password in SURVEY_MARTS_URI goes to Superset's import beside the bundle (stored encrypted with the secret key),
never into the bundle file on disk.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType

BI_DIR = Path(__file__).resolve().parent
REPO_ROOT = BI_DIR.parent


def survey_secrets() -> ModuleType:
    """survey_warehouse.secrets, loaded by its path: Superset's environment has no survey_warehouse package (the
    Superset image has the file at the same place relative to bi/)."""
    name = "survey_warehouse_secrets"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "src" / "survey_warehouse" / "secrets.py")
        if spec is None or spec.loader is None:
            sys.exit(f"cannot load the secrets check from {REPO_ROOT / 'src' / 'survey_warehouse'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


DEVELOPMENT_ADMIN_PASSWORD = survey_secrets().DEV_ADMIN_PASSWORD


def check_secrets() -> None:
    """The secrets check for Superset (SURVEY_ENV=production): exits naming every refused secret."""
    secrets = survey_secrets()
    try:
        secrets.check("superset")
    except secrets.SecretsError as exc:
        sys.exit(str(exc))


def var_dir() -> Path:
    return Path(os.environ.get("SURVEY_VAR_DIR") or REPO_ROOT / "var").resolve()


def published_path() -> Path:
    return Path(os.environ.get("SURVEY_PUBLISHED_PATH") or var_dir() / "published" / "survey_marts.duckdb").resolve()


def marts_setting() -> str | Path:
    """The marts the dashboard reads: SURVEY_MARTS_URI (PostgreSQL), else the published DuckDB file."""
    return os.environ.get("SURVEY_MARTS_URI") or published_path()


def admin_username() -> str:
    return os.environ.get("SUPERSET_ADMIN_USER") or "admin"


def admin_email() -> str:
    return os.environ.get("SUPERSET_ADMIN_EMAIL") or "admin@localhost"


def admin_password() -> str:
    """SUPERSET_ADMIN_PASSWORD; in development an unset one is `admin`, in production it must pass the check."""
    secrets = survey_secrets()
    try:
        return secrets.secret_value("SUPERSET_ADMIN_PASSWORD", DEVELOPMENT_ADMIN_PASSWORD)
    except secrets.SecretsError as exc:
        sys.exit(str(exc))


def superset_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SUPERSET_CONFIG_PATH": str(BI_DIR / "superset_config.py"),
            "FLASK_APP": "superset.app:create_app()",
            "SURVEY_VAR_DIR": str(var_dir()),
            "SURVEY_PUBLISHED_PATH": str(published_path()),
            "PYTHONUNBUFFERED": "1",
            # Telemetry of the Python side; the front end's pixel is blocked by the CSP in superset_config.py.
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
            "SUPERSET_LOAD_EXAMPLES": "no",
        }
    )
    return env


def _initialised_stamp(home: Path) -> Path | None:
    """Marks the SQLite metadata in `home` as migrated and initialised by this Superset version, so that a restart
    skips both steps (about 40 s); None for metadata elsewhere (SUPERSET__SQLALCHEMY_DATABASE_URI), where the steps
    always run."""
    if os.environ.get("SUPERSET__SQLALCHEMY_DATABASE_URI"):
        return None
    from importlib.metadata import version

    return home / f"initialised-superset-{version('apache-superset')}.stamp"


def _migrate_and_init(home: Path, env: dict[str, str], log: Path) -> None:
    stamp = _initialised_stamp(home)
    if stamp is not None and stamp.exists() and (home / "superset.db").exists():
        print(f"  superset db upgrade, init          done before for this Superset ({stamp.name})", flush=True)
        return
    _step("superset db upgrade", [_bin("superset"), "db", "upgrade"], env, log)
    _step("superset init", [_bin("superset"), "init"], env, log)
    if stamp is not None:
        stamp.write_text("superset db upgrade and superset init ran on this metadata\n")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _step(title: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n=== {title}: {' '.join(cmd)}\n")
        out.flush()
        code = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    print(f"  {title:<34} {time.monotonic() - started:5.1f} s", flush=True)
    if code != 0:
        sys.exit(f"`{' '.join(cmd)}` failed (exit {code}); see {log}")


def provision(bundle: Path, password: str) -> None:
    """In Superset's app context: the admin user and the bundle, imported with overwrite (ImportAssetsCommand), with
    the marts' password (if the marts URI has one) given beside the bundle."""
    from zipfile import ZipFile

    from build_bundle import marts_connection
    from superset.app import create_app

    marts_password = marts_connection(marts_setting()).password

    app = create_app()
    with app.app_context():
        from superset import security_manager
        from superset.commands.importers.v1.assets import ImportAssetsCommand
        from superset.commands.importers.v1.utils import get_contents_from_bundle
        from superset.utils.core import override_user

        user = security_manager.find_user(username=admin_username())
        if user is None:
            user = security_manager.add_user(
                admin_username(),
                "Survey",
                "Admin",
                admin_email(),
                security_manager.find_role("Admin"),
                password=password,
            )
            if not user:
                sys.exit("could not create the admin user")
        else:
            security_manager.reset_password(user.id, password)
        with ZipFile(bundle) as zipped:
            contents = get_contents_from_bundle(zipped)
        passwords = {name: marts_password for name in contents if name.startswith("databases/") and marts_password}
        with override_user(user):
            try:
                ImportAssetsCommand(contents, passwords=passwords).run()
            except Exception as exc:
                # Superset reports a bundle that does not validate as "Import failed for an unknown reason"; the
                # reasons (file and field) are on the CommandInvalidError it was raised from
                cause: BaseException | None = exc
                while cause is not None:
                    if hasattr(cause, "normalized_messages"):
                        print(f"the dashboard bundle does not validate: {cause.normalized_messages()}", flush=True)
                    cause = cause.__cause__
                raise


def wait_for_health(url: str, server: subprocess.Popen, timeout: float, stopping: list[int]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping:
        if server.poll() is not None:
            sys.exit(f"the Superset server exited with {server.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    if stopping:
        return
    sys.exit(f"Superset did not answer on {url}/health within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description="Start Superset with the survey dashboard")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SUPERSET_PORT", "8088")))
    parser.add_argument("--host", default=os.environ.get("SUPERSET_HOST", "127.0.0.1"))
    parser.add_argument("--provision", type=Path, metavar="BUNDLE", help=argparse.SUPPRESS)  # internal step
    args = parser.parse_args()

    check_secrets()
    password = admin_password()
    sys.path.insert(0, str(BI_DIR))
    if args.provision:
        provision(args.provision, password)
        return

    from build_bundle import build, marts_connection

    started = time.monotonic()
    try:
        marts = marts_connection(marts_setting())
    except ValueError as exc:
        sys.exit(f"SURVEY_MARTS_URI: {exc}")
    if marts.engine == "duckdb" and not published_path().exists():
        sys.exit(
            f"No published marts at {published_path()}: run `make run` first (or set SURVEY_PUBLISHED_PATH, or "
            "SURVEY_MARTS_URI for the PostgreSQL warehouse)."
        )
    home = var_dir() / "superset"
    home.mkdir(parents=True, exist_ok=True)
    log = home / "superset.log"
    env = superset_env()
    print(f"Superset on {marts.describe()} (state in {home}, log {log})", flush=True)

    bundle = build(marts, home / "survey_dashboard_bundle.zip", bundle_type="assets")
    _migrate_and_init(home, env, log)
    _step("admin user, dashboard import", [sys.executable, __file__, "--provision", str(bundle)], env, log)

    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '') else args.host}:{args.port}"  # noqa: S104
    with log.open("a") as out:
        server = subprocess.Popen(
            [
                _bin("gunicorn"),
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "8",
                "--timeout",
                "120",
                "--graceful-timeout",
                "10",
                "--bind",
                f"{args.host}:{args.port}",
                "superset.app:create_app()",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        # Only note it and pass SIGTERM on: waiting for the server inside the handler could deadlock with a wait()
        # the handler interrupted (Popen's wait lock); the loop below does the waiting.
        if not stopping and server.poll() is None:
            server.terminate()
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    wait_for_health(url, server, timeout=180, stopping=stopping)
    if not stopping:
        print(f"  {'web server up':<34} {time.monotonic() - started:5.1f} s in all", flush=True)
        print(f"\nSuperset is running: {url}/superset/dashboard/who-leads-digitalisation/", flush=True)
        print(
            f"Log in as {admin_username()} / "
            f"{'admin (development default)' if password == DEVELOPMENT_ADMIN_PASSWORD else '$SUPERSET_ADMIN_PASSWORD'}."
            " Ctrl-C stops it.",
            flush=True,
        )
    while server.poll() is None:
        if stopping and len(stopping) > 1:  # a second Ctrl-C: do not wait for the graceful shutdown
            server.kill()
        time.sleep(0.3)
    if stopping:
        print("\nSuperset stopped.", flush=True)
        sys.exit(0)
    sys.exit(f"the Superset server exited with {server.returncode}")


if __name__ == "__main__":
    main()
