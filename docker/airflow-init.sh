#!/usr/bin/env bash
# docker-compose's airflow-init, run on every `up` before any other Airflow service or Superset starts (they wait for
# it to complete). Every step is idempotent, so a changed password in .env takes effect at the next start. The
# secrets were checked by the entrypoint before this script runs (docker/entrypoint.sh).
set -euo pipefail

# Roles, passwords, databases and privileges, as the superuser over the socket shared with the postgres service.
python /opt/survey/docker/provision_database.py
# Airflow's schema, and the tables of the FAB auth manager.
airflow db migrate
# The admin user from .env (AIRFLOW_ADMIN_USER, AIRFLOW_ADMIN_PASSWORD).
python /opt/survey/docker/airflow_users.py
airflow pools set "$SURVEY_WAREHOUSE_POOL" 4 "Survey warehouse (PostgreSQL): caps concurrent warehouse tasks"
