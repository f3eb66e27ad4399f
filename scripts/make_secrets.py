"""`make secrets`: write the scale-out stack's .env from .env.example, with a fresh random value for every secret.

    python3 scripts/make_secrets.py [--template .env.example] [--output .env]

Every secret of survey_warehouse.secrets that the template leaves empty gets a new random value of its kind (keys
and passwords of URL-safe characters, a Fernet key for AIRFLOW_FERNET_KEY); an empty AIRFLOW_UID gets this user's
id (as root, 50000, the Airflow image's user); every other line is kept as it is. The file is created with mode 600
and never overwritten: an existing .env stops the script (move it away first; a new SURVEY_PSEUDONYM_KEY changes
every pseudonym, and a new AIRFLOW_FERNET_KEY cannot read what the old one encrypted). No value is printed.

Standard library only: the deployment host needs no project environment to run it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_IMAGE_UID = 50000


def survey_secrets() -> ModuleType:
    """survey_warehouse.secrets by its path (no installed package needed)."""
    name = "survey_warehouse_secrets"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "src" / "survey_warehouse" / "secrets.py")
        if spec is None or spec.loader is None:
            sys.exit(f"cannot load {ROOT / 'src' / 'survey_warehouse' / 'secrets.py'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def render(template: str, uid: int) -> tuple[str, list[str]]:
    """The .env text from the template, and the names of the variables given fresh values."""
    secrets = survey_secrets()
    lines, filled = [], []
    for line in template.splitlines():
        name, sep, value = line.partition("=")
        name = name.strip()
        empty = sep and not line.lstrip().startswith("#") and not value.strip()
        if empty and name in secrets.BY_NAME:
            lines.append(f"{name}={secrets.generate(secrets.BY_NAME[name].kind)}")
            filled.append(name)
        elif empty and name == "AIRFLOW_UID":
            lines.append(f"{name}={uid}")
            filled.append(name)
        else:
            lines.append(line)
    return "\n".join(lines) + "\n", filled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write .env with fresh random secrets (never overwrites one).")
    parser.add_argument("--template", type=Path, default=ROOT / ".env.example")
    parser.add_argument("--output", type=Path, default=ROOT / ".env")
    args = parser.parse_args(argv)
    # as root, the Airflow image's own user: containers should not run as root
    uid = os.getuid() or AIRFLOW_IMAGE_UID
    text, filled = render(args.template.read_text(encoding="utf-8"), uid)
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(
            f"{args.output} exists: it is left as it is. To start again, move it away first (its secrets are in use: "
            "the databases' passwords follow .env at the next start, but a new SURVEY_PSEUDONYM_KEY changes every "
            "pseudonym and a new AIRFLOW_FERNET_KEY cannot read what the old one encrypted).",
            file=sys.stderr,
        )
        return 1
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output} (mode 600) with fresh values for: {', '.join(filled)}")
    if uid == AIRFLOW_IMAGE_UID and "AIRFLOW_UID" in filled:
        print(f"AIRFLOW_UID={uid} (run as root): make data/waves/ writable for it: chown -R {uid}:0 data/waves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
