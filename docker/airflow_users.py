"""Airflow's admin user (FAB auth manager), made to match .env: run by airflow-init on every start, after
`airflow db migrate`.

AIRFLOW_ADMIN_USER (default admin) is created with the role Admin, or, when it exists, given AIRFLOW_ADMIN_PASSWORD
again and the role Admin back: change the password in .env, not in the UI. The password is read from the
environment (never a command line) and stored hashed by Flask-AppBuilder; nothing prints it.

Other users are added in the UI (Security > List Users, as an admin) or with the CLI, which asks for the password:

    docker compose exec airflow-apiserver airflow users create --role Viewer --username alice \
        --firstname Alice --lastname Example --email alice@example.org
"""

from __future__ import annotations

import os
import sys

from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder


def main() -> None:
    username = os.environ.get("AIRFLOW_ADMIN_USER") or "admin"
    email = os.environ.get("AIRFLOW_ADMIN_EMAIL") or f"{username}@localhost"
    password = os.environ.get("AIRFLOW_ADMIN_PASSWORD") or ""
    if not password:
        sys.exit("AIRFLOW_ADMIN_PASSWORD is empty: run `make secrets` to write a .env with fresh values")
    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        admin = security.find_role("Admin")
        if admin is None:
            sys.exit("Airflow has no role Admin: run `airflow db migrate` with the FAB auth manager first")
        user = security.find_user(username=username)
        if user is None:
            if not security.add_user(username, "Airflow", "Admin", email, admin, password):
                sys.exit(f"could not create the Airflow user {username}")
            print(f"Airflow user {username} created with the role Admin", flush=True)  # noqa: T201
            return
        if admin not in user.roles:
            user.roles.append(admin)
            security.update_user(user)
        security.reset_password(user.id, password)
        print(f"Airflow user {username}: password set from AIRFLOW_ADMIN_PASSWORD, role Admin", flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
